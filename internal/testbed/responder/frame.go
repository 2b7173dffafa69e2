package responder

import (
	"encoding/binary"
)

// Kind is what a decoded frame asks of a host.
type Kind uint8

// Kinds of frames a host answers; every other frame is None.
const (
	None       Kind = iota
	ARPRequest      // an ARP request for an IPv4 address (a probe from 0.0.0.0 too)
	TCPSyn          // an IPv4 TCP segment with SYN set and ACK, RST and FIN clear
)

// Frame is what Decode read from an Ethernet frame: the fields a reply is
// built from.
type Frame struct {
	Kind   Kind
	DstMAC [6]byte // the Ethernet header's
	SrcMAC [6]byte
	// ARP: the sender's hardware and protocol addresses, and the
	// address asked for.
	SenderMAC [6]byte
	SenderIP  [4]byte
	TargetIP  [4]byte
	// TCP: the addresses and ports of the segment, its sequence number.
	SrcIP, DstIP     [4]byte
	SrcPort, DstPort uint16
	Seq              uint32
}

// Ethernet, ARP, IPv4 and TCP constants the frames use.
const (
	ethLen       = 14
	arpLen       = 28
	etherTypeARP = 0x0806
	etherTypeIP  = 0x0800
	arpRequest   = 1
	arpReply     = 2
	ipLen        = 20
	tcpLen       = 20
	protoTCP     = 6
	flagFIN      = 0x01
	flagSYN      = 0x02
	flagRST      = 0x04
	flagACK      = 0x10
	ipDF         = 0x4000
	ipMF         = 0x2000
	ipOffMask    = 0x1fff
	// synAckMSS is the MSS a SYN-ACK offers, a 1500-byte link's; its
	// window is Linux's first (ten such segments, rounded down to a
	// multiple of the MSS below 64 KiB).
	synAckMSS    = 1460
	synAckWindow = 64240
	ttl          = 64
)

// MaxReply is the longest frame a reply needs: a SYN-ACK with its MSS
// option.
const MaxReply = ethLen + ipLen + tcpLen + 4

// Decode reads an ARP request or a TCP SYN from frame b into f, and
// reports whether it is one. Every length is checked against b; the IPv4
// header's checksum must be right, and so must the TCP checksum when
// csumReady (a frame from a local sender may leave the kernel with it
// still to compute: the packet socket says so). Fragments, IP options
// past the header's length, VLAN tags and everything else are None.
func Decode(b []byte, csumReady bool, f *Frame) bool {
	f.Kind = None
	if len(b) < ethLen {
		return false
	}
	copy(f.DstMAC[:], b[0:6])
	copy(f.SrcMAC[:], b[6:12])
	switch binary.BigEndian.Uint16(b[12:14]) {
	case etherTypeARP:
		return decodeARP(b[ethLen:], f)
	case etherTypeIP:
		return decodeSYN(b[ethLen:], csumReady, f)
	}
	return false
}

func decodeARP(a []byte, f *Frame) bool {
	if len(a) < arpLen {
		return false
	}
	// Ethernet hardware, IPv4 protocol, 6- and 4-byte addresses.
	if binary.BigEndian.Uint16(a[0:2]) != 1 || binary.BigEndian.Uint16(a[2:4]) != etherTypeIP || a[4] != 6 || a[5] != 4 {
		return false
	}
	if binary.BigEndian.Uint16(a[6:8]) != arpRequest {
		return false
	}
	copy(f.SenderMAC[:], a[8:14])
	copy(f.SenderIP[:], a[14:18])
	copy(f.TargetIP[:], a[24:28])
	f.Kind = ARPRequest
	return true
}

