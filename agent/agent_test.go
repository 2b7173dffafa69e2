package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/rs/zerolog"

	"github.com/ifl-project/ifl/proto"
)

// logBuffer collects JSON log lines from concurrent goroutines, and
// counts them by event so that a test can wait for the agent to reach a
// state it logs.
type logBuffer struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	counts  map[string]int
	changed chan struct{} // closed and replaced at every line
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	// zerolog writes each event in one call.
	var ev struct {
		Event string `json:"event"`
	}
	if json.Unmarshal(p, &ev) == nil && ev.Event != "" {
		if l.counts == nil {
			l.counts = map[string]int{}
		}
		l.counts[ev.Event]++
		if l.changed != nil {
			close(l.changed)
			l.changed = nil
		}
	}
	return l.buf.Write(p)
}

// waitFor waits until n events of the given name were logged, at most
// five seconds.
func (l *logBuffer) waitFor(t *testing.T, name string, n int) {
	t.Helper()
	timeout := time.NewTimer(5 * time.Second)
	defer timeout.Stop()
	for {
		l.mu.Lock()
		got := l.counts[name]
		if l.changed == nil {
			l.changed = make(chan struct{})
		}
		ch := l.changed
		l.mu.Unlock()
		if got >= n {
			return
		}
		select {
		case <-ch:
		case <-timeout.C:
			t.Fatalf("%d %q events logged after 5s, want %d", got, name, n)
		}
	}
}

// events returns the logged events with the given "event" field.
func (l *logBuffer) events(name string) []map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(l.buf.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["event"] == name {
			out = append(out, m)
		}
	}
	return out
}

type testAgent struct {
	*Agent
	addr string
	key  proto.NetworkKey
	logs *logBuffer
	stop func() error
}

func startAgent(t *testing.T, mod func(*Options)) *testAgent {
	t.Helper()
	key, err := proto.NewNetworkKey()
	if err != nil {
		t.Fatal(err)
	}
	id, err := proto.NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	logs := &logBuffer{}
	o := Options{
		NetworkKeys: []proto.NetworkKey{key},
		Identity:    id,
		Labels:      map[string]string{"role": "test"},
		Version:     "test",
		Logger:      zerolog.New(io.MultiWriter(logs, zerolog.NewTestWriter(t))),
	}
	if mod != nil {
		mod(&o)
	}
	a, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Serve(ctx, ln) }()
	var once sync.Once
	var serveErr error
	stop := func() error {
		once.Do(func() { cancel(); serveErr = <-done })
		return serveErr
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return &testAgent{Agent: a, addr: ln.Addr().String(), key: o.NetworkKeys[0], logs: logs, stop: stop}
}

func (ta *testAgent) ping(t *testing.T, key proto.NetworkKey) (*proto.Facts, error) {
	t.Helper()
	c, err := net.Dial("tcp", ta.addr)
	if err != nil {
		t.Fatal(err)
	}
	pc := proto.Client(c, &proto.ClientConfig{NetworkKey: key, ExpectIdentity: ta.Identity()})
	defer pc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return pc.Ping(ctx)
}

func TestPingReturnsRealFacts(t *testing.T) {
	ta := startAgent(t, func(o *Options) { o.Labels = map[string]string{"role": "web", "site": "paris"} })
	got, err := ta.ping(t, ta.key)
	if err != nil {
		t.Fatal(err)
	}
	want, err := CollectFacts("test", map[string]string{"role": "web", "site": "paris"})
	if err != nil {
		t.Fatal(err)
	}
	// Uptime and the clock move between the two reads.
	if diff := cmp.Diff(want, got, cmpopts.IgnoreFields(proto.Facts{}, "Time", "UptimeSeconds")); diff != "" {
		t.Errorf("facts (-local +agent):\n%s", diff)
	}
	if got.Hostname == "" || len(got.Interfaces) == 0 {
		t.Errorf("facts are empty: %+v", got)
	}
	ta.stop() // the reply is logged after it is sent
	for _, ev := range []string{"listening", "handshake_ok", "request", "reply"} {
		if len(ta.logs.events(ev)) == 0 {
			t.Errorf("no %q event logged", ev)
		}
	}
}

