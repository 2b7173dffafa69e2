// Package announce receives agents' announcements for a watching
// controller (ifl probe --watch --announcements): it checks each datagram
// (package proto, Announcements), bounds what they may cost, and hands
// out the source addresses to verify, in batches. It verifies nothing and
// records nothing itself: engine.Announced does, as any round.
//
//	l := announce.New(announce.Config{Key: key, Port: 7440, Accept: targets.Contains})
//	pc, _ := announce.Listen(":7441")
//	go l.Serve(ctx, pc)
//	for {
//		hints, err := l.Take(ctx)
//		...verify hints' addresses, each after l.Pace, and record them...
//		l.Done(hints)
//	}
package announce

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ifl-project/ifl/proto"
)

// Bounds on what announcements may make a controller do (package proto,
// Announcements).
const (
	// Burst and Rate bound the addresses announcements make the
	// controller verify: a burst of Burst, then Rate a second, for every
	// source together, both where announcements are accepted and where
	// addresses are dialled (Take, Pace), across rounds. The burst
	// covers a segment's worth of agents that all move at once (a DHCP
	// server that restarted).
	Burst = 1024
	Rate  = 100 // per second
	// MaxWaiting bounds the addresses waiting for verification.
	MaxWaiting = 4096
	// replayCapacity bounds the nonces remembered (see proto).
	replayCapacity = 16384
)

// Reason is why an announcement was refused, one word for logs and
// metrics.
type Reason int

// Reasons, in the order the checks run.
const (
	Form   Reason = iota // not an announcement: length, magic, version
	Source               // source not a unicast address and port inside the targets
	Stale                // timestamp outside the skew window
	Key                  // MAC wrong: another network key, or forged
	Port                 // another agent port than the one the controller dials
	Replay               // nonce seen before
	Budget               // no token left in the handshake budget
	Full                 // MaxWaiting addresses already waiting
	nReasons
)

var reasonNames = [nReasons]string{"form", "source", "stale", "key", "port", "replay", "budget", "full"}

func (r Reason) String() string {
	if r >= 0 && r < nReasons {
		return reasonNames[r]
	}
	return "reason" + strconv.Itoa(int(r))
}

// Reasons lists every reason, for metrics that show each from the start.
func Reasons() []Reason {
	out := make([]Reason, nReasons)
	for i := range out {
		out[i] = Reason(i)
	}
	return out
}

// Config is what a Listener accepts.
type Config struct {
	// Key is the network key; announcements are checked with its
	// announcement key.
	Key proto.NetworkKey
	// Port is the agent port the controller dials: an announcement of
	// another is refused.
	Port int
	// Accept tells the addresses the controller watches: an announcement
	// from elsewhere is refused before any cryptography. Required.
	Accept func(netip.Addr) bool
	// Burst and Rate replace the package's bounds, for tests; zero means
	// Burst and Rate.
	Burst, Rate int
}

// Hint is an address to verify, from announcements.
type Hint struct {
	Addr netip.Addr
	// Identity is the fingerprint the latest announcement from Addr
	// claimed, in hex: only the handshake says whose Addr is.
	Identity string
	// At is when the first announcement for Addr, since the last
	// verification there, arrived.
	At time.Time
	// Merged counts the announcements that joined it.
	Merged int
}

// Stats count what a Listener did with the datagrams it read.
type Stats struct {
	Received int64 // datagrams read
	Accepted int64 // announcements that made an address wait for verification
	Merged   int64 // announcements for an address already waiting or under verification
	Refused  [nReasons]int64
}

// Listener checks announcements and keeps the addresses to verify. It
// is safe for concurrent use.
type Listener struct {
	keys   []proto.AnnounceKey
	port   uint16
	accept func(netip.Addr) bool
	replay *proto.ReplayFilter

	mu      sync.Mutex
	budget  bucket // announcements accepted
	dials   bucket // addresses dialled
	burst   int
	waiting map[netip.Addr]*Hint // not taken yet
	busy    map[netip.Addr]bool  // taken: under verification
	ready   chan struct{}        // a word when waiting is not empty

	received, accepted, merged atomic.Int64
	refused                    [nReasons]atomic.Int64
}

