// Package discover finds ifl agents without trying every address: it sends
// the authenticated discovery query of package proto (Discovery) to each
// IPv4 subnet broadcast address and IPv6 all-nodes address it is given,
// and streams the addresses whose answers verify. It needs no privilege.
//
// An answer is a hint, not a proof: callers verify each address with the
// handshake (package probe), and only that makes it an agent.
//
// A query to the all-nodes address of a link leaves from the link's
// link-local address and again from each of its global IPv6 addresses:
// an agent answers from the address its kernel picks to reach the query's
// source, so its global address answers only a query from a global one.
//
// Queries leave with TTL and hop limit 255 (proto.DiscoveryHopLimit),
// the only one agents answer. A holder of the network key can forge good
// answers from any address, claiming any identity, and every address
// handed on is dialled; so an answer counts only from the link its query
// went out on (Reach), a copy of one answer from another address counts
// once, and a round hands on at most MaxAnswersPerQuery addresses for
// one query and MaxAddrsPerKind of one kind for one claimed identity,
// but for the addresses the caller knows for that identity (Known).
//
//	dests, _ := discover.Destinations("eth0", 7440, true)
//	d := &discover.Discoverer{Key: key}
//	stats, err := d.Run(ctx, dests, out)
package discover

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"

	"github.com/ifl-project/ifl/internal/support/netinfo"
	"github.com/ifl-project/ifl/internal/support/rtt"
	"github.com/ifl-project/ifl/proto"

	"github.com/ifl-project/ifl/internal/support/defaults"
)

// Defaults for the zero values of Discoverer.
const (
	// DefaultFloor is the least a query waits for answers: long enough
	// for agents on a LAN, which answer at once, short enough that an
	// empty segment costs little.
	DefaultFloor = 50 * time.Millisecond
	// DefaultCeiling is the most a query waits, however long answers
	// keep coming.
	DefaultCeiling = time.Second
	// DefaultRetries: broadcast and multicast are lost more easily than
	// unicast, so a second query (new nonce) catches the agents that the
	// first missed.
	DefaultRetries = 1
	// quietRTTs is how many smoothed round trips a query waits after the
	// last answer before it ends.
	quietRTTs = 4
	minQuiet  = 10 * time.Millisecond
)

// AllNodes is the IPv6 link-local all-nodes multicast address.
var AllNodes = netip.MustParseAddr("ff02::1")

// Discoverer sends queries and collects answers.
type Discoverer struct {
	Key proto.NetworkKey
	// Port is the agent port: queries go to it, and answers naming
	// another TCP port are dropped (the prober dials this one).
	Port int
	// Floor and Ceiling bound how long each query waits for answers;
	// between them, it waits quietRTTs smoothed round trips after the
	// last answer. Zero means the defaults.
	Floor, Ceiling time.Duration
	// Retries is how many more queries follow the first; 0 means
	// DefaultRetries, negative none.
	Retries int
	// Accept, if set, says which source addresses may answer; answers
	// from others are dropped. Whatever it says, only an address on the
	// link a query went out on may answer it (see Reach).
	Accept func(netip.Addr) bool
	// Known, if set, says whether an address was verified before as the
	// given identity's: such an answer is handed on past the bounds of
	// MaxAnswersPerQuery and MaxAddrsPerKind, so that forged answers
	// claiming an agent's identity cannot crowd out its own answer from
	// an address where it was found before.
	Known func(identity string, addr netip.Addr) bool
}

// Answer is one address that answered with a good answer.
type Answer struct {
	Addr netip.Addr // with its zone if link-local
	// Identity is the fingerprint the answer claims: a hint until a
	// handshake proves it.
	Identity string
	RTT      time.Duration
}

// Stats count what Run did.
type Stats struct {
	Queries int // datagrams sent
	Answers int // good answers, each address counted once
	Dropped int // datagrams that failed a check, or came from elsewhere
	// Capped counts good answers dropped past MaxAnswersPerQuery or
	// MaxAddrsPerKind: forged ones, on most links.
	Capped int
}

