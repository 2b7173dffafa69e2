// Package inventory keeps what ifl knows of the fleet between probes: one
// record per agent, keyed by its identity (the fingerprint of its static
// key), never by address, so a host that moved is recognised. Each probe's
// results are applied with Apply, which says what changed: new hosts,
// moves, renames, hosts not seen, and identity conflicts.
//
// The state is kept by a Store (stores.go). File, the default, is one
// JSON file: Update reads, changes and writes it under an exclusive lock,
// writing a temporary file that is synced and renamed over the old one,
// so concurrent probes never corrupt it and a crash at any point leaves
// either the old or the new state. Etcd (etcd.go) is one inventory shared
// by the controllers of several sites, each applying its rounds with
// ApplySite, a record per key written in transactions on each key's
// revision. A file or a record that is not an ifl inventory's is an error
// and is never overwritten; so is one that ifl would not write
// (validate.go): the state is input too.
package inventory

import (
	"crypto/sha256"
	"encoding/hex"
	"net/netip"
	"reflect"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/ifl-project/ifl/internal/support/netinfo"
	"github.com/ifl-project/ifl/proto"
)

// Format and Version identify the file.
const (
	Format  = "ifl-inventory"
	Version = 1
)

// State is the inventory.
type State struct {
	Format  string           `json:"format"`
	Version int              `json:"version"`
	Updated time.Time        `json:"updated"`
	Hosts   map[string]*Host `json:"hosts"` // by identity
	// Reserved are the names of forgotten hosts, kept for their
	// identities (names.go), by name.
	Reserved []Reservation `json:"reserved,omitempty"`
	// Rounds are each site's last round (ApplySite), by site: a site
	// whose controller stopped shows here, and its sightings age.
	Rounds map[string]SiteRound `json:"site_rounds,omitempty"`

	// onCommit are told which hosts' records a store kept (nil: all).
	onCommit []func(committed map[string]bool)
}

// SiteRound is a site's last round.
type SiteRound struct {
	Last   time.Time `json:"last"`
	Rounds int       `json:"rounds"`
}

// OnCommit asks the store to call f once it kept what an Update's fn
// changed: with nil when it kept all of it, or with the identities whose
// records it kept when it is to run fn again (etcd, after a conflict):
// what fn reported of the others is then reported by the next run.
func (s *State) OnCommit(f func(committed map[string]bool)) { s.onCommit = append(s.onCommit, f) }

func (s *State) committed(ids map[string]bool) {
	for _, f := range s.onCommit {
		f(ids)
	}
}

// ValidSite reports whether s may name a site: 1 to 64 of
// [A-Za-z0-9_.-], as a label key.
func ValidSite(s string) bool { return validLabelKey(s) }

func validSite(s string) bool { return ValidSite(s) }

// Host is one agent as last seen.
type Host struct {
	Identity     string            `json:"identity"`
	Name         string            `json:"name,omitempty"` // inventory name, given by ifl (names.go); kept while the hostname stays
	Hostname     string            `json:"hostname"`
	MachineID    string            `json:"machine_id"`         // raw: stays in the state; inventories carry its hash
	IP           string            `json:"ip"`                 // the first of Verified: an IPv4 address if it has one
	Verified     []Verified        `json:"verified,omitempty"` // where it proved its identity (addrs.go)
	Port         int               `json:"port"`
	Addresses    []string          `json:"addresses"` // every global address the host reported: claims
	MACs         []string          `json:"macs"`
	OS           string            `json:"os"`
	Kernel       string            `json:"kernel"`
	AgentVersion string            `json:"agent_version"`
	Gateway      string            `json:"gateway,omitempty"`
	Labels       map[string]string `json:"labels,omitempty"` // the valid ones only (labels.go)
	// Dropped are the keys of the labels dropped at the last probe, so
	// that a host that keeps sending the same bad labels is warned about
	// once, not at every probe.
	Dropped   []string  `json:"dropped_labels,omitempty"`
	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"`
	Rounds    int       `json:"probes,omitempty"`  // rounds it answered in (the key is the state file's since version 1); 0 in a state written before they were counted
	History   []Move    `json:"history,omitempty"` // address changes, oldest first
	// Site is the site whose controller saw the host last (its --site):
	// where IP and Verified are. "" for a controller without a site.
	Site string `json:"site,omitempty"`
	// Sites are the host's sightings, by site: where each site's
	// controller saw it last, and when.
	Sites map[string]*Sighting `json:"sites,omitempty"`
}

