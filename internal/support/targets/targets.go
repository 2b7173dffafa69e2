// Package targets turns the target words of a command line (addresses,
// CIDR prefixes, ranges, host names), less the excluded ones, into a
// deduplicated, sorted list of addresses to scan. Words are gathered into
// an address set of ranges (go4.org/netipx) before any address is listed,
// so that excluding from a large prefix, and checking the size against the
// limit, cost nothing per address.
//
// Accepted forms:
//
//	198.18.0.5            one address (IPv4 or IPv6)
//	198.18.0.0/24         a prefix; for IPv4 prefixes up to /30 the network
//	                      and broadcast addresses are left out, as arp-scan does
//	198.18.0.10-198.18.0.20, 198.18.0.10-20   an inclusive range
//	host.example          every IPv4 address the name resolves to
package targets

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/netip"
	"strconv"
	"strings"

	"go4.org/netipx"
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
	return ExpandExcept(ctx, words, nil, max, r)
}

// ExpandExcept is Expand less the addresses of the exclude words, which
// take the same forms (a prefix excludes all of itself). The limit
// applies to what is left.
func ExpandExcept(ctx context.Context, words, exclude []string, max int, r Resolver) ([]netip.Addr, error) {
	if max <= 0 {
		max = DefaultMax
	}
	set, err := Set(ctx, words, exclude, r)
	if err != nil {
		return nil, err
	}
	if total := Count(set); total.Cmp(big.NewInt(int64(max))) > 0 {
		return nil, fmt.Errorf("%w: %s addresses, more than the limit of %d", ErrTooMany, total, max)
	}
	return List(set), nil
}

const allowed = "an address, a CIDR prefix such as 198.18.0.0/24, a range such as 198.18.0.1-198.18.0.50 or 198.18.0.1-50, or a host name"

// parse returns the ranges a word stands for. A prefix of a target leaves
// out an IPv4 network's network and broadcast addresses (trim); one to
// exclude does not.
func parse(ctx context.Context, w string, r Resolver, trim bool) ([]netipx.IPRange, error) {
	if w == "" {
		return nil, fmt.Errorf("empty target (want %s)", allowed)
	}
	if strings.Contains(w, "/") {
		p, err := netip.ParsePrefix(w)
		if err != nil {
			return nil, fmt.Errorf("%q: bad CIDR prefix (want %s)", w, allowed)
		}
		p = p.Masked()
		lo, hi := p.Addr(), netipx.PrefixLastIP(p)
		if trim && p.Addr().Is4() && p.Bits() <= 30 {
			lo, hi = lo.Next(), hi.Prev()
		}
		return []netipx.IPRange{netipx.IPRangeFrom(lo, hi)}, nil
	}
	if a, b, ok := strings.Cut(w, "-"); ok {
		if lo, err := netip.ParseAddr(a); err == nil {
			hi, err := netip.ParseAddr(b)
			if err != nil && lo.Is4() {
				// 198.18.0.10-20: the last octet only.
				n, nerr := strconv.Atoi(b)
				if nerr == nil && n >= 0 && n <= 255 {
					b4 := lo.As4()
					b4[3] = byte(n)
					hi, err = netip.AddrFrom4(b4), nil
				}
			}
			if err != nil {
				return nil, fmt.Errorf("%q: bad range (want %s)", w, allowed)
			}
			lo, hi = lo.Unmap(), hi.Unmap()
			if hi.BitLen() != lo.BitLen() || hi.Less(lo) {
				return nil, fmt.Errorf("%q: the range ends before it starts", w)
			}
			return []netipx.IPRange{netipx.IPRangeFrom(lo, hi)}, nil
		}
		// Not an address range: perhaps a host name with a dash.
	}
	if a, err := netip.ParseAddr(w); err == nil {
		a = a.Unmap()
		return []netipx.IPRange{netipx.IPRangeFrom(a, a)}, nil
	}
	// Digits and dots mean an IPv4 address, a colon an IPv6 one: a typo
	// there is not a host name to look up.
	if strings.Contains(w, ":") || strings.Trim(w, "0123456789.") == "" {
		return nil, fmt.Errorf("%q: not an IP address (want %s)", w, allowed)
	}
	if !validHostname(w) {
		return nil, fmt.Errorf("%q: not a target (want %s)", w, allowed)
	}
	addrs, err := r.LookupNetIP(ctx, "ip4", w)
	if err != nil || len(addrs) == 0 {
		return nil, fmt.Errorf("%q: cannot resolve host name: %v", w, err)
	}
	out := make([]netipx.IPRange, 0, len(addrs))
	for _, a := range addrs {
		a = a.Unmap()
		out = append(out, netipx.IPRangeFrom(a, a))
	}
	return out, nil
}

// ReadList reads target words from a list, as nmap's -iL does: words are
// separated by blanks and line ends, and a # starts a comment that runs to
// the end of its line. name is for errors.
func ReadList(name string, r io.Reader) ([]string, error) {
	var words []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		words = append(words, strings.FieldsFunc(line, func(r rune) bool { return r == ' ' || r == '\t' || r == ',' || r == '\r' })...)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return words, nil
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

// count returns the number of addresses from lo to hi inclusive.
func count(lo, hi netip.Addr) *big.Int {
	n := new(big.Int).Sub(new(big.Int).SetBytes(hi.AsSlice()), new(big.Int).SetBytes(lo.AsSlice()))
	return n.Add(n, big.NewInt(1))
}
