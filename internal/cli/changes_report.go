package cli

import "github.com/ifl-project/ifl/internal/controller/inventory"

// changesReport is what a probe changed in the inventory, as probe's JSON
// and YAML show it: the inventory's Changes in the reports' vocabulary
// (address, never addr; durations in seconds).
type changesReport struct {
	New      []hostChangeReport `json:"new" yaml:"new"`
	Moved    []hostChangeReport `json:"moved" yaml:"moved"`
	Renamed  []hostChangeReport `json:"renamed" yaml:"renamed"`
	Unseen   []hostChangeReport `json:"unseen" yaml:"unseen"`
	Warnings []warningReport    `json:"warnings" yaml:"warnings"`
}

// hostChangeReport is one change of one host. Name is the inventory name,
// the one Ansible uses; Hostname is what the agent calls itself.
type hostChangeReport struct {
	Identity      string  `json:"identity" yaml:"identity"`
	Name          string  `json:"name" yaml:"name"`
	Hostname      string  `json:"hostname" yaml:"hostname"`
	OldName       string  `json:"old_name,omitempty" yaml:"old_name,omitempty"`             // renamed: the inventory name before, if it changed
	From          string  `json:"from,omitempty" yaml:"from,omitempty"`                     // moved: old address; renamed: old hostname; unseen: last address
	To            string  `json:"to,omitempty" yaml:"to,omitempty"`                         // new: address; moved: new address; renamed: new hostname
	UnseenSeconds float64 `json:"unseen_seconds,omitempty" yaml:"unseen_seconds,omitempty"` // unseen: since when
}

// warningReport is a conflict or a problem found while applying a probe
// (inventory.Warning).
type warningReport struct {
	Kind          string         `json:"kind" yaml:"kind"`
	Identity      string         `json:"identity" yaml:"identity"`
	Name          string         `json:"name,omitempty" yaml:"name,omitempty"`
	Hostname      string         `json:"hostname,omitempty" yaml:"hostname,omitempty"`
	Address       string         `json:"address,omitempty" yaml:"address,omitempty"`
	OtherIdentity string         `json:"other_identity,omitempty" yaml:"other_identity,omitempty"`
	OtherName     string         `json:"other_name,omitempty" yaml:"other_name,omitempty"`
	OtherHostname string         `json:"other_hostname,omitempty" yaml:"other_hostname,omitempty"`
	OtherAddress  string         `json:"other_address,omitempty" yaml:"other_address,omitempty"`
	Dropped       []droppedLabel `json:"dropped,omitempty" yaml:"dropped,omitempty"` // labels: the first few
	DroppedCount  int            `json:"dropped_count,omitempty" yaml:"dropped_count,omitempty"`
	Identities    []string       `json:"identities,omitempty" yaml:"identities,omitempty"` // refused, forgotten: the first few
	Count         int            `json:"count,omitempty" yaml:"count,omitempty"`
	Prefixes      []string       `json:"prefixes,omitempty" yaml:"prefixes,omitempty"`
	MACs          []string       `json:"macs,omitempty" yaml:"macs,omitempty"`
	Cuts          []cutReport    `json:"cuts,omitempty" yaml:"cuts,omitempty"` // truncated
	Message       string         `json:"message" yaml:"message"`               // for people, unescaped
}

type cutReport struct {
	Field string `json:"field" yaml:"field"`
	Bytes int    `json:"bytes" yaml:"bytes"`
	Max   int    `json:"max" yaml:"max"`
}

type droppedLabel struct {
	Key    string `json:"key" yaml:"key"`
	Reason string `json:"reason" yaml:"reason"`
}

func newChangesReport(ch *inventory.Changes) *changesReport {
	if ch == nil {
		return nil
	}
	hosts := func(cs []inventory.HostChange) []hostChangeReport {
		out := make([]hostChangeReport, 0, len(cs))
		for _, c := range cs {
			out = append(out, hostChangeReport{Identity: c.Identity, Name: c.Name, Hostname: c.Hostname, OldName: c.OldName,
				From: c.From, To: c.To, UnseenSeconds: c.Unseen.Seconds()})
		}
		return out
	}
	rep := &changesReport{New: hosts(ch.New), Moved: hosts(ch.Moved), Renamed: hosts(ch.Renamed), Unseen: hosts(ch.Unseen),
		Warnings: make([]warningReport, 0, len(ch.Warnings))}
	for _, w := range ch.Warnings {
		wr := warningReport{Kind: w.Kind, Identity: w.Identity, Name: w.Name, Hostname: w.Hostname, Address: w.Addr,
			OtherIdentity: w.OtherIdentity, OtherName: w.OtherName, OtherHostname: w.OtherHostname, OtherAddress: w.OtherAddr,
			DroppedCount: w.DroppedCount, Identities: w.Identities, Count: w.Count, Prefixes: w.Prefixes, MACs: w.MACs, Message: w.Message}
		for _, c := range w.Cuts {
			wr.Cuts = append(wr.Cuts, cutReport{Field: c.Field, Bytes: c.Bytes, Max: c.Max})
		}
		for _, d := range w.Dropped {
			wr.Dropped = append(wr.Dropped, droppedLabel{Key: d.Key, Reason: d.Reason})
		}
		rep.Warnings = append(rep.Warnings, wr)
	}
	return rep
}
