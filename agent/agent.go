package agent

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/ifl-project/ifl/proto"
)

// Defaults for the zero values of Options.
const (
	DefaultHandshakeTimeout = 5 * time.Second
	DefaultIdleTimeout      = 30 * time.Second
	DefaultMaxConns         = 64
	// DefaultMaxConnsPerSource leaves a key holder with one address an
	// eighth of the verified places; a controller closes its connections
	// after its pings, and opens a few at once at most (its hedges).
	DefaultMaxConnsPerSource = 8
	DefaultMaxPending        = 128
	DefaultMaxFailures       = 30
	// DefaultFactsTTL is how long collected facts answer pings: a burst
	// of controllers costs one collection, and a change (an address, a
	// rename) shows within this time.
	DefaultFactsTTL = time.Second
)

// Options configure an Agent. Zero values mean the defaults above.
type Options struct {
	NetworkKeys []proto.NetworkKey // accepted network keys; at least one
	Identity    proto.Identity
	Labels      map[string]string
	Version     string // reported in facts

	// HandshakeTimeout runs from accept to the controller's first request,
	// which is what verifies a connection (see Conn.Verified in proto).
	HandshakeTimeout time.Duration
	IdleTimeout      time.Duration // between requests of a verified peer
	// MaxConns caps verified connections, and MaxConnsPerSource those
	// of one source address. A connection over a cap takes the place of
	// the least recently active one of its own address (over the
	// address's cap) or of the source holding the most (over the total
	// cap), so that idle connections of one key holder cannot lock out a
	// controller from elsewhere. A connection serving a request keeps its
	// place; when every candidate is, the newcomer's first request is
	// answered with an error of code busy and the connection closed.
	MaxConns          int
	MaxConnsPerSource int
	// MaxPending caps connections that are not verified yet, whether the
	// hello is still to come or the first request. When it is reached one
	// is dropped for the newcomer: of the source holding the most, one
	// still waiting for its hello before a welcomed one, the oldest. So
	// idle sockets and replayed hellos cannot lock a controller out, and
	// a source that floods the agent drops only its own connections.
	MaxPending int
	// MaxFailures is how many failed hellos a source address may send per
	// minute before its connections are closed on accept.
	MaxFailures int

	Logger zerolog.Logger // zero value: no logs
	// Facts builds the ping answer; nil means CollectFacts.
	Facts func(version string, labels map[string]string) (*proto.Facts, error)
	// FactsTTL is how long collected facts are reused (DefaultFactsTTL if
	// zero, never if negative).
	FactsTTL time.Duration
}

// reloadable holds what SIGHUP may change.
type reloadable struct {
	server    *proto.ServerConfig
	labels    map[string]string
	discovery []proto.DiscoveryKey // of server.NetworkKeys, in order
	announce  proto.AnnounceKey    // of the first network key, the current one
}

// Agent answers authenticated pings. Create it with New, run it with Serve.
type Agent struct {
	opts   Options
	log    zerolog.Logger
	replay *proto.ReplayFilter
	cur    atomic.Pointer[reloadable]
	budget *failureBudget

	disc        *discovery
	ann         *announcer
	fingerprint [16]byte // of the identity, for discovery answers

	// quit is cancelled when Serve stops: waits for a hello or a request
	// end at once, replies being written still go out.
	quit    context.Context
	quitNow context.CancelFunc

	cacheMu    sync.Mutex
	cached     *proto.Facts
	cachedAt   time.Time
	cachedFrom *reloadable // the labels the cache was built with

	mu       sync.Mutex
	pending  *list.List // of *conn, oldest first
	waiting  tally      // of pending
	active   map[*conn]struct{}
	verified tally // of active
	wg       sync.WaitGroup
}

type conn struct {
	c      net.Conn
	remote string
	src    netip.Addr
	net    netip.Prefix // see sourceNet
	// ctx ends the handshake of a connection dropped for a newcomer (and
	// every wait when the agent stops).
	ctx    context.Context
	cancel context.CancelFunc

	// Under Agent.mu:
	elem        *list.Element // in pending, nil once verified or evicted
	netN, addrN *int          // counts of the tally it is in
	welcomed    bool          // its hello was answered
	evicted     bool          // dropped for a newcomer
	last        time.Time     // its latest request, once verified
	serving     time.Time     // when the request being served came, zero between requests
}