// Sighting is where one site saw a host last.
type Sighting struct {
	Addr     string    `json:"addr"`
	MAC      string    `json:"mac,omitempty"` // of the interface that holds Addr, by the agent's facts
	LastSeen time.Time `json:"last_seen"`
	// Missed is when a complete round of the site looked at Addr and
	// the host did not answer; zero once it answers again.
	Missed time.Time `json:"missed,omitzero"`
}

// MaxSites bounds the sightings kept per host, the latest ones.
const MaxSites = 64

// Bounds on what one host or one address adds to the state.
const (
	// MaxPerAddress is how many identities the state keeps whose last
	// address is one address.
	MaxPerAddress = 3
	// MaxAddresses bounds the addresses (verified or reported) and the
	// MACs kept per host.
	MaxAddresses = 64
	// MaxHistory bounds the moves kept per host, the latest ones.
	MaxHistory = 64
)

// Move is one address change.
type Move struct {
	At   time.Time `json:"at"`
	From string    `json:"from"`
	To   string    `json:"to"`
	// The sites of From and To, when a controller with a site saw
	// the host there.
	FromSite string `json:"from_site,omitempty"`
	ToSite   string `json:"to_site,omitempty"`
}

// MachineIDHash is what inventories show instead of the machine-id.
func (h *Host) MachineIDHash() string {
	if h.MachineID == "" {
		return ""
	}
	sum := sha256.Sum256([]byte("ifl machine-id\x00" + h.MachineID))
	return hex.EncodeToString(sum[:16])
}

// New returns an empty state.
func New() *State {
	return &State{Format: Format, Version: Version, Hosts: map[string]*Host{}}
}

// Observation is one verified agent from a probe. An agent verified at
// several addresses in one probe (IPv4 and IPv6, say) is one observation
// per address.
type Observation struct {
	Identity string
	Addr     netip.Addr // the address that answered
	Port     int
	Facts    *proto.Facts
}

// Changes are what a probe changed.
type Changes struct {
	New      []HostChange `json:"new" yaml:"new"`
	Moved    []HostChange `json:"moved" yaml:"moved"`
	Renamed  []HostChange `json:"renamed" yaml:"renamed"`
	Unseen   []HostChange `json:"unseen" yaml:"unseen"`
	Warnings []Warning    `json:"warnings" yaml:"warnings"`
}

// Keep adds to c what other reports of the identities in ids (nil: all
// of it): the changes of an Update whose fn ran more than once (etcd,
// after a conflict) are those of each run that the store kept. A warning
// reported by two runs is kept once.
func (c *Changes) Keep(other Changes, ids map[string]bool) {
	kept := func(id string) bool { return ids == nil || ids[id] }
	for _, l := range []struct{ to, from *[]HostChange }{{&c.New, &other.New}, {&c.Moved, &other.Moved}, {&c.Renamed, &other.Renamed}, {&c.Unseen, &other.Unseen}} {
		if *l.to == nil {
			*l.to = []HostChange{}
		}
		for _, h := range *l.from {
			if kept(h.Identity) {
				*l.to = append(*l.to, h)
			}
		}
	}
	if c.Warnings == nil {
		c.Warnings = []Warning{}
	}
	for _, w := range other.Warnings {
		if kept(w.Identity) && !slices.ContainsFunc(c.Warnings, func(v Warning) bool { return reflect.DeepEqual(v, w) }) {
			c.Warnings = append(c.Warnings, w)
		}
	}
}

// HostChange is one change of one host. Name is the inventory name, the
// one Ansible uses; Hostname is what the agent calls itself.
type HostChange struct {
	Identity string        `json:"identity" yaml:"identity"`
	Name     string        `json:"name" yaml:"name"`
	Hostname string        `json:"hostname" yaml:"hostname"`
	OldName  string        `json:"old_name,omitempty" yaml:"old_name,omitempty"` // renamed: the inventory name before, if it changed
	From     string        `json:"from,omitempty" yaml:"from,omitempty"`         // old address or hostname
	To       string        `json:"to,omitempty" yaml:"to,omitempty"`             // new address or hostname
	Unseen   time.Duration `json:"unseen_ns,omitempty" yaml:"unseen,omitempty"`
}