// Destinations returns where to send queries on the named interface: the
// broadcast address of each of its IPv4 subnets (of /30 or shorter), and
// with ipv6 the all-nodes address on it, if it has IPv6.
func Destinations(ifname string, port int, ipv6 bool) ([]netip.AddrPort, error) {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("%s: no such interface (try: ip link)", ifname)
	}
	prefixes, err := netinfo.Prefixes(ifi)
	if err != nil {
		return nil, err
	}
	out := destinations(ifi, prefixes, port, func(p netip.Prefix) bool { return p.Addr().Is4() || ipv6 })
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no IPv4 subnet with a broadcast address, and no IPv6: nowhere to send a query (give targets to sweep instead)", ifname)
	}
	return out, nil
}

// LinkDestinations returns where to send queries to reach the subnets
// that want accepts, on every link that is up but loopback: the
// broadcast address of each such IPv4 subnet (of /30 or shorter), and the
// all-nodes address on each link with such an IPv6 prefix (link-local
// fe80::/64 included). want gets each prefix masked (198.18.0.0/24).
func LinkDestinations(port int, want func(netip.Prefix) bool) ([]netip.AddrPort, error) {
	links, err := netinfo.Links()
	if err != nil {
		return nil, err
	}
	var out []netip.AddrPort
	for _, l := range links {
		if l.Up() {
			out = append(out, destinations(&l.Interface, l.Prefixes, port, want)...)
		}
	}
	return out, nil
}

// destinations returns the destinations on one interface of the prefixes
// that want accepts.
func destinations(ifi *net.Interface, prefixes []netip.Prefix, port int, want func(netip.Prefix) bool) []netip.AddrPort {
	var out []netip.AddrPort
	want6 := false
	for _, p := range prefixes {
		p = p.Masked()
		switch {
		case !p.IsValid() || !want(p):
		case p.Addr().Is4() && ifi.Flags&net.FlagBroadcast != 0 && p.Bits() <= 30:
			out = append(out, netip.AddrPortFrom(Broadcast(p), uint16(port)))
		case p.Addr().Is6():
			want6 = true
		}
	}
	if want6 && ifi.Flags&net.FlagMulticast != 0 {
		out = append(out, netip.AddrPortFrom(AllNodes.WithZone(ifi.Name), uint16(port)))
	}
	return out
}

// Broadcast returns the broadcast address of an IPv4 prefix.
func Broadcast(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]) | host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

type datagram struct {
	b   []byte
	src netip.AddrPort
	at  time.Time
}

// Run sends the queries to dests and sends each address that answers
// well on out, once, as it arrives. It returns when the last query's wait
// is over and every address that answered by then is on out, or when ctx
// is done; it does not close out. A slow reader of out delays nothing:
// answers are verified as they come and queued for it.
func (d *Discoverer) Run(ctx context.Context, dests []netip.AddrPort, out chan<- Answer) (Stats, error) {
	var st Stats
	floor := cmp.Or(max(d.Floor, 0), DefaultFloor)
	ceiling := max(cmp.Or(max(d.Ceiling, 0), DefaultCeiling), floor)
	retries := defaults.Count(d.Retries, DefaultRetries)
	l, err := listen(ctx, dests)
	if err != nil {
		return st, err
	}
	defer l.close()
	links, err := readLinks()
	if err != nil {
		return st, err
	}
	sends, err := withSources(dests, links)
	if err != nil {
		return st, err
	}
	w := &waiter{r: newRound(d, &st), out: out, in: l.in,
		est: rtt.New(rtt.Limits{Initial: ceiling, Floor: minQuiet})}
	for try := 0; try <= retries; try++ {
		start := time.Now()
		if err := w.query(sends, l); err != nil {
			return st, err
		}
		if err := w.await(ctx, start, floor, ceiling); err != nil {
			return st, err
		}
	}
	return st, w.flush(ctx)
}

