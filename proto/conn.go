package proto

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/flynn/noise"
)

// Prologue is mixed into every handshake, so peers of another protocol
// version fail it instead of misreading each other.
const Prologue = "ifl/1"

// MaxSkew is how far a hello's timestamp may be from the agent's clock.
// A hello outside it is dropped, which bounds how long the replay filter must
// remember a hello.
const MaxSkew = 60 * time.Second

// helloLen is the hello payload: a timestamp in Unix nanoseconds.
const helloLen = 8

var cipherSuite = noise.NewCipherSuite(noise.DH25519, noise.CipherChaChaPoly, noise.HashBLAKE2s)

// Handshake errors. Each is wrapped with detail; compare with errors.Is.
var (
	// ErrRejected (client) means the agent closed the connection without
	// answering the hello: the network keys differ, or the clocks are more
	// than MaxSkew apart, or (rarely) the agent dropped the connection
	// under a flood of others still in the handshake. By design the agent
	// does not say which. An agent with no room for a verified
	// connection answers its first request with ErrBusy instead; agents
	// of earlier releases closed such connections here too.
	ErrRejected = errors.New("handshake rejected")
	// ErrIdentityMismatch (client) means the agent authenticated but is not
	// the one the caller expected.
	ErrIdentityMismatch = errors.New("unknown agent identity")
	// ErrNoAnswer (client) means the peer accepted the connection and said
	// nothing before the deadline.
	ErrNoAnswer = errors.New("no answer")
	// ErrNoReply (client) is returned by Ping, Send and Receive after a
	// good handshake when the agent closed the connection instead of
	// answering a request.
	ErrNoReply = errors.New("the agent closed the connection without answering")

	// ErrBadKey (server) means a hello failed authentication: the
	// controller holds another network key, or the bytes were forged.
	ErrBadKey = errors.New("hello failed authentication (wrong network key)")
	// ErrStale (server) means a hello's timestamp is more than MaxSkew away
	// from the agent's clock.
	ErrStale = errors.New("hello timestamp out of range (clock skew or an old replay)")
	// ErrReplay (server) means the hello was seen before.
	ErrReplay = errors.New("replayed hello")
)

// MinIdentityPrefix is the fewest hex digits of a fingerprint that
// ClientConfig.ExpectIdentity may give: 32 bits, as git's abbreviations.
const MinIdentityPrefix = 8

// ClientConfig configures the controller's side of a connection.
type ClientConfig struct {
	NetworkKey NetworkKey
	// ExpectIdentity, if not empty, is the fingerprint the agent must
	// have, or its first MinIdentityPrefix or more hex digits (people copy
	// identities from tables, shortened); another identity, or a shorter
	// prefix, fails the handshake with ErrIdentityMismatch.
	ExpectIdentity string
	// Now is the clock for the hello timestamp; nil means time.Now.
	Now func() time.Time
	// AnnouncePort, if not zero, is sent with every ping: the UDP port
	// where this controller listens for announcements.
	AnnouncePort uint16
}

// ServerConfig configures the agent's side of a connection.
type ServerConfig struct {
	// NetworkKeys are the keys a hello may use; more than one allows key
	// rotation without a flag day.
	NetworkKeys []NetworkKey
	Identity    Identity
	// Replay remembers hellos to drop replays. It must be shared by every
	// connection of one agent; nil disables replay protection.
	Replay *ReplayFilter
	// Now is the clock for the timestamp check; nil means time.Now.
	Now func() time.Time
}

// Conn is one side of an ifl connection over a net.Conn, like tls.Conn: the
// handshake runs on first use or by Handshake, then Send and Receive carry
// encrypted messages. A Conn is not safe for concurrent use.
type Conn struct {
	conn   net.Conn
	client *ClientConfig
	server *ServerConfig
	fr     frameReader

	hsDone   bool
	hsErr    error
	verified bool   // the peer has proved it holds the handshake's keys
	peer     string // agent fingerprint, known to the client after the handshake
	send     *noise.CipherState
	recv     *noise.CipherState
	wbuf     []byte
	pbuf     []byte
	closeMu  sync.Mutex
	closed   bool
	deadline bool // a deadline was set for the current call
}

// Client returns the controller side of c.
func Client(c net.Conn, cfg *ClientConfig) *Conn {
	return &Conn{conn: c, client: cfg, fr: frameReader{r: c}}
}

// Server returns the agent side of c.
func Server(c net.Conn, cfg *ServerConfig) *Conn {
	return &Conn{conn: c, server: cfg, fr: frameReader{r: c}}
}

// PeerIdentity returns the agent's fingerprint after a client handshake.
func (c *Conn) PeerIdentity() string { return c.peer }

