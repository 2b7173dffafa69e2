package verify

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ifl-project/ifl/internal/testbed/agenttest"
	"github.com/ifl-project/ifl/proto"
)

func portOf(t *testing.T, addr string) int {
	_, p, _ := net.SplitHostPort(addr)
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestProbeStatuses(t *testing.T) {
	a, wrong := agenttest.Start(t), agenttest.Start(t)
	key, agentPort, identity, wrongPort := a.Key, a.Port, a.Identity.Fingerprint(), wrong.Port
	web := httptest.NewServer(http.NotFoundHandler())
	defer web.Close()
	// A port that was just free: nothing listens there.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	closedPort := ln.Addr().(*net.TCPAddr).Port
	ln.Close()

	busyPort, busyID := busyAgent(t, key)

	lo := netip.MustParseAddr("127.0.0.1")
	tests := []struct {
		name     string
		port     int
		expect   string
		want     Status
		wantErr  error
		identity string
	}{
		{"agent", agentPort, "", Agent, nil, identity},
		{"agent with expected identity", agentPort, identity, Agent, nil, identity},
		{"agent with another identity", agentPort, "00000000000000000000000000000000", Mismatch, proto.ErrIdentityMismatch, identity},
		{"wrong network key", wrongPort, "", Rejected, proto.ErrRejected, ""},
		{"busy agent", busyPort, "", Busy, proto.ErrBusy, busyID},
		{"http server", portOf(t, web.Listener.Addr().String()), "", NotAgent, proto.ErrNotIFL, ""},
		{"closed", closedPort, "", Closed, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &Verifier{Key: key, Port: tt.port, Timeout: 2 * time.Second, ExpectIdentity: tt.expect}
			r := p.Verify(context.Background(), lo)
			if r.Status != tt.want {
				t.Fatalf("status %v (%v), want %v", r.Status, r.Err, tt.want)
			}
			if tt.wantErr != nil && !errors.Is(r.Err, tt.wantErr) {
				t.Errorf("error %v, want %v", r.Err, tt.wantErr)
			}
			if r.Identity != tt.identity {
				t.Errorf("identity %q, want %q", r.Identity, tt.identity)
			}
			if tt.want == Agent && (r.Facts == nil || r.Facts.AgentVersion != "test") {
				t.Errorf("facts %+v", r.Facts)
			}
		})
	}
}

// busyAgent serves, until the test ends, an agent that answers every
// first request with an error of code busy and hangs up, as one with no
// room for another verified connection does; it returns its port and
// identity.
func busyAgent(t *testing.T, key proto.NetworkKey) (int, string) {
	id, err := proto.NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	cfg := &proto.ServerConfig{NetworkKeys: []proto.NetworkKey{key}, Identity: id}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			pc := proto.Server(c, cfg)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if _, err := pc.Receive(ctx); err == nil {
				pc.Send(ctx, &proto.Error{Code: proto.CodeBusy, Message: "at its limit of verified connections"})
			}
			cancel()
			pc.Close()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port, id.Fingerprint()
}

func TestRunStreamsEveryAddress(t *testing.T) {
	a := agenttest.Start(t)
	key, port := a.Key, a.Port
	// 127.0.0.1 runs the agent; 127.0.0.2-9 refuse (nothing listens there).
	var addrs []netip.Addr
	for a := netip.MustParseAddr("127.0.0.1"); a != netip.MustParseAddr("127.0.0.10"); a = a.Next() {
		addrs = append(addrs, a)
	}
	out := make(chan Result, len(addrs))
	p := &Verifier{Key: key, Port: port, Concurrency: 3}
	if err := p.Run(context.Background(), addrs, out); err != nil {
		t.Fatal(err)
	}
	close(out)
	got := map[netip.Addr]Status{}
	for r := range out {
		got[r.Addr] = r.Status
	}
	if len(got) != len(addrs) {
		t.Fatalf("%d results for %d addresses", len(got), len(addrs))
	}
	for _, a := range addrs {
		want := Closed
		if a == addrs[0] {
			want = Agent
		}
		if got[a] != want {
			t.Errorf("%v: %v, want %v", a, got[a], want)
		}
	}
}

