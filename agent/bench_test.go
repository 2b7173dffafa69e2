package agent

import (
	"context"
	"net"
	"testing"
	"time"

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
