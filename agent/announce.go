package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/ifl-project/ifl/proto"
)

// Announcement limits (see Announcements in package proto).
const (
	// MaxControllers bounds the controllers: in agent.yaml.
	MaxControllers = 16
	// maxLearned bounds the controllers learned from verified pings: the
	// source addresses of the latest ones that asked for announcements.
	maxLearned = 8
	// maxAnnounceAddrs bounds the addresses of this host followed: past
	// them, an address that appears is not announced.
	maxAnnounceAddrs = 32
	// AnnounceBurst and AnnounceRate bound the datagrams sent, for every
	// controller together, so that a link that flaps cannot make the
	// agent flood its controllers.
	AnnounceBurst = 64
	AnnounceRate  = 16 // per second
	// resolveTimeout bounds the lookup of a controller named in
	// agent.yaml.
	resolveTimeout = 2 * time.Second
	// announceLogRate bounds the lines about announcements.
	announceLogRate = 10 // per second
)

// announceAfter is when each announcement of an address to a controller
// is sent, counted from the change: at once, then with back-off until the
// controller verifies the agent at that address, 9 datagrams in 64 s.
// The last ones outlast the controller's neighbour entries of a sweep
// just made: when a DHCP server's restart moves more hosts than its
// kernel's table holds beside them, the controller can reach the new
// addresses only once those entries may go (README: Announcements).
var announceAfter = [...]time.Duration{0, 250 * time.Millisecond, 750 * time.Millisecond, 1750 * time.Millisecond, 3750 * time.Millisecond, 7750 * time.Millisecond, 15750 * time.Millisecond, 31750 * time.Millisecond, 63750 * time.Millisecond}

// SplitController parses a controller of agent.yaml: a host name or
// address, with a port or not ("ctl.example.org", "198.18.0.2:7441",
// "[2001:db8::2]:7441", "2001:db8::2"); no port means
// proto.DefaultAnnouncePort.
func SplitController(s string) (host string, port uint16, err error) {
	if a, err := netip.ParseAddr(s); err == nil {
		if err := controllerAddr(s, a); err != nil {
			return "", 0, err
		}
		return a.String(), proto.DefaultAnnouncePort, nil
	}
	host, ps, err := net.SplitHostPort(s)
	if err != nil {
		host, ps = s, ""
	}
	if host == "" || len(host) > 253 {
		return "", 0, fmt.Errorf("controller %q: want a host name or address, with a port or not", s)
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if err := controllerAddr(s, a); err != nil {
			return "", 0, err
		}
		host = a.String()
	}
	port = proto.DefaultAnnouncePort
	if ps != "" {
		p, err := strconv.ParseUint(ps, 10, 16)
		if err != nil || p == 0 {
			return "", 0, fmt.Errorf("controller %q: port %q: want 1-65535", s, ps)
		}
		port = uint16(p)
	}
	return host, port, nil
}

// controllerAddr checks a controller's address, written as s: one
// controller's own, never a group's (a broadcast or multicast address
// would hand every announcement to whoever listens there) nor none.
func controllerAddr(s string, a netip.Addr) error {
	switch {
	case a.Zone() != "":
		return fmt.Errorf("controller %q: a link-local address with a zone cannot be announced to", s)
	case !unicast(a):
		return fmt.Errorf("controller %q: %s is not a unicast address: want the controller's own address, or its host name", s, a)
	}
	return nil
}

// unicast reports whether a is one host's address.
func unicast(a netip.Addr) bool {
	a = a.Unmap()
	return a.IsValid() && !a.IsUnspecified() && !a.IsMulticast() && a != netip.AddrFrom4([4]byte{255, 255, 255, 255})
}

// AnnounceStats count what Announce did.
type AnnounceStats struct {
	Sent   int64 // datagrams sent, or tried
	Failed int64 // of which the kernel refused
	Acked  int64 // announcements a controller verified
	GaveUp int64 // announcements that no verification followed, after every try
}

// AnnounceStats returns the counts of Announce so far.
func (a *Agent) AnnounceStats() AnnounceStats {
	n := a.ann
	return AnnounceStats{Sent: n.sent.Load(), Acked: n.acked.Load(), GaveUp: n.gaveUp.Load(), Failed: n.failed.Load()}
}

// annKey is one address of this host announced to one controller.
type annKey struct {
	local netip.Addr
	to    netip.AddrPort
}

type annState struct {
	start time.Time // when the change was seen
	tries int       // datagrams sent
}

// announcer is the agent's state for announcements.
type announcer struct {
	mu      sync.Mutex
	learned []netip.AddrPort // most recent first
	pending map[annKey]*annState
	wake    chan struct{}

	budget *tokenBucket
	logs   logLimit

	sent, acked, gaveUp, failed atomic.Int64
}

