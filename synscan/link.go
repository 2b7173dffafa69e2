package synscan

import (
	"net"
	"net/netip"
)

// Linker is what a scan's sockets offer for on-link hosts: a packet
// socket per link, and the MACs a sweep learned. Raw implements it.
type Linker interface {
	AddLink(ifi *net.Interface) error
	Learn(a netip.Addr, ifindex int, mac net.HardwareAddr)
}

// AddLink opens a packet socket on ifi, so that hosts learned on it get
// their SYNs as Ethernet frames (see Learn). It needs CAP_NET_RAW: call it
// before dropping the capability. It does nothing for a scanner over
// another PacketIO.
func (r *Raw) AddLink(ifi *net.Interface) error {
	if l, ok := r.io.(linkIO); ok {
		return l.addLink(ifi)
	}
	return nil
}

// Learn tells the scanner that a answered an ARP request on the link with
// the given index from mac: its SYNs then go straight to that MAC, with
// no neighbour resolution by the kernel.
func (r *Raw) Learn(a netip.Addr, ifindex int, mac net.HardwareAddr) {
	if l, ok := r.io.(linkIO); ok {
		l.learn(a, ifindex, mac)
	}
}

// linkIO is a PacketIO that can send Ethernet frames (the sockets of
// NewRaw on Linux).
type linkIO interface {
	addLink(ifi *net.Interface) error
	learn(a netip.Addr, ifindex int, mac net.HardwareAddr)
}
