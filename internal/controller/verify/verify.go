// Package verify proves which addresses run an ifl agent: for each
// target it opens a TCP connection to the agent port, and where one
// opens, runs the handshake and a ping on that same connection, which
// return the agent's identity and facts. Results stream as they come.
//
// A Verifier alone is the connect() path, which needs no privilege;
// internal/controller/engine puts an ARP sweep and SYN probes before it, so that
// only the hosts with the agent port open are dialled.
package verify

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"syscall"
	"time"

	"github.com/ifl-project/ifl/internal/support/pace"
	"github.com/ifl-project/ifl/proto"

	"github.com/ifl-project/ifl/internal/support/defaults"
)

// Status is what verifying one address found.
type Status int

// Statuses, from best to worst. Only the first five mean the port was open.
const (
	Agent    Status = iota // a verified ifl agent
	Busy                   // a verified ifl agent with no room for another connection: try again later
	Rejected               // an ifl agent (or something) that refused our hello: wrong network key or clock skew
	Mismatch               // an ifl agent whose identity is not the expected one
	NotAgent               // the port is open but speaks another protocol, or nothing
	Closed                 // connection refused
	Filtered               // no answer within the timeout
	Down                   // the host is not there: no ARP reply, or host unreachable
	Failed                 // any other error
)

var statusNames = [...]string{"agent", "busy", "rejected", "identity-mismatch", "not-agent", "closed", "filtered", "down", "error"}

func (s Status) String() string {
	if int(s) < len(statusNames) {
		return statusNames[s]
	}
	return "status" + strconv.Itoa(int(s))
}

// MarshalText makes Status print as its name in JSON and YAML.
func (s Status) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Open reports whether the port answered.
func (s Status) Open() bool { return s <= NotAgent }

// Result is the outcome for one address.
type Result struct {
	Addr     netip.Addr
	Port     int
	Status   Status
	Identity string       // the agent's fingerprint, when it completed the handshake
	Facts    *proto.Facts // for Agent
	Latency  time.Duration
	Err      error // why, for every status but Agent
	// Reason is why, in one word for scripts: "" for Agent, else one of
	// the Reason constants.
	Reason string
	// Also are the other addresses where the same agent (by identity)
	// answered and verified in this probe: one host on IPv4 and IPv6.
	Also []netip.Addr
}

// Reasons: why an address is not a verified agent, one word each, so that
// a script can split a line on blanks.
const (
	ReasonBusy     = "busy"              // Busy
	ReasonWrongKey = "wrong-key-or-skew" // Rejected
	ReasonIdentity = "identity-mismatch" // Mismatch
	ReasonOther    = "other-service"     // NotAgent: another protocol
	ReasonVersion  = "other-version"     // NotAgent: an ifl agent of another protocol version
	ReasonSilent   = "no-answer"         // NotAgent: the port opened and said nothing
	ReasonRefused  = "refused"           // Closed
	ReasonTimeout  = "timeout"           // Filtered
	// Filtered: the host answered discovery, and its TCP port nothing.
	ReasonTCPFiltered = "tcp-filtered"
	ReasonNoARP       = "no-arp-reply" // Down: silent to an ARP sweep
	ReasonUnreach     = "unreachable"  // Down: the kernel or a router said so
	ReasonError       = "error"        // Failed
)

// Defaults for the zero values of Verifier.
const (
	// DefaultTimeout is just past a second: one connect() then includes
	// the kernel's first SYN retransmission and its second ARP probe
	// (both at 1 s), so a single lost packet costs no retry; and an
	// address that never answers is given up after two tries, 2.2 s,
	// just past the kernel's third and last ARP probe (at 2 s).
	DefaultTimeout = 1100 * time.Millisecond
	DefaultRetries = 1
	// DefaultConcurrency is high because on a LAN most dials to an empty
	// address wait out the kernel's three ARP probes (3 s); the pacing
	// below, not this bound, keeps the neighbour table and the wire calm.
	DefaultConcurrency = 1024
	// DefaultRate paces new connections. Each one to an address not yet
	// in the neighbour table makes the kernel broadcast an ARP request,
	// and so do its retries a second later: unpaced, a /24 is a burst of
	// 254 broadcasts, twice, which loses packets on real switches' and
	// virtual bridges' queues alike.
	DefaultRate = 2000
)