// Empty reports whether nothing changed.
func (c *Changes) Empty() bool {
	return len(c.New)+len(c.Moved)+len(c.Renamed)+len(c.Unseen)+len(c.Warnings) == 0
}

// event is a change recorded while a probe is applied, turned into a
// HostChange once every host has its name.
type event struct {
	h        *Host
	hostname string
	from, to string
	oldName  string
	unseen   time.Duration
}

func (e event) change() HostChange {
	return HostChange{Identity: e.h.Identity, Name: e.h.Name, Hostname: e.hostname, OldName: e.oldName, From: e.from, To: e.to, Unseen: e.unseen}
}

// Apply records a probe's observations at now. covered says whether an
// address was among the probe's targets: a known host one of whose
// verified addresses was covered and that did not answer is reported
// unseen; one elsewhere is not (the probe did not look there). If
// complete is false (the probe was interrupted) nothing is reported
// unseen.
//
// Observations of one identity at several addresses are one host with
// those addresses when their facts agree (oneHost: a dual-stack host
// swept on both families); otherwise the key is on two machines, and
// only the first address counts, with a warning. A host's IP is the
// first of its verified addresses (an IPv4 one if it has one), and a move
// is a change of it.
//
// What one address can add is bounded: a new identity answering at an
// address whose last host answered in one probe only, and not in this
// one, replaces that host (a key made anew for each probe is one host,
// reported as a conflict, not one more host each time); and of the
// identities last seen at one address, at most MaxPerAddress are kept,
// those not seen for longest forgotten first, each with a warning. A
// re-imaged host whose old identity answered in two probes or more
// appears as new, and the old one as not seen.
//
// What one prefix, or one MAC, can add is bounded too (bounds.go): of the
// identities new in a probe, at most MaxNewPerPrefix per /24 or /64 and
// MaxNewPerMAC per MAC are added, the others refused with one warning;
// and of the hosts that answered in one probe only, at most
// MaxNewPerPrefix per prefix are kept, those not in this probe and seen
// longest ago forgotten first, with one warning. Every string of a host
// is kept within its bound (bounds.go), with a warning when one is cut.
func (s *State) Apply(now time.Time, obs []Observation, covered func(netip.Addr) bool, complete bool) Changes {
	return s.ApplySite("", now, obs, covered, complete)
}

// ApplySite is Apply for the controller of a site, one of several that
// share the inventory (a store). Each host keeps a sighting per site; a
// host seen last by another site is not this one's to report unseen,
// its addresses are not this site's to compare (two sites may use the
// same private prefix), and one that answers here is a move from that
// site's address to this one's, even at the same address. The bounds
// per address and per prefix count within a site. A host whose sighting
// of this site is of this very round (now) is not recorded again: an
// update run again after a conflict counts each round once.
func (s *State) ApplySite(site string, now time.Time, obs []Observation, covered func(netip.Addr) bool, complete bool) Changes {
	return s.apply(site, now, obs, covered, complete, false)
}

// ApplyKnown records, as ApplySite, the observations of a round that a
// key holder can start at will (an announcement round, up to
// announce.Rate a second): only of identities the state knows, a new
// one being left to the next sweep, and without counting the round in
// the hosts' Rounds nor in the site's, so that the bounds measured in
// rounds (a host's probation, the reservation of a forgotten name) stay
// measured in sweeps. Else a key holder at one address could make a
// fresh identity leave probation in two announcements, and by evicting
// such identities push the reservations of forgotten hosts out in
// seconds, then take their names.
func (s *State) ApplyKnown(site string, now time.Time, obs []Observation, covered func(netip.Addr) bool, complete bool) Changes {
	return s.apply(site, now, obs, covered, complete, true)
}

