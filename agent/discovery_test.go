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
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"

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
	return startDiscoveryWith(t, mod, nil)
}

// startDiscoveryWith is startDiscovery with prep run on the agent before
// it serves queries.
func startDiscoveryWith(t *testing.T, mod func(*Options), prep func(*Agent)) *discoveryAgent {
	t.Helper()
	ta := startAgent(t, func(o *Options) {
		// Debug, to see the dropped and answered queries logged.
		o.Logger = o.Logger.Level(zerolog.DebugLevel)
		if mod != nil {
			mod(o)
		}
	})
	pc, err := ListenDiscovery("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := netip.MustParseAddrPort(ta.addr).Port()
	if prep != nil {
		prep(ta.Agent)
	}
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

// client is a controller's UDP socket on its own loopback address,
// sending with the TTL of a discovery query.
func client(t *testing.T, n byte) *net.UDPConn {
	t.Helper()
	return clientTTL(t, n, proto.DiscoveryHopLimit)
}

// clientTTL is client with another TTL.
func clientTTL(t *testing.T, n byte, ttl int) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, n)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := ipv4.NewPacketConn(c).SetTTL(ttl); err != nil {
		t.Fatal(err)
	}
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

// TestDiscoveryBudget: the agent answers AnswerBurst queries, then only
// as many as AnswerRate earns, whichever sources they come from; and the
// log of the queries it drops is rate-limited too.
func TestDiscoveryBudget(t *testing.T) {
	da := startDiscovery(t, nil)
	var cs []*net.UDPConn
	for i := range 4 {
		cs = append(cs, client(t, byte(2+i)))
	}
	const n = 2*AnswerBurst + 500
	// In flights, so that the agent's socket never overflows and every
	// query sent is one it read.
	const flight = 64
	start := time.Now()
	for i := range n {
		_, b := query(t, da.key, time.Now())
		da.send(t, cs[i%len(cs)], b)
		if (i+1)%flight == 0 || i == n-1 {
			da.settle(t, int64(i+1))
		}
	}
	// Tokens come back at AnswerRate a second while the test runs: allow
	// what the time taken could have earned (a loaded machine takes
	// longer), and not one more.
	earned := int64(time.Since(start).Seconds()*AnswerRate) + 1
	st := da.DiscoveryStats()
	if st.Answered < AnswerBurst || st.Answered > AnswerBurst+earned || st.Answered+st.Dropped != n {
		t.Errorf("answered %d and dropped %d of %d queries from %d sources, want %d answered (%d more at most)", st.Answered, st.Dropped, n, len(cs), AnswerBurst, earned)
	}
	if ev := da.logs.events("query_dropped"); len(ev) > queryLogRate+2 {
		t.Errorf("%d query_dropped lines for %d drops: the log is not rate-limited", len(ev), st.Dropped)
	}
}

// settle waits, within a bound, until the agent has handled n datagrams.
func (da *discoveryAgent) settle(t *testing.T, n int64) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Microsecond) {
		if st := da.DiscoveryStats(); st.Answered+st.Dropped >= n {
			return
		}
	}
	t.Fatalf("the agent handled %+v of %d datagrams within 5s", da.DiscoveryStats(), n)
}

// TestQueryBudget steps the budget by hand: AnswerBurst fresh queries are
// answered, the next is refused and leaves no trace (it is answered once
// a token is back), and a replay gives back the token it took.
func TestQueryBudget(t *testing.T) {
	key, _ := proto.NewNetworkKey()
	id, _ := proto.NewIdentity()
	a, err := New(Options{NetworkKeys: []proto.NetworkKey{key}, Identity: id})
	if err != nil {
		t.Fatal(err)
	}
	rx := received{hopLimit: proto.DiscoveryHopLimit, ifIndex: 2}
	a.disc.links = &links{lookup: func(int) ([]netip.Prefix, error) { return []netip.Prefix{netip.MustParsePrefix("198.18.56.1/24")}, nil }}
	src := netip.MustParseAddrPort("198.18.56.2:40000")
	now := time.Now()
	dk := key.DiscoveryKey()
	fresh := func() []byte {
		q, _ := proto.NewQuery(&dk, now)
		b, _ := q.MarshalBinary()
		return b
	}
	var first []byte
	for i := range AnswerBurst {
		b := fresh()
		if i == 0 {
			first = b
		}
		if _, why := a.query(b, src, rx, 7440, now); why != "" {
			t.Fatalf("query %d: %s", i, why)
		}
	}
	refused := fresh()
	if _, why := a.query(refused, src, rx, 7440, now); why != "answer budget spent (a flood of good queries)" {
		t.Fatalf("past the burst: %q", why)
	}
	now = now.Add(time.Second / AnswerRate)
	if _, why := a.query(first, src, rx, 7440, now); why != "replayed nonce" {
		t.Errorf("replay: %q", why)
	}
	if _, why := a.query(refused, src, rx, 7440, now); why != "" {
		t.Errorf("the refused query, with a token back: %q", why)
	}
	if _, why := a.query(fresh(), src, rx, 7440, now); why != "answer budget spent (a flood of good queries)" {
		t.Errorf("with the token spent: %q", why)
	}
}