func newAnnouncer() *announcer {
	return &announcer{
		pending: make(map[annKey]*annState),
		wake:    make(chan struct{}, 1),
		budget:  newTokenBucket(AnnounceBurst, AnnounceRate),
		logs:    logLimit{rate: announceLogRate},
	}
}

// verified is told of each ping on a connection from remote to local
// that the controller's first message verified: a controller that asks
// for announcements (port not zero) is remembered, and the
// announcements of local to it are acknowledged.
func (n *announcer) verified(remote netip.Addr, port uint16, local netip.Addr) {
	remote, local = remote.Unmap(), local.Unmap()
	n.mu.Lock()
	defer n.mu.Unlock()
	acked := false
	for k := range n.pending {
		if k.local == local && k.to.Addr() == remote {
			delete(n.pending, k)
			n.acked.Add(1)
			acked = true
		}
	}
	if port != 0 {
		ap := netip.AddrPortFrom(remote, port)
		// Most recent first, one entry per address: a controller that
		// moved its port replaces its old entry.
		n.learned = slices.DeleteFunc(n.learned, func(c netip.AddrPort) bool { return c.Addr() == remote })
		n.learned = slices.Insert(n.learned, 0, ap)
		if len(n.learned) > maxLearned {
			n.learned = n.learned[:maxLearned]
		}
	}
	if acked {
		select {
		case n.wake <- struct{}{}:
		default:
		}
	}
}

// Learned returns the controllers learned from verified pings, most
// recent first.
func (a *Agent) Learned() []netip.AddrPort {
	a.ann.mu.Lock()
	defer a.ann.mu.Unlock()
	return slices.Clone(a.ann.learned)
}

// AnnounceConfig is what Announce follows and where it announces.
type AnnounceConfig struct {
	// Listen is the agent's TCP listener address: its port is announced,
	// and an agent bound to one address announces only that one.
	Listen netip.AddrPort
	// Controllers are agent.yaml's controllers: (SplitController), looked
	// up at each change.
	Controllers []string
	// Addrs lists the addresses of this host the agent can be reached at;
	// nil means those of the interfaces that are up and running.
	Addrs func() ([]netip.Addr, error)
	// Send sends one datagram from local to to; nil means a UDP socket of
	// its own, with local as its source address.
	Send func(local netip.Addr, to netip.AddrPort, b []byte) error
	// Resolve looks a controller's name up; nil means the system's
	// resolver.
	Resolve func(ctx context.Context, host string) ([]netip.Addr, error)
}

// Announce follows this host's addresses and announces each that appears
// to the controllers, from that address, until ctx is done; an address
// that goes makes the agent announce the ones left. events must say when
// the addresses may have changed: see FollowAddrs.
func (a *Agent) Announce(ctx context.Context, cfg AnnounceConfig, events <-chan struct{}) error {
	if cfg.Listen.Port() == 0 {
		return errors.New("agent: announce: the TCP port to announce must be 1-65535")
	}
	if cfg.Addrs == nil {
		cfg.Addrs = reachableAddrs
	}
	if cfg.Send == nil {
		cfg.Send = sendFrom
	}
	if cfg.Resolve == nil {
		cfg.Resolve = func(ctx context.Context, host string) ([]netip.Addr, error) {
			return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		}
	}
	var ctls []configured
	for _, s := range cfg.Controllers {
		host, port, err := SplitController(s)
		if err != nil {
			return fmt.Errorf("agent: announce: %w", err)
		}
		ctls = append(ctls, configured{host, port})
	}
	r := &annRun{a: a, n: a.ann, cfg: cfg, ctls: ctls}
	a.log.Info().Str("event", "announcing").Int("controllers", len(ctls)).Msg("announcing address changes")
	prev := r.addrs()
	// A host that starts on a new address (a reboot, a new lease)
	// announces it to the controllers it was told of.
	r.schedule(ctx, prev, time.Now())
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		r.sendDue(time.Now())
		if d, ok := r.nextDue(time.Now()); ok {
			timer.Reset(d)
		} else {
			timer.Reset(time.Hour)
		}
		select {
		case <-ctx.Done():
			return nil
		case _, ok := <-events:
			if !ok {
				if ctx.Err() != nil {
					return nil
				}
				return errors.New("agent: announce: the kernel's address events stopped")
			}
			cur := r.addrs()
			added, removed := diffAddrs(prev, cur)
			prev = cur
			r.forget(removed)
			now := time.Now()
			switch {
			case len(added) > 0:
				r.schedule(ctx, added, now)
			case len(removed) > 0:
				// An address went and none came: the controllers learn
				// where the host still is.
				r.schedule(ctx, cur, now)
			}
		case <-timer.C:
		case <-r.n.wake:
		}
	}
}

