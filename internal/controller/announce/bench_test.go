package announce_test

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/ifl-project/ifl/internal/controller/announce"
	"github.com/ifl-project/ifl/proto"
)

// forgedListener is a listener that watches 127.0.0.0/24, and the
// costliest datagram it refuses: well formed, from inside the targets,
// on time, under another network key (the MAC is computed, then fails).
func forgedListener(b *testing.B) (*announce.Listener, []byte) {
	b.Helper()
	key, _ := proto.NewNetworkKey()
	other, _ := proto.NewNetworkKey()
	l := announce.New(announce.Config{Key: key, Port: 7440, Accept: loopback.Contains})
	ak := other.AnnounceKey()
	a, err := proto.NewAnnouncement(&ak, 7440, [16]byte{1}, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	bad, _ := a.MarshalBinary()
	return l, bad
}

// BenchmarkRefuseForged: the checks alone.
func BenchmarkRefuseForged(b *testing.B) {
	l, bad := forgedListener(b)
	src := netip.MustParseAddrPort("127.0.0.1:40000")
	now := time.Now()
	for b.Loop() {
		if r, ok := l.Receive(bad, src, now); ok || r != announce.Key {
			b.Fatalf("forged announcement: %v, %v", r, ok)
		}
	}
}

// BenchmarkRefuseForgedUDP: through the listener's UDP socket on
// loopback, the sender sharing the machine.
func BenchmarkRefuseForgedUDP(b *testing.B) {
	l, bad := forgedListener(b)
	pc, err := announce.Listen(netip.MustParseAddrPort("127.0.0.1:0"))
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Serve(ctx, pc) }()
	defer func() { cancel(); <-done }()
	c, err := net.DialUDP("udp", nil, pc.LocalAddr().(*net.UDPAddr))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	// In flights of 64, so that the socket's buffer never overflows and
	// every datagram sent is one the listener read.
	const flight = 64
	refused := func() int64 { return l.Stats().Refused[announce.Key] }
	start := time.Now()
	sent := int64(0)
	for b.Loop() {
		if _, err := c.Write(bad); err != nil {
			b.Fatal(err)
		}
		sent++
		if sent%flight == 0 {
			// A sleep, not a yield: with one P only a goroutine that
			// blocks lets the scheduler poll the network for the listener.
			for refused() < sent-flight/2 {
				time.Sleep(20 * time.Microsecond)
			}
		}
	}
	for refused() < sent {
		time.Sleep(20 * time.Microsecond)
	}
	b.ReportMetric(float64(sent)/time.Since(start).Seconds(), "refused/s")
}
