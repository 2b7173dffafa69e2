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

// synBuilder builds SYN packets (IPv4 header included) into one reused
// buffer.
type synBuilder struct {
	buf  gopacket.SerializeBuffer
	opts gopacket.SerializeOptions
	ip   layers.IPv4
	tcp  layers.TCP
}

func newSynBuilder() *synBuilder {
	b := &synBuilder{
		buf:  gopacket.NewSerializeBuffer(),
		opts: gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
	}
	b.ip = layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolTCP, Flags: layers.IPv4DontFragment}
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

// build returns the packet, valid until the next call.
func (b *synBuilder) build(src netip.Addr, sport uint16, t Target, seq uint32) ([]byte, error) {
	b.ip.SrcIP, b.ip.DstIP = src.AsSlice(), t.Addr.AsSlice()
	b.ip.Id = uint16(rand.Uint32())
	b.tcp.SrcPort, b.tcp.DstPort = layers.TCPPort(sport), layers.TCPPort(t.Port)
	b.tcp.Seq = seq
	if err := b.tcp.SetNetworkLayerForChecksum(&b.ip); err != nil {
		return nil, err
	}
	if err := gopacket.SerializeLayers(b.buf, b.opts, &b.ip, &b.tcp); err != nil {
		return nil, err
	}
	return b.buf.Bytes(), nil
}

// reply is the part of a TCP packet a scan looks at.
type reply struct {
	src, dst     netip.Addr
	sport, dport uint16
	ack          uint32
	syn, rst     bool
	hasAck       bool
}

// replyParser decodes IPv4+TCP packets without allocating.
type replyParser struct {
	parser  *gopacket.DecodingLayerParser
	ip      layers.IPv4
	tcp     layers.TCP
	decoded []gopacket.LayerType
}

func newReplyParser() *replyParser {
	p := &replyParser{decoded: make([]gopacket.LayerType, 0, 2)}
	p.parser = gopacket.NewDecodingLayerParser(layers.LayerTypeIPv4, &p.ip, &p.tcp)
	p.parser.IgnoreUnsupported = true
	return p
}

// parse decodes b, an IPv4 packet as a raw socket returns it; ok is false
// for anything but a well-formed IPv4 TCP packet.
func (p *replyParser) parse(b []byte) (r reply, ok bool) {
	if err := p.parser.DecodeLayers(b, &p.decoded); err != nil {
		return r, false
	}
	if len(p.decoded) != 2 || p.decoded[1] != layers.LayerTypeTCP {
		return r, false
	}
	src, ok1 := netip.AddrFromSlice(p.ip.SrcIP)
	dst, ok2 := netip.AddrFromSlice(p.ip.DstIP)
	if !ok1 || !ok2 {
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
