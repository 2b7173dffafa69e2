package arpscan

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/ifl-project/ifl/internal/support/netinfo"
)

// Interface looks up an interface for a sweep and checks that it can do
// one: it exists, is up, is Ethernet-like and has an IPv4 address.
func Interface(name string) (*net.Interface, error) {
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		var names []string
		if links, err := netinfo.Links(); err == nil {
			for _, l := range links {
				if l.Flags&net.FlagLoopback == 0 {
					names = append(names, l.Name)
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
func prefixes(ifi *net.Interface) ([]netip.Prefix, error) { return netinfo.IPv4Prefixes(ifi) }

func sortResults(rs []Result) {
	slices.SortFunc(rs, func(a, b Result) int { return a.IP.Compare(b.IP) })
}