func (s *State) apply(site string, now time.Time, obs []Observation, covered func(netip.Addr) bool, complete, knownOnly bool) Changes {
	if s.Hosts == nil {
		s.Hosts = map[string]*Host{}
	}
	s.expireReservations(now)
	s.assignNames()
	a := s.startApply(now, obs, covered)
	a.site = site
	a.knownOnly = knownOnly
	refused := map[string]bool{}
	if knownOnly {
		for _, g := range a.groups {
			if s.Hosts[g.o.Identity] == nil {
				refused[g.o.Identity] = true
			}
		}
	} else {
		var w *warning
		if refused, w = s.admit(a.groups); w != nil {
			a.warns = append(a.warns, w)
		}
	}
	for _, g := range a.groups {
		if knownOnly && refused[g.o.Identity] {
			continue
		}
		for _, c := range g.copies {
			a.warns = append(a.warns, &warning{kind: KindCopiedKey, identity: g.o.Identity, addr: g.o.Addr.String(), otherAddr: c.String()})
		}
		if !refused[g.o.Identity] {
			a.observe(g)
		}
	}
	a.warns = append(a.warns, s.evict(a.present, now)...)
	a.missed(complete)
	if site != "" && !knownOnly {
		if s.Rounds == nil {
			s.Rounds = map[string]SiteRound{}
		}
		if r := s.Rounds[site]; !r.Last.Equal(now) {
			s.Rounds[site] = SiteRound{Last: now, Rounds: r.Rounds + 1}
		}
	}
	if w := s.forgetProbation(a.present); w != nil {
		a.warns = append(a.warns, w)
	}
	s.assignNames()
	s.Updated = now
	return a.changes(complete)
}

// applying is the state of one Apply.
type applying struct {
	s       *State
	site    string
	now     time.Time
	covered func(netip.Addr) bool
	groups  []*observed
	// present are the identities that answered; seen, those of them
	// recorded (not refused).
	present, seen map[string]bool
	// Known hosts by machine-id and by address, kept current as hosts
	// are recorded, so that a new key is checked against them without a
	// pass over every host. An entry whose host changed since is skipped
	// where it is read.
	byMachine, byAddr map[string][]*Host
	// holder is who answered where in this round: an address another
	// identity answered at is no longer this one's.
	holder map[netip.Addr]string
	// knownOnly: the round counts in no host's Rounds (ApplyKnown).
	knownOnly            bool
	news, moves, renames []event
	warns                []*warning
}

// startApply groups obs and indexes what the state knows.
func (s *State) startApply(now time.Time, obs []Observation, covered func(netip.Addr) bool) *applying {
	a := &applying{s: s, now: now, covered: covered, present: map[string]bool{}, seen: map[string]bool{},
		byMachine: map[string][]*Host{}, byAddr: map[string][]*Host{}, holder: map[netip.Addr]string{}}
	// An address the state could not be read back with (a zone that is
	// no interface's name) is no place to reach a host at.
	obs = slices.DeleteFunc(slices.Clone(obs), func(o Observation) bool {
		_, err := parseAddr(o.Addr.String())
		return err != nil
	})
	for _, o := range obs {
		a.present[o.Identity] = true
	}
	for _, h := range s.Sorted() {
		if h.MachineID != "" {
			a.byMachine[h.MachineID] = append(a.byMachine[h.MachineID], h)
		}
		a.byAddr[h.siteAddr()] = append(a.byAddr[h.siteAddr()], h)
	}
	a.groups = groupObservations(obs)
	for _, g := range a.groups {
		for _, addr := range g.addrs {
			a.holder[addr] = g.o.Identity
		}
	}
	return a
}

// observe records one identity's observations: a new host, or a known
// one that may have moved or been renamed, with its facts.
func (a *applying) observe(g *observed) {
	o := g.o
	a.seen[o.Identity] = true
	f := o.Facts
	if f == nil {
		f = &proto.Facts{}
	}
	h := a.s.Hosts[o.Identity]
	if h != nil && a.site != "" && h.Sites[a.site] != nil && h.Sites[a.site].LastSeen.Equal(a.now) {
		return // recorded by this round already
	}
	if h == nil {
		h = a.newHost(g, f)
	} else {
		a.known(h, g, f)
	}
	if machineID, _ := bound(f.MachineID, MaxMachineID); machineID != "" && machineID != h.MachineID {
		a.byMachine[machineID] = append(a.byMachine[machineID], h)
	}
	a.record(h, o, f)
}

// taken reports whether another identity than id answered at addr.
func (a *applying) taken(id string) func(netip.Addr) bool {
	return func(addr netip.Addr) bool { return a.holder[addr] != "" && a.holder[addr] != id }
}