// New returns an agent. It does not listen yet.
func New(o Options) (*Agent, error) {
	if len(o.NetworkKeys) == 0 {
		return nil, errors.New("agent: no network key")
	}
	if o.HandshakeTimeout <= 0 {
		o.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = DefaultIdleTimeout
	}
	if o.MaxConns <= 0 {
		o.MaxConns = DefaultMaxConns
	}
	if o.MaxConnsPerSource <= 0 {
		o.MaxConnsPerSource = DefaultMaxConnsPerSource
	}
	if o.MaxPending <= 0 {
		o.MaxPending = DefaultMaxPending
	}
	if o.MaxFailures <= 0 {
		o.MaxFailures = DefaultMaxFailures
	}
	if o.Facts == nil {
		o.Facts = CollectFacts
	}
	if o.FactsTTL == 0 {
		o.FactsTTL = DefaultFactsTTL
	}
	a := &Agent{
		opts:     o,
		log:      o.Logger,
		replay:   proto.NewReplayFilter(0),
		budget:   newFailureBudget(o.MaxFailures, time.Minute),
		pending:  list.New(),
		waiting:  newTally(),
		active:   make(map[*conn]struct{}),
		verified: newTally(),
		disc:     newDiscovery(),
		ann:      newAnnouncer(),
	}
	a.fingerprint = proto.FingerprintBytes(o.Identity.Public[:])
	a.quit, a.quitNow = context.WithCancel(context.Background())
	a.Reload(o.NetworkKeys, o.Labels)
	return a, nil
}

// Identity returns the agent's fingerprint.
func (a *Agent) Identity() string { return a.opts.Identity.Fingerprint() }

// Reload replaces the accepted network keys and the labels. Connections
// already verified keep going; new ones see the new values.
func (a *Agent) Reload(keys []proto.NetworkKey, labels map[string]string) {
	dks := make([]proto.DiscoveryKey, len(keys))
	for i, k := range keys {
		dks[i] = k.DiscoveryKey()
	}
	a.cur.Store(&reloadable{
		server:    &proto.ServerConfig{NetworkKeys: keys, Identity: a.opts.Identity, Replay: a.replay},
		labels:    labels,
		discovery: dks,
		announce:  firstAnnounceKey(keys),
	})
}

// Serve accepts connections on ln until ctx is done, then stops accepting,
// drops connections still in the handshake, lets verified ones finish the
// request they are serving, and returns nil. It closes ln.
func (a *Agent) Serve(ctx context.Context, ln net.Listener) error {
	a.log.Info().Str("event", "listening").Str("addr", ln.Addr().String()).Str("identity", a.Identity()).Msg("listening")
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	var err error
	for {
		var c net.Conn
		c, err = ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				err = nil
				break
			}
			if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				// Out of descriptors: wait for connections to close
				// rather than spin.
				a.log.Warn().Str("event", "accept").Err(err).Msg("accept failed; retrying")
				select {
				case <-time.After(100 * time.Millisecond):
					continue
				case <-ctx.Done():
				}
				err = nil
			}
			break
		}
		a.admit(c)
	}
	a.log.Info().Str("event", "stopping").Msg("stopping")
	a.quitNow()
	a.wg.Wait()
	a.log.Info().Str("event", "stopped").Msg("stopped")
	return err
}

func (a *Agent) admit(c net.Conn) {
	remote := c.RemoteAddr().String()
	src := addrOf(c.RemoteAddr())
	if !a.budget.allowed(src, time.Now()) {
		a.log.Warn().Str("event", "refused").Str("remote", remote).Msg("refused: too many failed handshakes from this address")
		c.Close()
		return
	}
	cs := &conn{c: c, remote: remote, src: src, net: sourceNet(src)}
	cs.ctx, cs.cancel = context.WithCancel(a.quit)
	a.mu.Lock()
	var evicted *conn
	if a.pending.Len() >= a.opts.MaxPending {
		evicted = a.pendingVictim()
		a.pending.Remove(evicted.elem)
		a.waiting.remove(evicted)
		evicted.elem = nil
		evicted.evicted = true
	}
	cs.elem = a.pending.PushBack(cs)
	a.waiting.add(cs)
	a.wg.Add(1)
	a.mu.Unlock()
	if evicted != nil {
		a.log.Info().Str("event", "evicted").Str("remote", evicted.remote).Bool("welcomed", evicted.welcomed).
			Int("max_pending", a.opts.MaxPending).Msg("dropped a connection still in the handshake, of the source holding the most, for a newcomer")
		evicted.cancel()
	}
	a.log.Debug().Str("event", "accepted").Str("remote", remote).Msg("accepted")
	go a.handle(cs)
}

