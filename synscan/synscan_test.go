package synscan

import (
	"context"
	"net"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

func TestParsePorts(t *testing.T) {
	got, err := ParsePorts("80, 22,7000-7002,22")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]uint16{22, 80, 7000, 7001, 7002}, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	for _, bad := range []string{"", "0", "65536", "a", "10-5", "1-x", "1,,2"} {
		if _, err := ParsePorts(bad); err == nil {
			t.Errorf("ParsePorts(%q): no error", bad)
		}
	}
}

var (
	us   = netip.MustParseAddr("198.18.0.2")
	them = Target{Addr: netip.MustParseAddr("198.18.0.9"), Port: 7440}
)

// replyPacket builds the packet a target's kernel would send back to a probe:
// an IPv4+TCP packet from t to us:sport, acknowledging ack.
func replyPacket(t *testing.T, from Target, sport uint16, ack uint32, syn, rst bool) []byte {
	t.Helper()
	ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: from.Addr.AsSlice(), DstIP: us.AsSlice()}
	tcp := &layers.TCP{SrcPort: layers.TCPPort(from.Port), DstPort: layers.TCPPort(sport), Seq: 12345, Ack: ack, ACK: true, SYN: syn, RST: rst, Window: 65535}
	tcp.SetNetworkLayerForChecksum(ip)
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ip, tcp); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestMatch(t *testing.T) {
	ck := newCookies(61000, srcPorts)
	sport := ck.sport(them)
	seq := ck.seq(us, sport, them)
	other := Target{Addr: netip.MustParseAddr("198.18.0.10"), Port: 7440}
	tests := []struct {
		name  string
		pkt   []byte
		state State
		ok    bool
	}{
		{"syn-ack", replyPacket(t, them, sport, seq+1, true, false), Open, true},
		{"rst", replyPacket(t, them, sport, seq+1, false, true), Closed, true},
		{"forged syn-ack, wrong ack", replyPacket(t, them, sport, seq+2, true, false), 0, false},
		{"forged syn-ack, guessed ack 1", replyPacket(t, them, sport, 1, true, false), 0, false},
		{"from another host", replyPacket(t, other, sport, seq+1, true, false), 0, false},
		{"to another of our ports", replyPacket(t, them, sport+1, seq+1, true, false), 0, false},
		{"to a port outside the scan's", replyPacket(t, them, 1000, seq+1, true, false), 0, false},
		{"from another port", replyPacket(t, Target{Addr: them.Addr, Port: 22}, sport, seq+1, true, false), 0, false},
	}
	var ip layers.IPv4
	var p replyParser
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			seg, src, dst, ok := ipv4Segment(&ip, tt.pkt)
			if !ok {
				t.Fatal("not an IPv4 packet carrying TCP")
			}
			r, ok := p.parse(seg, src, dst)
			if !ok {
				t.Fatal("did not parse")
			}
			got, state, ok := ck.match(r)
			if ok != tt.ok || state != tt.state || (ok && got != them) {
				t.Errorf("match = %v, %v, %v; want %v, %v, %v", got, state, ok, them, tt.state, tt.ok)
			}
		})
	}
}

func TestBuildSYN(t *testing.T) {
	b := newSynBuilder()
	seg, err := b.build(us, 61001, them, 0xdeadbeef)
	if err != nil {
		t.Fatal(err)
	}
	pkt, err := newIPv4Framer().frame(seg, us, them.Addr)
	if err != nil {
		t.Fatal(err)
	}
	p := gopacket.NewPacket(pkt, layers.LayerTypeIPv4, gopacket.Default)
	ip, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	tcp, _ := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
	if ip == nil || tcp == nil {
		t.Fatalf("not IPv4+TCP: %v", p)
	}
	if !ip.SrcIP.Equal(us.AsSlice()) || !ip.DstIP.Equal(them.Addr.AsSlice()) || ip.TTL != 64 || ip.Flags != layers.IPv4DontFragment || int(ip.Length) != len(pkt) {
		t.Errorf("IP header %+v", ip)
	}
	if !tcp.SYN || tcp.ACK || tcp.RST || tcp.Seq != 0xdeadbeef || tcp.SrcPort != 61001 || tcp.DstPort != 7440 {
		t.Errorf("TCP header %+v", tcp)
	}
	var kinds []layers.TCPOptionKind
	for _, o := range tcp.Options {
		kinds = append(kinds, o.OptionType)
	}
	nop := layers.TCPOptionKind(layers.TCPOptionKindNop)
	want := []layers.TCPOptionKind{layers.TCPOptionKindMSS, nop, nop, layers.TCPOptionKindSACKPermitted, nop, layers.TCPOptionKindWindowScale}
	if diff := cmp.Diff(want, kinds); diff != "" {
		t.Errorf("options (-want +got):\n%s", diff)
	}
	if !checksumOK(seg, us, them.Addr) {
		t.Errorf("TCP checksum %#x does not verify", tcp.Checksum)
	}
	if err, res := ip.VerifyChecksum(); err != nil || !res.Valid {
		t.Errorf("IP checksum: %v, %+v", err, res)
	}
}

