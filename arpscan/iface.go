package arpscan

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
)

// Interface looks up an interface for a sweep and checks that it can do
// one: it exists, is up, is Ethernet-like and has an IPv4 address.
func Interface(name string) (*net.Interface, error) {
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		var names []string
		if ifis, err := net.Interfaces(); err == nil {
			for _, i := range ifis {
				if i.Flags&net.FlagLoopback == 0 {
					names = append(names, i.Name)
				}
			}
		}
		return nil, fmt.Errorf("%s: no such interface (have: %s; try: ip link)", name, strings.Join(names, ", "))
	}
	if ifi.Flags&net.FlagUp == 0 {
		return nil, fmt.Errorf("%s: interface is down (try: ip link set %s up)", name, name)
	}
	if len(ifi.HardwareAddr) != 6 || ifi.Flags&net.FlagBroadcast == 0 {
		return nil, fmt.Errorf("%s: not an Ethernet interface: ARP needs one with a MAC address and broadcast", name)
	}
	if _, err := prefixes(ifi); err != nil {
		return nil, err
	}
	return ifi, nil
}

// prefixes returns the interface's IPv4 addresses with their prefix
// lengths.
func prefixes(ifi *net.Interface) ([]netip.Prefix, error) {
	addrs, err := ifi.Addrs()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ifi.Name, err)
	}
	var out []netip.Prefix
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ip, ok := netip.AddrFromSlice(ipn.IP)
		if !ok || !ip.Unmap().Is4() {
			continue
		}
		ones, _ := ipn.Mask.Size()
		out = append(out, netip.PrefixFrom(ip.Unmap(), ones))
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no IPv4 address (try: ip addr add ADDR/LEN dev %s)", ifi.Name, ifi.Name)
	}
	return out, nil
}

func sortResults(rs []Result) {
	slices.SortFunc(rs, func(a, b Result) int { return a.IP.Compare(b.IP) })
}
