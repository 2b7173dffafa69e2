package synscan

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// tryFiltered runs a scan of one target of a filtered host step by step,
// at the times the scan asks for, from t0, and returns the wait of each
// try and when the target was given up, both from its first probe.
func tryFiltered(t *testing.T, s *scan, out <-chan Result, tg Target) (waits []time.Duration, gaveUp time.Duration) {
	t.Helper()
	ctx := context.Background()
	t0 := time.Now()
	if err := s.admit(ctx, tg, t0); err != nil {
		t.Fatal(err)
	}
	for {
		f := s.flights[tg.key()]
		if f == nil {
			t.Fatal("no flight")
		}
		waits = append(waits, f.due.Sub(f.lastSent))
		at := f.due
		if err := s.expire(ctx, at.Add(-time.Nanosecond)); err != nil || len(s.ready) > 0 || s.flights[tg.key()] == nil {
			t.Fatalf("due before %v", at.Sub(t0))
		}
		if err := s.expire(ctx, at); err != nil {
			t.Fatal(err)
		}
		if s.flights[tg.key()] == nil {
			if res := <-out; res.State != Filtered {
				t.Fatalf("result %+v", res)
			}
			return waits, at.Sub(t0)
		}
		if err := s.retry(at); err != nil {
			t.Fatal(err)
		}
		if len(waits) > 10 {
			t.Fatal("no end")
		}
	}
}

func TestWaitsFollowRoundTrips(t *testing.T) {
	const ms = time.Millisecond
	tests := []struct {
		name    string
		hint    time.Duration
		hintMax time.Duration // the hint's RTTMax
		blind   time.Duration // a round trip of a host without a hint, measured before
		retries int           // 0: the default
		waits   []time.Duration
		end     time.Duration
	}{
		{"nothing known: Timeout", 0, 0, 0, 0, []time.Duration{100 * ms, 100 * ms, 100 * ms}, 300 * ms},
		{"a firewalled host 0.3 ms away: the floor, the last four times", 300 * time.Microsecond, 0, 0, 0, []time.Duration{5 * ms, 5 * ms, 20 * ms}, 30 * ms},
		{"five tries: the floor, the last four times", 300 * time.Microsecond, 0, 0, 4, []time.Duration{5 * ms, 5 * ms, 5 * ms, 5 * ms, 20 * ms}, 40 * ms},
		{"30 ms away: three round trips, the last the ceiling", 30 * ms, 0, 0, 0, []time.Duration{90 * ms, 90 * ms, 100 * ms}, 280 * ms},
		{"300 ms away: twice its round trip, past the ceiling", 300 * ms, 0, 0, 0, []time.Duration{600 * ms, 600 * ms, 600 * ms}, 1800 * ms},
		{"its hint wins over the others' round trips", 30 * ms, 0, ms, 0, []time.Duration{90 * ms, 90 * ms, 100 * ms}, 280 * ms},
		// Retried as fast as the others answer, but given up no sooner
		// than with nothing measured: it may be farther than they are.
		{"unknown among fast hosts", 0, 0, ms, 0, []time.Duration{5 * ms, 10 * ms, 100*ms - 15*ms}, 100 * ms},
		// Its ARP reply came after a retry, 0.3 ms after it, 300 ms
		// after the first request, which it may have answered: retried
		// as fast as the hint says, given up when the first request's
		// round trip says.
		{"a short hint, 300 ms at most", 300 * time.Microsecond, 300 * ms, 0, 0, []time.Duration{5 * ms, 5 * ms, 600*ms - 10*ms}, 600 * ms},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := make(chan Result, 1)
			s, a := filteredScan(t, &Config{Rate: 1e6, Retries: tt.retries}, out)
			if tt.blind > 0 {
				s.blind.Observe(tt.blind)
			}
			waits, end := tryFiltered(t, s, out, Target{Addr: a, Port: 80, RTT: tt.hint, RTTMax: tt.hintMax})
			if diff := cmp.Diff(tt.waits, waits); diff != "" {
				t.Errorf("waits (-want +got):\n%s", diff)
			}
			if end != tt.end {
				t.Errorf("given up after %v, want %v", end, tt.end)
			}
		})
	}
}