// newHost adds the host of an identity seen for the first time. A new
// key at an address whose last host answered one round only, and not
// this one, replaces that host (a key made anew for each round is one
// host, reported as a conflict); a machine-id another host has is a
// conflict too.
func (a *applying) newHost(g *observed, f *proto.Facts) *Host {
	o := g.o
	ip := o.Addr.String()
	at := a.site + " " + ip
	if a.site == "" {
		at = ip
	}
	if machineID, _ := bound(f.MachineID, MaxMachineID); machineID != "" {
		for _, other := range a.byMachine[machineID] {
			if other.MachineID == machineID && other.Identity != o.Identity && a.s.Hosts[other.Identity] == other {
				a.warns = append(a.warns, &warning{kind: KindMachineID, identity: o.Identity, addr: ip, other: other})
			}
		}
	}
	for _, old := range a.byAddr[at] {
		if old.siteAddr() == at && old.Rounds == 1 && !a.present[old.Identity] && a.s.Hosts[old.Identity] == old {
			delete(a.s.Hosts, old.Identity)
			a.warns = append(a.warns, &warning{kind: KindReplaced, identity: o.Identity, addr: ip, other: old})
		}
	}
	h := &Host{Identity: o.Identity, FirstSeen: a.now, Site: a.site}
	h.Verified = updateVerified(nil, g.addrs, a.now, a.covered, a.taken(o.Identity))
	h.IP = h.Verified[0].Addr
	a.s.Hosts[o.Identity] = h
	a.byAddr[h.siteAddr()] = append(a.byAddr[h.siteAddr()], h)
	a.news = append(a.news, event{h: h, hostname: f.Hostname, to: h.IP})
	return h
}

// known updates a known host's verified addresses (a move is a change of
// the first) and its name, which follows its hostname.
func (a *applying) known(h *Host, g *observed, f *proto.Facts) {
	old := h.verified()
	// Another site's addresses are of another network: the host left
	// them all.
	moved := a.site != "" && h.Site != "" && h.Site != a.site
	if moved {
		old = nil
	}
	h.Verified = updateVerified(old, g.addrs, a.now, a.covered, a.taken(h.Identity))
	if to := h.Verified[0].Addr; to != h.IP || moved {
		from := h.IP
		if moved {
			from = h.Site + " " + h.IP
		}
		a.moves = append(a.moves, event{h: h, hostname: f.Hostname, from: from, to: to})
		m := Move{At: a.now, From: h.IP, To: to}
		if a.site != "" {
			m.FromSite, m.ToSite = h.Site, a.site
		}
		h.History = append(h.History, m)
		if len(h.History) > MaxHistory {
			h.History = slices.Delete(h.History, 0, len(h.History)-MaxHistory)
		}
		h.IP = to
		h.Site = a.site
		a.byAddr[h.siteAddr()] = append(a.byAddr[h.siteAddr()], h)
	}
	if a.site != "" {
		h.Site = a.site
	}
	if hostname, _ := bound(f.Hostname, MaxHostname); hostname != h.Hostname {
		// The name is given anew below, from the new hostname, by the
		// rules every name obeys.
		a.renames = append(a.renames, event{h: h, hostname: f.Hostname, from: h.Hostname, to: f.Hostname, oldName: h.Name})
		h.Name = ""
	}
}

// record keeps what an agent said of itself, within bounds, and when.
func (a *applying) record(h *Host, o Observation, f *proto.Facts) {
	if cuts := h.setFacts(f); len(cuts) > 0 {
		a.warns = append(a.warns, &warning{kind: KindTruncated, identity: h.Identity, host: h, addr: h.IP, cuts: cuts})
	}
	h.Port = o.Port
	var dropped []DroppedLabel
	h.Labels, dropped = checkLabels(f.Labels)
	// The keys are remembered to warn once, not shown: a bounded number
	// of them, each within a label key's bound.
	keys := make([]string, 0, min(len(dropped), MaxLabels))
	for i := range dropped {
		dropped[i].Key, _ = bound(dropped[i].Key, MaxLabelKey)
		if len(keys) < MaxLabels {
			keys = append(keys, dropped[i].Key)
		}
	}
	if len(dropped) > 0 && !slices.Equal(keys, h.Dropped) {
		a.warns = append(a.warns, &warning{kind: KindLabels, identity: h.Identity, host: h, addr: h.IP, dropped: dropped})
	}
	h.Dropped = keys
	if len(keys) == 0 {
		h.Dropped = nil
	}
	// Never back: another site's controller may have recorded a later
	// round first, or this one's clock stepped back.
	if a.now.After(h.LastSeen) {
		h.LastSeen = a.now
	}
	if !a.knownOnly {
		h.Rounds++
	}
	if a.site != "" {
		a.sight(h, o, f)
	}
	h.Addresses = h.Addresses[:0]
	for _, addr := range f.Addresses() {
		if len(h.Addresses) == MaxAddresses {
			break
		}
		h.Addresses = append(h.Addresses, addr.String())
	}
}

