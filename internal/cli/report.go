package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ifl-project/ifl/internal/controller/engine"
	"github.com/ifl-project/ifl/internal/controller/inventory"
	"github.com/ifl-project/ifl/internal/controller/verify"
	"github.com/ifl-project/ifl/internal/support/untrusted"
	"github.com/ifl-project/ifl/proto"
)

// hostReport is one address as probe's and ping's JSON and YAML show it.
type hostReport struct {
	Address  string `json:"address" yaml:"address"`
	Port     int    `json:"port" yaml:"port"`
	Status   string `json:"status" yaml:"status"`
	Reason   string `json:"reason,omitempty" yaml:"reason,omitempty"` // one word, for every status but agent
	Identity string `json:"identity,omitempty" yaml:"identity,omitempty"`
	// Name is the inventory name of the host of Identity, the one
	// Ansible uses, once the inventory knows it.
	Name     string   `json:"name,omitempty" yaml:"name,omitempty"`
	Hostname string   `json:"hostname,omitempty" yaml:"hostname,omitempty"`
	RTTMS    *float64 `json:"rtt_ms,omitempty" yaml:"rtt_ms,omitempty"` // connect, handshake and ping, when the port answered
	Error    string   `json:"error,omitempty" yaml:"error,omitempty"`
	AlsoAt   []string `json:"also_at,omitempty" yaml:"also_at,omitempty"` // the same agent, verified there too
	// MachineIDHash is the hash of the agent's machine-id that the
	// inventory keeps (ifl_machine_id_hash).
	MachineIDHash string       `json:"machine_id_hash,omitempty" yaml:"machine_id_hash,omitempty"`
	Facts         *proto.Facts `json:"facts,omitempty" yaml:"facts,omitempty"` // as the agent sent them; in a probe's report without the machine-id
}

// newHostReport is r as the reports show it, with the inventory name of
// its host (or ""). The raw machine-id stays in the facts only with
// rawMachineID, for ping, where a person asked for one host's facts; a
// probe's report carries its hash alone, as the inventory does.
func newHostReport(r verify.Result, name string, rawMachineID bool) hostReport {
	h := hostReport{
		Address:  r.Addr.String(),
		Port:     r.Port,
		Status:   r.Status.String(),
		Reason:   r.Reason,
		Identity: r.Identity,
		Name:     name,
		RTTMS:    msOrNil(r.Latency),
		Facts:    r.Facts,
	}
	if r.Facts != nil {
		h.Hostname = r.Facts.Hostname
		h.MachineIDHash = machineIDHash(r.Facts.MachineID)
		if !rawMachineID && r.Facts.MachineID != "" {
			f := *r.Facts
			f.MachineID = ""
			h.Facts = &f
		}
	}
	if r.Err != nil {
		h.Error = r.Err.Error()
	}
	for _, a := range r.Also {
		h.AlsoAt = append(h.AlsoAt, a.String())
	}
	return h
}

// machineIDHash is the hash the inventory keeps of a machine-id.
func machineIDHash(id string) string {
	return (&inventory.Host{MachineID: id}).MachineIDHash()
}

