package agent

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ifl-project/ifl/proto"
)

// recordingConn keeps what the controller writes, as a listener on the
// path would.
type recordingConn struct {
	net.Conn
	mu      sync.Mutex
	written bytes.Buffer
}

func (r *recordingConn) Write(p []byte) (int, error) {
	r.mu.Lock()
	r.written.Write(p)
	r.mu.Unlock()
	return r.Conn.Write(p)
}

// captureHellos pings ta n times and returns the hello frame of each, as
// seen on the wire.
func captureHellos(t *testing.T, ta *testAgent, n int) [][]byte {
	t.Helper()
	var out [][]byte
	for range n {
		c, err := net.Dial("tcp", ta.addr)
		if err != nil {
			t.Fatal(err)
		}
		rc := &recordingConn{Conn: c}
		pc := proto.Client(rc, &proto.ClientConfig{NetworkKey: ta.key})
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err = pc.Ping(ctx)
		cancel()
		pc.Close()
		if err != nil {
			t.Fatal(err)
		}
		var h proto.Header
		b := rc.written.Bytes()
		if err := h.UnmarshalBinary(b); err != nil || h.Type != proto.FrameHello {
			t.Fatalf("first frame: %+v, %v", h, err)
		}
		out = append(out, bytes.Clone(b[:proto.HeaderLen+int(h.Length)]))
	}
	return out
}

// replay sends a captured hello to addr and returns the connection and
// the type of the frame that came back (0 if the agent hung up).
func replay(t *testing.T, addr string, hello []byte) (net.Conn, proto.FrameType) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.Write(hello); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var hb [proto.HeaderLen]byte
	if _, err := io.ReadFull(c, hb[:]); err != nil {
		return c, 0
	}
	var h proto.Header
	if err := h.UnmarshalBinary(hb[:]); err != nil {
		t.Fatalf("answer to a replay: %v", err)
	}
	if _, err := io.CopyN(io.Discard, c, int64(h.Length)); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Time{})
	return c, h.Type
}

// closedByAgent waits for the agent to hang up on c and fails if it sends
// anything more first.
func closedByAgent(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := io.Copy(io.Discard, c); n != 0 || err != nil {
		t.Fatalf("read %d bytes, %v; want the agent to close the connection", n, err)
	}
}