// Answers to first probes measure the host's round trip; answers to
// retries do not (Karn), as they may answer an earlier probe.
func TestKarn(t *testing.T) {
	s, a := filteredScan(t, &Config{Rate: 1e6}, make(chan Result, 4))
	ctx := context.Background()
	t0 := time.Now()
	retried := Target{Addr: a, Port: 80, RTT: 10 * time.Millisecond}
	at := sentAgain(t, s, retried, t0)
	if err := s.answer(ctx, answer{t: retried, state: Open, at: at.Add(time.Millisecond)}); err != nil {
		t.Fatal(err)
	}
	h := s.hosts[a]
	if h.est.SRTT() != 10*time.Millisecond || s.seg.Known() || s.blind.Known() {
		t.Errorf("an answer to a retry was measured: host %v, segment %v", h.est.SRTT(), s.seg.SRTT())
	}
	first := Target{Addr: a, Port: 81, RTT: 10 * time.Millisecond}
	if err := s.admit(ctx, first, at); err != nil {
		t.Fatal(err)
	}
	if err := s.answer(ctx, answer{t: first, state: Closed, at: at.Add(2 * time.Millisecond)}); err != nil {
		t.Fatal(err)
	}
	// RFC 6298: srtt += (sample - srtt) / 8.
	if got, want := h.est.SRTT(), 9*time.Millisecond; got != want || s.seg.SRTT() != 2*time.Millisecond {
		t.Errorf("after an answer to a first probe: host %v (want %v), segment %v", got, want, s.seg.SRTT())
	}
	// It came with a hint: the round trip of hosts without one is not it.
	if s.blind.Known() {
		t.Errorf("a hinted host's answer went into the estimate of hosts without a hint")
	}
}

func TestRateFollowsLoss(t *testing.T) {
	s, a := filteredScan(t, &Config{Rate: 1000}, make(chan Result, 1024))
	ctx := context.Background()
	t0 := time.Now()
	// Answers that come only to retries, just after them: two are loss.
	for port := uint16(1); port <= 2; port++ {
		tg := Target{Addr: a, Port: port, RTT: time.Millisecond}
		at := sentAgain(t, s, tg, t0)
		s.answer(ctx, answer{t: tg, state: Open, at: at.Add(time.Millisecond)})
	}
	if s.win.Rate() != 500 || s.st.RateCuts != 1 {
		t.Fatalf("after loss: rate %d, %d cuts; want 500, 1", s.win.Rate(), s.st.RateCuts)
	}
	// Probes sent at the rate, each answered: it grows back.
	at := t0.Add(time.Second)
	for port := uint16(100); port < 500; port++ {
		tg := Target{Addr: a, Port: port, RTT: time.Millisecond}
		s.admit(ctx, tg, at)
		s.answer(ctx, answer{t: tg, state: Open, at: at.Add(time.Millisecond)})
		at = at.Add(2 * time.Millisecond)
	}
	if s.win.Rate() <= 600 {
		t.Errorf("rate %d after answers that kept up", s.win.Rate())
	}
}

func TestNoRateCutWithoutLoss(t *testing.T) {
	n := newFakeNet()
	var targets []Target
	for i := range 200 {
		a := n.add(netip.AddrFrom4([4]byte{198, 18, 40, byte(i)}).String(), &fakeHost{open: []uint16{22}})
		targets = append(targets, Target{Addr: a, Port: 22, RTT: 100 * time.Microsecond}, Target{Addr: a, Port: 80, RTT: 100 * time.Microsecond})
	}
	_, st, err := streamFake(t, context.Background(), n, &Config{minWait: 50 * time.Millisecond}, targets)
	if err != nil {
		t.Fatal(err)
	}
	if st.RateCuts != 0 || st.MinRate != DefaultRate || st.Retries != 0 {
		t.Errorf("stats %+v: want no cut, no retry", st)
	}
}

