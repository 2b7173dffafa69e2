package proto

import (
	"bytes"
	"context"
	"net"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// Seeds: frames and messages as this package writes them, plus foreign
// answers seen on agent ports (an HTTP server's 400, an SSH banner).
func frameSeeds(f *testing.F) {
	for _, p := range [][]byte{nil, []byte("x"), bytes.Repeat([]byte{0}, 64)} {
		for _, t := range []FrameType{FrameHello, FrameWelcome, FrameTransport} {
			b, _ := appendFrame(nil, t, p)
			f.Add(b)
		}
	}
	f.Add([]byte("HTTP/1.1 400 Bad Request\r\n\r\n"))
	f.Add([]byte("SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n"))
	f.Add([]byte{'I', 'F', 'L', '\n', 1, 3, 0, 0, 0xff, 0xff, 0xff, 0xff})
}

func FuzzReadFrame(f *testing.F) {
	frameSeeds(f)
	f.Fuzz(func(t *testing.T, in []byte) {
		fr := frameReader{r: bytes.NewReader(in)}
		for i := 0; i < 8; i++ {
			typ, p, err := fr.ReadFrame()
			if err != nil {
				return
			}
			if len(p) > MaxPayload {
				t.Fatalf("payload of %d bytes", len(p))
			}
			// What decodes re-encodes to the same bytes.
			b, err := appendFrame(nil, typ, p)
			if err != nil {
				t.Fatal(err)
			}
			var h Header
			if err := h.UnmarshalBinary(b); err != nil || h.Type != typ || int(h.Length) != len(p) {
				t.Fatalf("re-encoded header %+v, %v", h, err)
			}
		}
	})
}

// truncatedFacts is testFacts as an agent sends them after cutting some.
var truncatedFacts = func() Facts {
	f := testFacts
	f.Truncated = &Truncated{Interfaces: 912, Labels: 5000}
	return f
}()

// factsSeeds are ping reply bodies: this package's own, and JSON that an
// agent of another version, or a compromised one, could send.
var factsSeeds = []string{
	`{}`,
	`null`,
	`{"hostname":"h"}`,
	`{"hostname":"h","truncated":{"interfaces":1}}`,
	`{"hostname":"h","truncated":{}}`,
	`{"hostname":"h","truncated":null,"labels":{}}`,
	`{"hostname":"h","truncated":{"interfaces":-1,"labels":1e3}}`,
	`{"hostname":"h","interfaces":[{"name":"eth0","addrs":["198.18.0.5/24","fe80::1/64","nope",""]}],"default_routes":[{"family":"inet","gateway":"198.18.0.1"}]}`,
	`{"hostname":"h","future_fact":{"nested":[1,2,3]},"time":"2026-01-02T03:04:05.123456789+01:00"}`,
	`{"hostname":"\u001b[31mred\u0007","labels":{"\u0000":"\ud800"}}`,
	`{"hostname":"h","uptime_seconds":9223372036854775807,"interfaces":[{"mtu":-1,"flags":null}]}`,
	`{"hostname":"h","hostname":"twice"}`,
}

// FuzzPingReply decodes arbitrary JSON as a controller decodes a ping
// reply: what decodes must survive a round trip unchanged, and the
// helpers the controller calls on facts must not fail on it.
func FuzzPingReply(f *testing.F) {
	for _, facts := range []Facts{testFacts, truncatedFacts} {
		b, _ := (&PingReply{Facts: facts}).MarshalBinary()
		f.Add(b)
	}
	for _, s := range factsSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		var p PingReply
		if err := p.UnmarshalBinary(in); err != nil {
			return
		}
		p.Facts.Addresses()
		p.Facts.Gateway()
		b, err := p.MarshalBinary()
		if err != nil {
			t.Fatalf("marshal of decoded facts: %v", err)
		}
		var q PingReply
		if err := q.UnmarshalBinary(b); err != nil {
			t.Fatalf("re-decoding re-encoded facts: %v\n%s", err, b)
		}
		if diff := cmp.Diff(p.Facts, q.Facts, cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("round trip changed facts (-first +second):\n%s", diff)
		}
	})
}

func FuzzUnmarshalMessage(f *testing.F) {
	for _, m := range []Message{&PingRequest{}, &PingReply{Facts: testFacts}, &PingReply{Facts: truncatedFacts}, &Error{Code: CodeUnsupported, Message: "no"}} {
		b, _ := MarshalMessage(m)
		f.Add(b)
	}
	f.Add([]byte{2, '{', '}'})
	f.Add([]byte{2, 'n', 'u', 'l', 'l'})
	for _, s := range factsSeeds {
		f.Add(append([]byte{byte(TypePingReply)}, s...))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		m, err := UnmarshalMessage(in)
		if err != nil {
			return
		}
		b, err := MarshalMessage(m)
		if err != nil {
			t.Fatalf("marshal of a decoded %v: %v", m.Type(), err)
		}
		if _, err := UnmarshalMessage(b); err != nil {
			t.Fatalf("re-decoding a re-encoded %v: %v", m.Type(), err)
		}
	})
}