// New returns a listener for cfg.
func New(cfg Config) *Listener {
	burst, rate := cfg.Burst, cfg.Rate
	if burst <= 0 {
		burst = Burst
	}
	if rate <= 0 {
		rate = Rate
	}
	return &Listener{
		keys:    []proto.AnnounceKey{cfg.Key.AnnounceKey()},
		port:    uint16(cfg.Port),
		accept:  cfg.Accept,
		replay:  proto.NewReplayFilter(replayCapacity),
		budget:  bucket{burst: float64(burst), rate: float64(rate), tokens: float64(burst)},
		dials:   bucket{burst: float64(burst), rate: float64(rate), tokens: float64(burst)},
		burst:   burst,
		waiting: make(map[netip.Addr]*Hint),
		busy:    make(map[netip.Addr]bool),
		ready:   make(chan struct{}, 1),
	}
}

// ParseAddr parses --announcements' [ADDR]:PORT: no address means every
// address of the host.
func ParseAddr(s string) (netip.AddrPort, error) {
	host, ps, err := net.SplitHostPort(s)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%q: want [ADDR]:PORT, such as :7441 or 198.18.0.2:7441", s)
	}
	p, err := strconv.ParseUint(ps, 10, 16)
	if err != nil || p == 0 {
		return netip.AddrPort{}, fmt.Errorf("%q: port %q: want 1-65535", s, ps)
	}
	var a netip.Addr
	if host != "" {
		if a, err = netip.ParseAddr(host); err != nil {
			return netip.AddrPort{}, fmt.Errorf("%q: %q is not an IP address", s, host)
		}
	}
	return netip.AddrPortFrom(a, uint16(p)), nil
}

// Listen opens the UDP socket for announcements at ap; an invalid
// address means every address, IPv4 and IPv6 alike.
func Listen(ap netip.AddrPort) (*net.UDPConn, error) {
	addr := &net.UDPAddr{Port: int(ap.Port())}
	if ap.Addr().IsValid() {
		addr = net.UDPAddrFromAddrPort(ap)
	}
	return net.ListenUDP("udp", addr)
}

// Serve reads announcements from pc until ctx is done, then closes pc
// and returns nil.
func (l *Listener) Serve(ctx context.Context, pc *net.UDPConn) error {
	defer pc.Close()
	stop := context.AfterFunc(ctx, func() { pc.Close() })
	defer stop()
	// One byte more than an announcement, so that a longer datagram
	// shows.
	var buf [proto.AnnouncementLen + 1]byte
	for {
		n, src, err := pc.ReadFromUDPAddrPort(buf[:])
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			// A read error (an ICMP error queued on the socket) is
			// about one datagram, not the socket.
			continue
		}
		l.Receive(buf[:n], src, time.Now())
	}
}

// Receive takes one datagram from src, read at now: it checks it and,
// if it passes, makes its source address wait for verification. It
// returns whether it did, and if not why.
func (l *Listener) Receive(b []byte, src netip.AddrPort, now time.Time) (Reason, bool) {
	l.received.Add(1)
	r, ok := l.check(b, src, now)
	if !ok {
		l.refused[r].Add(1)
	}
	return r, ok
}

func (l *Listener) check(b []byte, src netip.AddrPort, now time.Time) (Reason, bool) {
	var a proto.Announcement
	if a.UnmarshalBinary(b) != nil {
		return Form, false
	}
	ip := src.Addr().Unmap()
	// Agents announce from global addresses only: a link-local one
	// would need its zone, which a target has not.
	if src.Port() == 0 || !ip.IsValid() || ip.IsUnspecified() || ip.IsMulticast() || ip.IsLinkLocalUnicast() ||
		ip == netip.AddrFrom4([4]byte{255, 255, 255, 255}) || l.accept == nil || !l.accept(ip) {
		return Source, false
	}
	fp, err := a.Open(l.keys, now)
	switch {
	case errors.Is(err, proto.ErrAnnouncementStale):
		return Stale, false
	case err != nil:
		return Key, false
	case a.Port != l.port:
		return Port, false
	}
	switch err := l.replay.Check(a.ReplayKey(), a.Expires(), now); {
	case errors.Is(err, proto.ErrReplay):
		return Replay, false
	case errors.Is(err, proto.ErrReplayFull):
		// Taken unrecorded: only holders of the network key fill the
		// filter, and the budget bounds them all the same.
	case err != nil:
		return Stale, false
	}
	return l.queue(ip, hex.EncodeToString(fp[:]), now)
}

