package agent

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/net/ipv4"

	"github.com/ifl-project/ifl/proto"
)

// BenchmarkHandshakePing measures full round trips on loopback: connect,
// handshake, ping, facts, close. Run it on one core with
// 'go test -run ^$ -bench HandshakePing -cpu 1 ./agent'.
func BenchmarkHandshakePing(b *testing.B) {
	key, _ := proto.NewNetworkKey()
	id, _ := proto.NewIdentity()
	facts, err := CollectFacts("bench", nil)
	if err != nil {
		b.Fatal(err)
	}
	// Fixed facts: the benchmark measures the protocol and the agent, not
	// the kernel's interface dump.
	a, err := New(Options{
		NetworkKeys: []proto.NetworkKey{key}, Identity: id,
		Facts: func(string, map[string]string) (*proto.Facts, error) { return facts, nil },
	})
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Serve(ctx, ln) }()
	defer func() { cancel(); <-done }()
	addr := ln.Addr().String()
	cfg := &proto.ClientConfig{NetworkKey: key}

	b.ReportAllocs()
	start := time.Now()
	for b.Loop() {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		pc := proto.Client(c, cfg)
		pctx, pcancel := context.WithTimeout(context.Background(), 5*time.Second)
		if _, err := pc.Ping(pctx); err != nil {
			b.Fatal(err)
		}
		pcancel()
		pc.Close()
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "pings/s")
}

// BenchmarkCollectFacts measures what one ping costs the agent in syscalls.
func BenchmarkCollectFacts(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := CollectFacts("bench", nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFitFacts measures cutting far oversized facts (5000 labels,
// 1000 interfaces) down to a frame, which an agent does once per FactsTTL.
func BenchmarkFitFacts(b *testing.B) {
	f := bigFacts(5000, 1000)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := fitFacts(f, maxFactsJSON); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDropQuery measures the agent's checks of a query it must
// ignore: a well-formed query under another network key, which costs the
// most of all the datagrams dropped (a timestamp check and a MAC). Run
// with 'go test -run ^$ -bench DropQuery -cpu 1 ./agent'; the figure is
// what one core drops per second, without the socket.
func BenchmarkDropQuery(b *testing.B) {
	a, _ := benchAgent(b)
	other, _ := proto.NewNetworkKey()
	odk := other.DiscoveryKey()
	q, _ := proto.NewQuery(&odk, time.Now())
	bad, _ := q.MarshalBinary()
	src := netip.MustParseAddrPort("198.18.0.2:40000")
	rx := onBenchLink(a)
	b.ReportAllocs()
	start := time.Now()
	for b.Loop() {
		if _, why := a.query(bad, src, rx, 7440, time.Now()); why == "" {
			b.Fatal("answered a query under another key")
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "drops/s")
}

// BenchmarkAnswerQuery measures the checks and the answer of a good
// query, fresh nonces made ahead (each is answered once).
func BenchmarkAnswerQuery(b *testing.B) {
	a, key := benchAgent(b)
	dk := key.DiscoveryKey()
	const batch = 1024
	qs := make([][]byte, batch)
	src := netip.MustParseAddrPort("198.18.0.2:40000")
	b.ReportAllocs()
	var elapsed time.Duration
	var rx received
	i := 0
	for b.Loop() {
		if i%batch == 0 {
			b.StopTimer()
			for j := range qs {
				q, _ := proto.NewQuery(&dk, time.Now())
				qs[j], _ = q.MarshalBinary()
			}
			a.disc = newDiscovery() // an empty replay filter and budget
			a.disc.answers = newTokenBucket(1<<30, 1)
			rx = onBenchLink(a)
			b.StartTimer()
		}
		start := time.Now()
		if _, why := a.query(qs[i%batch], src, rx, 7440, time.Now()); why != "" {
			b.Fatal(why)
		}
		elapsed += time.Since(start)
		i++
	}
	b.ReportMetric(float64(i)/elapsed.Seconds(), "answers/s")
}

// BenchmarkDropQueryUDP is BenchmarkDropQuery through the agent's socket
// on loopback: the sender and the agent share the cores they are given,
// so the figure is a floor of what the agent alone drops. Run with
// 'go test -run ^$ -bench DropQueryUDP -cpu 1 ./agent'.
func BenchmarkDropQueryUDP(b *testing.B) {
	a, _ := benchAgent(b)
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.ServeDiscovery(ctx, pc, 7440) }()
	defer func() { cancel(); <-done }()
	c, err := net.DialUDP("udp", nil, pc.LocalAddr().(*net.UDPAddr))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	// A query sent on the link, so that it is dropped at the MAC.
	if err := ipv4.NewPacketConn(c).SetTTL(proto.DiscoveryHopLimit); err != nil {
		b.Fatal(err)
	}
	other, _ := proto.NewNetworkKey()
	odk := other.DiscoveryKey()
	q, _ := proto.NewQuery(&odk, time.Now())
	bad, _ := q.MarshalBinary()
	// In flights of 64, so that the socket's buffer never overflows and
	// every datagram sent is one the agent read.
	const flight = 64
	base := a.DiscoveryStats().Dropped
	start := time.Now()
	sent := int64(0)
	for b.Loop() {
		if _, err := c.Write(bad); err != nil {
			b.Fatal(err)
		}
		sent++
		if sent%flight == 0 {
			// A sleep, not a yield: with one P only a goroutine that
			// blocks lets the scheduler poll the network for the agent.
			for a.DiscoveryStats().Dropped-base < sent-flight/2 {
				time.Sleep(20 * time.Microsecond)
			}
		}
	}
	for a.DiscoveryStats().Dropped-base < sent {
		time.Sleep(20 * time.Microsecond)
	}
	b.ReportMetric(float64(sent)/time.Since(start).Seconds(), "drops/s")
}

// onBenchLink makes the benchmarks' source, 198.18.0.2, an address of
// the link their queries come in on, and returns what the kernel would
// tell of such a query.
func onBenchLink(a *Agent) received {
	a.disc.links = &links{lookup: func(int) ([]netip.Prefix, error) {
		return []netip.Prefix{netip.MustParsePrefix("198.18.0.1/24")}, nil
	}}
	return received{hopLimit: proto.DiscoveryHopLimit, ifIndex: 2}
}

func benchAgent(b *testing.B) (*Agent, proto.NetworkKey) {
	key, _ := proto.NewNetworkKey()
	id, _ := proto.NewIdentity()
	a, err := New(Options{NetworkKeys: []proto.NetworkKey{key}, Identity: id})
	if err != nil {
		b.Fatal(err)
	}
	return a, key
}