func TestOversizedFrameClosesOnlyThatConnection(t *testing.T) {
	ta := startAgent(t, nil)
	huge := append([]byte(proto.Magic), proto.Version, byte(proto.FrameTransport), 0, 0, 0x7f, 0xff, 0xff, 0xff)

	// Before the handshake.
	c, err := net.Dial("tcp", ta.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	huge[5] = byte(proto.FrameHello)
	c.Write(huge)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := io.Copy(io.Discard, c); n != 0 || err != nil {
		t.Fatalf("pre-handshake oversized frame: read %d bytes, %v; want a clean close", n, err)
	}

	// On a verified connection.
	c2, err := net.Dial("tcp", ta.addr)
	if err != nil {
		t.Fatal(err)
	}
	pc := proto.Client(c2, &proto.ClientConfig{NetworkKey: ta.key})
	defer pc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := pc.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	huge[5] = byte(proto.FrameTransport)
	c2.Write(huge)
	c2.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := io.Copy(io.Discard, c2); n != 0 || err != nil {
		t.Fatalf("post-handshake oversized frame: read %d bytes, %v; want a clean close", n, err)
	}

	if _, err := ta.ping(t, ta.key); err != nil {
		t.Fatalf("agent stopped serving: %v", err)
	}
	ta.stop()
	if ev := ta.logs.events("bad_frame"); len(ev) != 1 || !strings.Contains(ev[0]["error"].(string), "frame too large") {
		t.Errorf("bad_frame events: %v", ev)
	}
	found := false
	for _, ev := range ta.logs.events("handshake_failed") {
		found = found || strings.Contains(ev["reason"].(string), "frame too large")
	}
	if !found {
		t.Errorf("the oversized hello was not logged as a failed handshake: %v", ta.logs.events("handshake_failed"))
	}
}

func TestIdleConnectionsDoNotLockOut(t *testing.T) {
	const idle = 500
	ta := startAgent(t, nil)
	conns := make([]net.Conn, 0, idle)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range idle {
		c, err := net.Dial("tcp", ta.addr)
		if err != nil {
			t.Fatalf("after %d connections: %v", len(conns), err)
		}
		conns = append(conns, c)
	}
	if _, err := ta.ping(t, ta.key); err != nil {
		t.Fatalf("ping with %d idle connections open: %v", idle, err)
	}
	ta.mu.Lock()
	pending := ta.pending.Len()
	ta.mu.Unlock()
	if pending > DefaultMaxPending {
		t.Errorf("%d connections pending, over the cap of %d", pending, DefaultMaxPending)
	}
}

func TestWrongKeyBudget(t *testing.T) {
	ta := startAgent(t, func(o *Options) { o.MaxFailures = 3 })
	wrong, _ := proto.NewNetworkKey()
	for i := range 3 {
		if _, err := ta.ping(t, wrong); !errors.Is(err, proto.ErrRejected) {
			t.Fatalf("wrong key, try %d: got %v, want ErrRejected", i, err)
		}
	}
	// The source has spent its budget: even the right key is refused now.
	if _, err := ta.ping(t, ta.key); !errors.Is(err, proto.ErrRejected) {
		t.Fatalf("after the budget: got %v, want ErrRejected", err)
	}
	if len(ta.logs.events("refused")) != 1 {
		t.Errorf("refused events: %v", ta.logs.events("refused"))
	}
}

func TestSilentPeersDoNotSpendBudget(t *testing.T) {
	ta := startAgent(t, func(o *Options) { o.MaxFailures = 1; o.HandshakeTimeout = 50 * time.Millisecond })
	for range 3 {
		c, err := net.Dial("tcp", ta.addr)
		if err != nil {
			t.Fatal(err)
		}
		// Say nothing; the agent hangs up at its handshake deadline.
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, err := io.Copy(io.Discard, c); n != 0 || err != nil {
			t.Fatalf("silent peer: read %d bytes, %v; want a clean close", n, err)
		}
		c.Close()
	}
	if _, err := ta.ping(t, ta.key); err != nil {
		t.Fatalf("ping after silent peers timed out: %v", err)
	}
}

func TestReload(t *testing.T) {
	ta := startAgent(t, nil)
	newKey, _ := proto.NewNetworkKey()
	ta.Reload([]proto.NetworkKey{newKey}, map[string]string{"role": "db"})
	if _, err := ta.ping(t, ta.key); !errors.Is(err, proto.ErrRejected) {
		t.Fatalf("old key after reload: got %v, want ErrRejected", err)
	}
	f, err := ta.ping(t, newKey)
	if err != nil {
		t.Fatalf("new key after reload: %v", err)
	}
	if diff := cmp.Diff(map[string]string{"role": "db"}, f.Labels); diff != "" {
		t.Errorf("labels after reload (-want +got):\n%s", diff)
	}
}

func TestGracefulStop(t *testing.T) {
	ta := startAgent(t, nil)
	c, err := net.Dial("tcp", ta.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pc := proto.Client(c, &proto.ClientConfig{NetworkKey: ta.key})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := pc.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	// A verified connection sits idle; stopping must not wait for its
	// 30-second idle timeout.
	if err := ta.stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := net.Dial("tcp", ta.addr); err == nil {
		t.Fatal("still accepting after stop")
	}
	if len(ta.logs.events("stopped")) != 1 {
		t.Error("no stopped event")
	}
}

func TestFailureBudget(t *testing.T) {
	b := newFailureBudget(2, time.Minute)
	src := netipMust("198.18.0.9")
	now := time.Unix(1000, 0)
	b.fail(src, now)
	if !b.allowed(src, now) {
		t.Fatal("refused after one failure of two")
	}
	b.fail(src, now)
	if b.allowed(src, now) {
		t.Fatal("allowed after spending the budget")
	}
	if !b.allowed(src, now.Add(31*time.Second)) {
		t.Fatal("no token back after half the period")
	}
	if !b.allowed(netipMust("198.18.0.10"), now) {
		t.Fatal("another source was refused")
	}
}

func TestFactsCachedBriefly(t *testing.T) {
	var calls atomic.Int32
	ta := startAgent(t, func(o *Options) {
		o.FactsTTL = time.Hour
		o.Facts = func(v string, labels map[string]string) (*proto.Facts, error) {
			calls.Add(1)
			return &proto.Facts{Hostname: "h", AgentVersion: v, Labels: labels}, nil
		}
	})
	first, err := ta.ping(t, ta.key)
	if err != nil {
		t.Fatal(err)
	}
	second, err := ta.ping(t, ta.key)
	if err != nil {
		t.Fatal(err)
	}
	if calls.Load() != 1 {
		t.Errorf("%d collections for two pings within the TTL, want 1", calls.Load())
	}
	if !second.Time.After(first.Time) && !second.Time.Equal(first.Time) {
		t.Errorf("times %v then %v", first.Time, second.Time)
	}
	// New labels are never served from the old cache.
	ta.Reload([]proto.NetworkKey{ta.key}, map[string]string{"role": "db"})
	f, err := ta.ping(t, ta.key)
	if err != nil {
		t.Fatal(err)
	}
	if calls.Load() != 2 || f.Labels["role"] != "db" {
		t.Errorf("after reload: %d collections, labels %v", calls.Load(), f.Labels)
	}
}