// Verifier probes addresses for agents.
type Verifier struct {
	Key  proto.NetworkKey
	Port int
	// Timeout bounds the TCP connect and, separately, the handshake and
	// ping.
	Timeout time.Duration
	// Retries is how many more times an address that did not answer is
	// dialled; 0 means DefaultRetries, negative means none.
	Retries int
	// Concurrency bounds the probes in flight.
	Concurrency int
	// Rate is how many new addresses are dialled per second; 0 means
	// DefaultRate, negative means as fast as Concurrency allows.
	Rate int
	// ExpectIdentity, if set, is the fingerprint the agent must have, or
	// its start (see proto.ClientConfig).
	ExpectIdentity string
	// AnnouncePort, if not zero, is sent with every ping: the UDP port
	// where this controller listens for announcements, which the agent
	// learns to announce its address changes to.
	AnnouncePort uint16
	// Dial opens connections; nil means a net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

func (p *Verifier) retries() int { return defaults.Count(p.Retries, DefaultRetries) }

func (p *Verifier) timeout() time.Duration {
	if p.Timeout > 0 {
		return p.Timeout
	}
	return DefaultTimeout
}

// Run verifies every address and sends one Result per address on out, in
// completion order. It returns when all are done or ctx is cancelled; it
// does not close out.
func (p *Verifier) Run(ctx context.Context, addrs []netip.Addr, out chan<- Result) error {
	in := make(chan Target)
	go func() {
		defer close(in)
		for _, a := range addrs {
			select {
			case in <- Target{Addr: a}:
			case <-ctx.Done():
				return
			}
		}
	}()
	return p.Stream(ctx, in, out)
}

// Target is an address to probe, with the round trip a SYN probe or an
// ARP reply already measured to it (0: none).
type Target struct {
	Addr netip.Addr
	RTT  time.Duration
	// Answered says the host answered on another path in RTT (a
	// discovery query): a port silent for many of those round trips is
	// filtered, not slow, and is given up after them (ConnectRTTs, at
	// least ConnectFloor), not after the Timeout.
	Answered bool
}

// For a target that answered on another path: how many of its round
// trips, and at least how long, its port is given to answer a connection.
// Several hedged connections start within that, so a lost SYN or two do
// not make an open port filtered.
const (
	ConnectRTTs  = 16
	ConnectFloor = 300 * time.Millisecond
)

// connectBy is how long t's port is given to answer a connection; 0: the
// Timeout, and the tries it allows.
func (t Target) connectBy() time.Duration {
	if !t.Answered {
		return 0
	}
	return max(ConnectRTTs*t.RTT, ConnectFloor)
}

// Stream verifies targets as they arrive on in, until in is closed, and
// sends one Result per target on out. A target is verified while later
// ones are still arriving, so a sweep can feed it live hosts as it finds
// them. It does not close out.
func (p *Verifier) Stream(ctx context.Context, in <-chan Target, out chan<- Result) error {
	n := p.Concurrency
	if n <= 0 {
		n = DefaultConcurrency
	}
	rate := p.Rate
	if rate == 0 {
		rate = DefaultRate
	}
	pace.Each(ctx, in, rate, n, func(ctx context.Context, t Target) {
		r := p.one(ctx, t)
		if ctx.Err() != nil && r.Status != Agent {
			return // cut short: not a finding
		}
		select {
		case out <- r:
		case <-ctx.Done():
		}
	})
	return ctx.Err()
}

// Verify connects to one address and, if the port is open, verifies it. An
// address that does not answer, or whose handshake or ping timed out (lost
// packets can outlast TCP's retransmissions), is tried again Retries times
// on a new connection.
func (p *Verifier) Verify(ctx context.Context, a netip.Addr) Result {
	return p.one(ctx, Target{Addr: a})
}

func (p *Verifier) one(ctx context.Context, t Target) Result {
	if t.RTT > 0 {
		return p.hedged(ctx, t, nil)
	}
	// Nothing measured yet: the dial measures the round trip, and the
	// verification on its connection is hedged by it.
	for try := 0; ; try++ {
		start := time.Now()
		c, r, again := p.dial(ctx, t.Addr, time.Time{})
		if c != nil {
			return p.hedged(ctx, Target{Addr: t.Addr, RTT: max(time.Since(start), time.Microsecond)}, &dialled{c, start})
		}
		if !again || try >= p.retries() || ctx.Err() != nil {
			return r
		}
	}
}

// dialled is a connection already open, and when its dial began.
type dialled struct {
	c     net.Conn
	start time.Time
}

// Hedging: where a host's round trip is known, a verification that has
// not finished long after it should have lost a packet, and TCP would
// wait out its retransmission (1 s for a SYN, 200 ms for data) where a
// second connection takes a few round trips. hedgeFloor covers what the
// round trip does not show: the key agreement on both ends and the
// agent's facts, on a busy machine.
//
// A lossy host can lose a packet of the second connection too, and of
// the third: hedges go on, up to hedgeAttempts connections (and the
// retries of one that times out), as a connection is cheap next to a
// second's wait; the first two at that spacing, the next ones each twice
// as long after, so that an agent that is only slow is not asked five
// times at once. At 20% loss a connection loses one of its four packets
// to the host three times in five; of five, all do one time in
// fourteen, and the first of them has sent its lost packet again by
// then (after 10 ms where the kernel allows it, 200 ms elsewhere).
const (
	hedgeRTTs     = 8
	hedgeFloor    = 60 * time.Millisecond
	hedgeAttempts = 5
)

// hedgeAfter is how long an attempt runs before a second one starts: a
// few round trips, at least hedgeFloor, at most half the timeout.
func (p *Verifier) hedgeAfter(rtt time.Duration) time.Duration {
	return min(max(hedgeRTTs*rtt, hedgeFloor), p.timeout()/2)
}

// hedged probes t with attempts on new connections that overlap: the
// first starts at once, the second and third hedgeAfter after the one
// before, each next one twice as long after, or when the last has timed
// out. The first attempt with an answer wins and the others are closed.
// Attempts are hedgeAttempts + Retries in all: the hedges, and the
// retries an attempt that times out would have.
func (p *Verifier) hedged(ctx context.Context, t Target, first *dialled) Result {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // closes the attempts that lost
	type outcome struct {
		r     Result
		again bool
	}
	attempts := hedgeAttempts + p.retries()
	results := make(chan outcome, attempts)
	wait := p.hedgeAfter(t.RTT)
	timer := time.NewTimer(0)
	defer timer.Stop()
	launched, running := 0, 0
	var last Result
	// A host that answered on another path is given connectBy, from the
	// first attempt, for its port to answer: no attempt starts after it.
	var giveUp time.Time
	if by := t.connectBy(); by > 0 {
		giveUp = time.Now().Add(by)
	}
	for {
		select {
		case <-ctx.Done():
			if running > 0 {
				// An attempt that verified as ctx ended is still a
				// finding; the rest say why they stopped.
				o := <-results
				return o.r
			}
			return Result{Addr: t.Addr, Port: p.Port, Status: Failed, Reason: ReasonError, Err: ctx.Err()}
		case <-timer.C:
			if !giveUp.IsZero() && !time.Now().Before(giveUp) {
				if running == 0 {
					return p.silentPort(t, last)
				}
				continue
			}
			launched++
			running++
			go func(first *dialled) {
				var r Result
				var again bool
				if first != nil {
					r = p.verify(ctx, first.c, Result{Addr: t.Addr, Port: p.Port}, first.start)
					again = r.Status != Agent && timedOut(r.Err)
				} else {
					r, again = p.attempt(ctx, t.Addr, giveUp)
				}
				results <- outcome{r, again}
			}(first)
			first = nil
			if launched < attempts {
				timer.Reset(wait)
				if launched >= 2 {
					// Past the first hedge, an agent that has not
					// answered two connections may be slow, not
					// lossy: the next ones come at longer intervals.
					wait *= 2
				}
			}
		case o := <-results:
			running--
			if !o.again {
				return o.r
			}
			last = o.r
			if running == 0 {
				if !giveUp.IsZero() && !time.Now().Before(giveUp) {
					return p.silentPort(t, last)
				}
				if launched == attempts {
					return last
				}
				// Timed out with nothing else running: the next
				// attempt starts now, not at its hedge time.
				timer.Reset(0)
			}
		}
	}
}

// silentPort is the result of a target that answered on another path
// and whose port did not, within its connectBy: last, a timeout, says
// so; any other result stands.
func (p *Verifier) silentPort(t Target, last Result) Result {
	if last.Addr.IsValid() && last.Status != Filtered {
		return last
	}
	return Result{Addr: t.Addr, Port: p.Port, Status: Filtered, Reason: ReasonTCPFiltered,
		Err: fmt.Errorf("it answered discovery in %v, and its TCP port nothing within %v: a firewall that drops the agent's TCP port and lets its UDP port through?", t.RTT.Round(time.Microsecond), t.connectBy())}
}

// attempt dials a once, by giveUp if it is set, and verifies what
// answers; again reports a result that a new connection might change (a
// timeout).
func (p *Verifier) attempt(ctx context.Context, a netip.Addr, giveUp time.Time) (r Result, again bool) {
	start := time.Now()
	c, r, again := p.dial(ctx, a, giveUp)
	if c == nil {
		return r, again
	}
	v := p.verify(ctx, c, r, start)
	return v, v.Status != Agent && timedOut(v.Err)
}

// dial connects to a's port, by giveUp if it is set: the connection, or
// no connection and why (again: a timeout, which another dial might not
// have).
func (p *Verifier) dial(ctx context.Context, a netip.Addr, giveUp time.Time) (net.Conn, Result, bool) {
	r := Result{Addr: a, Port: p.Port}
	dial := p.Dial
	if dial == nil {
		dial = (&net.Dialer{Control: fastRetransmit}).DialContext
	}
	dctx, cancel := context.WithTimeout(ctx, p.timeout())
	if !giveUp.IsZero() {
		cancel()
		dctx, cancel = context.WithDeadline(ctx, earliest(giveUp, time.Now().Add(p.timeout())))
	}
	c, err := dial(dctx, "tcp", netip.AddrPortFrom(a, uint16(p.Port)).String())
	cancel()
	if err == nil {
		return c, r, false
	}
	r.Status, r.Reason, r.Err = classifyDial(err, p.timeout())
	return nil, r, r.Status == Filtered
}

func (p *Verifier) verify(ctx context.Context, c net.Conn, r Result, start time.Time) Result {
	pc := proto.Client(c, &proto.ClientConfig{NetworkKey: p.Key, ExpectIdentity: p.ExpectIdentity, AnnouncePort: p.AnnouncePort})
	defer pc.Close()
	ctx, cancel := context.WithTimeout(ctx, p.timeout())
	defer cancel()
	facts, err := pc.Ping(ctx)
	r.Latency = time.Since(start)
	r.Identity = pc.PeerIdentity()
	if err != nil {
		r.Status, r.Reason = classifyHandshake(err)
		r.Err = err
		return r
	}
	r.Status, r.Facts = Agent, facts
	return r
}

func classifyDial(err error, timeout time.Duration) (Status, string, error) {
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return Closed, ReasonRefused, errors.New("connection refused (no agent listening on that port)")
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return Filtered, ReasonTimeout, fmt.Errorf("no answer within %v (host down, or the port is filtered)", timeout)
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		// The kernel's own ARP probes went unanswered, or a router
		// said so: the host is down, as a silent ARP sweep says.
		return Down, ReasonUnreach, fmt.Errorf("unreachable: %w", err)
	}
	return Failed, ReasonError, err
}

func timedOut(err error) bool {
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, proto.ErrNoAnswer)
}

func classifyHandshake(err error) (Status, string) {
	switch {
	case errors.Is(err, proto.ErrBusy):
		// The agent proved its identity, and has no room: not a
		// rejection, whatever its key.
		return Busy, ReasonBusy
	case errors.Is(err, proto.ErrRejected):
		return Rejected, ReasonWrongKey
	case errors.Is(err, proto.ErrIdentityMismatch):
		return Mismatch, ReasonIdentity
	case errors.Is(err, proto.ErrNotIFL):
		return NotAgent, ReasonOther
	case errors.Is(err, proto.ErrNoAnswer):
		return NotAgent, ReasonSilent
	case errors.Is(err, proto.ErrVersion):
		return NotAgent, ReasonVersion
	case timedOut(err):
		return Failed, ReasonTimeout
	}
	return Failed, ReasonError
}

func earliest(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}