// listeners are a run's sockets, one per family it queries, and the
// datagrams their readers read.
type listeners struct {
	c4, c6 *net.UDPConn
	in     chan datagram
	// The readers stop with the run, not only with its context: one
	// blocked on a full queue would wait for the context for ever.
	stop    context.CancelFunc
	readers sync.WaitGroup
}

// listen opens the sockets that dests need, each with a reader.
func listen(ctx context.Context, dests []netip.AddrPort) (_ *listeners, err error) {
	rctx, stop := context.WithCancel(ctx)
	l := &listeners{in: make(chan datagram, 256), stop: stop}
	defer func() {
		if err != nil {
			l.close()
		}
	}()
	for _, a := range dests {
		switch {
		case a.Addr().Is4() && l.c4 == nil:
			l.c4, err = l.open(rctx, "udp4")
		case !a.Addr().Is4() && l.c6 == nil:
			l.c6, err = l.open(rctx, "udp6")
		}
		if err != nil {
			return nil, err
		}
	}
	return l, nil
}

// open opens a socket of network, its queries sent with
// proto.DiscoveryHopLimit, and starts its reader.
func (l *listeners) open(ctx context.Context, network string) (*net.UDPConn, error) {
	lc := net.ListenConfig{Control: setBroadcast}
	pc, err := lc.ListenPacket(ctx, network, ":0")
	if err != nil {
		return nil, fmt.Errorf("discover: %s socket: %w", network, err)
	}
	c := pc.(*net.UDPConn)
	// Agents answer only a query that no router forwarded.
	if err := setHopLimit(c, network); err != nil {
		c.Close()
		return nil, fmt.Errorf("discover: %s socket: %w", network, err)
	}
	l.readers.Go(func() {
		for {
			buf := make([]byte, proto.AnswerLen+1)
			n, src, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue
			}
			select {
			case l.in <- datagram{buf[:n], src, time.Now()}:
			case <-ctx.Done():
				return
			}
		}
	})
	return c, nil
}

// close closes the sockets and waits for the readers.
func (l *listeners) close() {
	l.stop()
	for _, c := range []*net.UDPConn{l.c4, l.c6} {
		if c != nil {
			c.Close()
		}
	}
	l.readers.Wait()
}

// waiter sends a run's queries and collects their answers.
type waiter struct {
	r   *round
	out chan<- Answer
	in  <-chan datagram
	// est is the answers' round trip: a query waits quietRTTs of it
	// after the last answer.
	est *rtt.Estimator
	// pending holds the verified addresses not yet taken from out.
	pending []Answer
}

// query sends one query of each send, each with a nonce of its own: an
// agent that hears two (IPv4 and IPv6, or from two sources) takes the
// second for a replay. It fails only if none could be sent.
func (w *waiter) query(sends []send, l *listeners) error {
	ok := 0
	var sendErr error
	for _, snd := range sends {
		q, err := proto.NewQuery(&w.r.dk, time.Now())
		if err != nil {
			return err
		}
		b, _ := q.MarshalBinary()
		w.r.sent[q.Nonce] = &sentQuery{at: time.Now(), seg: snd.seg}
		if err := snd.write(l.c4, l.c6, b); err != nil {
			sendErr = err
			continue
		}
		ok++
		w.r.st.Queries++
	}
	if ok == 0 {
		return sendErr
	}
	return nil
}

// await waits for the answers to the queries sent at start: at least
// floor, at most ceiling, and between the two until quietRTTs round trips
// have passed since the last answer. It hands answers on to out as they
// are verified.
func (w *waiter) await(ctx context.Context, start time.Time, floor, ceiling time.Duration) error {
	end := start.Add(floor)
	timer := time.NewTimer(floor)
	defer timer.Stop()
	for {
		var outCh chan<- Answer
		var next Answer
		if len(w.pending) > 0 {
			outCh, next = w.out, w.pending[0]
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-timer.C:
			return nil
		case outCh <- next:
			w.pending = w.pending[1:]
		case dg := <-w.in:
			if !w.take(dg) {
				continue
			}
			if e := dg.at.Add(max(quietRTTs*w.est.SRTT(), minQuiet)); e.After(end) {
				end = e
				if limit := start.Add(ceiling); e.After(limit) {
					end = limit
				}
				timer.Reset(time.Until(end))
			}
		}
	}
}

