package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/ifl-project/ifl/proto"
)

// discoveryAgent is a testAgent that also answers queries on loopback UDP.
type discoveryAgent struct {
	*testAgent
	udp  netip.AddrPort
	port int // the TCP port answers announce
}

func startDiscovery(t *testing.T, mod func(*Options)) *discoveryAgent {
	t.Helper()
	ta := startAgent(t, func(o *Options) {
		// Debug, to see the dropped and answered queries logged.
		o.Logger = o.Logger.Level(zerolog.DebugLevel)
		if mod != nil {
			mod(o)
		}
	})
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	port := netip.MustParseAddrPort(ta.addr).Port()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ta.ServeDiscovery(ctx, pc, int(port)) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve discovery: %v", err)
		}
	})
	return &discoveryAgent{testAgent: ta, udp: pc.LocalAddr().(*net.UDPAddr).AddrPort(), port: int(port)}
}

// client is a controller's UDP socket on its own loopback address, so
// that each has its own rate limit at the agent.
func client(t *testing.T, n byte) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, n)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func (da *discoveryAgent) send(t *testing.T, c *net.UDPConn, b []byte) {
	t.Helper()
	if _, err := c.WriteToUDPAddrPort(b, da.udp); err != nil {
		t.Fatal(err)
	}
}

func query(t *testing.T, key proto.NetworkKey, at time.Time) (proto.Query, []byte) {
	t.Helper()
	dk := key.DiscoveryKey()
	q, err := proto.NewQuery(&dk, at)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := q.MarshalBinary()
	return q, b
}

// fence sends a good query from a socket of its own and waits for its
// answer: the agent reads datagrams in order from one socket, so every
// datagram sent before the fence has been handled once it answers.
func (da *discoveryAgent) fence(t *testing.T, n byte) {
	t.Helper()
	c := client(t, n)
	q, b := query(t, da.key, time.Now())
	da.send(t, c, b)
	if got := receive(t, c, 5*time.Second); len(got) != 1 || !answers(da, got[0], q) {
		t.Fatalf("fence: got %d datagrams, want one answer", len(got))
	}
}

// receive reads what arrives on c: the first datagram within first, the
// others within a few milliseconds of each other. The deadlines bound
// reads, they do not synchronise: the agent's counters say how many
// datagrams it sent, and the test checks that as many arrived.
func receive(t *testing.T, c *net.UDPConn, first time.Duration) [][]byte {
	t.Helper()
	var out [][]byte
	wait := max(first, 20*time.Millisecond)
	for {
		c.SetReadDeadline(time.Now().Add(wait))
		buf := make([]byte, 2048)
		n, err := c.Read(buf)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, buf[:n])
		wait = 20 * time.Millisecond
	}
}

func answers(da *discoveryAgent, b []byte, q proto.Query) bool {
	var a proto.Answer
	if a.UnmarshalBinary(b) != nil {
		return false
	}
	dk := da.key.DiscoveryKey()
	fp, err := a.Open(&dk, q.Nonce)
	return err == nil && fp == da.Identity() && int(a.Port) == da.port && len(b) <= proto.QueryLen
}