// admission is the state of one connection on its way from accept to
// serving requests: how its handshake ended, and the place the agent
// found it among the verified connections.
type admission struct {
	a     *Agent
	cs    *conn
	cur   *reloadable
	pc    *proto.Conn
	first proto.Message // the request that verified the connection
	err   error         // of the handshake or of the first request
	// welcomed tells whether the hello was answered, verified whether
	// the first request came.
	welcomed, verified bool
	evicted            bool  // dropped for a newcomer while pending
	victim             *conn // a verified connection closed for this one
	room               bool  // a place among the verified connections
}

// handle runs one accepted connection: its handshake, its place among the
// verified connections, then its requests.
func (a *Agent) handle(cs *conn) {
	defer a.wg.Done()
	defer cs.c.Close()
	defer cs.cancel()
	cur := a.cur.Load()
	ad := &admission{a: a, cs: cs, cur: cur, pc: proto.Server(cs.c, cur.server)}
	ad.handshake()
	ad.place(time.Now())
	if ad.turnedAway() {
		return
	}
	if victim := ad.victim; victim != nil {
		a.log.Info().Str("event", "evicted").Str("remote", victim.remote).Str("for", cs.remote).
			Msg("closed the least recently active verified connection of the source holding the most, for a newcomer")
		victim.c.Close()
	}
	defer func() {
		a.mu.Lock()
		if !cs.evicted {
			delete(a.active, cs)
			a.verified.remove(cs)
		}
		a.mu.Unlock()
	}()
	a.log.Info().Str("event", "handshake_ok").Str("remote", cs.remote).Msg("handshake ok")
	a.serve(ad.pc, cs, cur, ad.first, ad.err)
}

// handshake runs the handshake and reads the first request, under the
// handshake deadline.
func (ad *admission) handshake() {
	a, cs := ad.a, ad.cs
	// A good hello does not verify the peer: anyone who saw it on its way
	// to this or another agent can replay it within the skew window. The
	// controller's first request does, so until it arrives the connection
	// stays pending, evictable and under the handshake deadline.
	ctx, cancel := context.WithTimeout(cs.ctx, a.opts.HandshakeTimeout)
	ad.err = ad.pc.Handshake(ctx)
	ad.welcomed = ad.err == nil
	if ad.welcomed {
		a.mu.Lock()
		cs.welcomed = true
		a.mu.Unlock()
		a.log.Debug().Str("event", "welcomed").Str("remote", cs.remote).Msg("hello answered")
		ad.first, ad.err = ad.pc.Receive(ctx)
	}
	cancel()
	ad.verified = ad.pc.Verified()
}

// place takes the connection out of the pending ones and, if it was
// verified, finds it a place among the verified ones, evicting one if
// need be; unless it was itself evicted meanwhile.
func (ad *admission) place(now time.Time) {
	a, cs := ad.a, ad.cs
	a.mu.Lock()
	defer a.mu.Unlock()
	ad.evicted = cs.evicted
	if ad.evicted {
		return
	}
	a.pending.Remove(cs.elem)
	a.waiting.remove(cs)
	cs.elem = nil
	if !ad.verified {
		return
	}
	ad.victim, ad.room = a.makeRoom(cs, now)
	if ad.victim != nil {
		delete(a.active, ad.victim)
		a.verified.remove(ad.victim)
		ad.victim.evicted = true
	}
	if ad.room {
		cs.last, cs.serving = now, now
		a.active[cs] = struct{}{}
		a.verified.add(cs)
	}
}