type configured struct {
	host string
	port uint16
}

// annRun is one run of Announce.
type annRun struct {
	a    *Agent
	n    *announcer
	cfg  AnnounceConfig
	ctls []configured
	// resolved is the last answer for each configured name.
	resolved map[string][]netip.Addr
	// followed is what addrs returned last, sorted.
	followed []netip.Addr
}

// addrs lists the addresses to announce, sorted, at most
// maxAnnounceAddrs: past them, those it listed last time are kept
// first, so that a flood of new addresses (router advertisements from a
// rogue router, each prefix one more address) cannot push out those the
// host had.
func (r *annRun) addrs() []netip.Addr {
	as, err := r.cfg.Addrs()
	if err != nil {
		r.logf(zerolog.WarnLevel, "announce_addrs", netip.Addr{}, netip.AddrPort{}, err.Error())
		return nil
	}
	var out []netip.Addr
	for _, a := range as {
		a = a.Unmap()
		if !a.IsGlobalUnicast() || (a.Is6() && a.IsLinkLocalUnicast()) {
			continue
		}
		if l := r.cfg.Listen.Addr().Unmap(); l.IsValid() && !l.IsUnspecified() && l != a {
			continue
		}
		out = append(out, a)
	}
	slices.SortFunc(out, netip.Addr.Compare)
	out = slices.Compact(out)
	if len(out) > maxAnnounceAddrs {
		kept := make([]netip.Addr, 0, maxAnnounceAddrs)
		for _, old := range []bool{true, false} {
			for _, a := range out {
				if _, ok := slices.BinarySearchFunc(r.followed, a, netip.Addr.Compare); ok == old && len(kept) < maxAnnounceAddrs {
					kept = append(kept, a)
				}
			}
		}
		slices.SortFunc(kept, netip.Addr.Compare)
		out = kept
	}
	r.followed = out
	return out
}

// diffAddrs returns what cur has that prev had not, and the reverse;
// both are sorted.
func diffAddrs(prev, cur []netip.Addr) (added, removed []netip.Addr) {
	for _, a := range cur {
		if _, ok := slices.BinarySearchFunc(prev, a, netip.Addr.Compare); !ok {
			added = append(added, a)
		}
	}
	for _, a := range prev {
		if _, ok := slices.BinarySearchFunc(cur, a, netip.Addr.Compare); !ok {
			removed = append(removed, a)
		}
	}
	return added, removed
}

// controllers returns where to announce: the learned controllers, then
// the configured ones, each address once. Names are looked up now, all
// at once, so that a slow resolver delays the announcements by one
// resolveTimeout at most, whatever the number of names; a name whose
// lookup fails keeps its last answer, as the host's resolver may well be
// unreachable just after its address changed.
func (r *annRun) controllers(ctx context.Context) []netip.AddrPort {
	r.n.mu.Lock()
	out := slices.Clone(r.n.learned)
	r.n.mu.Unlock()
	answers := make([][]netip.Addr, len(r.ctls))
	errs := make([]error, len(r.ctls))
	var wg sync.WaitGroup
	for i, c := range r.ctls {
		if a, err := netip.ParseAddr(c.host); err == nil {
			answers[i] = []netip.Addr{a}
			continue
		}
		wg.Go(func() {
			lctx, cancel := context.WithTimeout(ctx, resolveTimeout)
			defer cancel()
			answers[i], errs[i] = r.cfg.Resolve(lctx, c.host)
		})
	}
	wg.Wait()
	if r.resolved == nil {
		r.resolved = map[string][]netip.Addr{}
	}
	for i, c := range r.ctls {
		addrs := answers[i]
		if errs[i] != nil {
			r.logf(zerolog.WarnLevel, "announce_resolve", netip.Addr{}, netip.AddrPort{}, fmt.Sprintf("controller %s: %v", c.host, errs[i]))
			addrs = r.resolved[c.host]
		} else if _, err := netip.ParseAddr(c.host); err != nil {
			r.resolved[c.host] = addrs
		}
		for _, a := range addrs {
			if !unicast(a) {
				// A name that resolves to a group's address.
				continue
			}
			ap := netip.AddrPortFrom(a.Unmap(), c.port)
			if !slices.ContainsFunc(out, func(o netip.AddrPort) bool { return o.Addr() == ap.Addr() }) {
				out = append(out, ap)
			}
		}
	}
	return out
}