// Verified reports whether the peer has proved that it takes part in this
// handshake, not merely that it once held the network key. A client knows
// it when its handshake succeeds. A server knows it only once a transport
// message from the client decrypts: a hello can be replayed by anyone who
// saw it on the wire, but only its sender holds the ephemeral private key
// that the session keys need. Until then a server should hold nothing for
// the peer that a replayed hello could keep from an honest controller.
func (c *Conn) Verified() bool { return c.verified }

// Close closes the underlying connection. It is safe to call more than once.
func (c *Conn) Close() error {
	c.closeMu.Lock()
	defer c.closeMu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	return c.conn.Close()
}

// withContext makes blocking I/O on c honour ctx: its deadline becomes the
// socket deadline, and cancellation unblocks pending reads and writes.
func (c *Conn) withContext(ctx context.Context) (stop func()) {
	if d, ok := ctx.Deadline(); ok {
		c.conn.SetDeadline(d)
		c.deadline = true
	}
	if ctx.Done() == nil {
		return func() {}
	}
	s := context.AfterFunc(ctx, func() { c.conn.SetDeadline(time.Unix(1, 0)) })
	return func() {
		s()
		if c.deadline {
			c.conn.SetDeadline(time.Time{})
			c.deadline = false
		}
	}
}

// ctxErr prefers the context's error over the socket error it caused.
func ctxErr(ctx context.Context, err error) error {
	if err != nil && ctx.Err() != nil && errors.Is(err, os.ErrDeadlineExceeded) {
		return fmt.Errorf("%w: %w", ctx.Err(), err)
	}
	return err
}

// Handshake runs the handshake if it has not run yet. On the server a
// failed hello is never answered: the caller should close the connection.
func (c *Conn) Handshake(ctx context.Context) error {
	if c.hsDone {
		return c.hsErr
	}
	c.hsDone = true
	defer c.withContext(ctx)()
	if c.client != nil {
		c.hsErr = ctxErr(ctx, c.clientHandshake())
	} else {
		c.hsErr = ctxErr(ctx, c.serverHandshake())
	}
	return c.hsErr
}

func (c *Conn) clientHandshake() error {
	cfg := c.client
	hs, err := noise.NewHandshakeState(noise.Config{
		CipherSuite:           cipherSuite,
		Pattern:               noise.HandshakeNX,
		Initiator:             true,
		Prologue:              []byte(Prologue),
		PresharedKey:          cfg.NetworkKey[:],
		PresharedKeyPlacement: 0,
	})
	if err != nil {
		return fmt.Errorf("handshake: %w", err)
	}
	var ts [helloLen]byte
	binary.BigEndian.PutUint64(ts[:], uint64(now(cfg.Now).UnixNano()))
	msg, _, _, err := hs.WriteMessage(nil, ts[:])
	if err != nil {
		return fmt.Errorf("handshake: %w", err)
	}
	if err := c.writeFrame(FrameHello, msg); err != nil {
		return fmt.Errorf("handshake: sending hello: %w", err)
	}
	t, p, err := c.fr.ReadFrame()
	switch {
	case err == nil:
	case errors.Is(err, ErrNotIFL), errors.Is(err, ErrVersion):
		return err
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return fmt.Errorf("%w: the agent closed the connection without answering (wrong network key, clocks more than %v apart, or an agent flooded with connections)", ErrRejected, MaxSkew)
	case errors.Is(err, os.ErrDeadlineExceeded):
		return fmt.Errorf("%w to the hello before the deadline (not an ifl agent, or an overloaded one)", ErrNoAnswer)
	default:
		return fmt.Errorf("handshake: %w", err)
	}
	if t != FrameWelcome {
		return fmt.Errorf("handshake: expected a welcome frame, got %v", t)
	}
	if _, send, recv, err := hs.ReadMessage(nil, p); err != nil {
		return fmt.Errorf("handshake: the agent's answer does not verify: %w", err)
	} else {
		c.send, c.recv = send, recv
	}
	c.peer = Fingerprint(hs.PeerStatic())
	if want := strings.ToLower(cfg.ExpectIdentity); want != "" && (len(want) < MinIdentityPrefix || !strings.HasPrefix(c.peer, want)) {
		return fmt.Errorf("%w: agent is %s, expected %s", ErrIdentityMismatch, c.peer, cfg.ExpectIdentity)
	}
	c.verified = true
	return nil
}

