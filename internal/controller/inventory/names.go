package inventory

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// Inventory names are chosen by ifl, not by agents: an agent's hostname is
// a wish that is granted only when it is a plain DNS host name that no
// other identity holds, in any case, and that Ansible does not give a
// meaning of its own. Once given, a name is kept in the state (Host.Name)
// until the agent's hostname changes or the host is forgotten, so no other
// host can take it over in a later probe; and when an established host is
// forgotten (pruned, or evicted by the bound on identities per address),
// its name stays reserved for its identity for ReserveFor (see reserve).
//
// The rules, in the order they are tried for one host:
//
//   - its hostname, if it is an RFC 1123 host name (letters, digits, "-"
//     and "."; labels of 1 to 63 characters, 253 in all), is not reserved
//     (localhost, localhost.*, *.localhost, all, ungrouped, anything that
//     reads as an IP address, including inet_aton's forms such as 127.1),
//     does not end in "-" and 8 or more hex digits that are not the start
//     of the host's own identity (those look like ifl's suffixes, below),
//     is not held by another identity and not reserved for one;
//   - else its hostname (when valid and not reserved) with "-" and the
//     first 16, 20, ... 32 hex digits of its identity, the first free;
//   - else "ifl-" and the first 16, 20, ... 32 hex digits of its identity.
//
// Sixteen hex digits are 64 bits: no key can be made to start with
// another's. Names given with 8 (before suffixes were widened) are kept
// by the hosts that hold them.
//
// Host names never contain "_" and every group name except all and
// ungrouped does, so a host name can never be a group name.

const (
	maxHostname = 253
	maxLabel    = 63
	// maxName bounds a name ifl gave: a host name plus "-" and a whole
	// identity.
	maxName = maxHostname + 1 + 32
	// suffixMin is the shortest identity prefix a name is given with.
	suffixMin = 16
	// legacySuffix is the one names were given with before: a state
	// written before names were kept gets the names it had.
	legacySuffix = 8
)

// Reservations.
const (
	// ReserveFor is how long the name of a forgotten host stays
	// reserved for its identity.
	ReserveFor = 30 * 24 * time.Hour
	// MaxReserved bounds the reservations the state keeps.
	MaxReserved = 1024
)

// Why a name is reserved.
const (
	ReservedPruned  = "pruned"  // its host was pruned
	ReservedEvicted = "evicted" // its host was forgotten: too many identities at its address
	ReservedNamed   = "named"   // its host was given another name (GiveName)
)

// Reservation is a name kept for the identity that held it: no other
// identity is given it until Since+ReserveFor, unless an operator gives
// it (GiveName, with force).
type Reservation struct {
	Name     string    `json:"name"`
	Identity string    `json:"identity"`
	Since    time.Time `json:"since"` // when the identity lost it
	Why      string    `json:"why"`
}

// Until is when the reservation ends.
func (r Reservation) Until() time.Time { return r.Since.Add(ReserveFor) }

// hexSuffix returns what follows the last "-" of name when it is 8 or
// more hex digits, in any case (what `(?i)-([0-9a-f]{8,})$` matches);
// false if it is not.
func hexSuffix(name string) (string, bool) {
	i := strings.LastIndexByte(name, '-')
	if i < 0 || len(name)-i-1 < 8 {
		return "", false
	}
	tail := name[i+1:]
	for j := 0; j < len(tail); j++ {
		if c := tail[j]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return "", false
		}
	}
	return tail, true
}

