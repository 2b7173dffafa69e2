// Package pace spaces events at a steady rate, as the senders of ARP
// requests, SYN probes and connections need: a schedule rather than a
// sleep per event, so that timers that wake late are caught up, but only
// a few milliseconds' worth, never in a burst; and a rate that slows down
// when the kernel says it dropped something, and comes back as sends
// succeed. Each runs a paced, bounded stream of work, as the connect()
// scanners do.
package pace

import (
	"context"
	"time"

	"golang.org/x/sync/errgroup"
)

// MaxCatchUp bounds how far behind its schedule a Pacer may fall and then
// let events through back to back.
const MaxCatchUp = 5 * time.Millisecond

// maxInterval bounds how slow congestion can make a Pacer.
const maxInterval = 10 * time.Millisecond

// Pacer schedules events. The zero value and a Pacer from New with a rate
// of 0 or less never wait. A Pacer is not safe for concurrent use.
type Pacer struct {
	base, interval time.Duration
	next           time.Time
	good           int
	// With smooth, notBefore is half an interval after the last event.
	smooth    bool
	notBefore time.Time
}

// Smooth makes a pacer that fell behind its schedule catch up at twice
// its rate at most, never back to back: for events whose bursts cost
// more than their rate, as broadcasts that every host of a segment takes
// in.
func (p *Pacer) Smooth() { p.smooth = true }

// New returns a pacer for rate events per second.
func New(rate int) *Pacer {
	p := &Pacer{}
	if rate > 0 {
		p.base = time.Second / time.Duration(rate)
		p.interval = p.base
	}
	return p
}

// Next is when the next event may happen.
func (p *Pacer) Next() time.Time {
	if p.next.Before(p.notBefore) {
		return p.notBefore
	}
	return p.next
}

// Interval is the current spacing.
func (p *Pacer) Interval() time.Duration { return p.interval }

// Sent records an event at now and schedules the next one.
func (p *Pacer) Sent(now time.Time) {
	if p.base == 0 {
		return
	}
	if p.next.IsZero() {
		p.next = now
	}
	p.next = p.next.Add(p.interval)
	if floor := now.Add(-MaxCatchUp); p.next.Before(floor) {
		p.next = floor
	}
	if p.smooth {
		p.notBefore = now.Add(p.interval / 2)
	}
	if p.interval != p.base {
		if p.good++; p.good >= 64 {
			p.interval = max(p.base, p.interval*15/16)
			p.good = 0
		}
	}
}

// Congested slows the pacer down by a quarter: the kernel dropped an
// event for want of room.
func (p *Pacer) Congested() {
	p.interval = min(p.interval*5/4+time.Microsecond, maxInterval)
	p.good = 0
}

