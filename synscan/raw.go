package synscan

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"

	"github.com/ifl-project/ifl/internal/pace"
)

// PacketIO is what a raw scan sends its probes on and reads the answers
// from: raw sockets (NewRaw), or a network in a test. Both ways go TCP
// segments with their addresses; the IO adds and strips the IP headers.
// ReadFrom is called from one goroutine, the other methods from another.
type PacketIO interface {
	// Ports is the range of source ports probes use, n of them from
	// first; segments to other ports need not be read.
	Ports() (first, n uint16)
	// Source returns the address a packet to dst leaves from, or an
	// error if dst cannot be reached from here.
	Source(dst netip.Addr) (netip.Addr, error)
	// WriteTo sends seg, a TCP segment with its checksum, from src to
	// dst. An error that wraps syscall.ENOBUFS means the kernel had no
	// room for it: it was not sent, and may be sent again.
	WriteTo(seg []byte, src, dst netip.Addr) error
	// ReadFrom reads the next TCP segment into b and returns its length
	// and the addresses it came from and went to.
	ReadFrom(b []byte) (n int, src, dst netip.Addr, err error)
	// SetReadDeadline makes ReadFrom, waiting or to come, return an
	// error wrapping os.ErrDeadlineExceeded once t has passed; the zero
	// time, never.
	SetReadDeadline(t time.Time) error
	Close() error
}

// Raw is the raw-socket SYN scanner. Create it with NewRaw, or New over
// any PacketIO. A Raw runs one Stream at a time.
type Raw struct {
	cfg Config
	ck  cookies
	io  PacketIO
}

// New returns a raw scanner that sends and reads on io, and closes it on
// Close.
func New(cfg *Config, io PacketIO) (*Raw, error) {
	first, n := io.Ports()
	if n == 0 || int(first)+int(n) > 65536 {
		return nil, fmt.Errorf("synscan: bad source port range: %d ports from %d", n, first)
	}
	return &Raw{cfg: cfg.withDefaults(), ck: newCookies(first, n), io: io}, nil
}

// Close closes the IO.
func (r *Raw) Close() error { return r.io.Close() }

// answer is a reply that carried one of our cookies.
type answer struct {
	t     Target
	state State
	at    time.Time
}

// Stream implements Scanner.
func (r *Raw) Stream(ctx context.Context, in <-chan Target, out chan<- Result) (Stats, error) {
	answers := make(chan answer, 1024)
	readErr := make(chan error, 1)
	stop, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		if err := r.read(answers, stop); err != nil {
			readErr <- err
		}
	}()
	// The reader is gone before Stream returns, so that the next Stream
	// has the socket to itself.
	defer func() {
		close(stop)
		r.io.SetReadDeadline(time.Unix(1, 0))
		<-stopped
		r.io.SetReadDeadline(time.Time{})
	}()
	s := newScan(r, out)
	defer s.timer.Stop()
	err := s.run(ctx, in, answers, readErr)
	return s.st, err
}

// read matches replies and sends answers until stop is closed. Anything
// that does not carry one of our cookies (forged, late or unrelated) is
// dropped. It returns the error that stops it before stop is closed.
func (r *Raw) read(answers chan<- answer, stop <-chan struct{}) error {
	var p replyParser
	buf := make([]byte, 2048)
	for {
		n, src, dst, err := r.io.ReadFrom(buf)
		if err != nil {
			select {
			case <-stop:
				return nil
			default:
			}
			if errors.Is(err, syscall.EINTR) || errors.Is(err, os.ErrDeadlineExceeded) {
				continue
			}
			if errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrClosed) {
				err = net.ErrClosed
			}
			return fmt.Errorf("synscan: reading replies: %w", err)
		}
		now := time.Now()
		rep, ok := p.parse(buf[:n], src, dst)
		if !ok {
			continue
		}
		t, state, ok := r.ck.match(rep)
		if !ok {
			continue
		}
		select {
		case answers <- answer{t: t, state: state, at: now}:
		case <-stop:
			return nil
		}
	}
}

// flight is a target whose probe has been sent and not yet answered or
// given up.
type flight struct {
	t         Target
	src       netip.Addr
	sport     uint16
	tries     int
	firstSent time.Time
	lastSent  time.Time
	due       time.Time // when it is tried again or given up
	index     int       // in scan.waiting; -1: not there
}