// changes says what the round changed, once every host has its name: a
// known host one of whose verified addresses the round covered, that did
// not answer, is unseen, if the round was complete.
func (a *applying) changes(complete bool) Changes {
	ch := Changes{New: []HostChange{}, Moved: []HostChange{}, Renamed: []HostChange{}, Unseen: []HostChange{}, Warnings: []Warning{}}
	if complete {
		for _, h := range a.s.Sorted() {
			if a.seen[h.Identity] || !a.mine(h) {
				continue
			}
			for _, v := range h.verified() {
				if addr, err := netip.ParseAddr(v.Addr); err == nil && a.covered(addr) {
					ch.Unseen = append(ch.Unseen, HostChange{Identity: h.Identity, Name: h.Name, Hostname: h.Hostname, From: h.IP, Unseen: a.now.Sub(h.LastSeen)})
					break
				}
			}
		}
	}
	for _, e := range a.news {
		if a.s.Hosts[e.h.Identity] == e.h {
			ch.New = append(ch.New, e.change())
		}
	}
	for _, e := range a.moves {
		ch.Moved = append(ch.Moved, e.change())
	}
	for _, e := range a.renames {
		c := e.change()
		if c.OldName == c.Name {
			c.OldName = ""
		}
		ch.Renamed = append(ch.Renamed, c)
	}
	for _, w := range a.warns {
		ch.Warnings = append(ch.Warnings, w.build(a.s))
	}
	return ch
}

// mine reports whether the host was seen last by this controller's site
// (any host, for a controller without a site): only such a host is this
// round's to report unseen.
func (a *applying) mine(h *Host) bool { return a.site == "" || h.Site == a.site }

// sight records where this site saw the host, and drops the oldest
// sightings past MaxSites.
func (a *applying) sight(h *Host, o Observation, f *proto.Facts) {
	if h.Sites == nil {
		h.Sites = map[string]*Sighting{}
	}
	h.Sites[a.site] = &Sighting{Addr: h.IP, MAC: macOf(f, []netip.Addr{o.Addr}), LastSeen: a.now}
	for len(h.Sites) > MaxSites {
		oldest := ""
		for k, v := range h.Sites {
			if oldest == "" || v.LastSeen.Before(h.Sites[oldest].LastSeen) || v.LastSeen.Equal(h.Sites[oldest].LastSeen) && k < oldest {
				oldest = k
			}
		}
		delete(h.Sites, oldest)
	}
}

// missed marks the sightings of this site's hosts that a complete round
// looked at and did not hear, once.
func (a *applying) missed(complete bool) {
	if a.site == "" || !complete {
		return
	}
	for _, h := range a.s.Hosts {
		sg := h.Sites[a.site]
		if a.seen[h.Identity] || !a.mine(h) || sg == nil || !sg.Missed.IsZero() {
			continue
		}
		if addr, err := netip.ParseAddr(sg.Addr); err == nil && a.covered(addr) {
			sg.Missed = a.now
		}
	}
}

// siteAddr is where the host was last seen, with its site: two sites
// may use the same private addresses.
func (h *Host) siteAddr() string {
	if h.Site == "" {
		return h.IP
	}
	return h.Site + " " + h.IP
}

// observed is one identity's observations in a probe: the first, by
// kind of address, then address; the addresses of the same host
// (including the first's); and those of copies of its key.
type observed struct {
	o      Observation
	addrs  []netip.Addr
	copies []netip.Addr
}