func TestRunCancelled(t *testing.T) {
	key, _ := proto.NewNetworkKey()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	out := make(chan Result)
	p := &Verifier{Key: key, Port: 1}
	if err := p.Run(ctx, []netip.Addr{netip.MustParseAddr("127.0.0.1")}, out); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
}

func TestRunPacesDials(t *testing.T) {
	const n, rate = 6, 200
	var mu sync.Mutex
	dials := 0
	p := &Verifier{Port: 7440, Rate: rate, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		mu.Lock()
		dials++
		mu.Unlock()
		return nil, syscall.ECONNREFUSED
	}}
	var addrs []netip.Addr
	for a, i := netip.MustParseAddr("198.18.0.1"), 0; i < n; a, i = a.Next(), i+1 {
		addrs = append(addrs, a)
	}
	out := make(chan Result, n)
	// The pacer lets the k-th dial start no sooner than k intervals after
	// the first, so the run cannot be shorter than n-1 intervals, however
	// the goroutines are scheduled.
	start := time.Now()
	if err := p.Run(context.Background(), addrs, out); err != nil {
		t.Fatal(err)
	}
	if took, min := time.Since(start), (n-1)*time.Second/rate; took < min || dials != n {
		t.Errorf("%d dials in %v, want %d taking at least %v at %d/s", dials, took, n, min, rate)
	}
}

// TestProbeRetriesATimedOutHandshake: the first connection accepts and
// then says nothing (its packets lost, as it were); the second reaches the
// agent.
func TestProbeRetriesATimedOutHandshake(t *testing.T) {
	a := agenttest.Start(t)
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	dials := 0
	p := &Verifier{Key: a.Key, Port: a.Port, Timeout: 200 * time.Millisecond,
		Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			dials++
			if dials == 1 {
				addr = silent.Addr().String()
			}
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		}}
	r := p.Verify(context.Background(), netip.MustParseAddr("127.0.0.1"))
	if r.Status != Agent || dials != 2 {
		t.Fatalf("status %v (%v) after %d dials, want agent after 2", r.Status, r.Err, dials)
	}
}

// TestHedgedVerification: with the host's round trip known, a dial that
// hangs (its SYN lost, the kernel waiting out its 1 s retransmission) is
// overtaken by a second connection, and the one that lost is closed.
func TestHedgedVerification(t *testing.T) {
	a := agenttest.Start(t)
	lo := netip.MustParseAddr("127.0.0.1")
	var mu sync.Mutex
	dials := 0
	abandoned := make(chan error, 1)
	p := &Verifier{Key: a.Key, Port: a.Port, Timeout: 30 * time.Second, Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
		mu.Lock()
		dials++
		n := dials
		mu.Unlock()
		if n == 1 {
			<-ctx.Done() // lost: nothing comes back until it is given up
			abandoned <- ctx.Err()
			return nil, ctx.Err()
		}
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}}
	r := p.one(context.Background(), Target{Addr: lo, RTT: 100 * time.Microsecond})
	if r.Status != Agent {
		t.Fatalf("status %v (%v), want agent", r.Status, r.Err)
	}
	select {
	case err := <-abandoned:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("the lost dial ended with %v, want it cancelled", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the lost dial was never closed")
	}
	if dials != 2 {
		t.Errorf("%d dials, want the hedge only", dials)
	}
}

// TestHedgeAnswers: an attempt that gets an answer (here: refused) ends
// the probe; timeouts start the next attempt at once, and after
// hedgeAttempts + Retries attempts the last timeout is the result.
func TestHedgeAnswers(t *testing.T) {
	lo := netip.MustParseAddr("127.0.0.1")
	var mu sync.Mutex
	dials := 0
	p := &Verifier{Port: 1, Timeout: time.Second, Retries: 1, Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
		mu.Lock()
		dials++
		mu.Unlock()
		return nil, context.DeadlineExceeded
	}}
	r := p.one(context.Background(), Target{Addr: lo, RTT: time.Millisecond})
	if want := hedgeAttempts + 1; r.Status != Filtered || dials != want {
		t.Errorf("status %v after %d dials, want filtered after %d", r.Status, dials, want)
	}
	dials = 0
	p.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		mu.Lock()
		dials++
		mu.Unlock()
		return nil, syscall.ECONNREFUSED
	}
	if r := p.one(context.Background(), Target{Addr: lo, RTT: time.Millisecond}); r.Status != Closed || dials != 1 {
		t.Errorf("status %v after %d dials, want closed after 1", r.Status, dials)
	}
	if d := p.hedgeAfter(100 * time.Microsecond); d != hedgeFloor {
		t.Errorf("hedgeAfter(100µs) = %v, want the floor %v", d, hedgeFloor)
	}
	if d := p.hedgeAfter(30 * time.Millisecond); d != 8*30*time.Millisecond {
		t.Errorf("hedgeAfter(30ms) = %v, want 8 round trips", d)
	}
	if d := p.hedgeAfter(100 * time.Millisecond); d != p.timeout()/2 {
		t.Errorf("hedgeAfter(100ms) = %v, want half the timeout", d)
	}
}