// TestQuerySource: an agent answers only a source on the link the query
// came in on, told by the TTL and the interface.
func TestQuerySource(t *testing.T) {
	key, _ := proto.NewNetworkKey()
	id, _ := proto.NewIdentity()
	a, err := New(Options{NetworkKeys: []proto.NetworkKey{key}, Identity: id})
	if err != nil {
		t.Fatal(err)
	}
	a.disc.links = &links{lookup: func(i int) ([]netip.Prefix, error) {
		if i != 2 {
			return nil, fmt.Errorf("no link %d", i)
		}
		return []netip.Prefix{netip.MustParsePrefix("198.18.56.7/24"), netip.MustParsePrefix("2001:db8:56::7/64"), netip.MustParsePrefix("fe80::7/64")}, nil
	}}
	dk := key.DiscoveryKey()
	for _, tt := range []struct {
		src  string
		rx   received
		want string
	}{
		{"198.18.56.2:40000", received{255, 2}, ""},
		{"[::ffff:198.18.56.2]:40000", received{255, 2}, ""},
		{"[2001:db8:56::2]:40000", received{255, 2}, ""},
		{"[fe80::2%eth0]:40000", received{255, 2}, ""},
		{"[fe80::2%eth1]:40000", received{255, 9}, ""}, // link-local: on the link it came in on
		{"198.18.56.2:40000", received{64, 2}, "TTL or hop limit not 255: sent from beyond this link"},
		{"198.18.56.2:40000", received{0, 2}, "TTL or hop limit not 255: sent from beyond this link"},
		{"198.18.57.2:40000", received{255, 2}, "source is not on the link the query came in on"},
		{"198.18.56.255:40000", received{255, 2}, "source is not on the link the query came in on"},
		{"198.18.56.0:40000", received{255, 2}, "source is not on the link the query came in on"},
		{"[2001:db8:57::2]:40000", received{255, 2}, "source is not on the link the query came in on"},
		{"198.18.56.2:40000", received{255, 3}, "source is not on the link the query came in on"},
		{"198.18.56.2:40000", received{255, 0}, "source is not on the link the query came in on"},
		{"198.18.56.2:0", received{255, 2}, "source is not a unicast address and port"},
	} {
		q, _ := proto.NewQuery(&dk, time.Now())
		b, _ := q.MarshalBinary()
		if _, why := a.query(b, netip.MustParseAddrPort(tt.src), tt.rx, 7440, time.Now()); why != tt.want {
			t.Errorf("from %s, %+v: %q, want %q", tt.src, tt.rx, why, tt.want)
		}
	}
}

// TestLinksRefresh: a link's prefixes are read again for a source not in
// them, once a second at most; an address added to the link counts after
// that.
func TestLinksRefresh(t *testing.T) {
	reads := 0
	prefixes := []netip.Prefix{netip.MustParsePrefix("198.18.56.7/24")}
	l := &links{lookup: func(int) ([]netip.Prefix, error) { reads++; return prefixes, nil }}
	now := time.Unix(1000, 0)
	in, out := netip.MustParseAddr("198.18.56.2"), netip.MustParseAddr("198.18.57.2")
	if !l.onLink(2, in, now) || reads != 1 {
		t.Fatalf("first source: reads %d", reads)
	}
	for range 100 {
		if l.onLink(2, out, now.Add(time.Millisecond)) || !l.onLink(2, in, now) {
			t.Fatal("wrong answer from the cache")
		}
	}
	if reads != 1 {
		t.Errorf("a flood from elsewhere within a second of the read: %d reads, want 1", reads)
	}
	prefixes = append(prefixes, netip.MustParsePrefix("198.18.57.7/24"))
	if l.onLink(2, out, now.Add(500*time.Millisecond)) {
		t.Error("an address added to the link counted before a second had passed")
	}
	if !l.onLink(2, out, now.Add(time.Second+time.Millisecond)) || reads != 2 {
		t.Errorf("an address added to the link: not counted after a second (reads %d)", reads)
	}
}

