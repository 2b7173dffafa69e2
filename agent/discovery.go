package agent

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"

	"github.com/ifl-project/ifl/internal/support/netinfo"
	"github.com/ifl-project/ifl/proto"
)

// Discovery limits (see Discovery in package proto).
const (
	// AnswerBurst and AnswerRate bound the answers an agent sends, to
	// every source together. A budget per source address let anyone on
	// the link who holds the network key spend a controller's share by
	// forging its address; a common one can only be spent by a flood of
	// good queries. An answer costs the agent a few microseconds, so the
	// budget costs it well under one percent of a core.
	AnswerBurst = 1000
	AnswerRate  = 1000 // per second
	// queryReplayCapacity bounds the nonces remembered. Only holders of
	// the network key can fill it (a nonce is recorded only for a query
	// that passed every other check and has an answer's budget), and a
	// full filter is not a reason to stay silent: see query.
	queryReplayCapacity = 16384
	// queryLogRate bounds the debug lines about queries, so that a flood
	// of datagrams does not become a flood of logs.
	queryLogRate = 10 // per second
	// linkRefresh is how often at most a link's prefixes are read again
	// for a source that is not in them, so that a flood of queries from
	// elsewhere costs one read a second, and an address added to the link
	// counts within a second.
	linkRefresh = time.Second
	// maxLinks bounds the links whose prefixes are kept.
	maxLinks = 256
)

// DiscoveryStats count what ServeDiscovery did with the datagrams it read.
type DiscoveryStats struct {
	Answered int64
	Dropped  int64
}

// discovery is the agent's state for queries.
type discovery struct {
	replay   *proto.ReplayFilter
	answers  *tokenBucket
	links    *links
	logs     logLimit
	answered atomic.Int64
	dropped  atomic.Int64
}

func newDiscovery() *discovery {
	return &discovery{
		replay:  proto.NewReplayFilter(queryReplayCapacity),
		answers: newTokenBucket(AnswerBurst, AnswerRate),
		links:   hostLinks,
		logs:    logLimit{rate: queryLogRate},
	}
}

// DiscoveryStats returns the counts of ServeDiscovery so far.
func (a *Agent) DiscoveryStats() DiscoveryStats {
	return DiscoveryStats{Answered: a.disc.answered.Load(), Dropped: a.disc.dropped.Load()}
}

// ListenDiscovery opens a UDP socket for ServeDiscovery on addr (":7440":
// IPv4 and IPv6 alike), the kernel told at once to say each datagram's
// TTL or hop limit and the link it came in on. It tells only of what
// arrives after that, and ServeDiscovery drops a query it was not told
// of: a socket opened otherwise loses what came before ServeDiscovery
// started.
func ListenDiscovery(addr string) (*net.UDPConn, error) {
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return nil, err
	}
	c := pc.(*net.UDPConn)
	if err := readHopLimits(c); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// ServeDiscovery answers discovery queries read from pc with the agent's
// TCP port (port) and identity, until ctx is done; then it closes pc and
// returns nil. A datagram that fails any check gets nothing. pc must be a
// *net.UDPConn, whose datagrams' TTL or hop limit the kernel can tell;
// see ListenDiscovery.
func (a *Agent) ServeDiscovery(ctx context.Context, pc net.PacketConn, port int) error {
	defer pc.Close()
	if port < 1 || port > 65535 {
		return errors.New("agent: discovery: the TCP port to announce must be 1-65535")
	}
	udp, ok := pc.(*net.UDPConn)
	if !ok {
		return fmt.Errorf("agent: discovery: a %T is not a UDP socket, whose queries' TTL the agent must check", pc)
	}
	if err := readHopLimits(udp); err != nil {
		return fmt.Errorf("agent: discovery: %w", err)
	}
	a.log.Info().Str("event", "listening").Str("proto", "udp").Str("addr", pc.LocalAddr().String()).Msg("answering discovery queries")
	stop := context.AfterFunc(ctx, func() { pc.Close() })
	defer stop()
	// One byte more than a query, so that a longer datagram shows.
	var buf [proto.QueryLen + 1]byte
	oob := make([]byte, len(ipv4.NewControlMessage(ipv4Flags))+len(ipv6.NewControlMessage(ipv6Flags)))
	var out []byte
	for {
		n, oobn, _, src, err := udp.ReadMsgUDPAddrPort(buf[:], oob)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			a.log.Warn().Str("event", "query_read").Err(err).Msg("reading a query failed")
			continue
		}
		ans, why := a.query(buf[:n], src, parseReceived(src, oob[:oobn]), uint16(port), time.Now())
		if why != "" {
			a.disc.dropped.Add(1)
			a.logQuery(zerolog.DebugLevel, "query_dropped", src, why)
			continue
		}
		out, _ = ans.AppendBinary(out[:0])
		if _, err = udp.WriteToUDPAddrPort(out, src); err != nil {
			a.disc.dropped.Add(1)
			a.logQuery(zerolog.WarnLevel, "query_answer_failed", src, err.Error())
			continue
		}
		a.disc.answered.Add(1)
		a.logQuery(zerolog.DebugLevel, "query_answered", src, "")
	}
}

