package inventory

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// The state is input too: the ifl user that the probe unit runs as may
// write it, and what it holds reaches every Ansible user and root's
// terminal. So a state is checked as it is read, every record against
// what ifl itself writes, and one that is not is refused, naming the
// host's key in the file, the field, and what is allowed.

// IdentityLen is the length of an identity: 16 bytes of a key's hash, in
// lower-case hex (proto.Fingerprint).
const IdentityLen = 32

// validIdentity reports whether s is an identity as proto.Fingerprint
// writes it.
func validIdentity(s string) bool { return len(s) == IdentityLen && hexOnly(s) }

// hexOnly reports whether s is lower-case hex digits, and not empty: a
// string that cannot hold a template or an escape.
func hexOnly(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// Times in a state are between these: a time outside was not written by
// a clock, and past year 9999 the state could not be written back.
var (
	minTime = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	maxTime = time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC)
)

// quoteKey quotes a key of the file for an error, bounded: it may be
// anything, and of any length.
func quoteKey(k string) string {
	if len(k) > 64 {
		cut := 64
		for cut > 0 && !utf8.RuneStart(k[cut]) {
			cut--
		}
		return strconv.Quote(k[:cut]) + "..."
	}
	return strconv.Quote(k)
}

// validate checks every record of s, in the order of their keys, and
// returns the first that is not one ifl writes. It also trims what an
// older ifl kept without a bound and that only serves to warn once (the
// keys of dropped labels).
func (s *State) validate() error {
	if !s.Updated.IsZero() {
		if err := checkTime(s.Updated); err != nil {
			return fmt.Errorf(`field "updated": %v`, err)
		}
	}
	keys := make([]string, 0, len(s.Hosts))
	for k := range s.Hosts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := s.Hosts[k].check(k); err != nil {
			return fmt.Errorf("host %s: %v", quoteKey(k), err)
		}
	}
	if len(s.Reserved) > MaxReserved {
		return fmt.Errorf(`field "reserved": %d names, at most %d allowed`, len(s.Reserved), MaxReserved)
	}
	for i, r := range s.Reserved {
		if err := r.check(); err != nil {
			return fmt.Errorf(`field "reserved", entry %d: %v`, i, err)
		}
	}
	for site, r := range s.Rounds {
		if !validSite(site) {
			return fmt.Errorf(`field "site_rounds": site %s: want 1 to 64 of A-Z a-z 0-9 _ . -`, quoteKey(site))
		}
		if err := checkTime(r.Last); err != nil || r.Rounds < 0 {
			return fmt.Errorf(`field "site_rounds": site %s: want a time from the year 2000 to 9999 and a count of 0 or more`, quoteKey(site))
		}
	}
	return nil
}

func checkTime(t time.Time) error {
	if t.Before(minTime) || t.After(maxTime) {
		return fmt.Errorf("%s: want a time from the year 2000 to 9999", t.UTC().Format(time.RFC3339))
	}
	return nil
}

func checkLen(field, v string, max int) error {
	if len(v) > max {
		return fmt.Errorf("field %q: %d bytes, at most %d allowed", field, len(v), max)
	}
	return nil
}

func checkAddrField(field, v string) error {
	if _, err := parseAddr(v); err != nil {
		return fmt.Errorf("field %q: %s is not an address as ifl writes one: %v", field, quoteKey(v), err)
	}
	return nil
}

// check checks one host, whose key in the file is key.
func (h *Host) check(key string) error {
	if h == nil {
		return fmt.Errorf("no record: want an object")
	}
	if err := h.checkKey(key); err != nil {
		return err
	}
	if err := h.checkFacts(); err != nil {
		return err
	}
	if err := h.checkAddrs(); err != nil {
		return err
	}
	if err := h.checkLabelsField(); err != nil {
		return err
	}
	if err := h.checkSeen(); err != nil {
		return err
	}
	if err := h.checkSites(); err != nil {
		return err
	}
	return h.checkHistory()
}

// checkSites checks the host's site and its sightings.
func (h *Host) checkSites() error {
	if h.Site != "" && !validSite(h.Site) {
		return fmt.Errorf(`field "site": %s: want 1 to 64 of A-Z a-z 0-9 _ . -`, quoteKey(h.Site))
	}
	if len(h.Sites) > MaxSites {
		return fmt.Errorf(`field "sites": %d sightings, at most %d allowed`, len(h.Sites), MaxSites)
	}
	for site, sg := range h.Sites {
		f := "sites[" + quoteKey(site) + "]"
		switch {
		case !validSite(site):
			return fmt.Errorf(`field "sites": site %s: want 1 to 64 of A-Z a-z 0-9 _ . -`, quoteKey(site))
		case sg == nil:
			return fmt.Errorf(`field %q: no record: want an object`, f)
		}
		if err := checkAddrField(f+".addr", sg.Addr); err != nil {
			return err
		}
		if err := checkLen(f+".mac", sg.MAC, MaxMAC); err != nil {
			return err
		}
		if err := checkTime(sg.LastSeen); err != nil {
			return fmt.Errorf(`field "%s.last_seen": %v`, f, err)
		}
		if !sg.Missed.IsZero() {
			if err := checkTime(sg.Missed); err != nil {
				return fmt.Errorf(`field "%s.missed": %v`, f, err)
			}
		}
	}
	return nil
}

// checkKey checks the host's key, its identity and its name.
func (h *Host) checkKey(key string) error {
	if !validIdentity(key) {
		return fmt.Errorf("the key is not an identity: want %d hex digits in lower case", IdentityLen)
	}
	if h.Identity != key {
		return fmt.Errorf(`field "identity": %s is not the host's key`, quoteKey(h.Identity))
	}
	if h.Name != "" && !nameFor(h.Name, h.Identity) {
		return fmt.Errorf(`field "name": %s is not a name ifl gives this host: want a host name, not reserved, whose hex suffix, if any, starts the identity`, quoteKey(h.Name))
	}
	return nil
}

