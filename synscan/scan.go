package synscan

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"syscall"
	"time"

	"github.com/ifl-project/ifl/internal/support/pace"
	"github.com/ifl-project/ifl/internal/support/rtt"

	"github.com/ifl-project/ifl/internal/support/readmark"
)

// flight is a target whose probe has been sent and not yet answered or
// given up.
type flight struct {
	t     Target
	h     *host
	sport uint16
	tries int // probes sent (not those the kernel refused)
	// extra are the tries it was given for answers dropped here while
	// it waited; drops the reader's drops when it was first sent.
	extra     int
	drops     uint64
	firstSent time.Time
	lastSent  time.Time
	due       time.Time // when it is tried again or given up
	index     int       // in scan.waiting; -1: not there
}

// host is what a scan knows of an address.
type host struct {
	src netip.Addr // where probes to it leave from
	// est is its round trip, from its hint and its answers to first
	// probes; nil: nothing is known.
	est *rtt.Estimator
	// backoff are the doublings of the wait its next first probe
	// starts from: as TCP keeps a backed-off timeout until an answer
	// measures the round trip, a host answered only after retries is not
	// retried as early again (and its answers would never measure it).
	backoff int
	flights int
	// measured: an answer of this scan measured its round trip, which
	// then rules over its hint's bound (Target.RTTMax).
	measured bool
}

// maxIdleHosts bounds the hosts a scan remembers with nothing in flight,
// so that memory follows the probes in flight, not the targets: past it,
// a host is forgotten when its last flight ends.
const maxIdleHosts = 4096

// maxBackoff bounds host.backoff: past it, the wait is the ceiling.
const maxBackoff = 16

// After the kernel refuses a probe (ENOBUFS), nothing is sent for a
// pause that doubles from refusedPause up to maxRefusedPause while the
// refusals go on; maxRefused in a row (ten seconds or more) end the scan.
const (
	refusedPause    = 100 * time.Microsecond
	maxRefusedPause = 10 * time.Millisecond
	maxRefused      = 1000
)

// scan is the state of one Stream. It runs on Stream's goroutine; the
// reader hands it answers.
type scan struct {
	r       *Raw
	c       Config
	lim     rtt.Limits
	out     chan<- Result
	in      <-chan Target // nil once closed
	b       *synBuilder
	flights map[key]*flight
	hosts   map[netip.Addr]*host
	waiting waitQueue // sent, by due time
	ready   []*flight // due to be sent again, waiting for the pacer
	// seg is the round trip of every answer to a first probe: the
	// window's round. blind is that of the hosts that came without a
	// hint: the wait of a host with no round trip of its own.
	seg, blind *rtt.Estimator
	pacer      *pace.Pacer
	win        *pace.Window
	// retryAnswers counts the answers to a retry, since the last cut,
	// that say the first probe was lost.
	retryAnswers int
	refused      int       // probes refused in a row
	holdUntil    time.Time // after a refusal, nothing goes out before
	flush        func()    // the IO's Flush, if it queues writes
	// marker is the IO's, if it says how far its reader has read: a
	// probe's wait ends when the reader has read past it, not before.
	marker readMarker
	// counter is the IO's, if it counts what its reader dropped; drops
	// is its count when last asked, drops0 when the scan began.
	counter       dropCounter
	drops, drops0 uint64
	timer         *time.Timer
	st            Stats
}

func newScan(r *Raw, out chan<- Result) *scan {
	c := r.cfg
	s := &scan{
		r: r, c: c, lim: rtt.Limits{Initial: c.Timeout, Floor: c.minWait},
		out: out, b: newSynBuilder(),
		flights: map[key]*flight{},
		hosts:   map[netip.Addr]*host{},
		pacer:   pace.New(c.Rate),
		win:     pace.NewWindow(c.Rate, c.Rate, c.MinRate),
		timer:   time.NewTimer(time.Hour),
	}
	s.seg, s.blind = rtt.New(s.lim), rtt.New(s.lim)
	if f, ok := r.io.(flusher); ok {
		s.flush = f.Flush
	}
	s.marker, _ = r.io.(readMarker)
	if s.counter, _ = r.io.(dropCounter); s.counter != nil {
		s.drops = s.counter.Drops()
		s.drops0 = s.drops
	}
	s.win.SetRound(s.seg.Timeout())
	s.st.MinRate = c.Rate
	return s
}

