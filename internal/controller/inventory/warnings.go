package inventory

import (
	"fmt"
	"strings"
)

// Kinds of Warning.
const (
	KindCopiedKey  = "copied_key" // one identity answered from two addresses
	KindMachineID  = "machine_id" // a known machine-id answered with a new identity
	KindReplaced   = "replaced"   // a new identity replaced a host seen in one probe at its address
	KindEvicted    = "evicted"    // a host was forgotten: too many identities at its address
	KindLabels     = "labels"     // labels were dropped
	KindRefused    = "refused"    // new identities were not added: too many in one prefix, or at one MAC
	KindForgotten  = "forgotten"  // hosts seen in one probe only were forgotten: too many in one prefix
	KindTruncated  = "truncated"  // facts were cut short to their bounds
	KindUnreserved = "unreserved" // a name's reservation was given up: too many reservations
)

// Warning is a conflict or a problem found while applying a probe. Its
// fields hold what agents chose (hostnames, label keys) as they sent it;
// Text renders it for people through an escaping function, so that the
// JSON and YAML reports keep the exact bytes while a terminal gets none
// of their control characters.
type Warning struct {
	Kind     string `json:"kind" yaml:"kind"`
	Identity string `json:"identity" yaml:"identity"`
	Name     string `json:"name,omitempty" yaml:"name,omitempty"` // inventory name of Identity's host, if it is in the inventory
	Hostname string `json:"hostname,omitempty" yaml:"hostname,omitempty"`
	Addr     string `json:"addr,omitempty" yaml:"addr,omitempty"`
	// The other host: the one whose machine-id, or address, a new
	// identity answered with (machine_id, replaced).
	OtherIdentity string `json:"other_identity,omitempty" yaml:"other_identity,omitempty"`
	OtherName     string `json:"other_name,omitempty" yaml:"other_name,omitempty"`
	OtherHostname string `json:"other_hostname,omitempty" yaml:"other_hostname,omitempty"`
	OtherAddr     string `json:"other_addr,omitempty" yaml:"other_addr,omitempty"`
	// Dropped labels (labels).
	Dropped      []DroppedLabel `json:"dropped,omitempty" yaml:"dropped,omitempty"` // the first 20
	DroppedCount int            `json:"dropped_count,omitempty" yaml:"dropped_count,omitempty"`
	// The identities a bound refused or forgot (refused, forgotten):
	// the first 20 of Count.
	Identities []string `json:"identities,omitempty" yaml:"identities,omitempty"`
	Count      int      `json:"count,omitempty" yaml:"count,omitempty"`
	// The prefixes and the MACs (as agents reported them) whose bound
	// was reached (refused, forgotten): the first 20 of each.
	Prefixes []string `json:"prefixes,omitempty" yaml:"prefixes,omitempty"`
	MACs     []string `json:"macs,omitempty" yaml:"macs,omitempty"`
	// The facts cut short (truncated).
	Cuts []Cut `json:"cuts,omitempty" yaml:"cuts,omitempty"`
	// Message is Text without escaping, for logs and machines.
	Message string `json:"message" yaml:"message"`
}

// maxShownLabels bounds the dropped labels a warning names; maxListed
// bounds the identities, prefixes and MACs a warning's fields list.
const (
	maxShownLabels = 5
	maxListed      = 20
)

