package inventory

import (
	"net/netip"
	"slices"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/ifl-project/ifl/proto"
)

// Bounds on the strings the state keeps of what an agent sent, in bytes.
// An agent's answer may be 64 KiB, all of it in one fact: the state keeps
// a bounded record of each host, whatever it sends.
const (
	MaxHostname     = 253 // an RFC 1123 host name's own bound
	MaxMachineID    = 128 // a machine-id is 32 hex digits
	MaxOS           = 256
	MaxKernel       = 256
	MaxAgentVersion = 64
	MaxGateway      = 64
	MaxMAC          = 64 // an InfiniBand address is 59 characters
)

// Truncated ends a string the state kept shorter than the agent sent it.
const Truncated = "…"

// Bounds on the identities that one probe adds.
const (
	// MaxNewPerPrefix is how many hosts that answered in one probe only
	// the state keeps in one prefix: a /24 for IPv4, a /64 for IPv6
	// (link-local ones per interface). A segment's first probe finds
	// at most 254 IPv4 hosts per /24; an IPv6 segment past that is
	// taken in over several probes.
	MaxNewPerPrefix = 256
	// MaxNewPerMAC is how many new identities one probe adds at one MAC
	// address: that of the interface that, by the agent's facts, holds
	// the address that answered.
	MaxNewPerMAC = 4
)

// bound returns s as valid UTF-8 (each run of invalid bytes made U+FFFD,
// as the state's JSON would make it anyway), cut at a rune boundary to at
// most max bytes, the last of them Truncated, when it is longer; and
// whether it was cut.
func bound(s string, max int) (string, bool) {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= max {
		return s, false
	}
	cut := max - len(Truncated)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + Truncated, true
}

// Cut is a fact the state keeps shorter than the agent sent it.
type Cut struct {
	Field string `json:"field" yaml:"field"`
	Bytes int    `json:"bytes" yaml:"bytes"` // as the agent sent it
	Max   int    `json:"max" yaml:"max"`     // what the state keeps
}

// setFacts records the agent's facts in h, each string within its bound.
// It returns the facts it cut whose stored value changed, so that a host
// that keeps sending the same long string is warned about once.
func (h *Host) setFacts(f *proto.Facts) []Cut {
	var cuts []Cut
	set := func(field string, dst *string, v string, max int) {
		b, cut := bound(v, max)
		if cut && b != *dst {
			cuts = append(cuts, Cut{Field: field, Bytes: len(v), Max: max})
		}
		*dst = b
	}
	set("hostname", &h.Hostname, f.Hostname, MaxHostname)
	set("machine_id", &h.MachineID, f.MachineID, MaxMachineID)
	set("os", &h.OS, f.OS.PrettyName, MaxOS)
	set("kernel", &h.Kernel, f.Kernel, MaxKernel)
	set("agent_version", &h.AgentVersion, f.AgentVersion, MaxAgentVersion)
	set("gateway", &h.Gateway, f.Gateway(), MaxGateway)
	old := h.MACs
	h.MACs = nil
	longest := 0
	for _, ifc := range f.Interfaces {
		if len(h.MACs) == MaxAddresses {
			break
		}
		if ifc.MAC == "" || len(ifc.Addrs) == 0 {
			continue
		}
		m, cut := bound(ifc.MAC, MaxMAC)
		if slices.Contains(h.MACs, m) {
			continue
		}
		if cut && !slices.Contains(old, m) {
			longest = max(longest, len(ifc.MAC))
		}
		h.MACs = append(h.MACs, m)
	}
	if longest > 0 {
		cuts = append(cuts, Cut{Field: "macs", Bytes: longest, Max: MaxMAC})
	}
	return cuts
}

// prefixOf is the prefix an address counts in for MaxNewPerPrefix: its
// /24, or its /64 (with its zone, for a link-local one).
func prefixOf(a netip.Addr) string {
	a = a.Unmap()
	bits := 64
	if a.Is4() {
		bits = 24
	}
	p, err := a.WithZone("").Prefix(bits)
	if err != nil {
		return a.String()
	}
	if z := a.Zone(); z != "" {
		return p.String() + "%" + z
	}
	return p.String()
}

// hostPrefix is prefixOf the host's address.
func hostPrefix(h *Host) string {
	site := ""
	if h.Site != "" {
		site = h.Site + " "
	}
	a, err := netip.ParseAddr(h.IP)
	if err != nil {
		return site + h.IP
	}
	return site + prefixOf(a)
}

// macOf returns the MAC address, in lower case, of the interface that by
// f holds one of addrs; "" when none does.
func macOf(f *proto.Facts, addrs []netip.Addr) string {
	if f == nil {
		return ""
	}
	for _, ifc := range f.Interfaces {
		if ifc.MAC == "" {
			continue
		}
		one := proto.Facts{Interfaces: []proto.Interface{ifc}}
		for _, a := range addrs {
			if hasAddr(&one, a) {
				m, _ := bound(strings.ToLower(ifc.MAC), MaxMAC)
				return m
			}
		}
	}
	return ""
}

// admit decides which identities new in this probe the state takes: at
// most MaxNewPerPrefix in one prefix and MaxNewPerMAC at one MAC, in the
// order of their addresses. It returns those it refuses, and a warning
// naming them (nil when it refuses none).
func (s *State) admit(groups []*observed) (map[string]bool, *warning) {
	perPrefix := map[string]int{}
	perMAC := map[string]int{}
	refused := map[string]bool{}
	w := &warning{kind: KindRefused}
	prefixes, macs := map[string]bool{}, map[string]bool{}
	for _, g := range groups {
		id := g.o.Identity
		if s.Hosts[id] != nil {
			continue
		}
		p := prefixOf(g.o.Addr)
		mac := macOf(g.o.Facts, g.addrs)
		switch {
		case perPrefix[p] >= MaxNewPerPrefix:
			prefixes[p] = true
		case mac != "" && perMAC[mac] >= MaxNewPerMAC:
			macs[mac] = true
		default:
			perPrefix[p]++
			if mac != "" {
				perMAC[mac]++
			}
			continue
		}
		refused[id] = true
		w.ids = append(w.ids, id)
	}
	if len(w.ids) == 0 {
		return refused, nil
	}
	w.identity = w.ids[0]
	w.prefixes = sortedKeys(prefixes)
	w.macs = sortedKeys(macs)
	return refused, w
}

// forgetProbation keeps at most MaxNewPerPrefix hosts that answered in
// one probe only in each prefix, forgetting first those that did not
// answer in this one and were seen longest ago. It returns a warning
// naming those it forgot, nil if none.
func (s *State) forgetProbation(present map[string]bool) *warning {
	byPrefix := map[string][]*Host{}
	for _, h := range s.Hosts {
		if h.Rounds == 1 {
			p := hostPrefix(h)
			byPrefix[p] = append(byPrefix[p], h)
		}
	}
	w := &warning{kind: KindForgotten}
	for _, p := range over(byPrefix, MaxNewPerPrefix) {
		for _, h := range s.forgetOldest(byPrefix[p], MaxNewPerPrefix, present) {
			w.ids = append(w.ids, h.Identity)
		}
		w.prefixes = append(w.prefixes, p)
	}
	if len(w.ids) == 0 {
		return nil
	}
	w.identity = w.ids[0]
	return w
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