// summary counts what a probe found.
type summary struct {
	Method    string `json:"method" yaml:"method"`                       // "arp+syn", "connect" or "broadcast"
	Addresses int    `json:"addresses" yaml:"addresses"`                 // targets
	ARPSwept  int    `json:"arp_swept" yaml:"arp_swept"`                 // addresses swept with ARP
	ARPLive   int    `json:"arp_live" yaml:"arp_live"`                   // of which answered
	Routed    int    `json:"routed" yaml:"routed"`                       // addresses that went on unswept: routed, or on a link ifl could not sweep
	SYNSent   int    `json:"syn_sent" yaml:"syn_sent"`                   // SYN packets sent (arp+syn)
	Queries   int    `json:"queries,omitempty" yaml:"queries,omitempty"` // broadcast queries sent
	Answers   int    `json:"answers,omitempty" yaml:"answers,omitempty"` // addresses that answered them
	Open      int    `json:"open" yaml:"open"`                           // addresses with the agent port open
	Probed    int    `json:"probed" yaml:"probed"`                       // addresses dialled
	Agents    int    `json:"agents" yaml:"agents"`
	Busy      int    `json:"busy,omitempty" yaml:"busy,omitempty"` // verified agents with no room for another connection
	// Broadcast: hosts that answered discovery and not on the agent's
	// TCP port.
	TCPFiltered int `json:"tcp_filtered,omitempty" yaml:"tcp_filtered,omitempty"`
	Rejected    int `json:"rejected" yaml:"rejected"` // rejected and identity-mismatch
	NotAgents   int `json:"not_agents" yaml:"not_agents"`
	Errors      int `json:"errors" yaml:"errors"`
	Dropped     int `json:"dropped" yaml:"dropped"` // answers this host's sockets dropped
	Unsure      int `json:"unsure" yaml:"unsure"`   // addresses down or filtered that may be wrong
	// Seconds the probe took; Complete is false after Ctrl-C.
	Seconds  float64 `json:"seconds" yaml:"seconds"`
	Complete bool    `json:"complete" yaml:"complete"`
}

// newSummary is a round's summary for the report.
func newSummary(r *engine.Round) summary {
	st := r.Stats
	s := summary{Method: r.Method, Addresses: st.Addresses, Queries: st.Queries, Answers: st.Answers, Open: st.Open,
		Probed: st.Probed, Agents: st.Agents, Busy: st.Busy, Rejected: st.Rejected, NotAgents: st.NotAgents, Errors: st.Errors,
		Dropped: st.Dropped, Unsure: st.Unsure, TCPFiltered: st.TCPFiltered, Seconds: r.Elapsed.Seconds(), Complete: r.Complete}
	if r.Method == engine.MethodRaw {
		s.ARPSwept, s.ARPLive, s.Routed, s.SYNSent = st.Swept, st.Live, st.Direct, st.SYNSent
	}
	return s
}

func (s summary) String() string {
	parts := []string{plural(s.Agents, "agent")}
	if s.Busy > 0 {
		parts = append(parts, fmt.Sprintf("%d busy", s.Busy))
	}
	if s.Rejected > 0 {
		parts = append(parts, fmt.Sprintf("%d rejected", s.Rejected))
	}
	if s.NotAgents > 0 {
		parts = append(parts, fmt.Sprintf("%d not an agent", s.NotAgents))
	}
	if s.Errors > 0 {
		parts = append(parts, plural(s.Errors, "error"))
	}
	if s.TCPFiltered > 0 {
		parts = append(parts, fmt.Sprintf("%d answered discovery but not on TCP (a firewall?)", s.TCPFiltered))
	}
	out := fmt.Sprintf("%s; %d of %s probed with connect() in %.2fs", strings.Join(parts, ", "), s.Probed, plural(s.Addresses, "address"), s.Seconds)
	if s.Method == engine.MethodRaw {
		// An address that no sweep covered is neither swept nor live:
		// say how many went on without one.
		out = fmt.Sprintf("%s; %s (%d swept with ARP, %d live; %d not swept), %d with the port open, %d probed, in %.2fs",
			strings.Join(parts, ", "), plural(s.Addresses, "address"), s.ARPSwept, s.ARPLive, s.Routed, s.Open, s.Probed, s.Seconds)
	}
	if s.Method == engine.MethodBroadcast {
		out = fmt.Sprintf("%s; %s answered the broadcast (%d queries sent), %d probed, in %.2fs", strings.Join(parts, ", "), plural(s.Answers, "address"), s.Queries, s.Probed, s.Seconds)
	}
	if s.Dropped > 0 {
		out += fmt.Sprintf("; %d answers dropped by this host, their probes sent again", s.Dropped)
	}
	if !s.Complete {
		out += " (interrupted)"
	}
	return out
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	if strings.HasSuffix(word, "ss") {
		return fmt.Sprintf("%d %ses", n, word)
	}
	return fmt.Sprintf("%d %ss", n, word)
}

func sortStrings(s []string) { sort.Strings(s) }