// What the kernel is asked to tell of each datagram: its TTL or hop limit,
// and the interface it came in on.
const (
	ipv4Flags = ipv4.FlagTTL | ipv4.FlagInterface
	ipv6Flags = ipv6.FlagHopLimit | ipv6.FlagInterface
)

// readHopLimits asks the kernel for ipv4Flags and ipv6Flags with each
// datagram. An IPv4 socket takes the first only, and an IPv6 one both (it
// may receive IPv4 too, as mapped addresses).
func readHopLimits(c *net.UDPConn) error {
	e4 := ipv4.NewPacketConn(c).SetControlMessage(ipv4Flags, true)
	e6 := ipv6.NewPacketConn(c).SetControlMessage(ipv6Flags, true)
	if e4 != nil && e6 != nil {
		return fmt.Errorf("the kernel does not tell queries' TTL (IP_RECVTTL: %v; IPV6_RECVHOPLIMIT: %v)", e4, e6)
	}
	return nil
}

// received is what the kernel told of a datagram; zero where it did not.
type received struct {
	hopLimit int
	ifIndex  int
}

// parseReceived reads the control messages of a datagram from src: IPv4's
// for an IPv4 source, mapped or not, IPv6's for the others.
func parseReceived(src netip.AddrPort, oob []byte) received {
	if src.Addr().Unmap().Is4() {
		var cm ipv4.ControlMessage
		if cm.Parse(oob) == nil {
			return received{hopLimit: cm.TTL, ifIndex: cm.IfIndex}
		}
		return received{}
	}
	var cm ipv6.ControlMessage
	if cm.Parse(oob) == nil {
		return received{hopLimit: cm.HopLimit, ifIndex: cm.IfIndex}
	}
	return received{}
}

// query runs the checks of package proto's Discovery, cheapest first, and
// returns the answer, or why there is none.
func (a *Agent) query(b []byte, src netip.AddrPort, rx received, port uint16, now time.Time) (proto.Answer, string) {
	var q proto.Query
	if err := q.UnmarshalBinary(b); err != nil {
		return proto.Answer{}, err.Error()
	}
	if rx.hopLimit != proto.DiscoveryHopLimit {
		return proto.Answer{}, "TTL or hop limit not 255: sent from beyond this link"
	}
	cur := a.cur.Load()
	k, err := q.Check(cur.discovery, now)
	if err != nil {
		return proto.Answer{}, err.Error()
	}
	ip := src.Addr().Unmap()
	if src.Port() == 0 || !ip.IsValid() || ip.IsUnspecified() || ip.IsMulticast() || ip == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		return proto.Answer{}, "source is not a unicast address and port"
	}
	if !a.disc.links.onLink(rx.ifIndex, ip, now) {
		return proto.Answer{}, "source is not on the link the query came in on"
	}
	if !a.disc.answers.take(now) {
		return proto.Answer{}, "answer budget spent (a flood of good queries)"
	}
	// The nonce is recorded only with an answer's budget, so that the
	// queries refused for the budget do not fill the filter; and a replay
	// gives its token back.
	switch err := a.disc.replay.Check(q.ReplayKey(), q.Expires(), now); {
	case errors.Is(err, proto.ErrReplay):
		a.disc.answers.refund()
		return proto.Answer{}, "replayed nonce"
	case errors.Is(err, proto.ErrReplayFull):
		// Only holders of the network key fill the filter, and they can
		// make fresh queries anyway: staying silent would let them
		// silence the controllers. The query is answered unrecorded,
		// within the budget; a replay of it may be answered again.
	case err != nil:
		a.disc.answers.refund()
		return proto.Answer{}, "query: " + err.Error()
	}
	ans, err := q.Answer(&cur.discovery[k], port, a.fingerprint)
	if err != nil {
		return proto.Answer{}, err.Error()
	}
	return ans, ""
}