// run sends, retries and gives up until every target from in has a
// result, ctx is done, or something fails.
func (s *scan) run(ctx context.Context, in <-chan Target, answers <-chan answer, readErr <-chan error) error {
	s.in = in
	defer func() {
		s.st.SRTT = s.seg.SRTT()
		s.checkDrops(time.Now())
		s.st.Dropped = int(s.drops - s.drops0)
	}()
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		// How far the reader has read, then what it read: every answer
		// that came before the mark is queued by the time it is set. A
		// flight whose wait ended while its answer waited, here or in
		// the socket, is not sent again, nor given up.
		// Asked only when a wait is over: asking may cost system
		// calls, and most turns only send.
		upTo := time.Now()
		if len(s.waiting) > 0 && !s.waiting[0].due.After(upTo) {
			if m := s.readUpTo(); !m.IsZero() && m.Before(upTo) {
				upTo = m
			}
		}
		if err := s.answered(ctx, answers); err != nil {
			return err
		}
		if err := s.expire(ctx, upTo); err != nil {
			return err
		}
		now := time.Now()
		s.pacer.SetRate(s.win.Rate())
		s.st.MinRate = min(s.st.MinRate, s.win.Rate())
		if err := s.retry(now); err != nil {
			return err
		}
		if s.in == nil && len(s.flights) == 0 {
			return nil
		}
		if err := s.wait(ctx, time.Now(), answers, readErr); err != nil {
			return err
		}
	}
}

// answered handles the answers queued, as many as there were when it
// was called, so that a reader that keeps up does not hold the sender.
func (s *scan) answered(ctx context.Context, answers <-chan answer) error {
	for range len(answers) {
		if err := s.answer(ctx, <-answers); err != nil {
			return err
		}
	}
	return nil
}

// admit takes a target from in: a duplicate of one in flight is
// dropped, one that cannot be reached from here is filtered, the others
// are sent their first probe.
func (s *scan) admit(ctx context.Context, t Target, now time.Time) error {
	s.st.Targets++
	t.Addr = t.Addr.Unmap()
	if _, dup := s.flights[t.key()]; dup {
		return nil
	}
	h, err := s.host(t)
	if err != nil {
		// Nothing will answer.
		return s.emit(ctx, Result{Target: t, State: Filtered})
	}
	f := &flight{t: t, h: h, sport: s.r.ck.sport(t), index: -1, drops: s.drops}
	h.flights++
	s.flights[t.key()] = f
	return s.send(f, now)
}

// host returns t's host, its round trip seeded from t's hint if nothing
// was known; an error if t cannot be reached from here.
func (s *scan) host(t Target) (*host, error) {
	h := s.hosts[t.Addr]
	if h == nil {
		src, err := s.r.io.Source(t.Addr)
		if err != nil {
			return nil, err
		}
		h = &host{src: src}
		s.hosts[t.Addr] = h
	}
	if h.est == nil && t.RTT > 0 {
		h.est = rtt.New(s.lim)
		h.est.Observe(t.RTT)
	}
	return h, nil
}

// send sends f's next probe, sent at now, and puts f in line for its
// answer.
func (s *scan) send(f *flight, now time.Time) error {
	src := f.h.src
	seg, err := s.b.build(src, f.sport, f.t, s.r.ck.seq(src, f.sport, f.t))
	if err != nil {
		return err
	}
	// now was taken before the write, so that no answer seems to come
	// before its probe; the answer is read after send returns.
	if err := s.r.io.WriteTo(seg, src, f.t.Addr); err != nil {
		if errors.Is(err, syscall.ENOBUFS) {
			return s.refuse(f, now, err)
		}
		return fmt.Errorf("synscan: sending to %v: %w", f.t.Addr, err)
	}
	s.refused = 0
	f.tries++
	f.lastSent = now
	if f.tries == 1 {
		f.firstSent = now
	} else {
		s.st.Retries++
	}
	f.due = now.Add(s.timeout(f))
	if f.tries > s.c.Retries+f.extra {
		if f.h.est == nil {
			// Nothing is known of this host: it may be farther than
			// the hosts the waits were learnt from. Its last wait ends
			// no sooner than a wait with nothing measured would.
			f.due = later(f.due, f.firstSent.Add(s.c.Timeout))
		}
		if !f.h.measured {
			// The hint may have been short: it may not answer
			// sooner.
			f.due = later(f.due, f.firstSent.Add(2*f.t.RTTMax))
		}
	}
	heap.Push(&s.waiting, f)
	s.st.Sent++
	s.pacer.Sent(now)
	s.win.Sent(now)
	if s.st.Sent%dropCheckEvery == 0 {
		s.checkDrops(now)
	}
	return nil
}

// dropCheckEvery is how many probes go out between two looks at what the
// reader dropped: a look is a system call, and a reader that falls behind
// drops many answers at once.
const dropCheckEvery = 256

// maxDropTries bounds the tries a probe is given for answers dropped
// here while it waited.
const maxDropTries = 2

