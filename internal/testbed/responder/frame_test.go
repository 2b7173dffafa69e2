package responder

import (
	"encoding/hex"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/net/bpf"
)

// Frames written out by another implementation (gopacket's layers, with
// their checksums) for a controller at 198.19.0.2 (02:18:c6:13:00:02)
// and a host at 198.19.0.7 (02:18:c6:13:00:07). The requests are padded to
// Ethernet's 60 bytes, as a NIC sends them; the replies are not, as a
// Linux host's on a veth.
const (
	// From port 61000 to port 7440, sequence 0x01020304, IP ID 0x1234.
	synHex = "0218c6130007" + "0218c6130002" + "0800" +
		"450000281234000040 06dc6c c6130002 c6130007" +
		"ee48 1d10 01020304 00000000 5002 0400 1054 0000" + "000000000000"
	// The SYN-ACK: sequence 0xa1b2c3d4, MSS 1460, window 64240, DF.
	synAckHex = "0218c6130002" + "0218c6130007" + "0800" +
		"4500002c00004000 4006ae9c c6130007 c6130002" +
		"1d10 ee48 a1b2c3d4 01020305 6012 faf0 9c0e 0000 020405b4"
	// The reset: sequence 0, window 0, DF.
	rstHex = "0218c6130002" + "0218c6130007" + "0800" +
		"4500002800004000 4006aea0 c6130007 c6130002" +
		"1d10 ee48 00000000 01020305 5014 0000 1441 0000"
	arpRequestHex = "ffffffffffff" + "0218c6130002" + "0806" +
		"0001 0800 06 04 0001 0218c6130002 c6130002 000000000000 c6130007" + "000000000000000000000000000000000000"
	arpReplyHex = "0218c6130002" + "0218c6130007" + "0806" +
		"0001 0800 06 04 0002 0218c6130007 c6130007 0218c6130002 c6130002"
)