func TestParseAllocatesNothing(t *testing.T) {
	var ip layers.IPv4
	var p replyParser
	pkt := replyPacket(t, them, 61000, 1, true, false)
	if n := testing.AllocsPerRun(100, func() {
		seg, src, dst, _ := ipv4Segment(&ip, pkt)
		p.parse(seg, src, dst)
	}); n != 0 {
		t.Errorf("%v allocations per parse", n)
	}
}

func FuzzReply(f *testing.F) {
	// Seeds: replies as a Linux kernel sends them (built here with the same
	// fields), and truncated packets.
	t := &testing.T{}
	ck := newCookies(61000, srcPorts)
	sport := ck.sport(them)
	seq := ck.seq(us, sport, them)
	f.Add(replyPacket(t, them, sport, seq+1, true, false))
	f.Add(replyPacket(t, them, sport, seq+1, false, true))
	f.Add(replyPacket(t, them, sport, seq+1, true, false)[:30])
	f.Add([]byte{0x45})
	f.Fuzz(func(t *testing.T, b []byte) {
		var ip layers.IPv4
		seg, src, dst, ok := ipv4Segment(&ip, b)
		if !ok {
			return
		}
		if !src.Is4() || !dst.Is4() || len(seg) > len(b) {
			t.Fatalf("segment of %d bytes from %v to %v out of a %d-byte packet", len(seg), src, dst, len(b))
		}
		var p replyParser
		r, ok := p.parse(seg, src, dst)
		if !ok {
			return
		}
		if tg, state, ok := ck.match(r); ok {
			// Only a reply carrying the cookie may match.
			if r.ack != ck.seq(r.dst, r.dport, tg)+1 || (state != Open && state != Closed) {
				t.Fatalf("matched %+v as %v", r, state)
			}
		}
	})
}

var (
	us6   = netip.MustParseAddr("2001:db8:5::1")
	them6 = Target{Addr: netip.MustParseAddr("2001:db8:5::9"), Port: 7440}
)

// replySegment builds the TCP segment a target's kernel would send back to
// a probe from to:sport, acknowledging ack, as a raw IPv6 socket reads it
// (no IP header: the addresses come beside it).
func replySegment(t testing.TB, from Target, to netip.Addr, sport uint16, ack uint32, syn, rst bool) []byte {
	t.Helper()
	// The options of a Linux SYN-ACK: mss, sackOK, timestamps, nop, wscale.
	tcp := &layers.TCP{SrcPort: layers.TCPPort(from.Port), DstPort: layers.TCPPort(sport), Seq: 12345, Ack: ack, ACK: true, SYN: syn, RST: rst, Window: 65535}
	if syn {
		tcp.Options = []layers.TCPOption{
			{OptionType: layers.TCPOptionKindMSS, OptionLength: 4, OptionData: []byte{0x05, 0xa0}},
			{OptionType: layers.TCPOptionKindSACKPermitted, OptionLength: 2},
			{OptionType: layers.TCPOptionKindTimestamps, OptionLength: 10, OptionData: make([]byte, 8)},
			{OptionType: layers.TCPOptionKindNop, OptionLength: 1},
			{OptionType: layers.TCPOptionKindWindowScale, OptionLength: 3, OptionData: []byte{7}},
		}
	}
	b, err := serializeTCP(tcp, from.Addr, to)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Cookies cover IPv6 4-tuples as IPv4 ones: a reply matches only from the
// target, to the address and port the probe left from.
func TestMatch6(t *testing.T) {
	ck := newCookies(61000, srcPorts)
	sport := ck.sport(them6)
	seq := ck.seq(us6, sport, them6)
	otherUs := netip.MustParseAddr("2001:db8:5::3")
	// The same bits as them6's last 4 bytes, as IPv4.
	mapped := Target{Addr: netip.AddrFrom4([4]byte{0, 0, 0, 9}), Port: 7440}
	tests := []struct {
		name     string
		from     Target
		to       netip.Addr
		sport    uint16
		ack      uint32
		syn, rst bool
		state    State
		ok       bool
	}{
		{"syn-ack", them6, us6, sport, seq + 1, true, false, Open, true},
		{"rst", them6, us6, sport, seq + 1, false, true, Closed, true},
		{"wrong ack", them6, us6, sport, seq + 2, true, false, 0, false},
		{"to another of our addresses", them6, otherUs, sport, seq + 1, true, false, 0, false},
		{"from another host", Target{Addr: netip.MustParseAddr("2001:db8:5::a"), Port: 7440}, us6, sport, seq + 1, true, false, 0, false},
		{"from an IPv4 host", mapped, netip.AddrFrom4([4]byte{198, 18, 0, 2}), sport, seq + 1, true, false, 0, false},
		{"to another of our ports", them6, us6, sport + 1, seq + 1, true, false, 0, false},
	}
	var p replyParser
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, ok := p.parse(replySegment(t, tt.from, tt.to, tt.sport, tt.ack, tt.syn, tt.rst), tt.from.Addr, tt.to)
			if !ok {
				t.Fatal("did not parse")
			}
			got, state, ok := ck.match(r)
			if ok != tt.ok || state != tt.state || (ok && got != them6) {
				t.Errorf("match = %v, %v, %v; want %v, %v, %v", got, state, ok, them6, tt.state, tt.ok)
			}
		})
	}
}