// TestDiscoverySpoofedController: a holder of the network key sends good
// queries from the controller's own address, far more than a source
// used to be allowed; the controller's own query is answered every round
// all the same.
func TestDiscoverySpoofedController(t *testing.T) {
	da := startDiscovery(t, nil)
	ctrl := client(t, 2)
	spoofer := client(t, 2) // the same address, another port: all the agent sees of a spoofer
	for round := range 5 {
		for range 100 {
			_, b := query(t, da.key, time.Now())
			da.send(t, spoofer, b)
		}
		q, b := query(t, da.key, time.Now())
		da.send(t, ctrl, b)
		if got := receive(t, ctrl, 5*time.Second); len(got) != 1 || !answers(da, got[0], q) {
			t.Fatalf("round %d: the controller got %d datagrams, want the answer to its query", round, len(got))
		}
	}
}

// TestDiscoveryReplayFilterFull: a holder of the network key fills the
// filter of nonces with fresh queries; the controller's next query is
// answered all the same, and a replay of a nonce the filter holds still
// gets nothing.
func TestDiscoveryReplayFilterFull(t *testing.T) {
	const capacity = 64
	da := startDiscoveryWith(t, nil, func(a *Agent) { a.disc.replay = proto.NewReplayFilter(capacity) })
	filler := client(t, 3)
	var first []byte
	for i := range capacity {
		_, b := query(t, da.key, time.Now())
		if i == 0 {
			first = b
		}
		da.send(t, filler, b)
	}
	ctrl := client(t, 2)
	q, b := query(t, da.key, time.Now())
	da.send(t, ctrl, b)
	if got := receive(t, ctrl, 5*time.Second); len(got) != 1 || !answers(da, got[0], q) {
		t.Fatalf("the controller got %d datagrams, want the answer to its query", len(got))
	}
	before := da.DiscoveryStats()
	da.send(t, ctrl, first)
	da.fence(t, 4)
	if d := da.DiscoveryStats().Dropped - before.Dropped; d != 1 {
		t.Errorf("agent dropped %d datagrams, want the replay", d)
	}
	if got := receive(t, ctrl, 0); len(got) != 0 {
		t.Errorf("replay into a full filter: %d datagrams back, want none", len(got))
	}
}

// TestDiscoveryHopLimit: a query that a router forwarded (its TTL or
// hop limit below 255) gets nothing, over IPv4 and IPv6.
func TestDiscoveryHopLimit(t *testing.T) {
	da := startDiscovery(t, nil)
	for _, ttl := range []int{64, 254, 1} {
		c := clientTTL(t, 20, ttl)
		before := da.DiscoveryStats()
		_, b := query(t, da.key, time.Now())
		da.send(t, c, b)
		da.fence(t, 21)
		if d := da.DiscoveryStats().Dropped - before.Dropped; d != 1 {
			t.Errorf("TTL %d: agent dropped %d datagrams, want 1", ttl, d)
		}
		if got := receive(t, c, 0); len(got) != 0 {
			t.Errorf("TTL %d: %d datagrams back, want none", ttl, len(got))
		}
	}

	// IPv6, on a socket of its own.
	pc, err := ListenDiscovery("[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	port := netip.MustParseAddrPort(da.addr).Port()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- da.ServeDiscovery(ctx, pc, int(port)) }()
	defer func() { cancel(); <-done }()
	for _, hops := range []int{64, proto.DiscoveryHopLimit} {
		c, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := ipv6.NewPacketConn(c).SetHopLimit(hops); err != nil {
			t.Fatal(err)
		}
		q, b := query(t, da.key, time.Now())
		if _, err := c.WriteToUDPAddrPort(b, pc.LocalAddr().(*net.UDPAddr).AddrPort()); err != nil {
			t.Fatal(err)
		}
		got := receive(t, c, 2*time.Second)
		if want := hops == proto.DiscoveryHopLimit; want != (len(got) == 1 && answers(da, got[0], q)) || len(got) > 1 {
			t.Errorf("hop limit %d: %d datagrams back, want an answer: %v", hops, len(got), want)
		}
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
		ipv4.NewPacketConn(c).SetTTL(proto.DiscoveryHopLimit) // to reach the MAC check
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
	pc, _ := ListenDiscovery(":7440") // IPv4 and IPv6
	ctx := context.Background()
	go a.ServeDiscovery(ctx, pc, 7440)
	fmt.Println(a.Serve(ctx, ln))
}