// scan is the state of one Stream: the sending side, on Stream's
// goroutine; the reader hands it answers.
type scan struct {
	r       *Raw
	c       Config
	out     chan<- Result
	in      <-chan Target // nil once closed
	b       *synBuilder
	flights map[key]*flight
	waiting waitQueue // sent, by due time
	ready   []*flight // due a retry, waiting for the pacer
	pacer   *pace.Pacer
	timer   *time.Timer
	st      Stats
}

func newScan(r *Raw, out chan<- Result) *scan {
	return &scan{
		r: r, c: r.cfg, out: out, b: newSynBuilder(),
		flights: map[key]*flight{},
		pacer:   pace.New(r.cfg.Rate),
		timer:   time.NewTimer(time.Hour),
	}
}

// run sends, retries and gives up until every target from in has a
// result, ctx is done, or something fails.
func (s *scan) run(ctx context.Context, in <-chan Target, answers <-chan answer, readErr <-chan error) error {
	s.in = in
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		now := time.Now()
		if err := s.expire(ctx, now); err != nil {
			return err
		}
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

// admit takes a target from in: a duplicate of one in flight is
// dropped, one that cannot be reached from here is filtered, the others
// are sent their first probe.
func (s *scan) admit(ctx context.Context, t Target, now time.Time) error {
	s.st.Targets++
	t.Addr = t.Addr.Unmap()
	if _, dup := s.flights[t.key()]; dup {
		return nil
	}
	src, err := s.r.io.Source(t.Addr)
	if err != nil {
		// Nothing will answer.
		return s.emit(ctx, Result{Target: t, State: Filtered})
	}
	f := &flight{t: t, src: src, sport: s.r.ck.sport(t), index: -1}
	s.flights[t.key()] = f
	return s.send(f, now)
}

// send sends f's next probe and puts it in line for its answer.
func (s *scan) send(f *flight, now time.Time) error {
	seg, err := s.b.build(f.src, f.sport, f.t, s.r.ck.seq(f.src, f.sport, f.t))
	if err != nil {
		return err
	}
	// Recorded before the packet leaves, so that the fastest answer
	// finds it.
	f.tries++
	f.lastSent = now
	if f.tries == 1 {
		f.firstSent = now
	}
	f.due = now.Add(s.c.Timeout)
	heap.Push(&s.waiting, f)
	s.st.Sent++
	err = s.r.io.WriteTo(seg, f.src, f.t.Addr)
	if errors.Is(err, syscall.ENOBUFS) {
		// The kernel dropped it: its queue for a neighbour that is
		// still being resolved is full, or the device's is. Slow
		// down; the retry will send it again.
		s.pacer.Congested()
		err = nil
	}
	if err != nil {
		return fmt.Errorf("synscan: sending to %v: %w", f.t.Addr, err)
	}
	s.pacer.Sent(now)
	return nil
}

// answer settles the flight an answer is for; a late or repeated one is
// ignored.
func (s *scan) answer(ctx context.Context, a answer) error {
	f := s.flights[a.t.key()]
	if f == nil {
		return nil
	}
	s.settle(f)
	return s.emit(ctx, Result{Target: f.t, State: a.state, RTT: a.at.Sub(f.lastSent)})
}

// settle forgets f: it has its result.
func (s *scan) settle(f *flight) {
	delete(s.flights, f.t.key())
	if f.index >= 0 {
		heap.Remove(&s.waiting, f.index)
	}
}

// expire handles the flights whose wait is over at now: those with tries
// left are made ready to be sent again, the others are given up.
func (s *scan) expire(ctx context.Context, now time.Time) error {
	for len(s.waiting) > 0 && !now.Before(s.waiting[0].due) {
		f := heap.Pop(&s.waiting).(*flight)
		if f.tries <= s.c.Retries {
			s.ready = append(s.ready, f)
			continue
		}
		s.settle(f)
		if err := s.emit(ctx, Result{Target: f.t, State: Filtered}); err != nil {
			return err
		}
	}
	return nil
}

// retry sends the retries the pacer lets out at now.
func (s *scan) retry(now time.Time) error {
	for len(s.ready) > 0 && !now.Before(s.pacer.Next()) {
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
	if len(s.waiting) > 0 {
		wake = s.waiting[0].due
	}
	var admit <-chan Target
	if len(s.ready) > 0 || s.in != nil {
		if next := s.pacer.Next(); now.Before(next) || len(s.ready) > 0 {
			wake = earliest(wake, next)
		} else {
			admit = s.in
		}
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
