// Package targets turns the target words of a command line (addresses,
// CIDR prefixes, ranges, host names) into a deduplicated, sorted list of
// addresses to scan.
//
// Accepted forms:
//
//	198.18.0.5            one address
//	198.18.0.0/24         a prefix; for IPv4 prefixes up to /30 the network
//	                      and broadcast addresses are left out, as arp-scan does
//	198.18.0.10-198.18.0.20, 198.18.0.10-20   an inclusive range
//	host.example          every IPv4 address the name resolves to
package targets

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// DefaultMax is the most addresses Expand returns unless told otherwise:
// a /16.
const DefaultMax = 1 << 16

// ErrTooMany is returned by Expand when the targets hold more than the
// allowed number of addresses.
var ErrTooMany = errors.New("too many addresses")

// Resolver looks up host names; *net.Resolver satisfies it.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Expand parses every word and returns the addresses, sorted and without
// duplicates. max bounds the total (0 means DefaultMax); r resolves host
// names (nil means net.DefaultResolver).
func Expand(ctx context.Context, words []string, max int, r Resolver) ([]netip.Addr, error) {
	if max <= 0 {
		max = DefaultMax
	}
	if r == nil {
		r = net.DefaultResolver
	}
	var out []netip.Addr
	for _, w := range words {
		lo, hi, err := parse(ctx, w, r, &out)
		if err != nil {
			return nil, err
		}
		if !lo.IsValid() {
			continue // a name, already appended
		}
		n := count(lo, hi)
		if n.Cmp(big.NewInt(int64(max-len(out)))) > 0 {
			return nil, fmt.Errorf("%s: %w: %s addresses, more than the limit of %d (use --force for more)", w, ErrTooMany, n, max)
		}
		for a := lo; ; a = a.Next() {
			out = append(out, a)
			if a == hi {
				break
			}
		}
	}
	if len(out) > max {
		return nil, fmt.Errorf("%w: %d addresses, more than the limit of %d (use --force for more)", ErrTooMany, len(out), max)
	}
	slices.SortFunc(out, func(a, b netip.Addr) int { return a.Compare(b) })
	return slices.Compact(out), nil
}

const allowed = "an address, a CIDR prefix such as 198.18.0.0/24, a range such as 198.18.0.1-198.18.0.50 or 198.18.0.1-50, or a host name"

// parse returns the inclusive range a word stands for, or appends the
// addresses of a host name to out and returns an invalid lo.
func parse(ctx context.Context, w string, r Resolver, out *[]netip.Addr) (lo, hi netip.Addr, err error) {
	if w == "" {
		return lo, hi, fmt.Errorf("empty target (want %s)", allowed)
	}
	if strings.Contains(w, "/") {
		p, err := netip.ParsePrefix(w)
		if err != nil {
			return lo, hi, fmt.Errorf("%q: bad CIDR prefix (want %s)", w, allowed)
		}
		p = p.Masked()
		lo, hi = p.Addr(), last(p)
		if p.Addr().Is4() && p.Bits() <= 30 {
			lo, hi = lo.Next(), hi.Prev()
		}
		return lo, hi, nil
	}
	if a, b, ok := strings.Cut(w, "-"); ok {
		if lo, err = netip.ParseAddr(a); err == nil {
			if hi, err = netip.ParseAddr(b); err != nil && lo.Is4() {
				// 198.18.0.10-20: the last octet only.
				n, nerr := strconv.Atoi(b)
				if nerr == nil && n >= 0 && n <= 255 {
					b4 := lo.As4()
					b4[3] = byte(n)
					hi, err = netip.AddrFrom4(b4), nil
				}
			}
			if err == nil {
				if hi.BitLen() != lo.BitLen() || hi.Less(lo) {
					return lo, hi, fmt.Errorf("%q: the range ends before it starts", w)
				}
				return lo, hi, nil
			}
			return netip.Addr{}, netip.Addr{}, fmt.Errorf("%q: bad range (want %s)", w, allowed)
		}
		// Not an address range: perhaps a host name with a dash.
	}
	if a, err := netip.ParseAddr(w); err == nil {
		return a.Unmap(), a.Unmap(), nil
	}
	if !validHostname(w) {
		return lo, hi, fmt.Errorf("%q: not a target (want %s)", w, allowed)
	}
	addrs, err := r.LookupNetIP(ctx, "ip4", w)
	if err != nil || len(addrs) == 0 {
		return lo, hi, fmt.Errorf("%q: cannot resolve host name: %v", w, err)
	}
	for _, a := range addrs {
		*out = append(*out, a.Unmap())
	}
	return netip.Addr{}, netip.Addr{}, nil
}

func validHostname(s string) bool {
	if len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(strings.TrimSuffix(s, "."), ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// last returns the highest address of p.
func last(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// count returns the number of addresses from lo to hi inclusive.
func count(lo, hi netip.Addr) *big.Int {
	n := new(big.Int).Sub(new(big.Int).SetBytes(hi.AsSlice()), new(big.Int).SetBytes(lo.AsSlice()))
	return n.Add(n, big.NewInt(1))
}