// turnedAway ends a connection that was evicted, not verified, or found
// no place, saying why in the log and, to a welcomed controller, in an
// answer. It reports whether it did.
func (ad *admission) turnedAway() bool {
	a, cs := ad.a, ad.cs
	if ad.evicted {
		// Closed and logged already. A welcomed controller can read an
		// answer, and is told why rather than left to guess at its key.
		if ad.welcomed {
			a.busy(ad.pc, cs.remote, "dropped after the welcome for a newcomer: too many connections in the handshake")
		}
		return true
	}
	if !ad.verified {
		ev := a.log.Info()
		if isAuthFailure(ad.err) {
			a.budget.fail(cs.src, time.Now())
			ev = a.log.Warn()
		} else if errors.Is(ad.err, proto.ErrReplayFull) {
			ev = a.log.Warn()
		}
		ev.Str("event", "handshake_failed").Str("remote", cs.remote).Str("reason", reason(ad.err, ad.welcomed)).Msg("handshake failed")
		return true
	}
	if !ad.room {
		a.log.Warn().Str("event", "refused").Str("remote", cs.remote).Int("max_conns", a.opts.MaxConns).Int("max_conns_per_source", a.opts.MaxConnsPerSource).
			Msg("refused: verified connection limit reached, every connection serving a request; answered busy")
		a.busy(ad.pc, cs.remote, fmt.Sprintf("at its limit of verified connections (%d, %d per source address), all serving requests: try again later", a.opts.MaxConns, a.opts.MaxConnsPerSource))
		return true
	}
	return false
}

// busy answers a connection the agent has no room for, within a short
// deadline: the answer is small, and a peer that does not read it holds
// nothing for longer.
func (a *Agent) busy(pc *proto.Conn, remote, why string) {
	ctx, cancel := context.WithTimeout(context.Background(), a.opts.HandshakeTimeout)
	defer cancel()
	if err := pc.Send(ctx, &proto.Error{Code: proto.CodeBusy, Message: why}); err != nil {
		a.log.Info().Str("event", "reply_failed").Str("remote", remote).Err(err).Msg("busy answer failed")
	}
}

// facts returns the host's facts, collected at most FactsTTL ago with the
// labels of cur, stamped with the time now.
func (a *Agent) facts(cur *reloadable) (*proto.Facts, error) {
	a.cacheMu.Lock()
	defer a.cacheMu.Unlock()
	now := time.Now()
	if a.cached == nil || a.cachedFrom != cur || now.Sub(a.cachedAt) >= a.opts.FactsTTL {
		f, err := a.opts.Facts(a.opts.Version, cur.labels)
		if err != nil {
			return nil, err
		}
		if f, err = fitFacts(f, maxFactsJSON); err != nil {
			return nil, err
		}
		if t := f.Truncated; t != nil {
			a.log.Warn().Str("event", "facts_truncated").Int("interfaces_left_out", t.Interfaces).Int("labels_left_out", t.Labels).
				Int("max_bytes", maxFactsJSON).Msg("facts too large for one frame: some left out of ping replies")
		}
		a.cached, a.cachedAt, a.cachedFrom = f, now, cur
	}
	f := *a.cached
	f.Time = now.UTC().Truncate(time.Millisecond)
	return &f, nil
}