// links knows the prefixes of the agent's links, to tell whether a
// query's source is on the link it came in on: the agent answers to that
// source, and must not be made to send to another network.
type links struct {
	mu     sync.Mutex
	known  map[int]linkPrefixes // by interface index
	lookup func(ifIndex int) ([]netip.Prefix, error)
}

// hostLinks are this host's links, for every agent of the process.
var hostLinks = &links{lookup: interfacePrefixes}

type linkPrefixes struct {
	prefixes []netip.Prefix
	read     time.Time
}

func interfacePrefixes(ifIndex int) ([]netip.Prefix, error) {
	ifi, err := net.InterfaceByIndex(ifIndex)
	if err != nil {
		return nil, err
	}
	return netinfo.Prefixes(ifi)
}

// onLink reports whether src is an address of the link with the given
// index: a link-local IPv6 address (it came in on that link, and a
// router forwards none), or one inside a prefix of the link's addresses,
// but for an IPv4 subnet's network and broadcast addresses. The prefixes
// are read again, once per linkRefresh at most, for a source not in them.
func (l *links) onLink(ifIndex int, src netip.Addr, now time.Time) bool {
	if ifIndex <= 0 {
		return false
	}
	if src.Is6() && src.IsLinkLocalUnicast() {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	e, ok := l.known[ifIndex]
	if ok && covers(e.prefixes, src) {
		return true
	}
	if d := now.Sub(e.read); ok && d >= 0 && d < linkRefresh {
		return false
	}
	ps, err := l.lookup(ifIndex)
	if err != nil {
		return false
	}
	if l.known == nil || len(l.known) >= maxLinks {
		l.known = make(map[int]linkPrefixes)
	}
	l.known[ifIndex] = linkPrefixes{prefixes: ps, read: now}
	return covers(ps, src)
}

// covers reports whether a is a host address of one of the prefixes.
func covers(prefixes []netip.Prefix, a netip.Addr) bool {
	for _, p := range prefixes {
		if !p.Contains(a) {
			continue
		}
		if a.Is4() && p.Bits() <= 30 {
			if m := p.Masked(); a == m.Addr() || a == lastAddr(m) {
				continue
			}
		}
		return true
	}
	return false
}

// lastAddr is the broadcast address of an IPv4 prefix.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	v := binary.BigEndian.Uint32(b[:]) | (uint32(1)<<(32-p.Bits()) - 1)
	binary.BigEndian.PutUint32(b[:], v)
	return netip.AddrFrom4(b)
}

// logQuery logs one event about a query, within the log's rate limit; the
// first line after a pause says how many were left out.
func (a *Agent) logQuery(level zerolog.Level, event string, src netip.AddrPort, why string) {
	if a.log.GetLevel() > level || zerolog.GlobalLevel() > level {
		return
	}
	ok, suppressed := a.disc.logs.allow(time.Now())
	if !ok {
		return
	}
	ev := a.log.WithLevel(level).Str("event", event).Str("remote", src.String())
	if why != "" {
		ev = ev.Str("reason", why)
	}
	if suppressed > 0 {
		ev = ev.Int("suppressed", suppressed)
	}
	ev.Msg(event)
}

// logLimit is a token bucket of rate lines a second, a second's worth of
// burst, that counts the lines it refused.
type logLimit struct {
	rate       float64
	mu         sync.Mutex
	tokens     float64
	last       time.Time
	suppressed int
}

func (l *logLimit) allow(now time.Time) (bool, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.last.IsZero() {
		l.tokens = l.rate
	} else {
		l.tokens = min(l.rate, l.tokens+l.rate*now.Sub(l.last).Seconds())
	}
	l.last = now
	if l.tokens < 1 {
		l.suppressed++
		return false, 0
	}
	l.tokens--
	n := l.suppressed
	l.suppressed = 0
	return true, n
}
