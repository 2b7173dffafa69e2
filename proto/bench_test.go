package proto

import (
	"bytes"
	"context"
	"net"
	"testing"
	"time"
)

// BenchmarkAgentHandshake measures the agent's side of a handshake and one
// ping reply, alone: the hellos are made before the timer starts, so the
// figure is what one agent core can serve per second. Run with
// 'go test -run ^$ -bench AgentHandshake -cpu 1 ./proto'.
func BenchmarkAgentHandshake(b *testing.B) {
	key := NetworkKey{1}
	id, _ := identityFromPrivate([KeyLen]byte{2})
	cfg := &ServerConfig{NetworkKeys: []NetworkKey{key}, Identity: id, Replay: NewReplayFilter(0)}
	reply := &PingReply{Facts: testFacts}

	// Hellos, one per iteration (each is accepted once), made ahead.
	const batch = 4096
	hellos := make([][]byte, 0, batch)
	makeHellos := func() {
		hellos = hellos[:0]
		for range batch {
			c1, c2 := net.Pipe()
			go func() {
				Client(c1, &ClientConfig{NetworkKey: key}).Handshake(context.Background())
			}()
			fr := frameReader{r: c2}
			_, p, err := fr.ReadFrame()
			if err != nil {
				b.Fatal(err)
			}
			h, _ := appendFrame(nil, FrameHello, p)
			hellos = append(hellos, h)
			c1.Close()
			c2.Close()
		}
	}
	b.ReportAllocs()
	var elapsed time.Duration
	i := 0
	for b.Loop() {
		if i%batch == 0 {
			b.StopTimer()
			makeHellos()
			cfg.Replay = NewReplayFilter(0)
			b.StartTimer()
		}
		start := time.Now()
		conn := &bufConn{r: bytes.NewReader(hellos[i%batch])}
		sc := Server(conn, cfg)
		if err := sc.Handshake(context.Background()); err != nil {
			b.Fatal(err)
		}
		if err := sc.Send(context.Background(), reply); err != nil {
			b.Fatal(err)
		}
		elapsed += time.Since(start)
		i++
	}
	b.ReportMetric(float64(i)/elapsed.Seconds(), "handshakes/s")
}