func TestLossCutsTheRate(t *testing.T) {
	n := newFakeNet()
	var targets []Target
	for i := range 20 {
		// Drops every first SYN to a port.
		a := n.add(netip.AddrFrom4([4]byte{198, 18, 40, byte(i)}).String(), &fakeHost{open: []uint16{22}, lose: func(try int) bool { return try == 1 }})
		targets = append(targets, Target{Addr: a, Port: 22, RTT: 100 * time.Microsecond})
	}
	res, st, err := streamFake(t, context.Background(), n, &Config{minWait: 20 * time.Millisecond}, targets)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if r.State != Open {
			t.Errorf("%v: %v", r.Addr, r.State)
		}
	}
	if st.RateCuts == 0 || st.MinRate >= DefaultRate || st.Retries != len(targets) {
		t.Errorf("stats %+v: want the rate cut, one retry each", st)
	}
}

// A firewalled host known to be near is given up after three short
// waits, slow hosts are waited for: on the clock, over the fake network.
func TestStreamWaits(t *testing.T) {
	n := newFakeNet()
	near := n.add("198.18.40.12", &fakeHost{filtered: true})
	start := time.Now()
	res, st, err := streamFake(t, context.Background(), n, nil, []Target{{Addr: near, Port: 22, RTT: 300 * time.Microsecond}})
	if err != nil {
		t.Fatal(err)
	}
	// 35 ms of waits; the old fixed waits were 300 ms.
	if d := time.Since(start); d > 250*time.Millisecond || st.Sent != 3 || res[0].State != Filtered {
		t.Errorf("a near firewalled host: %v after %v, %+v", res, d, st)
	}
	// A host 150 ms away, with its round trip as a hint, answers the first
	// probe, past Timeout.
	n = newFakeNet()
	slow := n.add("198.18.40.13", &fakeHost{open: []uint16{22}, delay: 150 * time.Millisecond})
	res, st, err = streamFake(t, context.Background(), n, nil, []Target{{Addr: slow, Port: 22, RTT: 150 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	if st.Sent != 1 || res[0].State != Open {
		t.Errorf("a slow host: %v, %+v", res, st)
	}
}

// A host answered only after a retry is not retried as early again until
// an answer to a first probe measures it, as TCP keeps its backed-off
// timeout: a host slower than the others' round trips would otherwise
// be retried on every port, and never measured.
func TestBackoffKeptUntilMeasured(t *testing.T) {
	const ms = time.Millisecond
	s, a := filteredScan(t, &Config{Rate: 1e6}, make(chan Result, 8))
	s.blind.Observe(ms) // the others answer within a millisecond: waits of 5 ms
	ctx := context.Background()
	firstWait := func(port uint16, at time.Time) time.Duration {
		t.Helper()
		if err := s.admit(ctx, Target{Addr: a, Port: port}, at); err != nil {
			t.Fatal(err)
		}
		f := s.flights[key{a, port}]
		return f.due.Sub(f.lastSent)
	}
	t0 := time.Now()
	if w := firstWait(1, t0); w != 5*ms {
		t.Fatalf("first wait %v, want 5ms", w)
	}
	// Answered 30 ms after its first probe, after two retries (at 5 and
	// 15 ms): no measure, but twice backed off.
	f := s.flights[key{a, 1}]
	for _, at := range []time.Duration{5 * ms, 15 * ms} {
		s.expire(ctx, t0.Add(at))
		s.retry(t0.Add(at))
	}
	if f.tries != 3 {
		t.Fatalf("%d tries", f.tries)
	}
	s.answer(ctx, answer{t: f.t, state: Open, at: t0.Add(30 * ms)})
	if w := firstWait(2, t0.Add(30*ms)); w != 20*ms {
		t.Errorf("next first wait %v, want 20ms", w)
	}
	// Answered at once: measured, the backoff is over.
	s.answer(ctx, answer{t: Target{Addr: a, Port: 2}, state: Open, at: t0.Add(31 * ms)})
	if w := firstWait(3, t0.Add(31*ms)); w != 5*ms {
		t.Errorf("first wait once measured %v, want 5ms", w)
	}
}

// An answer the kernel received before the retry left answers the first
// probe, however late it was read: a round trip of its own, no loss.
func TestAnswerBeforeTheRetry(t *testing.T) {
	const ms = time.Millisecond
	out := make(chan Result, 8)
	s, a := filteredScan(t, &Config{Rate: 1e6}, out)
	ctx := context.Background()
	t0 := time.Now()
	for port := uint16(1); port <= 2; port++ {
		tg := Target{Addr: a, Port: port, RTT: ms}
		if err := s.admit(ctx, tg, t0); err != nil {
			t.Fatal(err)
		}
		// The wait (5 ms) ends before the answer is read, and the
		// probe goes again.
		s.expire(ctx, t0.Add(5*ms))
		s.retry(t0.Add(5 * ms))
		if err := s.answer(ctx, answer{t: tg, state: Closed, at: t0.Add(4 * ms)}); err != nil {
			t.Fatal(err)
		}
		if res := <-out; res.RTT != 4*ms {
			t.Errorf("RTT %v, want 4ms", res.RTT)
		}
	}
	if s.st.RateCuts != 0 || s.retryAnswers != 0 || s.hosts[a].backoff != 0 {
		t.Errorf("taken for loss: %+v, %d answers to retries, backoff %d", s.st, s.retryAnswers, s.hosts[a].backoff)
	}
	// RFC 6298: 1 ms, then 4 ms twice: srtt 1 + 3/8 = 1.375, then + (4 - 1.375)/8.
	if got, want := s.hosts[a].est.SRTT(), 1375*time.Microsecond+(4*ms-1375*time.Microsecond)/8; got != want {
		t.Errorf("host's round trip %v, want %v", got, want)
	}
}

// filteredScan returns a scan of cfg, to be stepped by hand, over a fake
// network of one host whose firewall drops every probe, and that host.
func filteredScan(t *testing.T, cfg *Config, out chan<- Result) (*scan, netip.Addr) {
	t.Helper()
	n := newFakeNet()
	a := n.add("198.18.40.12", &fakeHost{filtered: true})
	r, err := New(cfg, n)
	if err != nil {
		t.Fatal(err)
	}
	return newScan(r, out), a
}

// sentAgain admits tg at t0, lets its first wait run out and sends it
// again; it returns when.
func sentAgain(t *testing.T, s *scan, tg Target, t0 time.Time) time.Time {
	t.Helper()
	ctx := context.Background()
	if err := s.admit(ctx, tg, t0); err != nil {
		t.Fatal(err)
	}
	at := s.flights[tg.key()].due
	if err := s.expire(ctx, at); err != nil {
		t.Fatal(err)
	}
	if err := s.retry(at); err != nil {
		t.Fatal(err)
	}
	return at
}

// A host that an answer of the scan measured is waited for as measured:
// its hint's bound (RTTMax) no longer stretches its last wait.
func TestMeasuredHostDropsHintBound(t *testing.T) {
	const ms = time.Millisecond
	out := make(chan Result, 2)
	s, a := filteredScan(t, &Config{Rate: 1e6}, out)
	ctx := context.Background()
	t0 := time.Now()
	open := Target{Addr: a, Port: 81, RTT: 300 * time.Microsecond, RTTMax: 300 * ms}
	if err := s.admit(ctx, open, t0); err != nil {
		t.Fatal(err)
	}
	if err := s.answer(ctx, answer{t: open, state: Open, at: t0.Add(300 * time.Microsecond)}); err != nil {
		t.Fatal(err)
	}
	<-out
	waits, end := tryFiltered(t, s, out, Target{Addr: a, Port: 80, RTT: 300 * time.Microsecond, RTTMax: 300 * ms})
	if diff := cmp.Diff([]time.Duration{5 * ms, 5 * ms, 20 * ms}, waits); diff != "" || end != 30*ms {
		t.Errorf("waits (-want +got):\n%s; given up after %v, want 30ms", diff, end)
	}
}
