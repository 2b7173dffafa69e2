package synscan

import (
	"bytes"
	"context"
	"errors"
	"net/netip"
	"os"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/ifl-project/ifl/internal/support/readmark"
)

var addrs = cmpopts.EquateComparable(netip.Addr{})

// streamFake runs a raw scan of targets over n and returns its results,
// sorted, with what Stream returned.
func streamFake(t *testing.T, ctx context.Context, n *fakeNet, cfg *Config, targets []Target) ([]Result, Stats, error) {
	t.Helper()
	r, err := New(cfg, n)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	res, st, err := streamAll(ctx, r, targets)
	noneLeft(t, "synscan.(*Raw)", "synscan.(*scan)")
	return res, st, err
}

// streamAll feeds targets to s's Stream and returns its results, sorted,
// with what Stream returned.
func streamAll(ctx context.Context, s Scanner, targets []Target) ([]Result, Stats, error) {
	in := make(chan Target)
	out := make(chan Result, len(targets)+1)
	go func() {
		defer close(in)
		for _, tg := range targets {
			select {
			case in <- tg:
			case <-ctx.Done():
				return
			}
		}
	}()
	st, err := s.Stream(ctx, in, out)
	close(out)
	var res []Result
	for r := range out {
		res = append(res, r)
	}
	Sort(res)
	return res, st, err
}

// noneLeft fails if a goroutine in one of the functions named is still
// running a second after Stream returned: Stream may return while one is
// on its way out (a Raw's reader, a connect scan's dial).
func noneLeft(t *testing.T, funcs ...string) {
	t.Helper()
	var left string
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if left = goroutinesIn(funcs...); left == "" {
			return
		}
	}
	t.Errorf("goroutines left:\n%s", left)
}

// goroutinesIn returns the stacks of the goroutines in the functions
// named.
func goroutinesIn(funcs ...string) string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var left []byte
	for _, g := range bytes.Split(buf, []byte("\n\n")) {
		for _, f := range funcs {
			if bytes.Contains(g, []byte(f)) {
				left = append(append(left, g...), "\n\n"...)
				break
			}
		}
	}
	return string(left)
}

// kinds is a network with a host of every kind, the targets of a scan of
// their ports 22 and 7440 (with the round trip of the host as a hint,
// where it has one), the results it must give, and how many SYNs each
// port of a host must get (-1: any).
func kinds(n *fakeNet) ([]Target, []Result, map[netip.Addr]int) {
	const slowRTT = 30 * time.Millisecond
	type kind struct {
		h        *fakeHost
		hint     time.Duration
		s22, s74 State
		syns     int
	}
	hosts := []kind{
		{&fakeHost{open: []uint16{7440}}, 0, Closed, Open, 1},
		{&fakeHost{}, 0, Closed, Closed, 1},
		{&fakeHost{filtered: true}, 0, Filtered, Filtered, 3},
		{&fakeHost{filtered: true}, 300 * time.Microsecond, Filtered, Filtered, 3},
		// Drops every first SYN to a port.
		{&fakeHost{open: []uint16{7440}, lose: func(try int) bool { return try == 1 }}, 0, Closed, Open, 2},
		{&fakeHost{open: []uint16{22}, delay: slowRTT}, slowRTT, Open, Closed, 1},
		// Unknown, and slower than the others: retried, not lost.
		{&fakeHost{open: []uint16{22}, delay: slowRTT}, 0, Open, Closed, -1},
		{&fakeHost{unreachable: true}, 0, Filtered, Filtered, 0},
	}
	var targets []Target
	var want []Result
	syns := map[netip.Addr]int{}
	for i, k := range hosts {
		a := n.add(netip.AddrFrom4([4]byte{198, 18, 40, byte(10 + i)}).String(), k.h)
		syns[a] = k.syns
		for _, p := range []struct {
			port  uint16
			state State
		}{{22, k.s22}, {7440, k.s74}} {
			tg := Target{Addr: a, Port: p.port, RTT: k.hint}
			targets = append(targets, tg)
			want = append(want, Result{Target: tg, State: p.state})
		}
	}
	return targets, want, syns
}