// schedule announces each of locals to each controller of its family,
// starting now; an announcement already under way starts again.
func (r *annRun) schedule(ctx context.Context, locals []netip.Addr, now time.Time) {
	if len(locals) == 0 {
		return
	}
	ctls := r.controllers(ctx)
	r.n.mu.Lock()
	defer r.n.mu.Unlock()
	for _, l := range locals {
		for _, c := range ctls {
			if c.Addr().Is4() != l.Is4() || c.Addr() == l {
				continue
			}
			r.n.pending[annKey{l, c}] = &annState{start: now}
		}
	}
}

// forget drops the announcements of addresses that went: they cannot
// be sent from there any more.
func (r *annRun) forget(gone []netip.Addr) {
	if len(gone) == 0 {
		return
	}
	r.n.mu.Lock()
	defer r.n.mu.Unlock()
	for k := range r.n.pending {
		if slices.Contains(gone, k.local) {
			delete(r.n.pending, k)
		}
	}
}

// nextDue is how long until the next datagram is due, if any is.
func (r *annRun) nextDue(now time.Time) (time.Duration, bool) {
	r.n.mu.Lock()
	defer r.n.mu.Unlock()
	var first time.Time
	for _, s := range r.n.pending {
		if t := s.start.Add(announceAfter[s.tries]); first.IsZero() || t.Before(first) {
			first = t
		}
	}
	if first.IsZero() {
		return 0, false
	}
	// A datagram held back by the budget waits for its next token.
	return max(first.Sub(now), time.Second/AnnounceRate), true
}

// sendDue sends the datagrams that are due, within the budget.
func (r *annRun) sendDue(now time.Time) {
	type due struct {
		k annKey
		s *annState
	}
	var out []due
	r.n.mu.Lock()
	for k, s := range r.n.pending {
		if !now.Before(s.start.Add(announceAfter[s.tries])) {
			out = append(out, due{k, s})
		}
	}
	r.n.mu.Unlock()
	slices.SortFunc(out, func(x, y due) int {
		return x.s.start.Add(announceAfter[x.s.tries]).Compare(y.s.start.Add(announceAfter[y.s.tries]))
	})
	key := r.a.cur.Load().announce
	for _, d := range out {
		r.n.mu.Lock()
		still := r.n.pending[d.k] == d.s
		r.n.mu.Unlock()
		if !still {
			continue // acknowledged meanwhile
		}
		if !r.n.budget.take(now) {
			return
		}
		ann, err := proto.NewAnnouncement(&key, r.cfg.Listen.Port(), r.a.fingerprint, now)
		if err != nil {
			r.n.budget.refund()
			return
		}
		b, _ := ann.MarshalBinary()
		r.n.sent.Add(1)
		err = r.cfg.Send(d.k.local, d.k.to, b)
		r.n.mu.Lock()
		if r.n.pending[d.k] == d.s {
			d.s.tries++
			if d.s.tries == len(announceAfter) {
				delete(r.n.pending, d.k)
				r.n.gaveUp.Add(1)
			}
		}
		r.n.mu.Unlock()
		if err != nil {
			r.n.failed.Add(1)
			r.logf(zerolog.InfoLevel, "announce_failed", d.k.local, d.k.to, err.Error())
			continue
		}
		r.logf(zerolog.DebugLevel, "announced", d.k.local, d.k.to, "")
	}
}

// logf logs one event about an announcement, within the log's rate.
func (r *annRun) logf(level zerolog.Level, event string, local netip.Addr, to netip.AddrPort, why string) {
	a := r.a
	if a.log.GetLevel() > level || zerolog.GlobalLevel() > level {
		return
	}
	ok, suppressed := r.n.logs.allow(time.Now())
	if !ok {
		return
	}
	ev := a.log.WithLevel(level).Str("event", event)
	if local.IsValid() {
		ev = ev.Str("from", local.String())
	}
	if to.IsValid() {
		ev = ev.Str("to", to.String())
	}
	if why != "" {
		ev = ev.Str("reason", why)
	}
	if suppressed > 0 {
		ev = ev.Int("suppressed", suppressed)
	}
	ev.Msg(event)
}

// reachableAddrs lists the addresses of the interfaces that are up and
// running, loopback's but.
func reachableAddrs() ([]netip.Addr, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for _, ifi := range ifs {
		if ifi.Flags&net.FlagUp == 0 || ifi.Flags&net.FlagRunning == 0 || ifi.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, err := ifi.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok {
				if ip, ok := netip.AddrFromSlice(n.IP); ok {
					out = append(out, ip.Unmap())
				}
			}
		}
	}
	return out, nil
}