// serve answers requests on a verified connection, starting with the one
// that verified it (m or err), until the peer hangs up, goes idle, or the
// agent stops.
func (a *Agent) serve(pc *proto.Conn, cs *conn, cur *reloadable, m proto.Message, err error) {
	remote := cs.remote
	for first := true; ; first = false {
		if !first {
			a.mu.Lock()
			cs.serving = time.Time{}
			a.mu.Unlock()
			ctx, cancel := context.WithTimeout(a.quit, a.opts.IdleTimeout)
			m, err = pc.Receive(ctx)
			cancel()
			now := time.Now()
			a.mu.Lock()
			cs.last, cs.serving = now, now
			evicted := cs.evicted
			a.mu.Unlock()
			if evicted {
				a.log.Info().Str("event", "closed").Str("remote", remote).Msg("closed: evicted for a newcomer")
				return
			}
		}
		switch {
		case err == nil:
		case errors.Is(err, proto.ErrUnknownMessage):
			a.log.Info().Str("event", "request").Str("remote", remote).Err(err).Msg("unsupported request")
			if err := a.reply(pc, remote, &proto.Error{Code: proto.CodeUnsupported, Message: err.Error()}); err != nil {
				return
			}
			continue
		case errors.Is(err, io.EOF):
			a.log.Info().Str("event", "closed").Str("remote", remote).Msg("closed by peer")
			return
		case a.quit.Err() != nil:
			a.log.Info().Str("event", "closed").Str("remote", remote).Msg("closed: stopping")
			return
		case errors.Is(err, os.ErrDeadlineExceeded):
			a.log.Info().Str("event", "closed").Str("remote", remote).Msg("closed: idle")
			return
		case errors.Is(err, proto.ErrFrameTooLarge):
			a.log.Warn().Str("event", "bad_frame").Str("remote", remote).Err(err).Msg("oversized frame; closing")
			return
		default:
			a.log.Warn().Str("event", "closed").Str("remote", remote).Err(err).Msg("closing after a read error")
			return
		}
		a.log.Info().Str("event", "request").Str("remote", remote).Stringer("type", m.Type()).Msg("request")
		var resp proto.Message
		switch m := m.(type) {
		case *proto.PingRequest:
			// A verified ping: its controller may be told of this
			// host's next address, and it acknowledges an
			// announcement of the address it came to.
			a.ann.verified(cs.src, m.AnnouncePort, addrOf(cs.c.LocalAddr()))
			facts, err := a.facts(cur)
			if err != nil {
				a.log.Error().Str("event", "facts").Err(err).Msg("collecting facts failed")
				msg := "collecting facts failed"
				if errors.Is(err, errFactsTooLarge) {
					msg = "facts do not fit in a frame"
				}
				resp = &proto.Error{Code: proto.CodeInternal, Message: msg}
			} else {
				resp = &proto.PingReply{Facts: *facts}
			}
		default:
			resp = &proto.Error{Code: proto.CodeUnsupported, Message: fmt.Sprintf("%v is not a request", m.Type())}
		}
		if err := a.reply(pc, remote, resp); err != nil {
			return
		}
	}
}

func (a *Agent) reply(pc *proto.Conn, remote string, m proto.Message) error {
	ctx, cancel := context.WithTimeout(context.Background(), a.opts.IdleTimeout)
	defer cancel()
	err := pc.Send(ctx, m)
	if errors.Is(err, proto.ErrFrameTooLarge) {
		// Nothing was sent: say why rather than hang up in silence.
		a.log.Error().Str("event", "reply_failed").Str("remote", remote).Err(err).Msg("reply too large; answering with an error")
		err = pc.Send(ctx, &proto.Error{Code: proto.CodeInternal, Message: fmt.Sprintf("the %v does not fit in a frame", m.Type())})
	}
	if err != nil {
		a.log.Warn().Str("event", "reply_failed").Str("remote", remote).Err(err).Msg("reply failed")
		return err
	}
	a.log.Info().Str("event", "reply").Str("remote", remote).Stringer("type", m.Type()).Msg("reply")
	return nil
}

// isAuthFailure tells a hello (or first message) that was read and refused
// from a peer that merely went silent or hung up, and from a refusal that
// is the agent's own state: only the first spends the source's budget.
func isAuthFailure(err error) bool {
	if errors.Is(err, proto.ErrReplayFull) || errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) || errors.Is(err, io.EOF) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, syscall.ECONNRESET) {
		return false
	}
	return true
}

// reason says why a connection was not verified; welcomed tells whether
// the hello was answered.
func reason(err error, welcomed bool) string {
	switch {
	case errors.Is(err, context.Canceled):
		return "agent stopping"
	case errors.Is(err, os.ErrDeadlineExceeded) && welcomed:
		return "no request after the welcome before the handshake deadline (a replayed hello, or a controller that gave up)"
	case errors.Is(err, os.ErrDeadlineExceeded):
		return "no hello before the handshake deadline"
	case errors.Is(err, net.ErrClosed):
		return "connection closed"
	case welcomed && (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET)):
		return "closed after the welcome without a request"
	case welcomed:
		return "first message after the welcome: " + err.Error()
	}
	return err.Error()
}

func addrOf(a net.Addr) netip.Addr {
	if ta, ok := a.(*net.TCPAddr); ok {
		if ip, ok := netip.AddrFromSlice(ta.IP); ok {
			return ip.Unmap()
		}
	}
	return netip.Addr{}
}

// firstAnnounceKey is the announcement key of the current network key,
// the first; none for none.
func firstAnnounceKey(keys []proto.NetworkKey) proto.AnnounceKey {
	if len(keys) == 0 {
		return proto.AnnounceKey{}
	}
	return keys[0].AnnounceKey()
}
