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
}

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
func (p *Pacer) Next() time.Time { return p.next }

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
	d := time.Until(p.next)
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
// and nmap's do: it starts at its ceiling, halves when answers that
// should have come did not (once per hold, so that one burst of loss is
// one cut), and grows back while answers keep coming. It is not safe for
// concurrent use.
type Window struct {
	ceiling, floor float64
	rate           float64
	cutAt          time.Time // the last cut; losses of what was sent before it are old news
	cuts           int
}

// NewWindow returns a window at ceiling events per second that never
// goes below floor (at least 1).
func NewWindow(ceiling, floor int) *Window {
	f := float64(max(floor, 1))
	c := max(float64(ceiling), f)
	return &Window{ceiling: c, floor: f, rate: c}
}

// Rate is the current rate, in events per second.
func (w *Window) Rate() int { return int(w.rate) }

// Cuts counts the times loss halved the rate.
func (w *Window) Cuts() int { return w.cuts }

// Loss reports an answer that did not come to an event sent at sent. The
// rate halves unless it was cut after sent already: what was sent at the
// old rate is still being lost. It reports whether it cut.
func (w *Window) Loss(sent time.Time) bool {
	if !w.cutAt.IsZero() && sent.Before(w.cutAt) {
		return false
	}
	w.rate = max(w.floor, w.rate/2)
	w.cutAt = time.Now()
	w.cuts++
	return true
}

// Ack reports an answer that came: the rate grows by a sixteenth of
// itself, back to the ceiling in a few dozen answers.
func (w *Window) Ack() {
	w.rate = min(w.ceiling, w.rate+w.rate/16)
}

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
