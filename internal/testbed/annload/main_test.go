package main

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestAddrsFrom(t *testing.T) {
	got, err := addrsFrom(netip.MustParseAddr("198.18.64.253"), 4)
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Addr{netip.MustParseAddr("198.18.64.253"), netip.MustParseAddr("198.18.64.254"),
		netip.MustParseAddr("198.18.65.1"), netip.MustParseAddr("198.18.65.2")}
	if !slices.Equal(got, want) {
		t.Errorf("addrsFrom = %v, want %v", got, want)
	}
	if _, err := addrsFrom(netip.MustParseAddr("255.255.255.250"), 10); err == nil {
		t.Error("addrsFrom past 255.255.255.255: no error")
	}
	if _, err := addrsFrom(netip.MustParseAddr("198.19.255.250"), 10); err == nil || !strings.Contains(err.Error(), "the only range a test LAN may use") {
		t.Errorf("addrsFrom past the test range: %v", err)
	}
	if _, err := addrsFrom(netip.MustParseAddr("10.0.0.1"), 1); err == nil {
		t.Error("addrsFrom outside the test range: no error")
	}
	if _, err := addrsFrom(netip.MustParseAddr("2001:db8::1"), 1); err == nil {
		t.Error("addrsFrom of an IPv6 address: no error")
	}
	olds, _ := addrsFrom(netip.MustParseAddr("198.18.64.10"), 300)
	news, _ := addrsFrom(netip.MustParseAddr("198.18.65.10"), 300)
	if err := disjoint(olds, news); err == nil || err.Error() != "198.18.65.10 is both an old and a new address: want -old and -new far enough apart" {
		t.Errorf("disjoint of overlapping ranges: %v", err)
	}
}

// TestDispatch: a connection goes to the agent whose address it came
// to; one to an address no agent has is closed.
func TestDispatch(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	p := &player{name: "p", ln: newChanListener(ln.Addr())}
	defer p.ln.Close()
	f := &fleet{byAddr: map[netip.Addr]*player{netip.MustParseAddr("127.0.0.1"): p}}
	accept := func() (client net.Conn) {
		t.Helper()
		client, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		f.dispatch(c)
		return client
	}
	client := accept()
	defer client.Close()
	c, err := p.ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	if c.RemoteAddr().String() != client.LocalAddr().String() {
		t.Errorf("the agent got the connection from %v, want %v", c.RemoteAddr(), client.LocalAddr())
	}
	c.Close()

	delete(f.byAddr, netip.MustParseAddr("127.0.0.1"))
	other := accept()
	defer other.Close()
	other.SetReadDeadline(time.Now().Add(time.Minute))
	if _, err := other.Read(make([]byte, 1)); err != io.EOF && !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("a connection to an address no agent has: read %v, want it closed", err)
	}
	p.ln.Close()
	if _, err := p.ln.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept after Close: %v, want net.ErrClosed", err)
	}
}

// TestAddrRequest: the netlink message is one RTM_NEWADDR (or
// RTM_DELADDR) for the address, with its prefix length and interface.
func TestAddrRequest(t *testing.T) {
	for _, add := range []bool{true, false} {
		b := addrRequest(add, 7, 3, netip.MustParseAddr("198.18.64.10"), 21)
		msgs, err := syscall.ParseNetlinkMessage(b)
		if err != nil || len(msgs) != 1 {
			t.Fatalf("%d messages, %v", len(msgs), err)
		}
		m := msgs[0]
		typ, flags := uint16(unix.RTM_DELADDR), uint16(unix.NLM_F_REQUEST|unix.NLM_F_ACK)
		if add {
			typ, flags = unix.RTM_NEWADDR, flags|unix.NLM_F_CREATE|unix.NLM_F_EXCL
		}
		if m.Header.Type != typ || m.Header.Flags != flags || m.Header.Seq != 7 {
			t.Errorf("header %+v, want type %d, flags %#x, seq 7", m.Header, typ, flags)
		}
		if m.Data[0] != unix.AF_INET || m.Data[1] != 21 || binary.NativeEndian.Uint32(m.Data[4:8]) != 3 {
			t.Errorf("ifaddrmsg % x, want family AF_INET, prefix 21, index 3", m.Data[:unix.SizeofIfAddrmsg])
		}
		attrs, err := syscall.ParseNetlinkRouteAttr(&m)
		if err != nil || len(attrs) != 2 {
			t.Fatalf("%d attributes, %v", len(attrs), err)
		}
		for _, a := range attrs {
			if (a.Attr.Type != unix.IFA_LOCAL && a.Attr.Type != unix.IFA_ADDRESS) || netip.AddrFrom4([4]byte(a.Value)) != netip.MustParseAddr("198.18.64.10") {
				t.Errorf("attribute %d = % x, want IFA_LOCAL and IFA_ADDRESS 198.18.64.10", a.Attr.Type, a.Value)
			}
		}
	}
}