// TestDiscoveryGetsNothingBack sends what must get no answer, each from a
// socket of its own, and counts the bytes that come back: none, while a
// good query sent after them is answered.
func TestDiscoveryGetsNothingBack(t *testing.T) {
	da := startDiscovery(t, nil)
	other, _ := proto.NewNetworkKey()
	good, goodBytes := query(t, da.key, time.Now())
	_ = good
	hello, _ := (proto.Header{Type: proto.FrameHello, Length: 52}).MarshalBinary()
	dk := da.key.DiscoveryKey()
	reflected, _ := good.Answer(&dk, 7440, [16]byte{1})
	reflectedBytes, _ := reflected.MarshalBinary()
	tests := []struct {
		name string
		send [][]byte
	}{
		{"wrong key", [][]byte{func() []byte { _, b := query(t, other, time.Now()); return b }()}},
		{"stale timestamp", [][]byte{func() []byte { _, b := query(t, da.key, time.Now().Add(-61*time.Second)); return b }()}},
		{"timestamp from the future", [][]byte{func() []byte { _, b := query(t, da.key, time.Now().Add(61*time.Second)); return b }()}},
		{"truncated", [][]byte{goodBytes[:proto.QueryLen-1], goodBytes[:1]}},
		{"too long", [][]byte{append(append([]byte{}, goodBytes...), 0)}},
		{"empty", [][]byte{{}}},
		{"zeros", [][]byte{make([]byte, proto.QueryLen)}},
		{"a stranger's garbage", [][]byte{[]byte("GET / HTTP/1.0\r\n\r\n"), append(hello, make([]byte, 52)...)}},
		{"an answer sent back", [][]byte{reflectedBytes}},
		{"one bit flipped", [][]byte{func() []byte { b := append([]byte{}, goodBytes...); b[20] ^= 1; return b }()}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := client(t, byte(10+i))
			before := da.DiscoveryStats()
			for _, b := range tt.send {
				da.send(t, c, b)
			}
			da.fence(t, byte(100+i))
			after := da.DiscoveryStats()
			if got := after.Dropped - before.Dropped; got != int64(len(tt.send)) {
				t.Errorf("agent dropped %d datagrams, want %d", got, len(tt.send))
			}
			if got := after.Answered - before.Answered; got != 1 {
				t.Errorf("agent answered %d datagrams, want the fence only", got)
			}
			if got := receive(t, c, 0); len(got) != 0 {
				t.Errorf("got %d datagrams back, want none", len(got))
			}
		})
	}

	t.Run("replayed nonce", func(t *testing.T) {
		c := client(t, 50)
		q, b := query(t, da.key, time.Now())
		da.send(t, c, b)
		got := receive(t, c, 5*time.Second)
		if len(got) != 1 || !answers(da, got[0], q) {
			t.Fatalf("first query: %d datagrams back, want its answer", len(got))
		}
		before := da.DiscoveryStats()
		da.send(t, c, b)
		da.send(t, client(t, 51), b) // from elsewhere too
		da.fence(t, 52)
		if d := da.DiscoveryStats().Dropped - before.Dropped; d != 2 {
			t.Errorf("agent dropped %d replays, want 2", d)
		}
		if got := receive(t, c, 0); len(got) != 0 {
			t.Errorf("replay: got %d datagrams back, want none", len(got))
		}
	})
	if ev := da.logs.events("query_dropped"); len(ev) == 0 {
		t.Error("no query_dropped event logged at debug level")
	}
}

// TestDiscoveryAnswer checks the answer to a good query: exactly one
// datagram, no larger than the query, naming the agent's identity and
// TCP port, to the query's source; and a second key works during a
// rotation.
func TestDiscoveryAnswer(t *testing.T) {
	old, _ := proto.NewNetworkKey()
	da := startDiscovery(t, func(o *Options) { o.NetworkKeys = append(o.NetworkKeys, old) })
	for i, key := range []proto.NetworkKey{da.key, old} {
		c := client(t, byte(2+i))
		q, b := query(t, key, time.Now())
		da.send(t, c, b)
		got := receive(t, c, 5*time.Second)
		if len(got) != 1 {
			t.Fatalf("key %d: %d datagrams back, want 1", i, len(got))
		}
		var a proto.Answer
		if err := a.UnmarshalBinary(got[0]); err != nil {
			t.Fatal(err)
		}
		dk := key.DiscoveryKey()
		fp, err := a.Open(&dk, q.Nonce)
		if err != nil || fp != da.Identity() || int(a.Port) != da.port || len(got[0]) > len(b) {
			t.Errorf("key %d: answer %q port %d (%d bytes), %v; want %s port %d, at most %d bytes", i, fp, a.Port, len(got[0]), err, da.Identity(), da.port, len(b))
		}
	}
	if ev := da.logs.events("query_answered"); len(ev) != 2 {
		t.Errorf("%d query_answered events logged, want 2", len(ev))
	}
}

