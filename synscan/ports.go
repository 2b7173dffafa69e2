package synscan

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// ParsePorts reads a port list such as "22,80,7000-7010" and returns the
// ports sorted, without duplicates.
func ParsePorts(s string) ([]uint16, error) {
	var out []uint16
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := parsePort(lo)
		if err != nil {
			return nil, fmt.Errorf("ports %q: %w (want a list such as 22,80,7000-7010)", s, err)
		}
		b := a
		if isRange {
			if b, err = parsePort(hi); err != nil {
				return nil, fmt.Errorf("ports %q: %w (want a list such as 22,80,7000-7010)", s, err)
			}
			if b < a {
				return nil, fmt.Errorf("ports %q: range %d-%d ends before it starts", s, a, b)
			}
		}
		for p := int(a); p <= int(b); p++ {
			out = append(out, uint16(p))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return slices.Compact(out), nil
}

func parsePort(s string) (uint16, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("bad port %q (1-65535)", s)
	}
	return uint16(n), nil
}

// Sort orders results by address, then port.
func Sort(rs []Result) {
	slices.SortFunc(rs, func(a, b Result) int {
		if c := a.Addr.Compare(b.Addr); c != 0 {
			return c
		}
		return int(a.Port) - int(b.Port)
	})
}
