package targets

import (
	"context"
	"fmt"
	"math/big"
	"net"
	"net/netip"

	"go4.org/netipx"
)

// Set is ExpandExcept without the listing and the limit: the addresses
// of the words less those of exclude, as a set of ranges, however many
// they are. It is for the callers that only test addresses against the
// targets, or count them before listing them.
func Set(ctx context.Context, words, exclude []string, r Resolver) (*netipx.IPSet, error) {
	if r == nil {
		r = net.DefaultResolver
	}
	var b netipx.IPSetBuilder
	for _, w := range words {
		rs, err := parse(ctx, w, r, true)
		if err != nil {
			return nil, err
		}
		for _, rg := range rs {
			b.AddRange(rg)
		}
	}
	for _, w := range exclude {
		rs, err := parse(ctx, w, r, false)
		if err != nil {
			return nil, fmt.Errorf("exclude: %w", err)
		}
		for _, rg := range rs {
			b.RemoveRange(rg)
		}
	}
	return b.IPSet()
}

// Count returns the number of addresses in s: up to 2^128, more than any
// integer type holds.
func Count(s *netipx.IPSet) *big.Int {
	total := new(big.Int)
	for _, rg := range s.Ranges() {
		total.Add(total, count(rg.From(), rg.To()))
	}
	return total
}

// List returns the addresses of s, sorted. Check Count first: List
// allocates one entry per address.
func List(s *netipx.IPSet) []netip.Addr {
	var out []netip.Addr
	if n := Count(s); n.IsInt64() {
		out = make([]netip.Addr, 0, n.Int64())
	}
	for _, rg := range s.Ranges() {
		for a := rg.From(); ; a = a.Next() {
			out = append(out, a)
			if a == rg.To() {
				break
			}
		}
	}
	return out
}
