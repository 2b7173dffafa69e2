package synscan

import (
	"encoding/binary"
	"hash/maphash"
	"math/rand/v2"
	"net/netip"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// cookies derive a probe's source port and sequence number from its
// 4-tuple with a key chosen per scan, so replies are matched without
// remembering what was sent.
type cookies struct {
	seed     maphash.Seed
	portBase uint16
	portN    uint16
}

func newCookies(portBase, portN uint16) cookies {
	return cookies{seed: maphash.MakeSeed(), portBase: portBase, portN: portN}
}

func (c cookies) hash(a, b netip.Addr, x, y uint16) uint64 {
	var buf [36]byte
	a16, b16 := a.As16(), b.As16()
	copy(buf[0:16], a16[:])
	copy(buf[16:32], b16[:])
	binary.BigEndian.PutUint16(buf[32:], x)
	binary.BigEndian.PutUint16(buf[34:], y)
	return maphash.Bytes(c.seed, buf[:])
}

// sport is the source port for probes to t.
func (c cookies) sport(t Target) uint16 {
	return c.portBase + uint16(c.hash(netip.Addr{}, t.Addr, 0, t.Port)%uint64(c.portN))
}

// seq is the sequence number of a probe from src:sport to t.
func (c cookies) seq(src netip.Addr, sport uint16, t Target) uint32 {
	return uint32(c.hash(src, t.Addr, sport, t.Port))
}

// inRange reports whether port is one of the scan's source ports.
func (c cookies) inRange(port uint16) bool {
	return port >= c.portBase && port-c.portBase < c.portN
}

// synBuilder builds SYN segments into one reused buffer, each with the
// checksum of the pseudo-header of the addresses it goes between: the IO
// adds the IP header.
type synBuilder struct {
	buf  gopacket.SerializeBuffer
	opts gopacket.SerializeOptions
	// Pseudo-headers only, over addresses kept here so that setting them
	// allocates nothing.
	ip4        layers.IPv4
	ip6        layers.IPv6
	src, dst   [16]byte
	tcp        layers.TCP
	checksumOn gopacket.NetworkLayer
}

func newSynBuilder() *synBuilder {
	b := &synBuilder{
		buf:  gopacket.NewSerializeBuffer(),
		opts: gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
	}
	// The options Linux sends without timestamps, in its order (mss, nop,
	// nop, sackOK, nop, wscale: 12 bytes, no padding), so that the probe
	// looks like any client's first packet.
	nop := layers.TCPOption{OptionType: layers.TCPOptionKindNop, OptionLength: 1}
	b.tcp = layers.TCP{SYN: true, Window: 64240, Options: []layers.TCPOption{
		{OptionType: layers.TCPOptionKindMSS, OptionLength: 4, OptionData: []byte{0x05, 0xb4}},
		nop, nop,
		{OptionType: layers.TCPOptionKindSACKPermitted, OptionLength: 2},
		nop,
		{OptionType: layers.TCPOptionKindWindowScale, OptionLength: 3, OptionData: []byte{7}},
	}}
	return b
}

// build returns the SYN segment from src:sport to t, valid until the next
// call. src and t.Addr are of one family.
func (b *synBuilder) build(src netip.Addr, sport uint16, t Target, seq uint32) ([]byte, error) {
	var nl gopacket.NetworkLayer
	if src.Is4() {
		s4, d4 := src.As4(), t.Addr.As4()
		copy(b.src[:], s4[:])
		copy(b.dst[:], d4[:])
		b.ip4.SrcIP, b.ip4.DstIP = b.src[:4], b.dst[:4]
		nl = &b.ip4
	} else {
		b.src, b.dst = src.As16(), t.Addr.As16()
		b.ip6.SrcIP, b.ip6.DstIP = b.src[:], b.dst[:]
		nl = &b.ip6
	}
	b.tcp.SrcPort, b.tcp.DstPort = layers.TCPPort(sport), layers.TCPPort(t.Port)
	b.tcp.Seq = seq
	if nl != b.checksumOn {
		if err := b.tcp.SetNetworkLayerForChecksum(nl); err != nil {
			return nil, err
		}
		b.checksumOn = nl
	}
	if err := gopacket.SerializeLayers(b.buf, b.opts, &b.tcp); err != nil {
		return nil, err
	}
	return b.buf.Bytes(), nil
}

// ipv4Framer puts an IPv4 header in front of a segment, for a raw socket
// that sends the header it is given (IPPROTO_RAW).
type ipv4Framer struct {
	buf      gopacket.SerializeBuffer
	ip       layers.IPv4
	src, dst [4]byte
}

func newIPv4Framer() *ipv4Framer {
	return &ipv4Framer{
		buf: gopacket.NewSerializeBuffer(),
		ip:  layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolTCP, Flags: layers.IPv4DontFragment},
	}
}

