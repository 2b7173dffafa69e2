package inventory

import (
	"net/netip"
	"regexp"
	"sort"
	"strings"
)

// Inventory names are chosen by ifl, not by agents: an agent's hostname is
// a wish that is granted only when it is a plain DNS host name that no
// other identity holds and that Ansible does not give a meaning of its
// own. Once given, a name is kept in the state (Host.Name) until the
// agent's hostname changes or the host is forgotten, so no other host can
// take it over in a later probe.
//
// The rules, in the order they are tried for one host:
//
//   - its hostname, if it is an RFC 1123 host name (letters, digits, "-"
//     and "."; labels of 1 to 63 characters, 253 in all), is not reserved
//     (localhost, localhost.*, *.localhost, all, ungrouped, anything that
//     reads as an IP address, including inet_aton's forms such as 127.1),
//     does not end in "-" and 8 or more hex digits that are not the start
//     of the host's own identity (those look like ifl's suffixes, below),
//     and is not held by another identity;
//   - else its hostname (when valid and not reserved) with "-" and the
//     first 8, 12, 16, ... 32 hex digits of its identity, the first free;
//   - else "ifl-" and the first 8, 12, ... 32 hex digits of its identity.
//
// Host names never contain "_" and every group name except all and
// ungrouped does, so a host name can never be a group name.

const (
	maxHostname = 253
	maxLabel    = 63
	// maxName bounds a name ifl gave: a host name plus "-" and a whole
	// identity.
	maxName = maxHostname + 1 + 32
)

var hexSuffix = regexp.MustCompile(`(?i)-([0-9a-f]{8,})$`)

// validHostname reports whether s is an RFC 1123 host name.
func validHostname(s string) bool {
	if s == "" || len(s) > maxHostname {
		return false
	}
	for _, l := range strings.Split(s, ".") {
		if !validLabel(l, maxLabel) {
			return false
		}
	}
	return true
}

func validLabel(l string, max int) bool {
	if l == "" || len(l) > max || l[0] == '-' || l[len(l)-1] == '-' {
		return false
	}
	for i := 0; i < len(l); i++ {
		c := l[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// reservedName reports whether Ansible, or a person typing a host
// pattern, would take name for something other than an agent: the
// control node, a built-in group, or an address.
func reservedName(name string) bool {
	n := strings.ToLower(name)
	switch {
	case n == "localhost", strings.HasPrefix(n, "localhost."), strings.HasSuffix(n, ".localhost"),
		n == "all", n == "ungrouped":
		return true
	}
	if _, err := netip.ParseAddr(n); err == nil {
		return true
	}
	// inet_aton reads 127.1, 2130706433 and 0x7f.1 as addresses; a last
	// label of digits only (or 0x and hex) is never a top-level domain.
	last := n[strings.LastIndexByte(n, '.')+1:]
	if strings.Trim(last, "0123456789") == "" {
		return true
	}
	if h, ok := strings.CutPrefix(last, "0x"); ok && strings.Trim(h, "0123456789abcdef") == "" {
		return true
	}
	return false
}

// nameFor reports whether name may be held by identity: a name shaped like
// an ifl host name, not reserved, and whose hex suffix, if any, is the
// start of identity.
func nameFor(name, identity string) bool {
	if name == "" || len(name) > maxName || reservedName(name) {
		return false
	}
	for _, l := range strings.Split(name, ".") {
		if !validLabel(l, maxName) {
			return false
		}
	}
	if m := hexSuffix.FindStringSubmatch(name); m != nil && !strings.HasPrefix(identity, strings.ToLower(m[1])) {
		return false
	}
	return true
}

// candidates are the names a host may get, best first. The last one,
// "ifl-" and the whole identity, can be held by no other identity.
func candidates(h *Host) []string {
	id := strings.ToLower(h.Identity)
	// The first 8, 12, ... hex digits, then the whole identity.
	var prefixes []string
	for n := 8; ; n += 4 {
		prefixes = append(prefixes, id[:min(n, len(id))])
		if n >= len(id) {
			break
		}
	}
	var out []string
	if base := h.Hostname; validHostname(base) && !reservedName(base) {
		out = append(out, base)
		for _, p := range prefixes {
			out = append(out, base+"-"+p)
		}
	}
	for _, p := range prefixes {
		out = append(out, "ifl-"+p)
	}
	return out
}

// assignNames gives a name to every host without one, and takes it back
// from any host whose name is not one it may hold or is held twice (a
// state edited by hand). Hosts are served in order of first sight, then
// identity, as the names of a state written before names were kept were
// given, so such a state keeps its names.
func (s *State) assignNames() {
	held := map[string]*Host{}
	hosts := s.byFirstSeen()
	for _, h := range hosts {
		if h.Name == "" {
			continue
		}
		if !nameFor(h.Name, strings.ToLower(h.Identity)) || held[h.Name] != nil {
			h.Name = ""
			continue
		}
		held[h.Name] = h
	}
	for _, h := range hosts {
		if h.Name != "" {
			continue
		}
		for _, c := range candidates(h) {
			if held[c] == nil && nameFor(c, strings.ToLower(h.Identity)) {
				h.Name = c
				held[c] = h
				break
			}
		}
		if h.Name == "" {
			// Only a state edited by hand gets here: two identities
			// that differ only in case.
			for i := 0; h.Name == ""; i++ {
				c := "ifl-" + strings.ToLower(h.Identity) + "-" + string(rune('a'+i%26)) + strings.Repeat("x", i/26)
				if held[c] == nil {
					h.Name = c
					held[c] = h
				}
			}
		}
	}
}

func (s *State) byFirstSeen() []*Host {
	hs := make([]*Host, 0, len(s.Hosts))
	for _, h := range s.Hosts {
		hs = append(hs, h)
	}
	sort.Slice(hs, func(i, j int) bool {
		if !hs[i].FirstSeen.Equal(hs[j].FirstSeen) {
			return hs[i].FirstSeen.Before(hs[j].FirstSeen)
		}
		return hs[i].Identity < hs[j].Identity
	})
	return hs
}

// Names returns every host under its inventory name, giving names to the
// hosts that have none yet.
func (s *State) Names() map[string]*Host {
	s.assignNames()
	out := make(map[string]*Host, len(s.Hosts))
	for _, h := range s.Hosts {
		out[h.Name] = h
	}
	return out
}
