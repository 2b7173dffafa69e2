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
	n, err := factsSize(f)
	if err != nil || n <= maxLen {
		return f, err
	}
	ft := &fitting{f: f, maxLen: maxLen, items: keepOrder(f)}
	if ok, err := ft.fits(0); err != nil {
		return nil, err
	} else if !ok {
		return nil, fmt.Errorf("%w: over %d bytes even without interfaces and labels", errFactsTooLarge, maxLen)
	}
	keep, err := ft.most()
	if err != nil {
		return nil, err
	}
	return ft.build(keep), nil
}

// factsSize is the length of g's JSON with the widest time stamped on it.
func factsSize(g *proto.Facts) (int, error) {
	t := *g
	t.Time = widestTime
	b, err := json.Marshal(&t)
	return len(b), err
}

// keepItem is an interface or a label of the facts being fitted.
type keepItem struct {
	group int
	ifc   int    // interface index, -1 for a label
	label string // label key
}

// keepOrder returns f's interfaces and labels, in the order they are kept
// (see fitFacts).
func keepOrder(f *proto.Facts) []keepItem {
	routed := make(map[string]bool)
	for _, r := range f.DefaultRoutes {
		routed[r.Interface] = true
	}
	var items []keepItem
	for i, ifc := range f.Interfaces {
		g := 3
		switch {
		case routed[ifc.Name]:
			g = 0
		case hasUsefulAddr(ifc):
			g = 1
		}
		items = append(items, keepItem{group: g, ifc: i})
	}
	for _, k := range slices.Sorted(maps.Keys(f.Labels)) {
		items = append(items, keepItem{group: 2, ifc: -1, label: k})
	}
	slices.SortStableFunc(items, func(a, b keepItem) int { return a.group - b.group })
	return items
}

// fitting is the state of one fitFacts that must leave something out.
type fitting struct {
	f      *proto.Facts
	maxLen int
	items  []keepItem // in the order they are kept
}

// build returns a copy of the facts with the first keep items only, and
// Truncated saying how many were left out.
func (ft *fitting) build(keep int) *proto.Facts {
	f := ft.f
	g := *f
	kept := make([]bool, len(f.Interfaces))
	labels := make(map[string]string)
	for _, it := range ft.items[:keep] {
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

// fits reports whether the facts with the first keep items fit.
func (ft *fitting) fits(keep int) (bool, error) {
	n, err := factsSize(ft.build(keep))
	return n <= ft.maxLen, err
}

// most returns how many items to keep, given that keeping none fits.
//
// The size grows with keep, but for the few bytes saved where a count
// in the marker loses a digit or drops to zero, so the search finds the
// largest keep that fits or one close to it; whichever it finds fits.
func (ft *fitting) most() (int, error) {
	lo, hi := 0, len(ft.items) // build(lo) fits; build(hi) is not known to
	for lo < hi {
		mid := lo + (hi-lo+1)/2
		ok, err := ft.fits(mid)
		if err != nil {
			return 0, err
		}
		if ok {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	return lo, nil
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