// validHostname reports whether s is an RFC 1123 host name.
func validHostname(s string) bool {
	if s == "" || len(s) > maxHostname {
		return false
	}
	for l := range strings.SplitSeq(s, ".") {
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
	for l := range strings.SplitSeq(name, ".") {
		if !validLabel(l, maxName) {
			return false
		}
	}
	if m, ok := hexSuffix(name); ok && !strings.HasPrefix(identity, strings.ToLower(m)) {
		return false
	}
	return true
}

// candidates are the names a host may get, best first, with suffixes of
// from hex digits of its identity. The last one, "ifl-" and the whole
// identity, can be held by no other identity.
func candidates(h *Host, from int) []string {
	id := strings.ToLower(h.Identity)
	// The first from, from+4, ... hex digits, then the whole identity.
	var prefixes []string
	for n := from; ; n += 4 {
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

// takeable reports whether another identity could hold name: one that
// ends in "-" and 16 hex digits or more can be held only by an identity
// that starts with them (nameFor), and no key can be made to.
func takeable(name string) bool {
	m, ok := hexSuffix(name)
	return !ok || len(m) < suffixMin
}

// assignNames gives a name to every host without one, and takes it back
// from any host whose name is not one it may hold or is held twice, in
// any case (a state edited by hand, or written when names were told apart
// by case). Hosts are served in order of first sight, then identity. A
// name reserved for an identity is given to no other; the reservation of
// a name a host holds is done with.
func (s *State) assignNames() { s.assign(suffixMin) }

// assign is assignNames with suffixes of from hex digits and more: a state
// written before names were kept gets the ones it had, with legacySuffix.
func (s *State) assign(from int) {
	held := map[string]*Host{}
	hosts := s.byFirstSeen()
	for _, h := range hosts {
		if h.Name == "" {
			continue
		}
		k := strings.ToLower(h.Name)
		if !nameFor(h.Name, strings.ToLower(h.Identity)) || held[k] != nil {
			h.Name = ""
			continue
		}
		held[k] = h
	}
	reserved := make(map[string]string, len(s.Reserved))
	for _, r := range s.Reserved {
		reserved[strings.ToLower(r.Name)] = r.Identity
	}
	for _, h := range hosts {
		if h.Name != "" {
			continue
		}
		for _, c := range candidates(h, from) {
			k := strings.ToLower(c)
			if held[k] == nil && (reserved[k] == "" || reserved[k] == h.Identity) && nameFor(c, strings.ToLower(h.Identity)) {
				h.Name = c
				held[k] = h
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
	if len(s.Reserved) > 0 {
		s.Reserved = slices.DeleteFunc(s.Reserved, func(r Reservation) bool { return held[strings.ToLower(r.Name)] != nil })
	}
}

// reserve keeps the name of h, which the state forgets at now, for its
// identity, if another identity could take it. Past MaxReserved, the
// reservations made by a prune are kept longest, then the latest; it
// returns those given up.
func (s *State) reserve(h *Host, why string, now time.Time) []Reservation {
	if h.Name == "" || !takeable(h.Name) {
		return nil
	}
	k := strings.ToLower(h.Name)
	s.Reserved = slices.DeleteFunc(s.Reserved, func(r Reservation) bool { return strings.ToLower(r.Name) == k })
	s.Reserved = append(s.Reserved, Reservation{Name: h.Name, Identity: h.Identity, Since: now, Why: why})
	if len(s.Reserved) <= MaxReserved {
		return nil
	}
	// A key holder can have hosts evicted, never pruned: its evictions
	// cannot push out a prune's reservation.
	slices.SortStableFunc(s.Reserved, func(a, b Reservation) int {
		if c := boolCmp(a.Why != ReservedPruned, b.Why != ReservedPruned); c != 0 {
			return -c
		}
		if c := a.Since.Compare(b.Since); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	n := len(s.Reserved) - MaxReserved
	dropped := slices.Clone(s.Reserved[:n])
	s.Reserved = slices.Delete(s.Reserved, 0, n)
	s.sortReserved()
	return dropped
}

// expireReservations ends the reservations older than ReserveFor.
func (s *State) expireReservations(now time.Time) {
	s.Reserved = slices.DeleteFunc(s.Reserved, func(r Reservation) bool { return !now.Before(r.Until()) })
	if len(s.Reserved) == 0 {
		s.Reserved = nil
	}
}

func (s *State) sortReserved() {
	slices.SortFunc(s.Reserved, func(a, b Reservation) int { return strings.Compare(a.Name, b.Name) })
}

// reservation returns the reservation of name, in any case.
func (s *State) reservation(name string) *Reservation {
	for i := range s.Reserved {
		if strings.EqualFold(s.Reserved[i].Name, name) {
			return &s.Reserved[i]
		}
	}
	return nil
}

func (s *State) byFirstSeen() []*Host {
	hs := make([]*Host, 0, len(s.Hosts))
	for _, h := range s.Hosts {
		hs = append(hs, h)
	}
	slices.SortFunc(hs, func(a, b *Host) int {
		if c := a.FirstSeen.Compare(b.FirstSeen); c != 0 {
			return c
		}
		return strings.Compare(a.Identity, b.Identity)
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

// Errors of GiveName that an operator may override.
var (
	// ErrNameHeld: another host of the inventory holds the name.
	ErrNameHeld = errors.New("name held by another host")
	// ErrNameReserved: the name is reserved for another identity.
	ErrNameReserved = errors.New("name reserved for another identity")
)

// Named is what GiveName did.
type Named struct {
	Host    *Host  // the host that has the name now
	OldName string // its name before
	// From is the host the name was taken from (force), with the name
	// it has now; nil if none.
	From *Host
	// Unreserved is the reservation the name had for another identity
	// (force); nil if none.
	Unreserved *Reservation
}

// GiveName gives name to the host of identity, at an operator's word: the
// way to hand a re-imaged host (a new key) the name its old identity held.
// The name must be an RFC 1123 host name that Ansible gives no meaning of
// its own and that does not end in another identity's hex suffix. A name
// that another host holds (in any case) or that is reserved for another
// identity is refused, with ErrNameHeld or ErrNameReserved, unless force:
// then the other host is given another name by the rules, or the
// reservation ends. The host keeps the name until its hostname changes;
// the name it had is reserved for it, as a forgotten host's is.
func (s *State) GiveName(now time.Time, name, identity string, force bool) (*Named, error) {
	s.expireReservations(now)
	s.assignNames()
	h := s.Hosts[identity]
	switch {
	case h == nil:
		return nil, fmt.Errorf("inventory: no host with identity %s", identity)
	case !validHostname(name):
		return nil, fmt.Errorf("inventory: name %q is not a host name: want letters, digits, \"-\" and \".\", in labels of 1 to 63 characters that neither start nor end with \"-\", 253 in all", name)
	case reservedName(name):
		return nil, fmt.Errorf("inventory: name %q means something else to Ansible (localhost, localhost.*, *.localhost, all, ungrouped, or an IP address): no host may have it", name)
	case !nameFor(name, strings.ToLower(identity)):
		return nil, fmt.Errorf("inventory: name %q ends in \"-\" and hex digits that do not start identity %s: such a name is another identity's suffixed name", name, identity)
	}
	out := &Named{Host: h, OldName: h.Name}
	if strings.EqualFold(h.Name, name) {
		h.Name = name
		return out, nil
	}
	for _, o := range s.Hosts {
		if o != h && strings.EqualFold(o.Name, name) {
			if !force {
				return nil, fmt.Errorf("inventory: name %q is held by %s (identity %s, last seen %s): %w", name, o.Name, o.Identity, o.LastSeen.UTC().Format(time.RFC3339), ErrNameHeld)
			}
			o.Name = ""
			out.From = o
		}
	}
	if r := s.reservation(name); r != nil && r.Identity != identity {
		if !force {
			return nil, fmt.Errorf("inventory: name %q is reserved until %s for identity %s, which held it until it was %s on %s: %w",
				name, r.Until().UTC().Format(time.RFC3339), r.Identity, r.Why, r.Since.UTC().Format(time.RFC3339), ErrNameReserved)
		}
		c := *r
		out.Unreserved = &c
	}
	s.Reserved = slices.DeleteFunc(s.Reserved, func(r Reservation) bool { return strings.EqualFold(r.Name, name) })
	s.reserve(h, ReservedNamed, now)
	h.Name = name
	s.assignNames()
	return out, nil
}