func (c *Conn) serverHandshake() error {
	cfg := c.server
	t, p, err := c.fr.ReadFrame()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("closed before the hello: %w", err)
		}
		return err
	}
	if t != FrameHello {
		return fmt.Errorf("expected a hello frame, got %v", t)
	}
	var hs *noise.HandshakeState
	var payload []byte
	for _, k := range cfg.NetworkKeys {
		st, err := noise.NewHandshakeState(noise.Config{
			CipherSuite:           cipherSuite,
			Pattern:               noise.HandshakeNX,
			Prologue:              []byte(Prologue),
			PresharedKey:          k[:],
			PresharedKeyPlacement: 0,
			StaticKeypair:         noise.DHKey{Private: cfg.Identity.Private[:], Public: cfg.Identity.Public[:]},
		})
		if err != nil {
			return err
		}
		if payload, _, _, err = st.ReadMessage(nil, p); err == nil {
			hs = st
			break
		}
	}
	if hs == nil {
		return ErrBadKey
	}
	if len(payload) < helloLen {
		return fmt.Errorf("hello payload is %d bytes, want at least %d", len(payload), helloLen)
	}
	sent := time.Unix(0, int64(binary.BigEndian.Uint64(payload)))
	nowT := now(cfg.Now)
	if d := nowT.Sub(sent); d > MaxSkew || d < -MaxSkew {
		return fmt.Errorf("%w: %v apart", ErrStale, d.Round(time.Second))
	}
	if cfg.Replay != nil {
		// The initiator's ephemeral key opens the hello and is fresh for
		// every honest handshake.
		if err := cfg.Replay.Check([32]byte(p[:32]), sent.Add(MaxSkew), nowT); err != nil {
			return err
		}
	}
	msg, recv, send, err := hs.WriteMessage(nil, nil)
	if err != nil {
		return err
	}
	// The responder encrypts with the second cipher state.
	c.send, c.recv = send, recv
	return c.writeFrame(FrameWelcome, msg)
}

func now(f func() time.Time) time.Time {
	if f != nil {
		return f()
	}
	return time.Now()
}

func (c *Conn) writeFrame(t FrameType, payload []byte) error {
	var err error
	c.wbuf, err = appendFrame(c.wbuf[:0], t, payload)
	if err != nil {
		return err
	}
	_, err = c.conn.Write(c.wbuf)
	return err
}

// Send encrypts and sends one message, running the handshake first if
// needed.
func (c *Conn) Send(ctx context.Context, m Message) error {
	if err := c.Handshake(ctx); err != nil {
		return err
	}
	defer c.withContext(ctx)()
	b, err := MarshalMessage(m)
	if err != nil {
		return err
	}
	if len(b) > MaxMessage {
		return fmt.Errorf("proto: %w: %v of %d bytes (maximum %d)", ErrFrameTooLarge, m.Type(), len(b), MaxMessage)
	}
	c.pbuf, err = c.send.Encrypt(c.pbuf[:0], nil, b)
	if err != nil {
		return err
	}
	return ctxErr(ctx, c.closedErr(c.writeFrame(FrameTransport, c.pbuf)))
}

// closedErr marks the error of a peer that hung up after the handshake.
func (c *Conn) closedErr(err error) error {
	if c.client != nil && (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)) {
		return fmt.Errorf("proto: %w (it may be stopping, or be an older agent at its connection limit or unable to fit its answer in one frame): %w", ErrNoReply, err)
	}
	return err
}

// Receive reads and decrypts one message, running the handshake first if
// needed. A message of a type this version does not know is returned as an
// error wrapping ErrUnknownMessage; the connection stays usable.
func (c *Conn) Receive(ctx context.Context) (Message, error) {
	if err := c.Handshake(ctx); err != nil {
		return nil, err
	}
	defer c.withContext(ctx)()
	t, p, err := c.fr.ReadFrame()
	if err != nil {
		return nil, ctxErr(ctx, c.closedErr(err))
	}
	if t != FrameTransport {
		return nil, fmt.Errorf("proto: expected a transport frame, got %v", t)
	}
	pt, err := c.recv.Decrypt(c.pbuf[:0], nil, p)
	if err != nil {
		return nil, fmt.Errorf("proto: message does not decrypt: %w", err)
	}
	c.pbuf = pt
	c.verified = true
	return UnmarshalMessage(pt)
}

// Ping asks the agent for its facts. An Error answer is returned as is;
// an agent that hangs up instead of answering gives an error wrapping
// ErrNoReply. Facts the agent cut to fit in a frame say so in Truncated.
func (c *Conn) Ping(ctx context.Context) (*Facts, error) {
	var port uint16
	if c.client != nil {
		port = c.client.AnnouncePort
	}
	if err := c.Send(ctx, &PingRequest{AnnouncePort: port}); err != nil {
		return nil, err
	}
	m, err := c.Receive(ctx)
	if err != nil {
		return nil, err
	}
	switch m := m.(type) {
	case *PingReply:
		return &m.Facts, nil
	case *Error:
		return nil, m
	}
	return nil, fmt.Errorf("proto: agent answered a ping with a %v", m.Type())
}
