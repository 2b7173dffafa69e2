// Package inventory keeps what ifl knows of the fleet between probes: one
// record per agent, keyed by its identity (the fingerprint of its static
// key), never by address, so a host that moved is recognised. Each probe's
// results are applied with Apply, which says what changed: new hosts,
// moves, renames, hosts not seen, and identity conflicts.
//
// The state is one JSON file. Update reads, changes and writes it under an
// exclusive lock, writing a temporary file that is synced and renamed over
// the old one, so concurrent probes never corrupt it and a crash at any
// point leaves either the old or the new state. A file that is not an ifl
// inventory is an error and is never overwritten.
package inventory

import (
	"crypto/sha256"
	"encoding/hex"
	"net/netip"
	"slices"
	"sort"
	"time"

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
}

// Host is one agent as last seen.
type Host struct {
	Identity     string            `json:"identity"`
	Hostname     string            `json:"hostname"`
	MachineID    string            `json:"machine_id"` // raw: stays in the state; inventories carry its hash
	IP           string            `json:"ip"`         // the address that answered last
	Port         int               `json:"port"`
	Addresses    []string          `json:"addresses"` // every global address the host reported
	MACs         []string          `json:"macs"`
	OS           string            `json:"os"`
	Kernel       string            `json:"kernel"`
	AgentVersion string            `json:"agent_version"`
	Gateway      string            `json:"gateway,omitempty"`
	Labels       map[string]string `json:"labels,omitempty"`
	FirstSeen    time.Time         `json:"first_seen"`
	LastSeen     time.Time         `json:"last_seen"`
	History      []Move            `json:"history,omitempty"` // address changes, oldest first
}

// Move is one address change.
type Move struct {
	At   time.Time `json:"at"`
	From string    `json:"from"`
	To   string    `json:"to"`
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

// Observation is one verified agent from a probe.
type Observation struct {
	Identity string
	Addr     netip.Addr // the address that answered
	Port     int
	Facts    *proto.Facts
}

// Changes are what a probe changed.
type Changes struct {
	New       []HostChange `json:"new"`
	Moved     []HostChange `json:"moved"`
	Renamed   []HostChange `json:"renamed"`
	Unseen    []HostChange `json:"unseen"`
	Conflicts []string     `json:"conflicts"`
}

// HostChange is one change of one host.
type HostChange struct {
	Identity string        `json:"identity"`
	Hostname string        `json:"hostname"`
	From     string        `json:"from,omitempty"` // old address or name
	To       string        `json:"to,omitempty"`   // new address or name
	Unseen   time.Duration `json:"unseen_ns,omitempty"`
}

// Empty reports whether nothing changed.
func (c *Changes) Empty() bool {
	return len(c.New)+len(c.Moved)+len(c.Renamed)+len(c.Unseen)+len(c.Conflicts) == 0
}

// Apply records a probe's observations at now. covered says whether an
// address was among the probe's targets: a known host whose address was
// covered and that did not answer is reported unseen; one elsewhere is
// not (the probe did not look there). If complete is false (the probe was
// interrupted) nothing is reported unseen.
func (s *State) Apply(now time.Time, obs []Observation, covered func(netip.Addr) bool, complete bool) Changes {
	ch := Changes{New: []HostChange{}, Moved: []HostChange{}, Renamed: []HostChange{}, Unseen: []HostChange{}, Conflicts: []string{}}
	if s.Hosts == nil {
		s.Hosts = map[string]*Host{}
	}
	sort.Slice(obs, func(i, j int) bool { return obs[i].Addr.Less(obs[j].Addr) })
	seen := map[string]netip.Addr{}
	// Known hosts by machine-id, kept current below, so that a new key is
	// checked against them without a pass over every host. An entry whose
	// host changed machine-id since is skipped where it is read.
	byMachine := map[string][]*Host{}
	for _, h := range s.Sorted() {
		if h.MachineID != "" {
			byMachine[h.MachineID] = append(byMachine[h.MachineID], h)
		}
	}
	for _, o := range obs {
		if prev, dup := seen[o.Identity]; dup {
			ch.Conflicts = append(ch.Conflicts, "identity "+o.Identity+" answered from both "+prev.String()+" and "+o.Addr.String()+": one agent key on two hosts (a copied key?)")
			continue
		}
		seen[o.Identity] = o.Addr
		f := o.Facts
		h := s.Hosts[o.Identity]
		if h == nil {
			if f.MachineID != "" {
				for _, other := range byMachine[f.MachineID] {
					if other.MachineID == f.MachineID && other.Identity != o.Identity {
						ch.Conflicts = append(ch.Conflicts, "machine-id of "+other.Hostname+" ("+other.Identity+") now answers with identity "+o.Identity+" from "+o.Addr.String()+": a re-imaged host, or a cloned VM")
					}
				}
			}
			h = &Host{Identity: o.Identity, FirstSeen: now, IP: o.Addr.String(), Hostname: f.Hostname}
			s.Hosts[o.Identity] = h
			ch.New = append(ch.New, HostChange{Identity: h.Identity, Hostname: f.Hostname, To: o.Addr.String()})
		} else {
			if ip := o.Addr.String(); ip != h.IP {
				ch.Moved = append(ch.Moved, HostChange{Identity: h.Identity, Hostname: f.Hostname, From: h.IP, To: ip})
				h.History = append(h.History, Move{At: now, From: h.IP, To: ip})
				h.IP = ip
			}
			if f.Hostname != h.Hostname {
				ch.Renamed = append(ch.Renamed, HostChange{Identity: h.Identity, Hostname: f.Hostname, From: h.Hostname, To: f.Hostname})
			}
		}
		h.Hostname = f.Hostname
		if f.MachineID != "" && f.MachineID != h.MachineID {
			byMachine[f.MachineID] = append(byMachine[f.MachineID], h)
		}
		h.MachineID = f.MachineID
		h.Port = o.Port
		h.OS = f.OS.PrettyName
		h.Kernel = f.Kernel
		h.AgentVersion = f.AgentVersion
		h.Gateway = f.Gateway()
		h.Labels = f.Labels
		h.LastSeen = now
		h.Addresses = h.Addresses[:0]
		for _, a := range f.Addresses() {
			h.Addresses = append(h.Addresses, a.String())
		}
		h.MACs = h.MACs[:0]
		for _, ifc := range f.Interfaces {
			if ifc.MAC != "" && !slices.Contains(h.MACs, ifc.MAC) && len(ifc.Addrs) > 0 {
				h.MACs = append(h.MACs, ifc.MAC)
			}
		}
	}
	if complete {
		for _, h := range s.Sorted() {
			if _, ok := seen[h.Identity]; ok {
				continue
			}
			if ip, err := netip.ParseAddr(h.IP); err == nil && covered(ip) {
				ch.Unseen = append(ch.Unseen, HostChange{Identity: h.Identity, Hostname: h.Hostname, From: h.IP, Unseen: now.Sub(h.LastSeen)})
			}
		}
	}
	s.Updated = now
	return ch
}

// Prune removes hosts not seen for longer than age and returns them.
func (s *State) Prune(now time.Time, age time.Duration) []*Host {
	var out []*Host
	for _, h := range s.Sorted() {
		if now.Sub(h.LastSeen) > age {
			out = append(out, h)
			delete(s.Hosts, h.Identity)
		}
	}
	return out
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