// Wait sleeps until the next event may happen, or ctx is done.
func (p *Pacer) Wait(ctx context.Context) error {
	d := time.Until(p.Next())
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Each calls fn(ctx, v) in a goroutine of its own for every v received from
// in, starting them at rate per second and running at most limit at once
// (0 or less: no bound), until in is closed or ctx is done; it returns when
// every call has.
func Each[T any](ctx context.Context, in <-chan T, rate, limit int, fn func(context.Context, T)) {
	var g errgroup.Group
	if limit > 0 {
		g.SetLimit(limit)
	}
	p := New(rate)
	for {
		var v T
		select {
		case <-ctx.Done():
			g.Wait()
			return
		case x, ok := <-in:
			if !ok {
				g.Wait()
				return
			}
			v = x
		}
		if p.Wait(ctx) != nil {
			g.Wait()
			return
		}
		p.Sent(time.Now())
		g.Go(func() error {
			fn(ctx, v)
			return nil
		})
	}
}

// Window is a sending rate that follows loss, as TCP's congestion window
// and nmap's do, counted in rounds (the time an answer takes to be missed)
// rather than in packets. When answers that should have come did not, it
// falls to half of what was really sent over the last round (from the
// flight, as RFC 5681 cuts: a sender that cannot reach its rate must not
// cut from the rate, or the first cuts do nothing), at most once a
// round, since what went out in the round after a cut was sent into a
// queue the cut has not drained yet. Until the first loss it doubles
// every round with answers (slow start); after, it grows by a
// growthDivisor-th of the ceiling a round (congestion avoidance), and only while the sender
// uses it (RFC 7661), so that it hovers just under what the network
// takes instead of falling back into the loss it left. It is not safe for
// concurrent use.
type Window struct {
	ceiling, floor float64
	rate           float64
	round          time.Duration
	cutAt          time.Time // the last cut; losses of what was sent before it, or a round after, are old news
	grewAt         time.Time
	cuts           int
	// The rate really sent: events counted since markAt, and the rate of
	// the last round counted (0: none yet).
	markAt   time.Time
	count    int
	measured float64
}

// Sent records an event sent at now.
func (w *Window) Sent(now time.Time) {
	if w.markAt.IsZero() {
		w.markAt = now
		return
	}
	w.count++
	if d := now.Sub(w.markAt); d >= max(w.round, time.Millisecond) {
		w.measured = float64(w.count) / d.Seconds()
		w.markAt, w.count = now, 0
	}
}

// NewWindow returns a window at start events per second that grows up to
// ceiling and never goes below floor (at least 1).
func NewWindow(start, ceiling, floor int) *Window {
	f := float64(max(floor, 1))
	c := max(float64(ceiling), f)
	return &Window{ceiling: c, floor: f, rate: min(c, max(f, float64(start)))}
}

// SetRound sets the round: how long after a request its loss shows.
func (w *Window) SetRound(d time.Duration) { w.round = d }

// Rate is the current rate, in events per second.
func (w *Window) Rate() int { return int(w.rate) }

// Cuts counts the times loss cut the rate.
func (w *Window) Cuts() int { return w.cuts }

// Loss reports, at now, an answer that did not come to an event sent at
// sent. The rate falls unless it was cut less than a round before sent:
// what was sent at the old rate, or into the queue it filled, is still
// being lost. It reports whether it cut.
func (w *Window) Loss(sent, now time.Time) bool {
	if !w.cutAt.IsZero() && sent.Before(w.cutAt.Add(w.round)) {
		return false
	}
	// From what was really sent, but never below a quarter of the
	// rate in one cut: a round measured while the sender waited (for
	// its retries to fall due) sent little, and says nothing of what
	// the network takes.
	base := w.rate
	if w.measured > 0 {
		base = max(min(base, w.measured), w.rate/2)
	}
	w.rate = max(w.floor, base/2)
	w.cutAt, w.grewAt = now, now
	w.cuts++
	return true
}

// Ack reports, at now, that answers came: once a round the rate doubles
// (before any loss) or grows by a 32nd of the ceiling (after).
func (w *Window) Ack(now time.Time) {
	if w.grewAt.IsZero() {
		w.grewAt = now
	}
	if now.Sub(w.grewAt) < max(w.round, time.Microsecond) {
		return
	}
	w.grewAt = now
	switch {
	case w.cuts == 0:
		w.rate = min(w.ceiling, 2*w.rate)
	case w.measured == 0 || w.measured >= w.rate*3/4:
		w.rate = min(w.ceiling, w.rate+w.ceiling/growthDivisor)
	}
}

// growthDivisor sets how fast the rate grows back after loss: a sweep
// lasts a few hundred rounds at most, and one that crawls back from a
// cut for all of them spends most of its time below what the network
// took before the loss.
const growthDivisor = 32

// SetRate changes the pacer's rate; congestion seen so far is forgotten.
func (p *Pacer) SetRate(rate int) {
	if rate <= 0 {
		p.base, p.interval = 0, 0
		return
	}
	b := time.Second / time.Duration(rate)
	if b == p.base {
		return
	}
	p.base, p.interval, p.good = b, b, 0
}

// Measured is the rate really sent over the last round counted, in events
// per second (0: none yet).
func (w *Window) Measured() int { return int(w.measured) }