// checkDrops asks the IO what its reader has dropped: answers that came
// and were lost here are loss, and the rate falls. It reports whether
// more were dropped since it last looked.
func (s *scan) checkDrops(now time.Time) bool {
	if s.counter == nil {
		return false
	}
	n := s.counter.Drops()
	if n <= s.drops {
		return false
	}
	s.drops = n
	s.cut(now, now)
	return true
}

// refuse handles a probe the kernel had no room for: its queue for a
// neighbour still being resolved is full, or the device's is. The probe
// did not leave, so it is no try: it goes first in line again, after a
// pause, and the rate is cut.
func (s *scan) refuse(f *flight, now time.Time, err error) error {
	s.st.Refused++
	if s.refused++; s.refused >= maxRefused {
		return fmt.Errorf("synscan: sending to %v: %w (%d probes in a row)", f.t.Addr, err, s.refused)
	}
	s.cut(now, now)
	s.holdUntil = now.Add(min(refusedPause<<min(s.refused-1, 16), maxRefusedPause))
	s.ready = slices.Insert(s.ready, 0, f)
	return nil
}

// timeout is how long f's last probe waits for its answer. While its
// host's round trip is unknown: the timeout of the round trip of the
// hosts that came without a hint, doubled for each try before it, as TCP
// backs off. Once it is known: that host's timeout for each try (the rate
// window is the congestion control, and a lost probe is as likely lost
// the next round as after two), and for the last, four times that (an
// answer that has not come may be late rather than lost, on a segment
// busier than its round trips showed).
func (s *scan) timeout(f *flight) time.Duration {
	if f.h.est == nil {
		return s.blind.Backoff(f.tries - 1 + f.h.backoff)
	}
	try := f.h.backoff
	if f.tries > s.c.Retries+f.extra {
		try += lastTryBackoff
	}
	// A slow host is no lost one: twice its round trip, even past the
	// ceiling, as its round trip was measured.
	return max(f.h.est.Backoff(try), 2*f.h.est.SRTT())
}

// lastTryBackoff are the doublings of a known host's timeout that its
// last try waits.
const lastTryBackoff = 2

// answer settles the flight an answer is for; a late or repeated one is
// ignored, as is one to a flight whose probe has not left yet (it
// answers an earlier flight to the same target).
func (s *scan) answer(ctx context.Context, a answer) error {
	f := s.flights[a.t.key()]
	if f == nil || f.tries == 0 {
		return nil
	}
	s.learn(f, a.at)
	s.settle(f)
	d := a.at.Sub(f.lastSent)
	if d < 0 {
		d = a.at.Sub(f.firstSent) // it came before the last probe left
	}
	return s.emit(ctx, Result{Target: f.t, State: a.state, RTT: d})
}

// learn takes what an answer to f that came at at tells of round trips
// and loss.
func (s *scan) learn(f *flight, at time.Time) {
	s.win.Ack(at)
	switch {
	case f.tries == 1:
		s.measure(f, at.Sub(f.lastSent))
	case at.Before(f.lastSent):
		// It came before the last probe left, which was sent for
		// nothing: the answer waited to be read, or the host is slower
		// than its wait. Nothing was lost; and with one probe before, its
		// round trip is known.
		if f.tries == 2 {
			s.measure(f, at.Sub(f.firstSent))
		}
	default:
		// As Karn's algorithm: an answer after a retry may answer an
		// earlier probe, so it measures nothing, and the host keeps its
		// backed-off wait. But one much nearer the retry than the first
		// probe answers the retry: the first was lost (a slow host's
		// answer comes its round trip after the first). One such answer
		// may be one host's loss; a second since the last cut is the
		// queues.
		f.h.backoff = min(f.h.backoff+f.tries-1, maxBackoff)
		if gap := f.lastSent.Sub(f.firstSent); 2*at.Sub(f.lastSent) < gap {
			if s.retryAnswers++; s.retryAnswers >= 2 {
				s.cut(f.firstSent, at)
			}
		}
	}
}

// measure takes d as a round trip to f's host.
func (s *scan) measure(f *flight, d time.Duration) {
	f.h.backoff = 0
	f.h.measured = true
	if f.h.est == nil {
		f.h.est = rtt.New(s.lim)
	}
	f.h.est.Observe(d)
	s.seg.Observe(d)
	if f.t.RTT == 0 {
		s.blind.Observe(d)
	}
	s.win.SetRound(s.seg.Timeout())
}

// cut reports a probe sent at sent lost, at now: the rate falls, at
// most once a round.
func (s *scan) cut(sent, now time.Time) {
	if s.win.Loss(sent, now) {
		s.retryAnswers = 0
		s.st.RateCuts++
	}
}

