package discover

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/ifl-project/ifl/internal/support/netinfo"
)

// link is an interface that is up, with the prefixes of its addresses as
// assigned (198.18.56.2/24).
type link struct {
	name     string
	prefixes []netip.Prefix
}

// readLinks returns the interfaces that are up, loopback included.
func readLinks() ([]link, error) {
	all, err := netinfo.Links()
	if err != nil {
		return nil, fmt.Errorf("discover: %w", err)
	}
	var out []link
	for _, l := range all {
		if l.Flags&net.FlagUp != 0 {
			out = append(out, link{name: l.Name, prefixes: l.Prefixes})
		}
	}
	return out, nil
}

func findLink(links []link, name string) *link {
	for i := range links {
		if links[i].name == name {
			return &links[i]
		}
	}
	return nil
}

// segment is where the answers to one query may come from: the link the
// query went out on. An agent answers from an address of its own on that
// link, so an answer from anywhere else is forged, and dialling its
// address would let a forger choose whom the controller connects to.
type segment struct {
	// zone is the link's name: link-local IPv6 answers must have come in
	// on it. Empty for a query to IPv4.
	zone string
	// prefixes are the link's prefixes of the query's family, masked.
	prefixes []netip.Prefix
	// only, if valid, is the one address that may answer: a query to a
	// unicast address on no link of this host (routed).
	only netip.Addr
}

// contains reports whether a (with its zone if link-local) may answer.
func (s *segment) contains(a netip.Addr) bool {
	if s.only.IsValid() {
		return a == s.only
	}
	if a.Is6() && a.IsLinkLocalUnicast() {
		return s.zone != "" && a.Zone() == s.zone
	}
	a = a.WithZone("")
	for _, p := range s.prefixes {
		if !p.Contains(a) {
			continue
		}
		if a.Is4() && p.Bits() <= 30 && (a == p.Addr() || a == Broadcast(p)) {
			continue // a subnet's network or broadcast address is no host's
		}
		if a.Is6() && p.Bits() < 128 && a == p.Addr() {
			continue // the subnet-router anycast address
		}
		return true
	}
	return false
}

// segmentFor returns where the answers to a query to dst may come from:
//   - to an IPv4 subnet's broadcast address: that subnet, on every link
//     that has it;
//   - to the all-nodes (or another multicast) address of a link: that
//     link's IPv6 prefixes and link-local addresses;
//   - to a unicast address on a link of this host: that link's prefixes
//     of its family (and its link-local addresses for IPv6);
//   - to any other unicast address: that address.
func segmentFor(dst netip.Addr, links []link) (segment, error) {
	switch {
	case dst.Is4():
		var s segment
		for _, l := range links {
			for _, p := range l.prefixes {
				if p.Addr().Is4() && p.Bits() <= 30 && Broadcast(p) == dst {
					s.prefixes = append(s.prefixes, p.Masked())
				}
			}
		}
		if len(s.prefixes) > 0 {
			return s, nil
		}
	case dst.IsMulticast():
		l := findLink(links, dst.Zone())
		if dst.Zone() == "" || l == nil {
			return segment{}, fmt.Errorf("discover: %v: a multicast destination needs the zone of a link that is up (ff02::1%%eth0)", dst)
		}
		return linkSegment(l, false), nil
	case dst.IsLinkLocalUnicast():
		return segment{zone: dst.Zone()}, nil
	}
	a := dst.WithZone("")
	for i := range links {
		for _, p := range links[i].prefixes {
			if p.Addr().Is4() == a.Is4() && p.Contains(a) {
				return linkSegment(&links[i], a.Is4()), nil
			}
		}
	}
	return segment{only: a}, nil
}

// linkSegment is the segment of a link's prefixes of one family.
func linkSegment(l *link, v4 bool) segment {
	s := segment{}
	if !v4 {
		s.zone = l.name
	}
	for _, p := range l.prefixes {
		if p.Addr().Is4() == v4 && !p.Addr().IsLinkLocalUnicast() && !p.Addr().Is4In6() {
			s.prefixes = append(s.prefixes, p.Masked())
		}
	}
	return s
}

// Reach returns whether an address may answer a query to one of dests:
// Run drops the answers from any other. Callers use it to tell which of
// the hosts they know a round could have heard from.
func Reach(dests []netip.AddrPort) (func(netip.Addr) bool, error) {
	links, err := readLinks()
	if err != nil {
		return nil, err
	}
	segs := make([]segment, 0, len(dests))
	for _, d := range dests {
		s, err := segmentFor(d.Addr(), links)
		if err != nil {
			return nil, err
		}
		segs = append(segs, s)
	}
	return func(a netip.Addr) bool {
		for i := range segs {
			if segs[i].contains(a) {
				return true
			}
		}
		return false
	}, nil
}