// queue makes ip wait for verification, or joins it to its wait.
func (l *Listener) queue(ip netip.Addr, identity string, now time.Time) (Reason, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if h := l.waiting[ip]; h != nil {
		h.Identity = identity
		h.Merged++
		l.merged.Add(1)
		return 0, true
	}
	if l.busy[ip] {
		// Under verification now: the round under way answers it.
		l.merged.Add(1)
		return 0, true
	}
	if len(l.waiting) >= MaxWaiting {
		return Full, false
	}
	if !l.budget.take(now) {
		return Budget, false
	}
	l.waiting[ip] = &Hint{Addr: ip, Identity: identity, At: now}
	l.accepted.Add(1)
	select {
	case l.ready <- struct{}{}:
	default:
	}
	return 0, true
}

// Take waits until an address waits for verification, or ctx is done,
// and takes the addresses waiting, at most Burst, those waiting longest
// first: they are under verification until Done. Addresses pile up
// while a round runs; taking Burst at most keeps a round within what
// one burst may dial.
func (l *Listener) Take(ctx context.Context) ([]Hint, error) {
	for {
		l.mu.Lock()
		if len(l.waiting) > 0 {
			out := make([]Hint, 0, min(len(l.waiting), l.burst))
			for _, h := range l.waiting {
				out = append(out, *h)
			}
			slices.SortFunc(out, func(a, b Hint) int {
				if c := a.At.Compare(b.At); c != 0 {
					return c
				}
				return a.Addr.Compare(b.Addr)
			})
			out = out[:min(len(out), l.burst)]
			for _, h := range out {
				delete(l.waiting, h.Addr)
				l.busy[h.Addr] = true
			}
			if len(l.waiting) > 0 {
				select {
				case l.ready <- struct{}{}:
				default:
				}
			}
			l.mu.Unlock()
			return out, nil
		}
		l.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-l.ready:
		}
	}
}

// Done ends the verification of hints: their addresses take
// announcements again.
func (l *Listener) Done(hints []Hint) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, h := range hints {
		delete(l.busy, h.Addr)
	}
}

// Pace waits until the controller may dial one more address for
// announcements, or ctx is done: Burst at once, then Rate a second,
// across every round, so that a backlog taken round after round is
// dialled no faster than announcements are accepted. Every address a
// round dials waits for it, once, whatever the connection attempts its
// verification then makes.
func (l *Listener) Pace(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	l.mu.Lock()
	d := l.dials.reserve(time.Now())
	l.mu.Unlock()
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Stats returns the counts so far.
func (l *Listener) Stats() Stats {
	st := Stats{Received: l.received.Load(), Accepted: l.accepted.Load(), Merged: l.merged.Load()}
	for i := range st.Refused {
		st.Refused[i] = l.refused[i].Load()
	}
	return st
}

// RefusedTotal is every refusal, whatever its reason.
func (st Stats) RefusedTotal() int64 {
	var n int64
	for _, v := range st.Refused {
		n += v
	}
	return n
}

// bucket is a token bucket; its owner locks it.
type bucket struct {
	burst, rate, tokens float64
	last                time.Time
}

func (b *bucket) refill(now time.Time) {
	if !b.last.IsZero() && now.After(b.last) {
		b.tokens = min(b.burst, b.tokens+b.rate*now.Sub(b.last).Seconds())
	}
	if now.After(b.last) {
		b.last = now
	}
}

func (b *bucket) take(now time.Time) bool {
	b.refill(now)
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// reserve takes a token at now, ahead of time if none is left, and
// returns how long after now it is due: a waiter that gives up keeps it
// spent, which errs on the side of dialling less.
func (b *bucket) reserve(now time.Time) time.Duration {
	b.refill(now)
	b.tokens--
	if b.tokens >= 0 {
		return 0
	}
	return time.Duration(-b.tokens / b.rate * float64(time.Second))
}