// settle forgets f: it has its result.
func (s *scan) settle(f *flight) {
	delete(s.flights, f.t.key())
	if f.index >= 0 {
		heap.Remove(&s.waiting, f.index)
	}
	if f.h.flights--; f.h.flights == 0 && len(s.hosts) > maxIdleHosts {
		delete(s.hosts, f.t.Addr)
	}
}

// expire handles the flights whose wait is over at now: those with tries
// left are made ready to be sent again, the others are given up.
func (s *scan) expire(ctx context.Context, now time.Time) error {
	looked := false
	for len(s.waiting) > 0 && !now.Before(s.waiting[0].due) {
		f := heap.Pop(&s.waiting).(*flight)
		if f.tries <= s.c.Retries+f.extra {
			s.ready = append(s.ready, f)
			continue
		}
		// Before a target is given up: were answers dropped here
		// while it waited? Then its silence may be ours.
		if !looked {
			s.checkDrops(now)
			looked = true
		}
		if s.drops > f.drops {
			if f.extra < maxDropTries {
				f.extra++
				f.drops = s.drops
				s.ready = append(s.ready, f)
				continue
			}
			s.st.Unsure++
		}
		s.settle(f)
		if err := s.emit(ctx, Result{Target: f.t, State: Filtered}); err != nil {
			return err
		}
	}
	return nil
}

// readUpTo is how far the reader has read; the zero time if the IO
// does not say, and then the clock decides alone.
func (s *scan) readUpTo() time.Time {
	if s.marker == nil {
		return time.Time{}
	}
	return s.marker.ReadUpTo()
}

// nextSend is when the next probe may go out.
func (s *scan) nextSend() time.Time { return later(s.pacer.Next(), s.holdUntil) }

// retry sends the probes due again that may go out at now.
func (s *scan) retry(now time.Time) error {
	for len(s.ready) > 0 && !now.Before(s.nextSend()) {
		f := s.ready[0]
		s.ready = s.ready[1:]
		if s.flights[f.t.key()] != f {
			continue // answered while it waited
		}
		if err := s.send(f, now); err != nil {
			return err
		}
		now = time.Now()
	}
	return nil
}

// wait waits for the next thing to do: an answer, a target the pacer
// lets in (retries first), or a flight's wait to end.
func (s *scan) wait(ctx context.Context, now time.Time, answers <-chan answer, readErr <-chan error) error {
	var wake time.Time
	var advanced <-chan struct{}
	if len(s.waiting) > 0 {
		wake = s.waiting[0].due
		if s.marker != nil && !now.Before(wake) {
			if !s.readUpTo().Before(wake) {
				// Read up to since run looked (a reader at rest sets
				// no mark): due now.
				return nil
			}
			// Due, but not read up to: the reader says when it is, or,
			// at rest, a look at its socket.
			wake, advanced = now.Add(readmark.Recheck), s.marker.Advanced()
		}
	}
	var admit <-chan Target
	if len(s.ready) > 0 || s.in != nil {
		if next := s.nextSend(); now.Before(next) || len(s.ready) > 0 {
			wake = earliest(wake, next)
		} else {
			admit = s.in
		}
	}
	if s.flush != nil && len(answers) == 0 && len(admit) == 0 {
		// Nothing is ready: what was queued goes before the wait.
		s.flush()
	}
	if !wake.IsZero() {
		// Since Go 1.23 Reset discards a pending tick: no draining.
		s.timer.Reset(max(wake.Sub(now), time.Microsecond))
	} else {
		s.timer.Stop()
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case err := <-readErr:
		return err
	case a := <-answers:
		return s.answer(ctx, a)
	case t, ok := <-admit:
		if !ok {
			s.in = nil
			return nil
		}
		return s.admit(ctx, t, time.Now())
	case <-s.timer.C:
		return nil
	case <-advanced:
		return nil
	}
}

// emit sends a result on.
func (s *scan) emit(ctx context.Context, res Result) error {
	select {
	case s.out <- res:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func earliest(a, b time.Time) time.Time {
	if a.IsZero() || b.Before(a) {
		return b
	}
	return a
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// waitQueue is a heap of flights by due time.
type waitQueue []*flight

func (q waitQueue) Len() int           { return len(q) }
func (q waitQueue) Less(i, j int) bool { return q[i].due.Before(q[j].due) }
func (q waitQueue) Swap(i, j int) {
	q[i], q[j] = q[j], q[i]
	q[i].index, q[j].index = i, j
}
func (q *waitQueue) Push(x any) {
	f := x.(*flight)
	f.index = len(*q)
	*q = append(*q, f)
}
func (q *waitQueue) Pop() any {
	old := *q
	f := old[len(old)-1]
	old[len(old)-1] = nil
	f.index = -1
	*q = old[:len(old)-1]
	return f
}
