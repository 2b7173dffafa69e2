package inventory

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/ifl-project/ifl/internal/support/netinfo"
	"github.com/ifl-project/ifl/proto"
)

// Prefer is the address family ansible_host is taken from when a host
// has verified addresses of both; the zero value is PreferIPv4.
type Prefer string

// Preferences.
const (
	PreferIPv4 Prefer = "ipv4"
	PreferIPv6 Prefer = "ipv6"
)

// ParsePrefer reads a preference as the CLI takes it.
func ParsePrefer(s string) (Prefer, error) {
	switch p := Prefer(s); p {
	case PreferIPv4, PreferIPv6:
		return p, nil
	}
	return "", fmt.Errorf("%q: want ipv4 or ipv6", s)
}

// Verified is one address where a host proved its identity with the
// handshake. Only such addresses become ansible_host: the addresses an
// agent reports in its facts are claims, and a compromised host could
// claim any other host's.
type Verified struct {
	Addr string    `json:"addr"` // with its zone if link-local: the controller's interface
	At   time.Time `json:"at"`   // the last probe that verified it
}

// verified returns the host's verified addresses; a state written before
// they were kept has only the address that answered last.
func (h *Host) verified() []Verified {
	if len(h.Verified) == 0 && h.IP != "" {
		return []Verified{{Addr: h.IP, At: h.LastSeen}}
	}
	return h.Verified
}

// Address returns the address Ansible should reach the host at, among
// those the handshake verified: one of the preferred family if the host
// has one, else one of the other; a global address before a link-local
// one, the most recently verified first, then the lowest. It is written
// as ifl writes addresses, from the parsed address; a string that is not
// an address (parseAddr) is never returned: "" when there is no other.
func (h *Host) Address(prefer Prefer) string {
	vs := h.verified()
	if len(vs) > 1 {
		vs = sortVerified(slices.Clone(vs))
	}
	want6 := prefer == PreferIPv6
	first := ""
	for _, v := range vs {
		a, err := parseAddr(v.Addr)
		if err != nil {
			continue
		}
		if (netinfo.Kind(a) != netinfo.KindIPv4) == want6 {
			return a.String()
		}
		if first == "" {
			first = a.String()
		}
	}
	return first
}

// VerifiedAddresses returns the host's verified addresses in the order
// Address prefers them (IPv4 first), as ifl writes them, and whether every
// one of them is an address (parseAddr).
func (h *Host) VerifiedAddresses() ([]string, bool) {
	vs := h.verified()
	if len(vs) > 1 {
		vs = sortVerified(slices.Clone(vs))
	}
	out := make([]string, 0, len(vs))
	ok := true
	for _, v := range vs {
		a, err := parseAddr(v.Addr)
		if err != nil {
			ok = false
			out = append(out, v.Addr)
			continue
		}
		out = append(out, a.String())
	}
	return out, ok
}

// parseAddr reads an address as the state holds it: an IP address, with
// a zone only if it is link-local, and then one that could be a network
// interface's name or index (validZone). ifl writes no other; anything
// else was written by someone else, and must not reach Ansible or a
// terminal as ifl's own.
func parseAddr(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("want an IP address")
	}
	if z := a.Zone(); z != "" && (!a.IsLinkLocalUnicast() || !validZone(z)) {
		return netip.Addr{}, fmt.Errorf("want a zone only on a link-local address, and one that can name an interface (1 to 15 printable ASCII characters but / : { } %% and space)")
	}
	return a, nil
}

// validZone reports whether z could be a Linux interface's name (1 to 15
// bytes, not . or .., no /, : or white space), printable ASCII without
// the braces and the % that a template needs.
func validZone(z string) bool {
	if z == "" || len(z) > 15 || z == "." || z == ".." {
		return false
	}
	for i := 0; i < len(z); i++ {
		if c := z[i]; c <= ' ' || c > '~' || strings.IndexByte("/:{}%", c) >= 0 {
			return false
		}
	}
	return true
}

// sortVerified orders addresses by kind, then the most recent first, then
// by address.
func sortVerified(vs []Verified) []Verified {
	slices.SortStableFunc(vs, func(x, y Verified) int {
		a, errA := netip.ParseAddr(x.Addr)
		b, errB := netip.ParseAddr(y.Addr)
		if errA != nil || errB != nil {
			return boolCmp(errA != nil, errB != nil)
		}
		if c := int(netinfo.Kind(a) - netinfo.Kind(b)); c != 0 {
			return c
		}
		if c := y.At.Compare(x.At); c != 0 {
			return c
		}
		return a.Compare(b)
	})
	return vs
}

func boolCmp(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

// updateVerified returns the host's verified addresses after a probe at
// now that verified it at answered. An address the host had before is
// dropped when the probe looked there and the host did not answer
// (covered), when another identity answered there (taken), or when the
// host answered at another address of the same kind and not there: the
// address it had is then one it left, as after a DHCP move, even where
// the probe did not look (a broadcast round looks nowhere in particular).
func updateVerified(old []Verified, answered []netip.Addr, now time.Time, covered func(netip.Addr) bool, taken func(netip.Addr) bool) []Verified {
	out := make([]Verified, 0, len(old)+len(answered))
	answeredKind := map[netinfo.AddrKind]bool{}
	here := map[netip.Addr]bool{}
	for _, a := range answered {
		out = append(out, Verified{Addr: a.String(), At: now})
		answeredKind[netinfo.Kind(a)] = true
		here[a] = true
	}
	for _, v := range old {
		a, err := netip.ParseAddr(v.Addr)
		if err != nil || here[a] || answeredKind[netinfo.Kind(a)] || covered(a) || taken(a) {
			continue
		}
		out = append(out, v)
	}
	out = sortVerified(out)
	if len(out) > MaxAddresses {
		out = out[:MaxAddresses]
	}
	return out
}

// oneHost reports whether two verified addresses of one identity, seen in
// the same probe, are one machine's (two addresses of a dual-stack host)
// rather than a key copied to another machine: both answers carry the
// same machine-id, and each lists both addresses on its interfaces. Facts
// are claims, but both addresses proved the key either way; the facts
// only decide between one host and a warning.
func oneHost(a, b Observation) bool {
	if a.Facts == nil || b.Facts == nil || a.Facts.MachineID != b.Facts.MachineID {
		return false
	}
	for _, f := range []*proto.Facts{a.Facts, b.Facts} {
		if !hasAddr(f, a.Addr) || !hasAddr(f, b.Addr) {
			return false
		}
	}
	return true
}

func hasAddr(f *proto.Facts, a netip.Addr) bool {
	a = a.WithZone("").Unmap()
	for _, ifc := range f.Interfaces {
		for _, s := range ifc.Addrs {
			if p, err := netip.ParsePrefix(s); err == nil && p.Addr().WithZone("").Unmap() == a {
				return true
			}
		}
	}
	return false
}