// FuzzServerHello feeds arbitrary bytes to the agent side of a handshake:
// it must fail cleanly and answer nothing.
func FuzzServerHello(f *testing.F) {
	frameSeeds(f)
	key := NetworkKey{1}
	id, _ := identityFromPrivate([KeyLen]byte{2})
	// A genuine hello with a timestamp far in the past, so that the fuzzer
	// starts from bytes that pass authentication.
	c1, c2 := net.Pipe()
	go func() {
		Client(c1, &ClientConfig{NetworkKey: key, Now: func() time.Time { return time.Unix(0, 0) }}).Handshake(context.Background())
		c1.Close()
	}()
	fr := frameReader{r: c2}
	if _, p, err := fr.ReadFrame(); err == nil {
		b, _ := appendFrame(nil, FrameHello, p)
		f.Add(b)
	}
	c2.Close()
	cfg := &ServerConfig{NetworkKeys: []NetworkKey{key}, Identity: id, Replay: NewReplayFilter(0)}
	f.Fuzz(func(t *testing.T, in []byte) {
		rw := &bufConn{r: bytes.NewReader(in)}
		err := Server(rw, cfg).Handshake(context.Background())
		if err != nil && rw.w.Len() != 0 {
			t.Fatalf("failed handshake (%v) wrote %d bytes", err, rw.w.Len())
		}
	})
}

func FuzzKeyText(f *testing.F) {
	nk, _ := NetworkKey{3}.MarshalText()
	ik, _ := Identity{Private: [KeyLen]byte{4}}.MarshalText()
	f.Add(nk)
	f.Add(ik)
	f.Add([]byte("ifl-network-key-v1 AAAA"))
	f.Fuzz(func(t *testing.T, in []byte) {
		var k NetworkKey
		if k.UnmarshalText(in) == nil {
			out, _ := k.MarshalText()
			var k2 NetworkKey
			if err := k2.UnmarshalText(out); err != nil || k2 != k {
				t.Fatalf("round trip: %v", err)
			}
		}
		var id Identity
		_ = id.UnmarshalText(in)
	})
}

// bufConn is a net.Conn over an input reader and an output buffer.
type bufConn struct {
	r *bytes.Reader
	w bytes.Buffer
}

func (c *bufConn) Read(p []byte) (int, error)       { return c.r.Read(p) }
func (c *bufConn) Write(p []byte) (int, error)      { return c.w.Write(p) }
func (c *bufConn) Close() error                     { return nil }
func (c *bufConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *bufConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *bufConn) SetDeadline(time.Time) error      { return nil }
func (c *bufConn) SetReadDeadline(time.Time) error  { return nil }
func (c *bufConn) SetWriteDeadline(time.Time) error { return nil }

// discoverySeeds are datagrams as this package writes them, and what else
// arrives on a UDP port: frames, zeros, a DNS query.
func discoverySeeds(f *testing.F) {
	q, _ := NewQuery(&testDK, testTime)
	qb, _ := q.MarshalBinary()
	a, _ := q.Answer(&testDK, 7440, [16]byte{5})
	ab, _ := a.MarshalBinary()
	f.Add(qb)
	f.Add(ab)
	f.Add(qb[:QueryLen-1])
	f.Add(make([]byte, QueryLen))
	hello, _ := appendFrame(nil, FrameHello, make([]byte, 52))
	f.Add(hello)
	f.Add([]byte("\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example\x03com\x00\x00\x01\x00\x01"))
}

// FuzzQuery decodes arbitrary datagrams as an agent does: what decodes
// re-encodes to the same bytes, and nothing but a query made with the key
// passes Check.
func FuzzQuery(f *testing.F) {
	discoverySeeds(f)
	keys := []DiscoveryKey{testDK}
	f.Fuzz(func(t *testing.T, in []byte) {
		var q Query
		if err := q.UnmarshalBinary(in); err != nil {
			return
		}
		b, _ := q.MarshalBinary()
		if !bytes.Equal(b, in) {
			t.Fatalf("round trip changed the query:\n in %x\nout %x", in, b)
		}
		if _, err := q.Check(keys, time.Unix(0, q.Time)); err == nil {
			// Only the seed made with the key can pass.
			var b2 [QueryLen]byte
			q.put(b2[:])
			if testDK.macOf(b2[:]) != q.MAC {
				t.Fatal("a query with a wrong MAC passed")
			}
		}
	})
}

// FuzzAnswer decodes arbitrary datagrams as a controller does.
func FuzzAnswer(f *testing.F) {
	discoverySeeds(f)
	f.Fuzz(func(t *testing.T, in []byte) {
		var a Answer
		if err := a.UnmarshalBinary(in); err != nil {
			return
		}
		b, _ := a.MarshalBinary()
		if !bytes.Equal(b, in) {
			t.Fatalf("round trip changed the answer:\n in %x\nout %x", in, b)
		}
		if fp, err := a.Open(&testDK, a.Nonce); err == nil && len(fp) != 32 {
			t.Fatalf("opened fingerprint %q", fp)
		}
	})
}

// FuzzAnnouncement decodes arbitrary datagrams as a controller does:
// what decodes re-encodes to the same bytes, and nothing but an
// announcement made with the key opens.
func FuzzAnnouncement(f *testing.F) {
	a, _ := NewAnnouncement(&testAK, 7440, [16]byte{5}, testTime)
	ab, _ := a.MarshalBinary()
	f.Add(ab)
	f.Add(ab[:AnnouncementLen-1])
	discoverySeeds(f)
	keys := []AnnounceKey{testAK}
	f.Fuzz(func(t *testing.T, in []byte) {
		var a Announcement
		if err := a.UnmarshalBinary(in); err != nil {
			return
		}
		b, _ := a.MarshalBinary()
		if !bytes.Equal(b, in) {
			t.Fatalf("round trip changed the announcement:\n in %x\nout %x", in, b)
		}
		if _, err := a.Open(keys, time.Unix(0, a.Time)); err == nil {
			var b2 [AnnouncementLen]byte
			a.put(b2[:])
			if testAK.macOf(b2[:]) != a.MAC {
				t.Fatal("an announcement with a wrong MAC opened")
			}
		}
	})
}