func TestRawFindsEveryKindOfHost(t *testing.T) {
	n := newFakeNet()
	targets, want, wantSYNs := kinds(n)
	cfg := &Config{Timeout: 200 * time.Millisecond, Retries: 2, minWait: 20 * time.Millisecond}
	got, st, err := streamFake(t, context.Background(), n, cfg, targets)
	if err != nil {
		t.Fatal(err)
	}
	// The two unreachable targets are sent nothing.
	checkKinds(t, n, targets, want, wantSYNs, got, st, len(targets)-2)
	if n.badSums != 0 {
		t.Errorf("%d SYNs with a bad checksum", n.badSums)
	}
}

func TestRawOneResultPerTargetWhateverItsHint(t *testing.T) {
	n := newFakeNet()
	a := n.add("198.18.40.12", &fakeHost{filtered: true})
	// The same target twice, with two hints, while the first is in flight
	// (for 300 ms: its hint says 150 ms away).
	targets := []Target{{Addr: a, Port: 80, RTT: 150 * time.Millisecond}, {Addr: a, Port: 80, RTT: time.Millisecond}}
	got, st, err := streamFake(t, context.Background(), n, &Config{Retries: -1}, targets)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]Result{{Target: targets[0], State: Filtered}}, got, addrs); diff != "" {
		t.Errorf("results (-want +got):\n%s", diff)
	}
	if st.Targets != 2 || st.Sent != 1 {
		t.Errorf("stats %+v, want 2 targets, 1 sent", st)
	}
}

func TestRawSendsAgainWhenTheKernelHasNoRoom(t *testing.T) {
	n := newFakeNet()
	targets, want, _ := kinds(n)
	n.enobufs = 3
	got, st, err := streamFake(t, context.Background(), n, &Config{Timeout: 200 * time.Millisecond}, targets)
	if err != nil {
		t.Fatal(err)
	}
	for i := range got {
		got[i].RTT = 0
	}
	if diff := cmp.Diff(want, got, addrs); diff != "" {
		t.Errorf("results (-want +got):\n%s", diff)
	}
	if st.Refused != 3 || st.RateCuts == 0 || st.MinRate >= DefaultRate {
		t.Errorf("stats %+v: want 3 refused, the rate cut", st)
	}
}

// within runs f and fails the test if it takes longer than d.
func within(t *testing.T, d time.Duration, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("still running after %v", d)
	}
}

func TestRawReturnsASendError(t *testing.T) {
	n := newFakeNet()
	targets, _, _ := kinds(n)
	// A long wait: the error must end the scan, not the waits.
	n.sendErr = syscall.EPERM // an nftables reject on output
	within(t, 2*time.Second, func() {
		_, _, err := streamFake(t, context.Background(), n, &Config{Timeout: time.Hour}, targets)
		if !errors.Is(err, syscall.EPERM) {
			t.Errorf("Stream returned %v, want EPERM", err)
		}
	})
}

func TestRawCancelled(t *testing.T) {
	n := newFakeNet()
	a := n.add("198.18.40.12", &fakeHost{filtered: true})
	ctx := cancelAtFirstProbe(n)
	within(t, 2*time.Second, func() {
		_, _, err := streamFake(t, ctx, n, &Config{Timeout: time.Hour}, []Target{{Addr: a, Port: 80}, {Addr: a, Port: 81}})
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Stream returned %v, want context.Canceled", err)
		}
	})
}

func TestRawReturnsWhenTheIOCloses(t *testing.T) {
	n := newFakeNet()
	a := n.add("198.18.40.12", &fakeHost{filtered: true})
	n.synSeen = make(chan key, 1)
	go func() {
		<-n.synSeen
		n.Close()
	}()
	within(t, 2*time.Second, func() {
		_, _, err := streamFake(t, context.Background(), n, &Config{Timeout: time.Hour}, []Target{{Addr: a, Port: 80}})
		if err == nil {
			t.Error("Stream returned no error")
		}
	})
}