// Column bounds for what an agent or a peer chose: a hostname may be 253
// characters in DNS, and a row should stay a row.
const (
	maxHostnameCell = 64
	maxReasonCell   = 80
)

// writeTable prints one row per host: agents and open ports that failed
// verification, with the inventory name of each agent the inventory
// knows (names, by identity).
func writeTable(w io.Writer, rs []verify.Result, names map[string]string) error {
	tw := newTable(w)
	fmt.Fprintln(tw, "ADDRESS\tSTATUS\tNAME\tHOSTNAME\tIDENTITY\tOTHER ADDRESSES\tRTT")
	for _, r := range rs {
		host, other := "-", "-"
		if r.Facts != nil {
			host = untrusted.Cell(r.Facts.Hostname, maxHostnameCell)
			if o := otherAddrs(r.Facts, r.Addr, r.Also); len(o) > 0 {
				other = strings.Join(o, ",")
			}
		}
		id := "-"
		if r.Identity != "" {
			id = r.Identity[:min(12, len(r.Identity))]
		}
		status := r.Status.String()
		if r.Status != verify.Agent && r.Err != nil {
			host = reasonShort(r)
		}
		// Names are ifl's, checked when the state was read; Cell
		// guards the column all the same.
		name := untrusted.Cell(dash(nameOf(names, r)), 0)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Addr, status, name, host, id, other, fmtLatency(r.Latency))
	}
	return tw.Flush()
}

// reasonShort says in a few words why an open port is not a verified agent.
func reasonShort(r verify.Result) string {
	switch r.Status {
	case verify.Busy:
		return "(busy: no room for another connection)"
	case verify.Rejected:
		return "(wrong network key or clock skew)"
	case verify.NotAgent:
		return "(another service)"
	case verify.Mismatch:
		return "(unexpected identity)"
	}
	return "(" + untrusted.Cell(r.Err.Error(), maxReasonCell) + ")"
}

// otherAddrs lists the addresses an agent reports besides the one that
// answered, and the others where it answered too (also).
func otherAddrs(f *proto.Facts, answered netip.Addr, also []netip.Addr) []string {
	var out []string
	for _, a := range f.Addresses() {
		if a != answered && !slices.Contains(also, a) {
			out = append(out, a.String())
		}
	}
	for _, a := range also {
		out = append(out, a.String())
	}
	return out
}

type probeReport struct {
	SchemaVersion int            `json:"schema_version" yaml:"schema_version"`
	Hosts         []hostReport   `json:"hosts" yaml:"hosts"`
	Summary       summary        `json:"summary" yaml:"summary"`
	Changes       *changesReport `json:"changes,omitempty" yaml:"changes,omitempty"`
}

// nameOf is the inventory name of r's agent, "" when it has none.
func nameOf(names map[string]string, r verify.Result) string {
	if r.Identity == "" || r.Status != verify.Agent && r.Status != verify.Busy {
		return ""
	}
	return names[r.Identity]
}

func newProbeReport(rs []verify.Result, s summary, ch *inventory.Changes, names map[string]string) probeReport {
	rep := probeReport{SchemaVersion: SchemaVersion, Hosts: make([]hostReport, 0, len(rs)), Summary: s, Changes: newChangesReport(ch)}
	for _, r := range rs {
		rep.Hosts = append(rep.Hosts, newHostReport(r, nameOf(names, r), false))
	}
	return rep
}

// writeJSONLine writes one probe round as one line of JSON.
func writeJSONLine(w io.Writer, run *probeRun) error {
	return json.NewEncoder(untrusted.JSONWriter(w)).Encode(newProbeReport(run.round.Results, run.summary, run.changes, run.names))
}

// writeReport writes a probe's report in the format asked for.
func writeReport(w io.Writer, out *OutputFlags, run *probeRun) error {
	rs := run.round.Results
	if ok, err := writeMachine(w, out.Output, newProbeReport(rs, run.summary, run.changes, run.names)); ok {
		return err
	}
	if out.Output == formatTSV {
		return writeProbeTSV(w, out.NoHeader, rs, run.names)
	}
	return writeTable(w, rs, run.names)
}

