package agent

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/ifl-project/ifl/proto"
)

// Discovery limits (see Discovery in package proto).
const (
	// QueryBurst and QueryRate bound the answers to one source address:
	// a controller sends two queries a round, one per family.
	QueryBurst = 8
	QueryRate  = 2 // per second
	// queryReplayCapacity bounds the nonces remembered. Only holders of
	// the network key can fill it; when full, new queries go unanswered
	// until entries leave the skew window.
	queryReplayCapacity = 4096
	// queryLogRate bounds the debug lines about queries, so that a flood
	// of datagrams does not become a flood of logs.
	queryLogRate = 10 // per second
)

// DiscoveryStats count what ServeDiscovery did with the datagrams it read.
type DiscoveryStats struct {
	Answered int64
	Dropped  int64
}

// discovery is the agent's state for queries.
type discovery struct {
	replay   *proto.ReplayFilter
	limit    *failureBudget
	logs     logLimit
	answered atomic.Int64
	dropped  atomic.Int64
}

func newDiscovery() *discovery {
	return &discovery{
		replay: proto.NewReplayFilter(queryReplayCapacity),
		limit:  newFailureBudget(QueryBurst, QueryBurst*time.Second/QueryRate),
		logs:   logLimit{rate: queryLogRate},
	}
}

// DiscoveryStats returns the counts of ServeDiscovery so far.
func (a *Agent) DiscoveryStats() DiscoveryStats {
	return DiscoveryStats{Answered: a.disc.answered.Load(), Dropped: a.disc.dropped.Load()}
}

// ServeDiscovery answers discovery queries read from pc with the agent's
// TCP port (port) and identity, until ctx is done; then it closes pc and
// returns nil. A datagram that fails any check gets nothing.
func (a *Agent) ServeDiscovery(ctx context.Context, pc net.PacketConn, port int) error {
	if port < 1 || port > 65535 {
		return errors.New("agent: discovery: the TCP port to announce must be 1-65535")
	}
	a.log.Info().Str("event", "listening").Str("proto", "udp").Str("addr", pc.LocalAddr().String()).Msg("answering discovery queries")
	stop := context.AfterFunc(ctx, func() { pc.Close() })
	defer stop()
	defer pc.Close()
	udp, _ := pc.(*net.UDPConn)
	// One byte more than a query, so that a longer datagram shows.
	var buf [proto.QueryLen + 1]byte
	var out []byte
	for {
		var (
			n   int
			src netip.AddrPort
			err error
		)
		if udp != nil {
			n, src, err = udp.ReadFromUDPAddrPort(buf[:])
		} else {
			var addr net.Addr
			n, addr, err = pc.ReadFrom(buf[:])
			if ua, ok := addr.(*net.UDPAddr); ok {
				src = ua.AddrPort()
			}
		}
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			a.log.Warn().Str("event", "query_read").Err(err).Msg("reading a query failed")
			continue
		}
		ans, why := a.query(buf[:n], src, uint16(port), time.Now())
		if why != "" {
			a.disc.dropped.Add(1)
			a.logQuery(zerolog.DebugLevel, "query_dropped", src, why)
			continue
		}
		out, _ = ans.AppendBinary(out[:0])
		if udp != nil {
			_, err = udp.WriteToUDPAddrPort(out, src)
		} else {
			_, err = pc.WriteTo(out, net.UDPAddrFromAddrPort(src))
		}
		if err != nil {
			a.disc.dropped.Add(1)
			a.logQuery(zerolog.WarnLevel, "query_answer_failed", src, err.Error())
			continue
		}
		a.disc.answered.Add(1)
		a.logQuery(zerolog.DebugLevel, "query_answered", src, "")
	}
}

// query runs the checks of package proto's Discovery, cheapest first, and
// returns the answer, or why there is none.
func (a *Agent) query(b []byte, src netip.AddrPort, port uint16, now time.Time) (proto.Answer, string) {
	var q proto.Query
	if err := q.UnmarshalBinary(b); err != nil {
		return proto.Answer{}, err.Error()
	}
	cur := a.cur.Load()
	k, err := q.Check(cur.discovery, now)
	if err != nil {
		return proto.Answer{}, err.Error()
	}
	if err := a.disc.replay.Check(q.ReplayKey(), q.Expires(), now); errors.Is(err, proto.ErrReplay) {
		return proto.Answer{}, "replayed nonce"
	} else if err != nil {
		return proto.Answer{}, "query: " + err.Error()
	}
	ip := src.Addr().Unmap()
	if src.Port() == 0 || !ip.IsValid() || ip.IsUnspecified() || ip.IsMulticast() || ip == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		return proto.Answer{}, "source is not a unicast address and port"
	}
	if !a.disc.limit.spend(ip, now) {
		return proto.Answer{}, "rate limit of answers to this address"
	}
	ans, err := q.Answer(&cur.discovery[k], port, a.fingerprint)
	if err != nil {
		return proto.Answer{}, err.Error()
	}
	return ans, ""
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
