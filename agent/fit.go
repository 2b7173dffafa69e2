package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"time"

	"github.com/ifl-project/ifl/proto"
)

// maxFactsJSON is the room for the facts in a ping reply: a message less
// its type byte.
const maxFactsJSON = proto.MaxMessage - 1

var errFactsTooLarge = errors.New("facts do not fit in a frame")

// widestTime stands in for the time stamped on each answer while facts are
// measured: milliseconds in UTC print at most this wide.
var widestTime = time.Date(2026, 12, 31, 23, 59, 59, 999_000_000, time.UTC)

// fitFacts returns f, or a copy with interfaces and labels left out and
// Truncated saying how many, whose JSON fits in maxLen bytes whatever time
// is stamped on it. What goes first is what the inventory needs least:
//
//  1. interfaces without an address outside loopback and link-local
//     (container veths, down links, lo),
//  2. labels, the last key in byte order first,
//  3. interfaces with such an address,
//  4. interfaces that carry a default route;
//
// within each group the later in the list goes first. It fails only if the
// facts do not fit with none of them.
func fitFacts(f *proto.Facts, maxLen int) (*proto.Facts, error) {
	size := func(g *proto.Facts) (int, error) {
		t := *g
		t.Time = widestTime
		b, err := json.Marshal(&t)
		return len(b), err
	}
	n, err := size(f)
	if err != nil || n <= maxLen {
		return f, err
	}

	// Interfaces and labels, in the order they are kept.
	type item struct {
		group int
		ifc   int    // interface index, -1 for a label
		label string // label key
	}
	routed := make(map[string]bool)
	for _, r := range f.DefaultRoutes {
		routed[r.Interface] = true
	}
	var items []item
	for i, ifc := range f.Interfaces {
		g := 3
		switch {
		case routed[ifc.Name]:
			g = 0
		case hasUsefulAddr(ifc):
			g = 1
		}
		items = append(items, item{group: g, ifc: i})
	}
	for _, k := range slices.Sorted(maps.Keys(f.Labels)) {
		items = append(items, item{group: 2, ifc: -1, label: k})
	}
	slices.SortStableFunc(items, func(a, b item) int { return a.group - b.group })

	build := func(keep int) *proto.Facts {
		g := *f
		kept := make([]bool, len(f.Interfaces))
		labels := make(map[string]string)
		for _, it := range items[:keep] {
			if it.ifc >= 0 {
				kept[it.ifc] = true
			} else {
				labels[it.label] = f.Labels[it.label]
			}
		}
		g.Interfaces = nil
		for i, ifc := range f.Interfaces {
			if kept[i] {
				g.Interfaces = append(g.Interfaces, ifc)
			}
		}
		if len(labels) > 0 {
			g.Labels = labels
		} else {
			g.Labels = nil
		}
		g.Truncated = &proto.Truncated{
			Interfaces: len(f.Interfaces) - len(g.Interfaces),
			Labels:     len(f.Labels) - len(labels),
		}
		return &g
	}
	fits := func(keep int) (bool, error) {
		n, err := size(build(keep))
		return n <= maxLen, err
	}
	if ok, err := fits(0); err != nil {
		return nil, err
	} else if !ok {
		return nil, fmt.Errorf("%w: over %d bytes even without interfaces and labels", errFactsTooLarge, maxLen)
	}
	// The size grows with keep, but for the few bytes saved where a count
	// in the marker loses a digit or drops to zero, so the search finds the
	// largest keep that fits or one close to it; whichever it finds fits.
	lo, hi := 0, len(items) // build(lo) fits; build(hi) is not known to
	for lo < hi {
		mid := lo + (hi-lo+1)/2
		ok, err := fits(mid)
		if err != nil {
			return nil, err
		}
		if ok {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	return build(lo), nil
}

// hasUsefulAddr reports whether ifc has an address that can reach the host
// from elsewhere: not loopback, not link-local.
func hasUsefulAddr(ifc proto.Interface) bool {
	for _, a := range ifc.Addrs {
		p, err := netip.ParsePrefix(a)
		if err != nil {
			continue
		}
		ip := p.Addr()
		if !ip.IsLoopback() && !ip.IsLinkLocalUnicast() && !ip.IsLinkLocalMulticast() && !ip.IsUnspecified() {
			return true
		}
	}
	return false
}
