package proto

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// recordingConn remembers every byte written through it.
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

func (r *recordingConn) bytes() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return bytes.Clone(r.written.Bytes())
}

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		c, err := ln.Accept()
		ch <- res{c, err}
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	r := <-ch
	if r.err != nil {
		t.Fatal(r.err)
	}
	t.Cleanup(func() { client.Close(); r.c.Close() })
	return client, r.c
}

func mustKey(t *testing.T) NetworkKey {
	t.Helper()
	k, err := NewNetworkKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mustIdentity(t *testing.T) Identity {
	t.Helper()
	id, err := NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

var testFacts = Facts{
	Hostname:  "web-1",
	MachineID: "0123456789abcdef0123456789abcdef",
	OS:        OSRelease{ID: "debian", VersionID: "12", PrettyName: "Debian GNU/Linux 12 (bookworm)"},
	Kernel:    "6.1.0",
	Interfaces: []Interface{{
		Name: "eth0", MAC: "02:00:00:00:00:01", MTU: 1500, Flags: []string{"up", "broadcast"},
		Addrs: []string{"198.18.0.5/24"},
	}},
	DefaultRoutes: []Route{{Family: "inet", Gateway: "198.18.0.1", Interface: "eth0"}},
	Labels:        map[string]string{"role": "web"},
	Time:          time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
}

// serveOne runs the agent side of one connection: handshake, then answer
// pings until the peer hangs up. It returns the handshake error and the
// bytes the server wrote.
func serveOne(t *testing.T, c net.Conn, cfg *ServerConfig) (hsErr <-chan error, written func() []byte) {
	t.Helper()
	rc := &recordingConn{Conn: c}
	ch := make(chan error, 1)
	go func() {
		sc := Server(rc, cfg)
		defer sc.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err := sc.Handshake(ctx)
		ch <- err
		if err != nil {
			return
		}
		for {
			m, err := sc.Receive(ctx)
			if errors.Is(err, ErrUnknownMessage) {
				sc.Send(ctx, &Error{Code: CodeUnsupported, Message: err.Error()})
				continue
			}
			if err != nil {
				return
			}
			if _, ok := m.(*PingRequest); ok {
				sc.Send(ctx, &PingReply{Facts: testFacts})
			}
		}
	}()
	return ch, rc.bytes
}

func ctx5s(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestHandshakeAndPing(t *testing.T) {
	key, id := mustKey(t), mustIdentity(t)
	cc, sc := tcpPair(t)
	hsErr, _ := serveOne(t, sc, &ServerConfig{NetworkKeys: []NetworkKey{key}, Identity: id, Replay: NewReplayFilter(0)})
	c := Client(cc, &ClientConfig{NetworkKey: key, ExpectIdentity: id.Fingerprint()})
	facts, err := c.Ping(ctx5s(t))
	if err != nil {
		t.Fatalf("ping: %v", err)
	}
	if err := <-hsErr; err != nil {
		t.Fatalf("server handshake: %v", err)
	}
	if diff := cmp.Diff(testFacts, *facts); diff != "" {
		t.Errorf("facts (-want +got):\n%s", diff)
	}
	if got := c.PeerIdentity(); got != id.Fingerprint() {
		t.Errorf("peer identity %s, want %s", got, id.Fingerprint())
	}
	// The connection carries more than one exchange.
	if _, err := c.Ping(ctx5s(t)); err != nil {
		t.Fatalf("second ping: %v", err)
	}
}

func TestKeyRotation(t *testing.T) {
	old, cur, id := mustKey(t), mustKey(t), mustIdentity(t)
	for _, k := range []NetworkKey{old, cur} {
		cc, sc := tcpPair(t)
		hsErr, _ := serveOne(t, sc, &ServerConfig{NetworkKeys: []NetworkKey{old, cur}, Identity: id})
		if _, err := Client(cc, &ClientConfig{NetworkKey: k}).Ping(ctx5s(t)); err != nil {
			t.Fatalf("ping: %v", err)
		}
		if err := <-hsErr; err != nil {
			t.Fatal(err)
		}
	}
}

func TestWrongKey(t *testing.T) {
	cc, sc := tcpPair(t)
	hsErr, written := serveOne(t, sc, &ServerConfig{NetworkKeys: []NetworkKey{mustKey(t)}, Identity: mustIdentity(t)})
	_, err := Client(cc, &ClientConfig{NetworkKey: mustKey(t)}).Ping(ctx5s(t))
	if !errors.Is(err, ErrRejected) {
		t.Fatalf("client: got %v, want ErrRejected", err)
	}
	if err := <-hsErr; !errors.Is(err, ErrBadKey) {
		t.Fatalf("server: got %v, want ErrBadKey", err)
	}
	if b := written(); len(b) != 0 {
		t.Fatalf("server answered a wrong-key hello with %d bytes", len(b))
	}
}

func TestReplayedHelloGetsNothing(t *testing.T) {
	key, id := mustKey(t), mustIdentity(t)
	cfg := &ServerConfig{NetworkKeys: []NetworkKey{key}, Identity: id, Replay: NewReplayFilter(0)}

	cc, sc := tcpPair(t)
	rec := &recordingConn{Conn: cc}
	hsErr, _ := serveOne(t, sc, cfg)
	if err := Client(rec, &ClientConfig{NetworkKey: key}).Handshake(ctx5s(t)); err != nil {
		t.Fatal(err)
	}
	if err := <-hsErr; err != nil {
		t.Fatal(err)
	}
	hello := rec.bytes()

	cc2, sc2 := tcpPair(t)
	hsErr2, written := serveOne(t, sc2, cfg)
	if _, err := cc2.Write(hello); err != nil {
		t.Fatal(err)
	}
	if err := <-hsErr2; !errors.Is(err, ErrReplay) {
		t.Fatalf("server: got %v, want ErrReplay", err)
	}
	cc2.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := io.Copy(io.Discard, cc2); n != 0 || err != nil {
		t.Fatalf("replay got %d bytes back (%v), want none and a clean close", n, err)
	}
	if b := written(); len(b) != 0 {
		t.Fatalf("server wrote %d bytes to a replay", len(b))
	}
}

func TestStaleHello(t *testing.T) {
	key := mustKey(t)
	cc, sc := tcpPair(t)
	hsErr, written := serveOne(t, sc, &ServerConfig{NetworkKeys: []NetworkKey{key}, Identity: mustIdentity(t)})
	old := func() time.Time { return time.Now().Add(-2 * MaxSkew) }
	if err := Client(cc, &ClientConfig{NetworkKey: key, Now: old}).Handshake(ctx5s(t)); !errors.Is(err, ErrRejected) {
		t.Fatalf("client: got %v, want ErrRejected", err)
	}
	if err := <-hsErr; !errors.Is(err, ErrStale) {
		t.Fatalf("server: got %v, want ErrStale", err)
	}
	if len(written()) != 0 {
		t.Fatal("server answered a stale hello")
	}
}

func TestIdentityMismatch(t *testing.T) {
	key := mustKey(t)
	cc, sc := tcpPair(t)
	serveOne(t, sc, &ServerConfig{NetworkKeys: []NetworkKey{key}, Identity: mustIdentity(t)})
	err := Client(cc, &ClientConfig{NetworkKey: key, ExpectIdentity: mustIdentity(t).Fingerprint()}).Handshake(ctx5s(t))
	if !errors.Is(err, ErrIdentityMismatch) {
		t.Fatalf("got %v, want ErrIdentityMismatch", err)
	}
}

func TestNotAnAgent(t *testing.T) {
	cc, sc := tcpPair(t)
	go func() {
		sc.Read(make([]byte, 512))
		sc.Write([]byte("HTTP/1.1 400 Bad Request\r\n\r\n"))
		sc.Close()
	}()
	err := Client(cc, &ClientConfig{NetworkKey: mustKey(t)}).Handshake(ctx5s(t))
	if !errors.Is(err, ErrNotIFL) {
		t.Fatalf("got %v, want ErrNotIFL", err)
	}
}

func TestSilentPeer(t *testing.T) {
	cc, _ := tcpPair(t)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err := Client(cc, &ClientConfig{NetworkKey: mustKey(t)}).Handshake(ctx)
	if !errors.Is(err, ErrNoAnswer) {
		t.Fatalf("got %v, want ErrNoAnswer", err)
	}
}

type bogusMessage struct{}

func (bogusMessage) Type() MessageType              { return 200 }
func (bogusMessage) MarshalBinary() ([]byte, error) { return []byte("x"), nil }
func (bogusMessage) UnmarshalBinary([]byte) error   { return nil }

func TestUnknownMessageKeepsConnection(t *testing.T) {
	key := mustKey(t)
	cc, sc := tcpPair(t)
	serveOne(t, sc, &ServerConfig{NetworkKeys: []NetworkKey{key}, Identity: mustIdentity(t)})
	c := Client(cc, &ClientConfig{NetworkKey: key})
	ctx := ctx5s(t)
	if err := c.Send(ctx, bogusMessage{}); err != nil {
		t.Fatal(err)
	}
	m, err := c.Receive(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if e, ok := m.(*Error); !ok || e.Code != CodeUnsupported {
		t.Fatalf("got %#v, want an unsupported error", m)
	}
	if _, err := c.Ping(ctx); err != nil {
		t.Fatalf("ping after an unknown message: %v", err)
	}
}

func TestSendTooLarge(t *testing.T) {
	key := mustKey(t)
	cc, sc := tcpPair(t)
	serveOne(t, sc, &ServerConfig{NetworkKeys: []NetworkKey{key}, Identity: mustIdentity(t)})
	c := Client(cc, &ClientConfig{NetworkKey: key})
	big := &PingReply{Facts: Facts{Hostname: string(bytes.Repeat([]byte{'a'}, MaxPayload))}}
	if err := c.Send(ctx5s(t), big); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("got %v, want ErrFrameTooLarge", err)
	}
}

func TestIdentitySurvivesRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state", "agent.key")
	first, created, err := LoadOrCreateIdentity(path)
	if err != nil || !created {
		t.Fatalf("first start: created=%v, %v", created, err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, want 0600", fi.Mode().Perm())
	}
	second, created, err := LoadOrCreateIdentity(path)
	if err != nil || created {
		t.Fatalf("second start: created=%v, %v", created, err)
	}
	if first.Fingerprint() != second.Fingerprint() {
		t.Fatalf("identity changed across restarts: %s, then %s", first.Fingerprint(), second.Fingerprint())
	}
}

func TestKeyFiles(t *testing.T) {
	dir := t.TempDir()
	nk := filepath.Join(dir, "network.key")
	key := mustKey(t)
	if err := WriteKeyFile(nk, key, false); err != nil {
		t.Fatal(err)
	}
	if err := WriteKeyFile(nk, mustKey(t), false); err == nil {
		t.Fatal("overwrote an existing key without being asked")
	}
	got, err := LoadNetworkKey(nk)
	if err != nil || got != key {
		t.Fatalf("load: %v", err)
	}
	if _, err := LoadIdentity(nk); err == nil || err.Error() != "key file "+nk+": this is a network key file, not an agent key" {
		t.Fatalf("agent key from a network key file: got %v", err)
	}
	if _, err := LoadNetworkKey(filepath.Join(dir, "nope")); err == nil || !bytes.Contains([]byte(err.Error()), []byte("ifl keygen")) {
		t.Fatalf("missing key: got %v, want a hint to run ifl keygen", err)
	}
	if err := WriteKeyFile(nk, mustKey(t), true); err != nil {
		t.Fatalf("overwrite with force: %v", err)
	}
}

func TestPingAnswers(t *testing.T) {
	key, id := mustKey(t), mustIdentity(t)
	for _, tc := range []struct {
		name   string
		answer func(context.Context, *Conn) // after reading the ping
		check  func(*testing.T, error)
	}{
		{"hang up", func(context.Context, *Conn) {}, func(t *testing.T, err error) {
			if !errors.Is(err, ErrNoReply) || errors.Is(err, ErrBusy) || !strings.Contains(err.Error(), "closed the connection without answering") || !strings.Contains(err.Error(), "connection limit") {
				t.Errorf("got %v, want ErrNoReply saying what may cause it", err)
			}
		}},
		{"busy", func(ctx context.Context, c *Conn) {
			c.Send(ctx, &Error{Code: CodeBusy, Message: "at its limit"})
		}, func(t *testing.T, err error) {
			if !errors.Is(err, ErrBusy) || errors.Is(err, ErrRejected) || errors.Is(err, ErrNoReply) {
				t.Errorf("got %v, want ErrBusy alone", err)
			}
		}},
		{"error", func(ctx context.Context, c *Conn) {
			c.Send(ctx, &Error{Code: CodeInternal, Message: "collecting facts failed"})
		}, func(t *testing.T, err error) {
			var e *Error
			if !errors.As(err, &e) || *e != (Error{Code: CodeInternal, Message: "collecting facts failed"}) || errors.Is(err, ErrBusy) {
				t.Errorf("got %#v, want the agent's error as is", err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cc, sc := tcpPair(t)
			go func() {
				s := Server(sc, &ServerConfig{NetworkKeys: []NetworkKey{key}, Identity: id})
				defer s.Close()
				ctx := ctx5s(t)
				if _, err := s.Receive(ctx); err == nil {
					tc.answer(ctx, s)
				}
			}()
			_, err := Client(cc, &ClientConfig{NetworkKey: key}).Ping(ctx5s(t))
			tc.check(t, err)
		})
	}
}

func TestServerVerifiedByFirstMessage(t *testing.T) {
	key, id := mustKey(t), mustIdentity(t)
	cc, sc := tcpPair(t)
	s := Server(sc, &ServerConfig{NetworkKeys: []NetworkKey{key}, Identity: id})
	c := Client(cc, &ClientConfig{NetworkKey: key})
	done := make(chan error, 1)
	go func() { done <- c.Handshake(ctx5s(t)) }()
	if err := s.Handshake(ctx5s(t)); err != nil {
		t.Fatal(err)
	}
	if s.Verified() {
		t.Fatal("server verified by the hello alone")
	}
	if err := <-done; err != nil || !c.Verified() {
		t.Fatalf("client after its handshake: verified %v, %v", c.Verified(), err)
	}
	go c.Send(ctx5s(t), &PingRequest{})
	if _, err := s.Receive(ctx5s(t)); err != nil || !s.Verified() {
		t.Fatalf("server after the first message: verified %v, %v", s.Verified(), err)
	}
}