// The steps of a scan, one by one, at times the test chooses.
func TestScanSteps(t *testing.T) {
	n := newFakeNet()
	open := n.add("198.18.40.10", &fakeHost{open: []uint16{7440}})
	filtered := n.add("198.18.40.12", &fakeHost{filtered: true})
	r, err := New(&Config{Timeout: 100 * time.Millisecond, Retries: 1, Rate: 1000}, n)
	if err != nil {
		t.Fatal(err)
	}
	out := make(chan Result, 8)
	s := newScan(r, out)
	ctx := context.Background()
	t0 := time.Now()

	// Admit: the first probe goes out.
	for _, tg := range []Target{{Addr: open, Port: 7440}, {Addr: filtered, Port: 7440}} {
		if err := s.admit(ctx, tg, t0); err != nil {
			t.Fatal(err)
		}
	}
	if len(s.flights) != 2 || s.st.Sent != 2 || len(n.syns(Target{Addr: filtered, Port: 7440})) != 1 {
		t.Fatalf("after admitting two: %d flights, %+v", len(s.flights), s.st)
	}
	// Answer: the open port's SYN-ACK, as the reader would match it.
	var p replyParser
	seg := <-n.segs
	rep, ok := p.parse(seg.b, seg.src, seg.dst)
	tg, state, ok2 := r.ck.match(rep)
	if !ok || !ok2 {
		t.Fatal("the SYN-ACK does not match")
	}
	if err := s.answer(ctx, answer{t: tg, state: state, at: t0.Add(time.Millisecond)}); err != nil {
		t.Fatal(err)
	}
	if res := <-out; res.State != Open || res.RTT != time.Millisecond || res.Addr != open {
		t.Errorf("result %+v", res)
	}
	// Expire: nothing before the wait is over; then a retry is due.
	if err := s.expire(ctx, t0.Add(99*time.Millisecond)); err != nil || len(s.ready) != 0 {
		t.Fatalf("retry due early: %v, %d ready", err, len(s.ready))
	}
	if err := s.expire(ctx, t0.Add(100*time.Millisecond)); err != nil || len(s.ready) != 1 {
		t.Fatalf("retry not due: %v, %d ready", err, len(s.ready))
	}
	// Retry: it goes out, as the pacer allows.
	if err := s.retry(t0.Add(100 * time.Millisecond)); err != nil || len(s.ready) != 0 || s.st.Sent != 3 {
		t.Fatalf("retry: %v, %d ready, %+v", err, len(s.ready), s.st)
	}
	// Expire again: the tries are spent, the target is filtered.
	if err := s.expire(ctx, t0.Add(200*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if res := <-out; res.State != Filtered || res.Addr != filtered {
		t.Errorf("result %+v", res)
	}
	if len(s.flights) != 0 || len(s.waiting) != 0 {
		t.Errorf("%d flights, %d waiting left", len(s.flights), len(s.waiting))
	}
}

// checkKinds checks a scan of kinds' targets over n: the results, the
// probes each target got (wantTries; -1: any number), and the stats, of
// which the probes beyond the first ones (firsts) are retries.
func checkKinds(t *testing.T, n *fakeNet, targets []Target, want []Result, wantTries map[netip.Addr]int, got []Result, st Stats, firsts int) {
	t.Helper()
	for i := range got {
		got[i].RTT = 0
	}
	if diff := cmp.Diff(want, got, addrs); diff != "" {
		t.Errorf("results (-want +got):\n%s", diff)
	}
	sent := 0
	for _, tg := range targets {
		k := len(n.syns(tg))
		sent += k
		if w := wantTries[tg.Addr]; w >= 0 && k != w {
			t.Errorf("%v:%d: %d probes, want %d", tg.Addr, tg.Port, k, w)
		}
	}
	if st.Targets != len(targets) || st.Sent != sent || st.Retries != sent-firsts {
		t.Errorf("stats %+v, want %d targets, %d sent, %d retries", st, len(targets), sent, sent-firsts)
	}
}

// cancelAtFirstProbe returns a context cancelled as soon as n sees a
// probe.
func cancelAtFirstProbe(n *fakeNet) context.Context {
	n.synSeen = make(chan key, 1)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-n.synSeen
		cancel()
	}()
	return ctx
}

// laggingNet is a fakeNet whose reader falls behind: it reads nothing
// until release is closed, and says so as a readMarker does.
type laggingNet struct {
	*fakeNet
	release chan struct{}
	mark    *readmark.Mark
	pending time.Time
}

func (l *laggingNet) ReadUpTo() time.Time {
	return l.mark.UpTo(func() bool { return len(l.segs) == 0 })
}

func (l *laggingNet) Advanced() <-chan struct{} { return l.mark.Advanced() }

func (l *laggingNet) ReadFrom(b []byte) (int, Arrival, error) {
	l.mark.Reading(true)
	l.mark.Set(l.pending)
	select {
	case <-l.release:
	case <-l.wake: // Stream is stopping
		return 0, Arrival{}, os.ErrDeadlineExceeded
	}
	if len(l.segs) == 0 {
		l.mark.Reading(false)
	}
	n, arr, err := l.fakeNet.ReadFrom(b)
	l.mark.Reading(true)
	if err == nil {
		l.pending = arr.At
	}
	return n, arr, err
}

// TestRawWaitsForItsReader: an answer that came in time but that the
// reader has not read yet is no silence: the probe is neither sent again
// nor given up until the reader has read past its wait.
func TestRawWaitsForItsReader(t *testing.T) {
	n := newFakeNet()
	closed := n.add("198.18.40.10", &fakeHost{})
	l := &laggingNet{fakeNet: n, release: make(chan struct{}), mark: readmark.New()}
	n.synSeen = make(chan key, 1)
	go func() {
		<-n.synSeen
		// Ten of the probe's waits after it went out, and long after
		// its answer came.
		time.AfterFunc(200*time.Millisecond, func() { close(l.release) })
	}()
	r, err := New(&Config{Timeout: 20 * time.Millisecond, Retries: 1, Rate: 1000}, l)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	tg := Target{Addr: closed, Port: 7440}
	res, _, err := streamAll(context.Background(), r, []Target{tg})
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 1 || res[0].State != Closed {
		t.Errorf("results %+v; want the port closed", res)
	}
	if syns := n.syns(tg); len(syns) != 1 {
		t.Errorf("%d probes sent; want 1: the answer was there", len(syns))
	}
}

// TestRawRetriesWhatItDropped: answers this host's socket dropped are
// loss of our own making: the probes that waited through them get a try
// more (up to two), and one still silent is counted unsure.
func TestRawRetriesWhatItDropped(t *testing.T) {
	for _, tc := range []struct {
		overflow, probes int
		state            State
		unsure           int
	}{
		{overflow: 1, probes: 2, state: Closed},
		{overflow: 3, probes: 3, state: Filtered, unsure: 1},
	} {
		n := newFakeNet()
		tg := Target{Addr: n.add("198.18.40.10", &fakeHost{}), Port: 7440}
		n.overflow = tc.overflow
		res, st, err := streamFake(t, context.Background(), n, &Config{Timeout: 10 * time.Millisecond, Retries: -1, Rate: 1000, minWait: time.Millisecond}, []Target{tg})
		if err != nil {
			t.Fatal(err)
		}
		if len(res) != 1 || res[0].State != tc.state {
			t.Errorf("%d dropped: results %+v; want %v", tc.overflow, res, tc.state)
		}
		if got := len(n.syns(tg)); got != tc.probes || st.Dropped != tc.overflow || st.Unsure != tc.unsure {
			t.Errorf("%d dropped: %d probes, %d dropped, %d unsure; want %d, %d, %d", tc.overflow, got, st.Dropped, st.Unsure, tc.probes, tc.overflow, tc.unsure)
		}
	}
}