// list joins items for a message: the first few, then how many more.
func list(items []string, total int, esc func(string) string) string {
	var b strings.Builder
	for i, it := range items {
		if i == maxShownLabels {
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(esc(it))
	}
	if n := total - min(len(items), maxShownLabels); n > 0 {
		fmt.Fprintf(&b, " and %d more", n)
	}
	return b.String()
}

// Text renders the warning for people, passing every string an agent
// chose through esc (untrusted.Text in the CLI).
func (w *Warning) Text(esc func(string) string) string {
	who := func(name, hostname, id string) string {
		if name != "" {
			return name + " (" + id + ")"
		}
		return "hostname " + esc(hostname) + " (" + id + ")"
	}
	switch w.Kind {
	case KindCopiedKey:
		return "identity " + w.Identity + " answered from both " + w.Addr + " and " + w.OtherAddr + ": one agent key on two hosts (a copied key?)"
	case KindMachineID:
		return "machine-id of " + who(w.OtherName, w.OtherHostname, w.OtherIdentity) + " now answers with identity " + w.Identity + " from " + w.Addr + ": a re-imaged host, or a cloned VM"
	case KindReplaced:
		return "identity " + w.Identity + " at " + w.Addr + " replaces " + who(w.OtherName, w.OtherHostname, w.OtherIdentity) +
			", seen there in one probe only: a new key at one address for each probe is one host in the inventory, not many"
	case KindEvicted:
		return who(w.Name, w.Hostname, w.Identity) + ", last at " + w.Addr + ", forgotten: more than " + fmt.Sprint(MaxPerAddress) + " identities at that address"
	case KindLabels:
		var b strings.Builder
		fmt.Fprintf(&b, "%s: %d label", who(w.Name, w.Hostname, w.Identity), w.DroppedCount)
		if w.DroppedCount != 1 {
			b.WriteString("s")
		}
		b.WriteString(" dropped: ")
		for i, d := range w.Dropped {
			if i == maxShownLabels {
				fmt.Fprintf(&b, ", and %d more", w.DroppedCount-i)
				break
			}
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(esc(d.Key) + " (" + d.Reason + ")")
		}
		return b.String()
	case KindRefused:
		var over []string
		if len(w.Prefixes) > 0 {
			over = append(over, fmt.Sprintf("more than %d new hosts in %s", MaxNewPerPrefix, list(w.Prefixes, len(w.Prefixes), esc)))
		}
		if len(w.MACs) > 0 {
			over = append(over, fmt.Sprintf("more than %d new identities at MAC %s", MaxNewPerMAC, list(w.MACs, len(w.MACs), esc)))
		}
		return fmt.Sprintf("%s not added (%s): %s; they are added in a later probe, as the bounds allow",
			plural(w.Count, "new identity", "new identities"), strings.Join(over, "; "), list(w.Identities, w.Count, esc))
	case KindForgotten:
		return fmt.Sprintf("%s seen in one probe only forgotten, past %d such hosts in %s: %s",
			plural(w.Count, "host", "hosts"), MaxNewPerPrefix, list(w.Prefixes, len(w.Prefixes), esc), list(w.Identities, w.Count, esc))
	case KindTruncated:
		var b strings.Builder
		b.WriteString(who(w.Name, w.Hostname, w.Identity) + ": cut short in the inventory (ending in " + Truncated + "): ")
		for i, c := range w.Cuts {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "%s (%d bytes, at most %d kept)", c.Field, c.Bytes, c.Max)
		}
		return b.String()
	case KindUnreserved:
		return fmt.Sprintf("name %s is no longer reserved for identity %s: more than %d names reserved, the oldest given up first", w.Name, w.Identity, MaxReserved)
	}
	return w.Kind + ": " + w.Identity
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprint(n) + " " + many
}

// warning is a Warning being built: the names of its hosts are known once
// every host has one.
type warning struct {
	kind            string
	identity        string
	host            *Host // the host of identity, when it has one
	addr, otherAddr string
	other           *Host
	dropped         []DroppedLabel
	ids             []string // refused, forgotten
	prefixes, macs  []string // refused, forgotten
	cuts            []Cut    // truncated
	name            string   // unreserved: the name
}

func (w *warning) build(s *State) Warning {
	out := Warning{Kind: w.kind, Identity: w.identity, Addr: w.addr, OtherAddr: w.otherAddr, Dropped: w.dropped, DroppedCount: len(w.dropped)}
	h := w.host
	if h == nil {
		h = s.Hosts[w.identity]
	}
	if h != nil {
		out.Name, out.Hostname = h.Name, h.Hostname
	}
	if o := w.other; o != nil {
		out.OtherIdentity, out.OtherName, out.OtherHostname = o.Identity, o.Name, o.Hostname
	}
	if w.kind == KindUnreserved || w.kind == KindRefused || w.kind == KindForgotten {
		// Of hosts gone, or never added: no name to show.
		out.Name, out.Hostname = w.name, ""
	}
	// The message names a few; the structure keeps bounded lists.
	out.Dropped = out.Dropped[:min(len(out.Dropped), maxListed)]
	out.Count = len(w.ids)
	out.Identities = w.ids[:min(len(w.ids), maxListed)]
	out.Prefixes = w.prefixes[:min(len(w.prefixes), maxListed)]
	out.MACs = w.macs[:min(len(w.macs), maxListed)]
	out.Cuts = w.cuts
	out.Message = out.Text(func(s string) string { return s })
	return out
}