func decodeSYN(ip []byte, csumReady bool, f *Frame) bool {
	if len(ip) < ipLen || ip[0]>>4 != 4 {
		return false
	}
	hl := int(ip[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(ip[2:4]))
	// A frame may be longer than its packet (padding), never shorter.
	if hl < ipLen || total < hl || total > len(ip) {
		return false
	}
	if checksum(ip[:hl], 0) != 0 {
		return false
	}
	if frag := binary.BigEndian.Uint16(ip[6:8]); frag&ipMF != 0 || frag&ipOffMask != 0 {
		return false
	}
	if ip[9] != protoTCP {
		return false
	}
	tcp := ip[hl:total]
	if len(tcp) < tcpLen {
		return false
	}
	if off := int(tcp[12]>>4) * 4; off < tcpLen || off > len(tcp) {
		return false
	}
	if fl := tcp[13]; fl&flagSYN == 0 || fl&(flagACK|flagRST|flagFIN) != 0 {
		return false
	}
	var src, dst [4]byte
	copy(src[:], ip[12:16])
	copy(dst[:], ip[16:20])
	if csumReady && checksum(tcp, pseudoSum(src, dst, len(tcp))) != 0 {
		return false
	}
	f.SrcIP, f.DstIP = src, dst
	f.SrcPort = binary.BigEndian.Uint16(tcp[0:2])
	f.DstPort = binary.BigEndian.Uint16(tcp[2:4])
	f.Seq = binary.BigEndian.Uint32(tcp[4:8])
	f.Kind = TCPSyn
	return true
}

// ARPReply writes into out (MaxReply bytes at least) the reply of the host
// at ip, mac to the request req, as Linux makes it: to the asker's
// hardware address, from the host's, and returns its length.
func ARPReply(out []byte, mac [6]byte, ip [4]byte, req *Frame) int {
	b := out[:ethLen+arpLen]
	copy(b[0:6], req.SenderMAC[:])
	copy(b[6:12], mac[:])
	binary.BigEndian.PutUint16(b[12:14], etherTypeARP)
	a := b[ethLen:]
	binary.BigEndian.PutUint16(a[0:2], 1)
	binary.BigEndian.PutUint16(a[2:4], etherTypeIP)
	a[4], a[5] = 6, 4
	binary.BigEndian.PutUint16(a[6:8], arpReply)
	copy(a[8:14], mac[:])
	copy(a[14:18], ip[:])
	copy(a[18:24], req.SenderMAC[:])
	copy(a[24:28], req.SenderIP[:])
	return len(b)
}

// SynAck writes into out the SYN-ACK of the host with mac to the SYN req
// (an open port), with initial sequence number isn, and returns its
// length. It goes back to the MAC the SYN came from.
func SynAck(out []byte, mac [6]byte, req *Frame, isn uint32) int {
	opts := []byte{2, 4, synAckMSS >> 8, synAckMSS & 0xff} // MSS
	return tcpReply(out, mac, req, isn, flagSYN|flagACK, synAckWindow, opts)
}

// Reset writes into out the reset of the host with mac to the SYN req (a
// closed port), as Linux's: sequence 0, acknowledging the SYN, window 0;
// it returns its length.
func Reset(out []byte, mac [6]byte, req *Frame) int {
	return tcpReply(out, mac, req, 0, flagRST|flagACK, 0, nil)
}

func tcpReply(out []byte, mac [6]byte, req *Frame, seq uint32, flags byte, window uint16, opts []byte) int {
	tl := tcpLen + len(opts)
	b := out[:ethLen+ipLen+tl]
	copy(b[0:6], req.SrcMAC[:])
	copy(b[6:12], mac[:])
	binary.BigEndian.PutUint16(b[12:14], etherTypeIP)
	ip := b[ethLen : ethLen+ipLen]
	ip[0], ip[1] = 0x45, 0
	binary.BigEndian.PutUint16(ip[2:4], uint16(ipLen+tl))
	binary.BigEndian.PutUint16(ip[4:6], 0) // Linux's ID for a DF reply
	binary.BigEndian.PutUint16(ip[6:8], ipDF)
	ip[8], ip[9] = ttl, protoTCP
	ip[10], ip[11] = 0, 0
	copy(ip[12:16], req.DstIP[:])
	copy(ip[16:20], req.SrcIP[:])
	binary.BigEndian.PutUint16(ip[10:12], checksum(ip, 0))
	tcp := b[ethLen+ipLen:]
	binary.BigEndian.PutUint16(tcp[0:2], req.DstPort)
	binary.BigEndian.PutUint16(tcp[2:4], req.SrcPort)
	binary.BigEndian.PutUint32(tcp[4:8], seq)
	binary.BigEndian.PutUint32(tcp[8:12], req.Seq+1)
	tcp[12], tcp[13] = byte(tl/4)<<4, flags
	binary.BigEndian.PutUint16(tcp[14:16], window)
	tcp[16], tcp[17], tcp[18], tcp[19] = 0, 0, 0, 0 // checksum, urgent pointer
	copy(tcp[tcpLen:], opts)
	binary.BigEndian.PutUint16(tcp[16:18], checksum(tcp, pseudoSum(req.DstIP, req.SrcIP, tl)))
	return len(b)
}

// pseudoSum is the sum of TCP's IPv4 pseudo-header.
func pseudoSum(src, dst [4]byte, n int) uint32 {
	s := uint32(binary.BigEndian.Uint16(src[0:2])) + uint32(binary.BigEndian.Uint16(src[2:4]))
	s += uint32(binary.BigEndian.Uint16(dst[0:2])) + uint32(binary.BigEndian.Uint16(dst[2:4]))
	return s + protoTCP + uint32(n)
}

// checksum is the Internet checksum (RFC 1071) of b, starting from sum;
// over data that carries its own checksum it is 0 when that is right.
func checksum(b []byte, sum uint32) uint16 {
	for len(b) >= 2 {
		sum += uint32(b[0])<<8 | uint32(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}