// TestDiscoveryRateLimit: one source gets QueryBurst answers, then
// nothing, while another source is still answered; and a flood of
// queries, good and bad, leaves a TCP ping working.
func TestDiscoveryRateLimit(t *testing.T) {
	da := startDiscovery(t, nil)
	c := client(t, 2)
	const n = 3 * QueryBurst
	start := time.Now()
	for range n {
		_, b := query(t, da.key, time.Now())
		da.send(t, c, b)
	}
	da.fence(t, 3)
	// Tokens come back at QueryRate a second while the test runs: allow
	// what the time taken could have earned (a loaded machine takes
	// longer), and not one more.
	earned := int64(time.Since(start).Seconds()*QueryRate) + 1
	st := da.DiscoveryStats()
	if st.Answered < QueryBurst+1 || st.Answered > QueryBurst+1+earned {
		t.Errorf("answered %d of %d queries from one source (and the fence), want about %d", st.Answered, n, QueryBurst+1)
	}
	if got := receive(t, c, 5*time.Second); int64(len(got)) != st.Answered-1 {
		t.Errorf("source received %d answers, agent sent it %d", len(got), st.Answered-1)
	}
	// The log is rate-limited too.
	if ev := da.logs.events("query_dropped"); len(ev) > queryLogRate+2 {
		t.Errorf("%d query_dropped lines for %d drops: the log is not rate-limited", len(ev), st.Dropped)
	}
}

func TestDiscoveryFloodLeavesPingWorking(t *testing.T) {
	da := startDiscovery(t, nil)
	other, _ := proto.NewNetworkKey()
	ctx, cancel := context.WithCancel(context.Background())
	flooded := make(chan int)
	go func() {
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 9)})
		if err != nil {
			flooded <- 0
			return
		}
		defer c.Close()
		_, bad := query(t, other, time.Now())
		_, good := query(t, da.key, time.Now())
		sent := 0
		for ctx.Err() == nil {
			b := bad
			if sent%100 == 0 {
				b = good // a replay after the first: dropped too
			}
			c.WriteToUDPAddrPort(b, da.udp)
			sent++
		}
		flooded <- sent
	}()
	for i := range 5 {
		if _, err := da.ping(t, da.key); err != nil {
			t.Errorf("ping %d during the flood: %v", i, err)
		}
	}
	cancel()
	sent := <-flooded
	st := da.DiscoveryStats()
	t.Logf("flood: %d datagrams sent, agent dropped %d and answered %d", sent, st.Dropped, st.Answered)
	if st.Answered > 1 {
		t.Errorf("agent answered %d datagrams of the flood, want at most the first good one", st.Answered)
	}
}

func TestLogLimit(t *testing.T) {
	l := logLimit{rate: 10}
	now := time.Unix(1000, 0)
	ok := 0
	for range 25 {
		if y, _ := l.allow(now); y {
			ok++
		}
	}
	if ok != 10 {
		t.Errorf("%d lines allowed at once, want 10", ok)
	}
	y, suppressed := l.allow(now.Add(time.Second))
	if !y || suppressed != 15 {
		t.Errorf("after a second: allowed %v, suppressed %d; want true, 15", y, suppressed)
	}
}

func ExampleAgent_ServeDiscovery() {
	key, _ := proto.NewNetworkKey()
	id, _ := proto.NewIdentity()
	a, _ := New(Options{NetworkKeys: []proto.NetworkKey{key}, Identity: id})
	ln, _ := net.Listen("tcp", ":7440")
	pc, _ := net.ListenPacket("udp", ":7440") // IPv4 and IPv6
	ctx := context.Background()
	go a.ServeDiscovery(ctx, pc, 7440)
	fmt.Println(a.Serve(ctx, ln))
}