func TestBuildSYN6(t *testing.T) {
	seg, err := newSynBuilder().build(us6, 61001, them6, 0xdeadbeef)
	if err != nil {
		t.Fatal(err)
	}
	tcp, _ := gopacket.NewPacket(seg, layers.LayerTypeTCP, gopacket.Default).Layer(layers.LayerTypeTCP).(*layers.TCP)
	if tcp == nil || !tcp.SYN || tcp.ACK || tcp.Seq != 0xdeadbeef || tcp.SrcPort != 61001 || tcp.DstPort != 7440 {
		t.Fatalf("TCP header %+v", tcp)
	}
	if !checksumOK(seg, us6, them6.Addr) {
		t.Errorf("checksum %#x does not verify over the IPv6 pseudo-header", tcp.Checksum)
	}
	// A builder switches families without carrying the other's
	// pseudo-header along.
	b := newSynBuilder()
	for _, to := range []Target{them, them6, them} {
		from := us
		if to.Addr.Is6() {
			from = us6
		}
		seg, err := b.build(from, 61001, to, 1)
		if err != nil || !checksumOK(seg, from, to.Addr) {
			t.Errorf("to %v: %v, or a bad checksum", to.Addr, err)
		}
	}
}

func FuzzReply6(f *testing.F) {
	// Seeds: replies as a Linux kernel sends them (built here with the same
	// fields and options), and truncated segments.
	t := &testing.T{}
	ck := newCookies(61000, srcPorts)
	sport := ck.sport(them6)
	seq := ck.seq(us6, sport, them6)
	f.Add(replySegment(t, them6, us6, sport, seq+1, true, false))
	f.Add(replySegment(t, them6, us6, sport, seq+1, false, true))
	f.Add(replySegment(t, them6, us6, sport, seq+1, true, false)[:24])
	f.Add([]byte{0x1d, 0x10})
	f.Fuzz(func(t *testing.T, seg []byte) {
		var p replyParser
		r, ok := p.parse(seg, them6.Addr, us6)
		if !ok {
			return
		}
		if len(seg) < 20 || r.src != them6.Addr || r.dst != us6 {
			t.Fatalf("parsed %d bytes as %+v", len(seg), r)
		}
		if tg, state, ok := ck.match(r); ok {
			// Only a reply carrying the cookie may match.
			if tg.Addr != them6.Addr || r.ack != ck.seq(us6, r.dport, tg)+1 || (state != Open && state != Closed) {
				t.Fatalf("matched %+v as %v", r, state)
			}
		}
	})
}

func TestConnectScanner(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go acceptAndClose(ln)
	closedLn, _ := net.Listen("tcp", "127.0.0.1:0")
	closedPort := uint16(closedLn.Addr().(*net.TCPAddr).Port)
	closedLn.Close()
	openPort := uint16(ln.Addr().(*net.TCPAddr).Port)

	lo := netip.MustParseAddr("127.0.0.1")
	res, st, err := Scan(context.Background(), NewConnect(nil), []netip.Addr{lo}, []uint16{openPort, closedPort})
	if err != nil {
		t.Fatal(err)
	}
	got := map[uint16]State{}
	for _, r := range res {
		got[r.Port] = r.State
	}
	if diff := cmp.Diff(map[uint16]State{openPort: Open, closedPort: Closed}, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if st.Targets != 2 || st.Sent != 2 {
		t.Errorf("stats %+v", st)
	}
}

// acceptAndClose accepts connections on ln and closes them, until ln is
// closed: an open port.
func acceptAndClose(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		c.Close()
	}
}