// writeProbeTSV writes one row per address, as writeTable does. The
// inventory name is the last field, so that the fields before it keep
// their places.
func writeProbeTSV(w io.Writer, noHeader bool, rs []verify.Result, names map[string]string) error {
	t := newTSV(w, noHeader, "address", "port", "status", "reason", "identity", "hostname", "other_addresses", "rtt_ms", "name")
	for _, r := range rs {
		var host, other string
		if r.Facts != nil {
			host = tsvText(r.Facts.Hostname)
			other = tsvList(otherAddrs(r.Facts, r.Addr, r.Also))
		}
		t.row(r.Addr.String(), strconv.Itoa(r.Port), r.Status.String(), r.Reason, r.Identity, host, other, tsvMS(msOrNil(r.Latency)), tsvText(nameOf(names, r)))
	}
	return t.Flush()
}

// pingReport is ping's JSON and YAML: the one address, as probe lists it.
type pingReport struct {
	SchemaVersion int `json:"schema_version" yaml:"schema_version"`
	hostReport    `yaml:",inline"`
}

// writePing writes ping's result in a format for machines: JSON or YAML,
// or TSV as key/value rows, one fact a row; a list (flags, addresses) is
// one comma-separated value, and each interface, route and label has rows
// of its own. name is the inventory name of the agent, or "".
func writePing(w io.Writer, out *OutputFlags, r verify.Result, name string) error {
	h := newHostReport(r, name, true)
	if ok, err := writeMachine(w, out.Output, pingReport{SchemaVersion, h}); ok {
		return err
	}
	t := newTSV(w, out.NoHeader, "key", "value")
	t.row("address", h.Address)
	t.row("port", strconv.Itoa(h.Port))
	t.row("status", h.Status)
	t.row("reason", h.Reason)
	t.row("identity", h.Identity)
	t.row("name", tsvText(h.Name))
	t.row("rtt_ms", tsvMS(h.RTTMS))
	if h.Error != "" {
		t.row("error", tsvText(h.Error))
	}
	f := r.Facts
	if f == nil {
		return t.Flush()
	}
	t.row("hostname", tsvText(f.Hostname))
	t.row("machine_id", tsvText(f.MachineID))
	t.row("machine_id_hash", h.MachineIDHash)
	t.row("os.id", tsvText(f.OS.ID))
	t.row("os.version_id", tsvText(f.OS.VersionID))
	t.row("os.pretty_name", tsvText(f.OS.PrettyName))
	t.row("kernel", tsvText(f.Kernel))
	t.row("uptime_seconds", strconv.FormatInt(f.UptimeSeconds, 10))
	t.row("agent_version", tsvText(f.AgentVersion))
	t.row("time", f.Time.UTC().Format(time.RFC3339Nano))
	for i, rt := range f.DefaultRoutes {
		k := "default_routes." + strconv.Itoa(i) + "."
		t.row(k+"family", tsvText(rt.Family))
		t.row(k+"gateway", tsvText(rt.Gateway))
		t.row(k+"interface", tsvText(rt.Interface))
	}
	for i, ifc := range f.Interfaces {
		k := "interfaces." + strconv.Itoa(i) + "."
		t.row(k+"name", tsvText(ifc.Name))
		t.row(k+"mac", tsvText(ifc.MAC))
		t.row(k+"mtu", strconv.Itoa(ifc.MTU))
		t.row(k+"flags", tsvList(ifc.Flags))
		t.row(k+"addrs", tsvList(ifc.Addrs))
	}
	keys := make([]string, 0, len(f.Labels))
	for k := range f.Labels {
		keys = append(keys, k)
	}
	sortStrings(keys)
	for _, k := range keys {
		t.row("labels."+tsvText(k), tsvText(f.Labels[k]))
	}
	if tr := f.Truncated; tr != nil {
		t.row("truncated.interfaces", strconv.Itoa(tr.Interfaces))
		t.row("truncated.labels", strconv.Itoa(tr.Labels))
	}
	return t.Flush()
}