// frame returns the IPv4 packet that carries seg from src to dst, valid
// until the next call.
func (f *ipv4Framer) frame(seg []byte, src, dst netip.Addr) ([]byte, error) {
	f.src, f.dst = src.As4(), dst.As4()
	f.ip.SrcIP, f.ip.DstIP = f.src[:], f.dst[:]
	f.ip.Id = uint16(rand.Uint32())
	if err := f.buf.Clear(); err != nil {
		return nil, err
	}
	b, err := f.buf.AppendBytes(len(seg))
	if err != nil {
		return nil, err
	}
	copy(b, seg)
	if err := f.ip.SerializeTo(f.buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}); err != nil {
		return nil, err
	}
	return f.buf.Bytes(), nil
}

// ipv4Segment returns the TCP segment an IPv4 packet carries, as a raw
// IPv4 socket reads it, with its addresses; ok is false for anything but
// a whole (unfragmented) IPv4 packet carrying TCP. It allocates nothing.
func ipv4Segment(ip *layers.IPv4, b []byte) (seg []byte, src, dst netip.Addr, ok bool) {
	if err := ip.DecodeFromBytes(b, gopacket.NilDecodeFeedback); err != nil {
		return nil, src, dst, false
	}
	if ip.Protocol != layers.IPProtocolTCP || ip.FragOffset != 0 || ip.Flags&layers.IPv4MoreFragments != 0 {
		return nil, src, dst, false
	}
	src, ok1 := netip.AddrFromSlice(ip.SrcIP)
	dst, ok2 := netip.AddrFromSlice(ip.DstIP)
	if !ok1 || !ok2 {
		return nil, src, dst, false
	}
	return ip.Payload, src, dst, true
}

// reply is the part of a TCP segment a scan looks at.
type reply struct {
	src, dst     netip.Addr
	sport, dport uint16
	ack          uint32
	syn, rst     bool
	hasAck       bool
}

// replyParser decodes TCP segments without allocating.
type replyParser struct {
	tcp layers.TCP
}

// parse decodes seg, a TCP segment from src to dst; ok is false for
// anything but a well-formed TCP header.
func (p *replyParser) parse(seg []byte, src, dst netip.Addr) (r reply, ok bool) {
	if err := p.tcp.DecodeFromBytes(seg, gopacket.NilDecodeFeedback); err != nil {
		return r, false
	}
	return reply{
		src: src.Unmap(), dst: dst.Unmap(),
		sport: uint16(p.tcp.SrcPort), dport: uint16(p.tcp.DstPort),
		ack: p.tcp.Ack, syn: p.tcp.SYN, rst: p.tcp.RST, hasAck: p.tcp.ACK,
	}, true
}

// match tells what a reply says of the probe it answers: Open for a
// SYN-ACK, Closed for a RST, and ok false for anything that does not
// carry the acknowledgement of one of our probes.
func (c cookies) match(r reply) (Target, State, bool) {
	if !c.inRange(r.dport) || !r.hasAck {
		return Target{}, 0, false
	}
	t := Target{Addr: r.src, Port: r.sport}
	if c.sport(t) != r.dport || r.ack != c.seq(r.dst, r.dport, t)+1 {
		return Target{}, 0, false
	}
	switch {
	case r.syn && !r.rst:
		return t, Open, true
	case r.rst:
		return t, Closed, true
	}
	return Target{}, 0, false
}
