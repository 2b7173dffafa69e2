package engine

import (
	"net/netip"
	"slices"

	"github.com/ifl-project/ifl/internal/support/netinfo"
)

// Link is a network interface as a plan sees it: a name to sweep on and
// the IPv4 prefixes assigned to it, each with the link's own address
// (198.18.0.2/24).
type Link struct {
	Name     string
	Prefixes []netip.Prefix
}

// Links returns the links an ARP sweep can use: up, not loopback, with an
// Ethernet address and an IPv4 prefix.
func Links() ([]Link, error) {
	all, err := netinfo.Links()
	if err != nil {
		return nil, err
	}
	var links []Link
	for _, l := range all {
		if !l.Up() || len(l.HardwareAddr) != 6 {
			continue
		}
		var ps []netip.Prefix
		for _, p := range l.Prefixes {
			if p.Addr().Is4() {
				ps = append(ps, p)
			}
		}
		if len(ps) > 0 {
			links = append(links, Link{Name: l.Name, Prefixes: ps})
		}
	}
	return links, nil
}

// Plan says where each target goes: the on-link IPv4 addresses to an
// ARP sweep on their link, the rest straight to the port probes.
type Plan struct {
	// OnLink are the addresses to sweep, by link name, in the order
	// given.
	OnLink map[string][]netip.Addr
	// Direct go on unswept: routed addresses, IPv6 ones (no ARP), and
	// the host's own (which answer no ARP request of its own).
	Direct []netip.Addr
}

// NewPlan splits addrs over links. An address on the subnets of two
// links goes to the first.
func NewPlan(addrs []netip.Addr, links []Link) Plan {
	own := map[netip.Addr]bool{}
	for _, l := range links {
		for _, p := range l.Prefixes {
			own[p.Addr()] = true
		}
	}
	pl := Plan{OnLink: map[string][]netip.Addr{}}
next:
	for _, a := range addrs {
		if !a.Is4() || own[a] {
			pl.Direct = append(pl.Direct, a)
			continue
		}
		for _, l := range links {
			for _, p := range l.Prefixes {
				if p.Masked().Contains(a) {
					pl.OnLink[l.Name] = append(pl.OnLink[l.Name], a)
					continue next
				}
			}
		}
		pl.Direct = append(pl.Direct, a)
	}
	return pl
}

// LinkNames returns the names of the links with addresses to sweep,
// sorted.
func (pl Plan) LinkNames() []string {
	names := make([]string, 0, len(pl.OnLink))
	for n := range pl.OnLink {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}
