// Package netinfo reads the host's routes and interface prefixes over
// netlink, as both the agent (for its facts) and the controller (for its
// default targets) need them without running ip(8) or reading /proc/net.
package netinfo

import (
	"fmt"
	"net"
	"net/netip"
)

// Route is a default route of the main table.
type Route struct {
	Family    string     // "inet" or "inet6"
	Gateway   netip.Addr // invalid for an on-link default route
	Interface string
}

// DefaultInterface returns the name of the interface of the first IPv4
// default route.
func DefaultInterface() (string, error) {
	rs, err := DefaultRoutes()
	if err != nil {
		return "", err
	}
	for _, r := range rs {
		if r.Family == "inet" && r.Interface != "" {
			return r.Interface, nil
		}
	}
	return "", fmt.Errorf("no IPv4 default route (give targets, or an interface)")
}

// InterfacePrefixes returns the IPv4 prefixes assigned to the named
// interface, masked to their network (198.18.0.5/24 → 198.18.0.0/24).
func InterfacePrefixes(name string) ([]netip.Prefix, error) {
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return nil, fmt.Errorf("%s: no such interface (try: ip link)", name)
	}
	ps, err := IPv4Prefixes(ifi)
	if err != nil {
		return nil, err
	}
	for i := range ps {
		ps[i] = ps[i].Masked()
	}
	return ps, nil
}

// Prefixes returns the interface's addresses, of both families, with
// their prefix lengths (198.18.0.5/24, 2001:db8:48::2/64).
func Prefixes(ifi *net.Interface) ([]netip.Prefix, error) {
	addrs, err := ifi.Addrs()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ifi.Name, err)
	}
	return AddrPrefixes(addrs), nil
}

// AddrPrefixes converts what net.Interface.Addrs returns: IPv4 addresses
// unmapped, anything but an address with its mask left out.
func AddrPrefixes(addrs []net.Addr) []netip.Prefix {
	var out []netip.Prefix
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ip, ok := netip.AddrFromSlice(ipn.IP)
		if !ok {
			continue
		}
		ones, _ := ipn.Mask.Size()
		out = append(out, netip.PrefixFrom(ip.Unmap(), ones))
	}
	return out
}

// IPv4Prefixes returns the interface's IPv4 addresses with their prefix
// lengths (198.18.0.5/24), and an error naming the interface if it has
// none.
func IPv4Prefixes(ifi *net.Interface) ([]netip.Prefix, error) {
	all, err := Prefixes(ifi)
	if err != nil {
		return nil, err
	}
	var out []netip.Prefix
	for _, p := range all {
		if p.Addr().Is4() {
			out = append(out, p)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no IPv4 address (try: ip addr add ADDR/LEN dev %s)", ifi.Name, ifi.Name)
	}
	return out, nil
}

// Link is a network interface with the prefixes of its addresses.
type Link struct {
	net.Interface
	Prefixes []netip.Prefix // of both families, with their lengths
}

// Up reports whether the link is up and not loopback: one traffic to
// other hosts can leave on.
func (l *Link) Up() bool { return l.Flags&net.FlagUp != 0 && l.Flags&net.FlagLoopback == 0 }

// Links returns the host's interfaces with their prefixes: the one place
// ifl lists them.
func Links() ([]Link, error) {
	ifis, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("listing interfaces: %w", err)
	}
	out := make([]Link, 0, len(ifis))
	for _, ifi := range ifis {
		ps, err := Prefixes(&ifi)
		if err != nil {
			return nil, err
		}
		out = append(out, Link{Interface: ifi, Prefixes: ps})
	}
	return out, nil
}

// AddrKind is what kind of address an address is, in the order ifl
// prefers them: IPv4, then IPv6 that is not link-local, then link-local.
type AddrKind int

// Address kinds.
const (
	KindIPv4 AddrKind = iota
	KindIPv6
	KindLinkLocal
)

// Kind returns a's kind.
func Kind(a netip.Addr) AddrKind {
	switch {
	case a.Unmap().Is4():
		return KindIPv4
	case a.IsLinkLocalUnicast():
		return KindLinkLocal
	}
	return KindIPv6
}