// take verifies a datagram and queues a new address; it reports whether
// the datagram was a good answer, and learns its round trip.
func (w *waiter) take(dg datagram) bool {
	a, d, v := w.r.take(dg)
	switch v {
	case fresh:
		w.pending = append(w.pending, a)
	case again:
	default:
		return false
	}
	w.est.Observe(d)
	return true
}

// flush hands on what arrived before the last wait ended, then every
// address still pending.
func (w *waiter) flush(ctx context.Context) error {
	for drained := false; !drained; {
		select {
		case dg := <-w.in:
			w.take(dg)
		default:
			drained = true
		}
	}
	for _, a := range w.pending {
		select {
		case w.out <- a:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// setHopLimit makes c send with proto.DiscoveryHopLimit, to unicast,
// broadcast and multicast destinations alike.
func setHopLimit(c *net.UDPConn, network string) error {
	if network == "udp4" {
		p := ipv4.NewPacketConn(c)
		return errors.Join(p.SetTTL(proto.DiscoveryHopLimit), p.SetMulticastTTL(proto.DiscoveryHopLimit))
	}
	p := ipv6.NewPacketConn(c)
	return errors.Join(p.SetHopLimit(proto.DiscoveryHopLimit), p.SetMulticastHopLimit(proto.DiscoveryHopLimit))
}

// send is one datagram of a round: to dst, from src, or from the
// kernel's choice if src is not valid; seg is where its answers may come
// from.
type send struct {
	dst netip.AddrPort
	src netip.Addr
	seg segment
}

func (snd send) write(c4, c6 *net.UDPConn, b []byte) error {
	var err error
	switch {
	case snd.dst.Addr().Is4():
		_, err = c4.WriteToUDPAddrPort(b, snd.dst)
	case snd.src.IsValid():
		oob := (&ipv6.ControlMessage{Src: snd.src.AsSlice()}).Marshal()
		_, _, err = c6.WriteMsgUDPAddrPort(b, oob, snd.dst)
	default:
		_, err = c6.WriteToUDPAddrPort(b, snd.dst)
	}
	if err != nil {
		if snd.src.IsValid() {
			return fmt.Errorf("discover: query to %v from %v: %w", snd.dst, snd.src, err)
		}
		return fmt.Errorf("discover: query to %v: %w", snd.dst, err)
	}
	return nil
}

// withSources returns the datagrams a round sends to dests: one to each,
// and to a link's all-nodes address one more from each global IPv6
// address of the link.
func withSources(dests []netip.AddrPort, links []link) ([]send, error) {
	out := make([]send, 0, len(dests))
	for _, dst := range dests {
		seg, err := segmentFor(dst.Addr(), links)
		if err != nil {
			return nil, err
		}
		out = append(out, send{dst: dst, seg: seg})
		a := dst.Addr()
		if !a.Is6() || !a.IsLinkLocalMulticast() {
			continue
		}
		for _, src := range globalIPv6(findLink(links, a.Zone()).prefixes) {
			out = append(out, send{dst: dst, src: src, seg: seg})
		}
	}
	return out, nil
}

// globalIPv6 returns the unicast IPv6 addresses among a link's that are
// not link-local, loopback or IPv4-mapped.
func globalIPv6(prefixes []netip.Prefix) []netip.Addr {
	var out []netip.Addr
	for _, p := range prefixes {
		if ip := p.Addr(); ip.Is6() && !ip.Is4In6() && ip.IsGlobalUnicast() {
			out = append(out, ip)
		}
	}
	return out
}