// checkFacts checks the lengths of the host's facts.
func (h *Host) checkFacts() error {
	for _, c := range []struct {
		field, v string
		max      int
	}{
		{"hostname", h.Hostname, MaxHostname},
		{"machine_id", h.MachineID, MaxMachineID},
		{"os", h.OS, MaxOS},
		{"kernel", h.Kernel, MaxKernel},
		{"agent_version", h.AgentVersion, MaxAgentVersion},
		{"gateway", h.Gateway, MaxGateway},
	} {
		if err := checkLen(c.field, c.v, c.max); err != nil {
			return err
		}
	}
	return nil
}

// checkAddrs checks where the host is reached, and the addresses and MACs
// it reported.
func (h *Host) checkAddrs() error {
	if err := checkAddrField("ip", h.IP); err != nil {
		return err
	}
	if len(h.Verified) > MaxAddresses {
		return fmt.Errorf(`field "verified": %d addresses, at most %d allowed`, len(h.Verified), MaxAddresses)
	}
	for i, v := range h.Verified {
		if err := checkAddrField(fmt.Sprintf("verified[%d].addr", i), v.Addr); err != nil {
			return err
		}
		if err := checkTime(v.At); err != nil {
			return fmt.Errorf(`field "verified[%d].at": %v`, i, err)
		}
	}
	// 0: a state written without the port.
	if h.Port < 0 || h.Port > 65535 {
		return fmt.Errorf(`field "port": %d: want a port, 1 to 65535 (or 0: unknown)`, h.Port)
	}
	if len(h.Addresses) > MaxAddresses {
		return fmt.Errorf(`field "addresses": %d addresses, at most %d allowed`, len(h.Addresses), MaxAddresses)
	}
	for i, a := range h.Addresses {
		if err := checkAddrField(fmt.Sprintf("addresses[%d]", i), a); err != nil {
			return err
		}
	}
	if len(h.MACs) > MaxAddresses {
		return fmt.Errorf(`field "macs": %d MACs, at most %d allowed`, len(h.MACs), MaxAddresses)
	}
	for i, m := range h.MACs {
		if err := checkLen(fmt.Sprintf("macs[%d]", i), m, MaxMAC); err != nil {
			return err
		}
	}
	return nil
}

// checkLabelsField checks the host's labels, and trims the keys of those
// dropped.
func (h *Host) checkLabelsField() error {
	// Keys of Ansible's (__*) were kept before they were refused: they
	// are dropped here, not held against the state.
	for k := range h.Labels {
		if strings.HasPrefix(k, "__") {
			delete(h.Labels, k)
		}
	}
	if allKept(h.Labels) {
		// As checkLabels would find.
	} else if _, dropped := checkLabels(h.Labels); len(dropped) > 0 {
		return fmt.Errorf(`field "labels": label %s: %s`, quoteKey(dropped[0].Key), dropped[0].Reason)
	}
	// Only to warn once: an older ifl kept them all, whatever their
	// number and length.
	if len(h.Dropped) > MaxLabels {
		h.Dropped = h.Dropped[:MaxLabels]
	}
	for i := range h.Dropped {
		h.Dropped[i], _ = bound(h.Dropped[i], MaxLabelKey)
	}
	return nil
}

// checkSeen checks when the host was seen, and in how many rounds.
func (h *Host) checkSeen() error {
	if err := checkTime(h.FirstSeen); err != nil {
		return fmt.Errorf(`field "first_seen": %v`, err)
	}
	if err := checkTime(h.LastSeen); err != nil {
		return fmt.Errorf(`field "last_seen": %v`, err)
	}
	if h.LastSeen.Before(h.FirstSeen) {
		return fmt.Errorf(`field "last_seen": before first_seen`)
	}
	if h.Rounds < 0 {
		return fmt.Errorf(`field "probes": %d: want 0 or more`, h.Rounds)
	}
	return nil
}

// checkHistory checks the host's moves.
func (h *Host) checkHistory() error {
	if len(h.History) > MaxHistory {
		return fmt.Errorf(`field "history": %d moves, at most %d allowed`, len(h.History), MaxHistory)
	}
	for i, m := range h.History {
		if err := checkTime(m.At); err != nil {
			return fmt.Errorf(`field "history[%d].at": %v`, i, err)
		}
		if err := checkAddrField(fmt.Sprintf("history[%d].from", i), m.From); err != nil {
			return err
		}
		if err := checkAddrField(fmt.Sprintf("history[%d].to", i), m.To); err != nil {
			return err
		}
		for _, site := range []string{m.FromSite, m.ToSite} {
			if site != "" && !validSite(site) {
				return fmt.Errorf(`field "history[%d]": site %s: want 1 to 64 of A-Z a-z 0-9 _ . -`, i, quoteKey(site))
			}
		}
	}
	return nil
}

func (r Reservation) check() error {
	switch {
	case !validIdentity(r.Identity):
		return fmt.Errorf(`field "identity": %s: want %d hex digits in lower case`, quoteKey(r.Identity), IdentityLen)
	case !nameFor(r.Name, r.Identity):
		return fmt.Errorf(`field "name": %s is not a name ifl gives that identity`, quoteKey(r.Name))
	case r.Why != ReservedPruned && r.Why != ReservedEvicted && r.Why != ReservedNamed:
		return fmt.Errorf(`field "why": %s: want %s, %s or %s`, quoteKey(r.Why), ReservedPruned, ReservedEvicted, ReservedNamed)
	}
	if err := checkTime(r.Since); err != nil {
		return fmt.Errorf(`field "since": %v`, err)
	}
	return nil
}