func frame(t testing.TB, h string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(h, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var (
	ctlMAC  = [6]byte{0x02, 0x18, 0xc6, 0x13, 0x00, 0x02}
	hostMAC = [6]byte{0x02, 0x18, 0xc6, 0x13, 0x00, 0x07}
	ctlIP   = [4]byte{198, 19, 0, 2}
	hostIP  = [4]byte{198, 19, 0, 7}
)

func TestDecode(t *testing.T) {
	var f Frame
	if !Decode(frame(t, synHex), true, &f) {
		t.Fatal("the SYN did not decode")
	}
	want := Frame{Kind: TCPSyn, DstMAC: hostMAC, SrcMAC: ctlMAC, SrcIP: ctlIP, DstIP: hostIP, SrcPort: 61000, DstPort: 7440, Seq: 0x01020304}
	if diff := cmp.Diff(want, f); diff != "" {
		t.Errorf("SYN (-want +got):\n%s", diff)
	}
	f = Frame{}
	if !Decode(frame(t, arpRequestHex), true, &f) {
		t.Fatal("the ARP request did not decode")
	}
	want = Frame{Kind: ARPRequest, DstMAC: broadcast, SrcMAC: ctlMAC, SenderMAC: ctlMAC, SenderIP: ctlIP, TargetIP: hostIP}
	if diff := cmp.Diff(want, f); diff != "" {
		t.Errorf("ARP request (-want +got):\n%s", diff)
	}
}

// TestDecodeRefuses: every frame a host would not answer, or that is
// malformed, decodes to nothing.
func TestDecodeRefuses(t *testing.T) {
	syn := func(edit func(b []byte) []byte) []byte { return edit(frame(t, synHex)) }
	// fixIP writes the IP header's checksum again after an edit.
	fixIP := func(b []byte) []byte {
		b[24], b[25] = 0, 0
		c := checksum(b[14:34], 0)
		b[24], b[25] = byte(c>>8), byte(c)
		return b
	}
	tests := []struct {
		name      string
		b         []byte
		csumReady bool
	}{
		{"empty", nil, true},
		{"ethernet header only", frame(t, synHex)[:14], true},
		{"IPv6", syn(func(b []byte) []byte { b[12], b[13] = 0x86, 0xdd; return b }), true},
		{"a VLAN tag", syn(func(b []byte) []byte { b[12], b[13] = 0x81, 0x00; return b }), true},
		{"IP version 6 in an IPv4 frame", syn(func(b []byte) []byte { b[14] = 0x65; return fixIP(b) }), true},
		{"IP header length 16", syn(func(b []byte) []byte { b[14] = 0x44; return fixIP(b) }), true},
		{"IP header length past the packet", syn(func(b []byte) []byte { b[14] = 0x4f; return fixIP(b) }), true},
		{"IP total length past the frame", syn(func(b []byte) []byte { b[17] = 61; return fixIP(b) }), true},
		{"IP total length shorter than its header", syn(func(b []byte) []byte { b[17] = 19; return fixIP(b) }), true},
		{"bad IP checksum", syn(func(b []byte) []byte { b[25]++; return b }), true},
		{"bad IP checksum, device checksum pending", syn(func(b []byte) []byte { b[25]++; return b }), false},
		{"first fragment (MF)", syn(func(b []byte) []byte { b[20] |= 0x20; return fixIP(b) }), true},
		{"later fragment", syn(func(b []byte) []byte { b[21] = 1; return fixIP(b) }), true},
		{"UDP", syn(func(b []byte) []byte { b[23] = 17; return fixIP(b) }), true},
		{"TCP header cut short", syn(func(b []byte) []byte { b[17] = 39; return fixIP(b) }), true},
		{"TCP data offset 4", syn(func(b []byte) []byte { b[46] = 0x40; return b }), false},
		{"TCP data offset past the segment", syn(func(b []byte) []byte { b[46] = 0x60; return b }), false},
		{"SYN-ACK", syn(func(b []byte) []byte { b[47] = flagSYN | flagACK; return b }), false},
		{"SYN-RST", syn(func(b []byte) []byte { b[47] = flagSYN | flagRST; return b }), false},
		{"SYN-FIN", syn(func(b []byte) []byte { b[47] = flagSYN | flagFIN; return b }), false},
		{"no SYN", syn(func(b []byte) []byte { b[47] = flagACK; return b }), false},
		{"bad TCP checksum", syn(func(b []byte) []byte { b[51]++; return b }), true},
		{"ARP reply", frame(t, arpReplyHex), true},
		{"ARP cut short", frame(t, arpRequestHex)[:41], true},
		{"ARP of another protocol", func() []byte { b := frame(t, arpRequestHex); b[16] = 0x86; return b }(), true},
		{"ARP with 8-byte hardware addresses", func() []byte { b := frame(t, arpRequestHex); b[18] = 8; return b }(), true},
	}
	for _, tt := range tests {
		f := Frame{Kind: TCPSyn}
		if Decode(tt.b, tt.csumReady, &f) || f.Kind != None {
			t.Errorf("%s: decoded as %+v", tt.name, f)
		}
	}
	// A wrong TCP checksum passes while the device is still to write it.
	var f Frame
	if !Decode(syn(func(b []byte) []byte { b[51]++; return b }), false, &f) {
		t.Error("a SYN with its checksum left to the device did not decode")
	}
}

func TestReplies(t *testing.T) {
	var req Frame
	if !Decode(frame(t, synHex), true, &req) {
		t.Fatal("the SYN did not decode")
	}
	out := make([]byte, MaxReply)
	if got := out[:SynAck(out, hostMAC, &req, 0xa1b2c3d4)]; hex.EncodeToString(got) != hex.EncodeToString(frame(t, synAckHex)) {
		t.Errorf("SYN-ACK\n got %x\nwant %x", got, frame(t, synAckHex))
	}
	if got := out[:Reset(out, hostMAC, &req)]; hex.EncodeToString(got) != hex.EncodeToString(frame(t, rstHex)) {
		t.Errorf("reset\n got %x\nwant %x", got, frame(t, rstHex))
	}
	if !Decode(frame(t, arpRequestHex), true, &req) {
		t.Fatal("the ARP request did not decode")
	}
	if got := out[:ARPReply(out, hostMAC, hostIP, &req)]; hex.EncodeToString(got) != hex.EncodeToString(frame(t, arpReplyHex)) {
		t.Errorf("ARP reply\n got %x\nwant %x", got, frame(t, arpReplyHex))
	}
}

func TestMAC(t *testing.T) {
	if got := MAC(netip.MustParseAddr("198.19.0.7")); got != hostMAC {
		t.Errorf("MAC(198.19.0.7) = %x, want %x", got, hostMAC)
	}
}

// TestFilter runs the kernel filter over frames: it passes what Decode
// answers, and leaves the rest out.
func TestFilter(t *testing.T) {
	vm, err := bpf.NewVM(filterProgram())
	if err != nil {
		t.Fatal(err)
	}
	withFlags := func(fl byte) []byte { b := frame(t, synHex); b[47] = fl; return b }
	laterFragment := frame(t, synHex)
	laterFragment[21] = 1
	withOptions := frame(t, synHex)
	withOptions[14] = 0x46 // a 24-byte IP header: the TCP flags move 4 bytes on
	withOptions = append(withOptions[:34:34], append([]byte{1, 1, 1, 1}, withOptions[34:]...)...)
	tests := []struct {
		name string
		b    []byte
		pass bool
	}{
		{"ARP request", frame(t, arpRequestHex), true},
		{"SYN", frame(t, synHex), true},
		{"SYN with ECN flags", withFlags(flagSYN | 0xc0), true},
		{"SYN behind IP options", withOptions, true},
		{"ARP reply", frame(t, arpReplyHex), false},
		{"SYN-ACK", frame(t, synAckHex), false},
		{"reset", frame(t, rstHex), false},
		{"ACK", withFlags(flagACK), false},
		{"SYN-FIN", withFlags(flagSYN | flagFIN), false},
		{"later fragment", laterFragment, false},
		{"UDP", func() []byte { b := frame(t, synHex); b[23] = 17; return b }(), false},
		{"IPv6", func() []byte { b := frame(t, synHex); b[12], b[13] = 0x86, 0xdd; return b }(), false},
	}
	for _, tt := range tests {
		n, err := vm.Run(tt.b)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if got := n > 0; got != tt.pass {
			t.Errorf("%s: passed %v, want %v", tt.name, got, tt.pass)
		}
	}
}

// testTable answers for 198.19.0.7 (group 0: 7440 open, 7441 filtered,
// the rest closed), 198.19.0.8 (group 1: 22 open, the rest filtered, half
// a second late), 198.19.0.9 (group 2: everything lost).
func testTable(t *testing.T) *table {
	t.Helper()
	tb, err := newTable(&Config{
		LinkMAC: net.HardwareAddr{0x02, 0x18, 0xc6, 0x13, 0x00, 0x00},
		Groups: []Group{
			{Open: []uint16{7440}, Filtered: []uint16{7441}},
			{Open: []uint16{22}, FilterRest: true, Delay: 500 * time.Millisecond},
			{Open: []uint16{7440}, Loss: 100},
		},
		Hosts: []Host{{netip.MustParseAddr("198.19.0.7"), 0}, {netip.MustParseAddr("198.19.0.8"), 1}, {netip.MustParseAddr("198.19.0.9"), 2}},
		Seed:  1,
	})
	if err != nil {
		t.Fatal(err)
	}
	return tb
}

// synTo is the test SYN, sent to ip:port at dst.
func synTo(t *testing.T, dst [6]byte, ip [4]byte, port uint16) []byte {
	b := frame(t, synHex)[:54]
	copy(b[0:6], dst[:])
	copy(b[30:34], ip[:])
	b[36], b[37] = byte(port>>8), byte(port)
	b[24], b[25], b[50], b[51] = 0, 0, 0, 0
	c := checksum(b[14:34], 0)
	b[24], b[25] = byte(c>>8), byte(c)
	var src, dstIP [4]byte
	copy(src[:], b[26:30])
	copy(dstIP[:], b[30:34])
	c = checksum(b[34:], pseudoSum(src, dstIP, 20))
	b[50], b[51] = byte(c>>8), byte(c)
	return b
}

// arpFor is the test ARP request, for ip, sent to dst.
func arpFor(t *testing.T, dst [6]byte, ip [4]byte) []byte {
	b := frame(t, arpRequestHex)
	copy(b[0:6], dst[:])
	copy(b[38:42], ip[:])
	return b
}

func TestAnswer(t *testing.T) {
	tb := testTable(t)
	ip8, ip9, other := [4]byte{198, 19, 0, 8}, [4]byte{198, 19, 0, 9}, [4]byte{198, 19, 0, 10}
	mac8, otherMAC := MAC(netip.AddrFrom4(ip8)), [6]byte{0x02, 0x18, 0xc6, 0x13, 0x00, 0x63}
	link := [6]byte{0x02, 0x18, 0xc6, 0x13, 0x00, 0x00}
	var req Frame
	Decode(frame(t, synHex), true, &req)
	out := make([]byte, MaxReply)
	synAck := hex.EncodeToString(out[:SynAck(out, hostMAC, &req, tb.isn(&req))])
	reset := hex.EncodeToString(out[:Reset(out, hostMAC, &req)])
	arpReply := hex.EncodeToString(frame(t, arpReplyHex))
	// host 8's answers
	Decode(synTo(t, mac8, ip8, 22), true, &req)
	synAck8 := hex.EncodeToString(out[:SynAck(out, mac8, &req, tb.isn(&req))])
	Decode(arpFor(t, broadcast, ip8), true, &req)
	arpReply8 := hex.EncodeToString(out[:ARPReply(out, mac8, ip8, &req)])

	half := 500 * time.Millisecond
	tests := []struct {
		name  string
		in    []byte
		want  string
		delay time.Duration
	}{
		{"ARP broadcast", frame(t, arpRequestHex), arpReply, 0},
		{"ARP to the host's MAC", arpFor(t, hostMAC, hostIP), arpReply, 0},
		{"ARP to the responder's MAC", arpFor(t, link, hostIP), arpReply, 0},
		{"ARP to another MAC", arpFor(t, otherMAC, hostIP), "", 0},
		{"ARP for an address of no host", arpFor(t, broadcast, other), "", 0},
		{"ARP announcement", func() []byte { b := frame(t, arpRequestHex); copy(b[28:32], hostIP[:]); return b }(), "", 0},
		{"SYN to an open port", frame(t, synHex), synAck, 0},
		{"SYN to an open port at the responder's MAC", synTo(t, link, hostIP, 7440), synAck, 0},
		{"SYN to a closed port", synTo(t, hostMAC, hostIP, 7442), "", 0},
		{"SYN to a filtered port", synTo(t, hostMAC, hostIP, 7441), "", 0},
		{"SYN to another MAC", synTo(t, otherMAC, hostIP, 7440), "", 0},
		{"SYN broadcast", synTo(t, broadcast, hostIP, 7440), "", 0},
		{"SYN to an address of no host", synTo(t, link, other, 7440), "", 0},
		{"ARP, delayed", arpFor(t, broadcast, ip8), arpReply8, half},
		{"SYN to an open port, delayed", synTo(t, mac8, ip8, 22), synAck8, half},
		{"SYN to a port filtered by filter_rest", synTo(t, mac8, ip8, 7440), "", 0},
		{"ARP, lost", arpFor(t, broadcast, ip9), "", 0},
		{"SYN, lost", synTo(t, MAC(netip.AddrFrom4(ip9)), ip9, 7440), "", 0},
		{"a reset", frame(t, rstHex), "", 0},
	}
	// The closed port's reset differs from the open port's only in
	// the port: build it from that SYN.
	Decode(synTo(t, hostMAC, hostIP, 7442), true, &req)
	tests[8].want = hex.EncodeToString(out[:Reset(out, hostMAC, &req)])
	if tests[8].want == reset {
		t.Fatal("the closed port's reset is the open port's")
	}
	for _, tt := range tests {
		n, delay := tb.answer(tt.in, true, out)
		if got := hex.EncodeToString(out[:n]); got != tt.want || delay != tt.delay {
			t.Errorf("%s: got %s after %v\nwant %s after %v", tt.name, got, delay, tt.want, tt.delay)
		}
	}
	want := Stats{ARP: 4, SynAck: 3, Reset: 1, Filtered: 2, Lost: 2, Others: 7}
	if diff := cmp.Diff(want, tb.st.snapshot()); diff != "" {
		t.Errorf("stats (-want +got):\n%s", diff)
	}
}

// TestISN: a SYN sent again gets the same SYN-ACK; another connection,
// or another seed, another sequence number.
func TestISN(t *testing.T) {
	tb := testTable(t)
	var a, b Frame
	Decode(frame(t, synHex), true, &a)
	b = a
	if tb.isn(&a) != tb.isn(&b) {
		t.Error("the same SYN got two sequence numbers")
	}
	b.SrcPort++
	if tb.isn(&a) == tb.isn(&b) {
		t.Error("two source ports got one sequence number")
	}
	other := testTable(t)
	other.seed++
	if tb.isn(&a) == other.isn(&a) {
		t.Error("two seeds gave one sequence number")
	}
}

func TestLossIsAShare(t *testing.T) {
	tb, err := newTable(&Config{LinkMAC: make(net.HardwareAddr, 6), Groups: []Group{{Loss: 30}},
		Hosts: []Host{{netip.AddrFrom4(hostIP), 0}}, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	out := make([]byte, MaxReply)
	in := frame(t, arpRequestHex)
	answered := 0
	for range 10000 {
		if n, _ := tb.answer(in, true, out); n > 0 {
			answered++
		}
	}
	// 7,000 expected; 6,800 to 7,200 is more than six standard
	// deviations (46) either way.
	if answered < 6800 || answered > 7200 {
		t.Errorf("%d of 10000 requests answered at 30%% loss", answered)
	}
}

func TestConfigCheck(t *testing.T) {
	a := netip.MustParseAddr("198.19.0.7")
	mac := make(net.HardwareAddr, 6)
	tests := []struct {
		c    Config
		want string
	}{
		{Config{}, "responder: link MAC : want 6 bytes"},
		{Config{LinkMAC: mac, Queue: -1}, "responder: queue -1: want 0 (the default, 16384) to 1048576"},
		{Config{LinkMAC: mac, Groups: []Group{{Open: []uint16{0}}}}, "responder: group 0: open port 0: want 1-65535"},
		{Config{LinkMAC: mac, Groups: []Group{{Filtered: []uint16{0}}}}, "responder: group 0: filtered port 0: want 1-65535"},
		{Config{LinkMAC: mac, Groups: []Group{{Open: []uint16{22}, Filtered: []uint16{22}}}}, "responder: group 0: port 22 both open and filtered"},
		{Config{LinkMAC: mac, Groups: []Group{{}, {Delay: 3 * time.Second}}}, "responder: group 1: delay 3s: want 0 to 2s"},
		{Config{LinkMAC: mac, Groups: []Group{{Loss: 101}}}, "responder: group 0: loss 101%: want 0-100"},
		{Config{LinkMAC: mac, Groups: []Group{{}}, Hosts: []Host{{netip.MustParseAddr("2001:db8::1"), 0}}}, "responder: host 2001:db8::1: want an IPv4 address"},
		{Config{LinkMAC: mac, Groups: []Group{{}}, Hosts: []Host{{a, 0}, {a, 0}}}, "responder: host 198.19.0.7 listed twice"},
		{Config{LinkMAC: mac, Groups: []Group{{}}, Hosts: []Host{{a, 1}}}, "responder: host 198.19.0.7: group 1: want 0 to 0"},
		{Config{LinkMAC: mac, Hosts: make([]Host, MaxHosts+1)}, "responder: 131073 hosts: at most 131072"},
	}
	for _, tt := range tests {
		err := tt.c.Check()
		if err == nil || err.Error() != tt.want {
			t.Errorf("%+v: got %v, want %q", tt.c.Groups, err, tt.want)
		}
	}
}