// groupObservations groups observations by identity, in the order of
// their first addresses.
func groupObservations(obs []Observation) []*observed {
	obs = slices.Clone(obs)
	slices.SortStableFunc(obs, func(a, b Observation) int {
		if c := int(netinfo.Kind(a.Addr) - netinfo.Kind(b.Addr)); c != 0 {
			return c
		}
		return a.Addr.Compare(b.Addr)
	})
	var out []*observed
	byID := map[string]*observed{}
	for _, o := range obs {
		g := byID[o.Identity]
		switch {
		case g == nil:
			g = &observed{o: o, addrs: []netip.Addr{o.Addr}}
			byID[o.Identity] = g
			out = append(out, g)
		case slices.Contains(g.addrs, o.Addr) || slices.Contains(g.copies, o.Addr):
		case oneHost(g.o, o):
			g.addrs = append(g.addrs, o.Addr)
		default:
			g.copies = append(g.copies, o.Addr)
		}
	}
	slices.SortStableFunc(out, func(a, b *observed) int {
		if c := a.o.Addr.Compare(b.o.Addr); c != 0 {
			return c
		}
		return strings.Compare(a.o.Identity, b.o.Identity)
	})
	return out
}

// evict keeps at most MaxPerAddress identities per last address,
// forgetting first those not seen for longest; hosts that answered in
// this probe are kept. The name of a host that answered in two probes or
// more is reserved for it.
func (s *State) evict(present map[string]bool, now time.Time) []*warning {
	byAddr := map[string][]*Host{}
	for _, h := range s.Hosts {
		byAddr[h.siteAddr()] = append(byAddr[h.siteAddr()], h)
	}
	var out []*warning
	for _, a := range over(byAddr, MaxPerAddress) {
		for _, h := range s.forgetOldest(byAddr[a], MaxPerAddress, present) {
			out = append(out, &warning{kind: KindEvicted, identity: h.Identity, host: h, addr: a})
			if h.Rounds != 1 {
				for _, r := range s.reserve(h, ReservedEvicted, now) {
					out = append(out, &warning{kind: KindUnreserved, identity: r.Identity, name: r.Name})
				}
			}
		}
	}
	return out
}

// over returns the keys of groups that hold more than keep hosts, sorted.
func over(groups map[string][]*Host, keep int) []string {
	var out []string
	for k, hs := range groups {
		if len(hs) > keep {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// forgetOldest forgets of hs those not seen for longest until keep are
// left, sparing those present in this round, and returns them.
func (s *State) forgetOldest(hs []*Host, keep int, present map[string]bool) []*Host {
	sort.Slice(hs, func(i, j int) bool {
		if !hs[i].LastSeen.Equal(hs[j].LastSeen) {
			return hs[i].LastSeen.Before(hs[j].LastSeen)
		}
		return hs[i].Identity < hs[j].Identity
	})
	var out []*Host
	n := len(hs)
	for _, h := range hs {
		if n <= keep {
			break
		}
		if present[h.Identity] {
			continue
		}
		delete(s.Hosts, h.Identity)
		out = append(out, h)
		n--
	}
	return out
}

// Prune removes hosts not seen for longer than age and returns them.
// Their names stay reserved for their identities for ReserveFor; the
// reservations given up to keep MaxReserved are returned too.
func (s *State) Prune(now time.Time, age time.Duration) ([]*Host, []Reservation) {
	s.expireReservations(now)
	s.assignNames()
	var out []*Host
	var dropped []Reservation
	for _, h := range s.Sorted() {
		if now.Sub(h.LastSeen) > age {
			out = append(out, h)
			delete(s.Hosts, h.Identity)
			dropped = append(dropped, s.reserve(h, ReservedPruned, now)...)
		}
	}
	return out, dropped
}

// Sorted returns the hosts by address, then identity.
func (s *State) Sorted() []*Host {
	hs := make([]*Host, 0, len(s.Hosts))
	for _, h := range s.Hosts {
		hs = append(hs, h)
	}
	sort.Slice(hs, func(i, j int) bool {
		a, errA := netip.ParseAddr(hs[i].IP)
		b, errB := netip.ParseAddr(hs[j].IP)
		if errA == nil && errB == nil && a != b {
			return a.Less(b)
		}
		return hs[i].Identity < hs[j].Identity
	})
	return hs
}