// TestHedgeUnhinted: with no round trip known, the dial measures one, and
// a verification on that connection that hangs (its hello lost) is
// overtaken by a second connection.
func TestHedgeUnhinted(t *testing.T) {
	a := agenttest.Start(t)
	lo := netip.MustParseAddr("127.0.0.1")
	var mu sync.Mutex
	dials := 0
	p := &Verifier{Key: a.Key, Port: a.Port, Timeout: 30 * time.Second, Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
		mu.Lock()
		dials++
		n := dials
		mu.Unlock()
		if n == 1 {
			// Connected, but nothing it sends arrives.
			c1, c2 := net.Pipe()
			go io.Copy(io.Discard, c2)
			return c1, nil
		}
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}}
	r := p.Verify(context.Background(), lo)
	if r.Status != Agent || dials != 2 {
		t.Errorf("status %v (%v) after %d dials, want agent after 2", r.Status, r.Err, dials)
	}
}

// TestHedgeSpacing: with no answer, the second and third connections
// start hedgeAfter apart, the next ones each twice as long after the one
// before.
func TestHedgeSpacing(t *testing.T) {
	lo := netip.MustParseAddr("127.0.0.1")
	var mu sync.Mutex
	var starts []time.Time
	fifth := make(chan struct{})
	p := &Verifier{Port: 1, Timeout: 10 * time.Second, Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
		mu.Lock()
		starts = append(starts, time.Now())
		if len(starts) == 5 {
			close(fifth)
		}
		mu.Unlock()
		<-ctx.Done() // nothing answers
		return nil, ctx.Err()
	}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.one(ctx, Target{Addr: lo, RTT: time.Microsecond})
	}()
	<-fifth
	cancel()
	<-done
	w := p.hedgeAfter(time.Microsecond)
	mu.Lock()
	defer mu.Unlock()
	// Lower bounds only: a loaded machine starts them late, never early;
	// but a start stamped late makes the next gap look short, by as much
	// as the stamp lagged the verifier's clock.
	for i, least := range []time.Duration{w, w, 2 * w, 4 * w} {
		if gap := starts[i+1].Sub(starts[i]); gap < least-w/10 {
			t.Errorf("connection %d started %v after the one before, want at least %v", i+2, gap, least)
		}
	}
}

// TestAnsweredTargetSilentPort: a host that answered on another path
// (discovery) and whose port does not answer a connection is given up as
// tcp-filtered after a few of its round trips, with no attempt started
// after that, not after the whole timeout and its retries.
func TestAnsweredTargetSilentPort(t *testing.T) {
	key, _ := proto.NewNetworkKey()
	var dials atomic.Int32
	v := &Verifier{Key: key, Port: 7440, Timeout: time.Hour, Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
		dials.Add(1)
		<-ctx.Done() // a dropped SYN: nothing comes
		return nil, ctx.Err()
	}}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r := v.one(ctx, Target{Addr: netip.MustParseAddr("198.18.0.5"), RTT: time.Millisecond, Answered: true})
	if r.Status != Filtered || r.Reason != ReasonTCPFiltered || ctx.Err() != nil {
		t.Errorf("result %v %v %v; want filtered, %s, well within the minute", r.Status, r.Reason, r.Err, ReasonTCPFiltered)
	}
	if n := dials.Load(); n < 2 || n > hedgeAttempts+1 {
		t.Errorf("%d connections; want a few hedged ones", n)
	}
}