// TestReplayedHelloHoldsNoSlot replays hellos captured on their way to
// one agent to another that shares the network key: they get a welcome,
// which costs the replayer nothing to ask for, but no verified slot.
func TestReplayedHelloHoldsNoSlot(t *testing.T) {
	a := startAgent(t, nil)
	b := startAgent(t, func(o *Options) {
		o.NetworkKeys = a.Agent.opts.NetworkKeys
		o.MaxConns = 1
		o.HandshakeTimeout = time.Hour // replays sit idle for the whole test
	})
	hellos := captureHellos(t, a, 3)

	// To the agent that saw them: not a byte back.
	c, err := net.Dial("tcp", a.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(hellos[0]); err != nil {
		t.Fatal(err)
	}
	closedByAgent(t, c)

	for i, h := range hellos {
		if _, typ := replay(t, b.addr, h); typ != proto.FrameWelcome {
			t.Fatalf("replay %d to another agent: got %v, want a welcome", i, typ)
		}
	}
	b.mu.Lock()
	active, pending := len(b.active), b.pending.Len()
	b.mu.Unlock()
	if active != 0 || pending != len(hellos) {
		t.Fatalf("with %d replays waiting: %d verified, %d pending; want 0 and %d", len(hellos), active, pending, len(hellos))
	}
	if _, err := b.ping(t, b.key); err != nil {
		t.Fatalf("ping with MaxConns 1 while replays sit idle: %v", err)
	}
}

func TestReplayedHelloIsDropped(t *testing.T) {
	a := startAgent(t, nil)
	hellos := captureHellos(t, a, 3)

	t.Run("silent", func(t *testing.T) {
		b := startAgent(t, func(o *Options) {
			o.NetworkKeys = a.Agent.opts.NetworkKeys
			o.HandshakeTimeout = 100 * time.Millisecond
		})
		c, typ := replay(t, b.addr, hellos[0])
		if typ != proto.FrameWelcome {
			t.Fatalf("got %v, want a welcome", typ)
		}
		closedByAgent(t, c)
		b.stop()
		if !loggedReason(b, "no request after the welcome before the handshake deadline") {
			t.Errorf("handshake_failed events: %v", b.logs.events("handshake_failed"))
		}
	})
	t.Run("garbage", func(t *testing.T) {
		b := startAgent(t, func(o *Options) {
			o.NetworkKeys = a.Agent.opts.NetworkKeys
			o.HandshakeTimeout = time.Hour
		})
		c, typ := replay(t, b.addr, hellos[1])
		if typ != proto.FrameWelcome {
			t.Fatalf("got %v, want a welcome", typ)
		}
		junk := make([]byte, 48)
		rand.Read(junk)
		h, _ := proto.Header{Type: proto.FrameTransport, Length: uint32(len(junk))}.MarshalBinary()
		c.Write(append(h, junk...))
		closedByAgent(t, c)
		b.stop()
		if !loggedReason(b, "does not decrypt") {
			t.Errorf("handshake_failed events: %v", b.logs.events("handshake_failed"))
		}
		if len(b.logs.events("handshake_ok")) != 0 {
			t.Error("a replay was logged as verified")
		}
	})
	t.Run("evicted", func(t *testing.T) {
		b := startAgent(t, func(o *Options) {
			o.NetworkKeys = a.Agent.opts.NetworkKeys
			o.HandshakeTimeout = time.Hour
			o.MaxPending = 1
			o.MaxConns = 1
		})
		c, typ := replay(t, b.addr, hellos[2])
		if typ != proto.FrameWelcome {
			t.Fatalf("got %v, want a welcome", typ)
		}
		if _, err := b.ping(t, b.key); err != nil {
			t.Fatalf("ping with a replay holding the only pending place: %v", err)
		}
		// The busy answer that a welcomed controller would read: one
		// transport frame the replayer cannot, then the close.
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		var hb [proto.HeaderLen]byte
		if _, err := io.ReadFull(c, hb[:]); err != nil {
			t.Fatalf("evicted replay: %v; want a busy answer", err)
		}
		var h proto.Header
		if err := h.UnmarshalBinary(hb[:]); err != nil || h.Type != proto.FrameTransport {
			t.Fatalf("evicted replay: got %+v, %v; want a transport frame", h, err)
		}
		if _, err := io.CopyN(io.Discard, c, int64(h.Length)); err != nil {
			t.Fatal(err)
		}
		closedByAgent(t, c)
	})
}

func loggedReason(ta *testAgent, want string) bool {
	for _, ev := range ta.logs.events("handshake_failed") {
		if r, _ := ev["reason"].(string); strings.Contains(r, want) {
			return true
		}
	}
	return false
}

// TestFullReplayFilterSpendsNoBudget fills the replay filter and checks
// that the hellos it refuses do not count against their source.
func TestFullReplayFilterSpendsNoBudget(t *testing.T) {
	ta := startAgent(t, func(o *Options) { o.MaxFailures = 1 })
	ta.replay = proto.NewReplayFilter(1)
	ta.Reload(ta.opts.NetworkKeys, ta.opts.Labels)
	if _, err := ta.ping(t, ta.key); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := ta.ping(t, ta.key); !errors.Is(err, proto.ErrRejected) {
			t.Fatalf("ping %d with the filter full: got %v, want ErrRejected", i, err)
		}
	}
	ta.stop()
	if ev := ta.logs.events("refused"); len(ev) != 0 {
		t.Errorf("source refused after the filter was full: %v", ev)
	}
	if n := len(ta.budget.sources); n != 0 {
		t.Errorf("%d sources charged for a full filter", n)
	}
	if !loggedReason(ta, "replay filter full") {
		t.Errorf("handshake_failed events: %v", ta.logs.events("handshake_failed"))
	}
}
