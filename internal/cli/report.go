package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/ifl-project/ifl/internal/inventory"
	"github.com/ifl-project/ifl/internal/probe"
	"github.com/ifl-project/ifl/internal/untrusted"
	"github.com/ifl-project/ifl/proto"
)

// hostReport is one host as JSON and YAML show it.
type hostReport struct {
	Address   string       `json:"address" yaml:"address"`
	Port      int          `json:"port" yaml:"port"`
	Status    string       `json:"status" yaml:"status"`
	Identity  string       `json:"identity,omitempty" yaml:"identity,omitempty"`
	Hostname  string       `json:"hostname,omitempty" yaml:"hostname,omitempty"`
	LatencyMS float64      `json:"latency_ms" yaml:"latency_ms"`
	Error     string       `json:"error,omitempty" yaml:"error,omitempty"`
	AlsoAt    []string     `json:"also_at,omitempty" yaml:"also_at,omitempty"` // the same agent, verified there too
	Facts     *proto.Facts `json:"facts,omitempty" yaml:"facts,omitempty"`
}

func newHostReport(r probe.Result) hostReport {
	h := hostReport{
		Address:   r.Addr.String(),
		Port:      r.Port,
		Status:    r.Status.String(),
		Identity:  r.Identity,
		LatencyMS: float64(r.Latency.Microseconds()) / 1000,
		Facts:     r.Facts,
	}
	if r.Facts != nil {
		h.Hostname = r.Facts.Hostname
	}
	if r.Err != nil {
		h.Error = r.Err.Error()
	}
	for _, a := range r.Also {
		h.AlsoAt = append(h.AlsoAt, a.String())
	}
	return h
}

// summary counts what a probe found.
type summary struct {
	Agents    int     `json:"agents" yaml:"agents"`
	Rejected  int     `json:"rejected" yaml:"rejected"`
	NotAgents int     `json:"not_agents" yaml:"not_agents"`
	Errors    int     `json:"errors" yaml:"errors"`
	Addresses int     `json:"addresses" yaml:"addresses"`
	Method    string  `json:"method" yaml:"method"`                       // "arp+syn", "connect" or "broadcast"
	Swept     int     `json:"arp_swept" yaml:"arp_swept"`                 // addresses swept with ARP
	Live      int     `json:"arp_live" yaml:"arp_live"`                   // of which answered
	SynSent   int     `json:"syn_sent" yaml:"syn_sent"`                   // SYN packets sent
	SynOpen   int     `json:"syn_open" yaml:"syn_open"`                   // agent ports found open
	Queries   int     `json:"queries,omitempty" yaml:"queries,omitempty"` // broadcast queries sent
	Answers   int     `json:"answers,omitempty" yaml:"answers,omitempty"` // addresses that answered them
	Probed    int     `json:"probed" yaml:"probed"`                       // addresses dialled
	Seconds   float64 `json:"seconds" yaml:"seconds"`
	Complete  bool    `json:"complete" yaml:"complete"` // false after Ctrl-C
}

func (s *summary) add(r probe.Result) {
	s.Probed++
	switch r.Status {
	case probe.Agent:
		s.Agents++
	case probe.Rejected, probe.Mismatch:
		s.Rejected++
	case probe.NotAgent:
		s.NotAgents++
	case probe.Failed:
		s.Errors++
	}
}

func (s summary) String() string {
	parts := []string{plural(s.Agents, "agent")}
	if s.Rejected > 0 {
		parts = append(parts, fmt.Sprintf("%d rejected", s.Rejected))
	}
	if s.NotAgents > 0 {
		parts = append(parts, fmt.Sprintf("%d not an agent", s.NotAgents))
	}
	if s.Errors > 0 {
		parts = append(parts, plural(s.Errors, "error"))
	}
	out := fmt.Sprintf("%s; %d of %s probed in %.2fs", strings.Join(parts, ", "), s.Probed, plural(s.Addresses, "address"), s.Seconds)
	if s.Method == "arp+syn" {
		out = fmt.Sprintf("%s; %s swept, %d live, %d with the port open, in %.2fs", strings.Join(parts, ", "), plural(s.Addresses, "address"), s.Live, s.SynOpen, s.Seconds)
	}
	if s.Method == "broadcast" {
		out = fmt.Sprintf("%s; %s answered the broadcast (%d queries sent), %d probed, in %.2fs", strings.Join(parts, ", "), plural(s.Answers, "address"), s.Queries, s.Probed, s.Seconds)
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

// sortResults orders results by address.
func sortResults(rs []probe.Result) {
	slices.SortFunc(rs, func(a, b probe.Result) int { return a.Addr.Compare(b.Addr) })
}

func sortStrings(s []string) { sort.Strings(s) }

// Column bounds for what an agent or a peer chose: a hostname may be 253
// characters in DNS, and a row should stay a row.
const (
	maxHostnameCell = 64
	maxReasonCell   = 80
)

// writeTable prints one row per host: agents and open ports that failed
// verification.
func writeTable(w io.Writer, rs []probe.Result) error {
	tw := newTable(w)
	fmt.Fprintln(tw, "ADDRESS\tSTATUS\tHOSTNAME\tIDENTITY\tOTHER ADDRESSES\tLATENCY")
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
		if r.Status != probe.Agent && r.Err != nil {
			host = reasonShort(r)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.Addr, status, host, id, other, fmtLatency(r.Latency))
	}
	return tw.Flush()
}

// reasonShort says in a few words why an open port is not a verified agent.
func reasonShort(r probe.Result) string {
	switch r.Status {
	case probe.Rejected:
		return "(wrong network key or clock skew)"
	case probe.NotAgent:
		return "(another service)"
	case probe.Mismatch:
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
	Hosts   []hostReport       `json:"hosts" yaml:"hosts"`
	Summary summary            `json:"summary" yaml:"summary"`
	Changes *inventory.Changes `json:"changes,omitempty" yaml:"changes,omitempty"`
}

// writeJSONLine writes one probe round as one line of JSON.
func writeJSONLine(w io.Writer, run *probeRun) error {
	rep := probeReport{Hosts: make([]hostReport, 0, len(run.found)), Summary: run.summary, Changes: run.changes}
	for _, r := range run.found {
		rep.Hosts = append(rep.Hosts, newHostReport(r))
	}
	return json.NewEncoder(w).Encode(rep)
}

func writeReport(w io.Writer, format string, rs []probe.Result, s summary, ch *inventory.Changes) error {
	rep := probeReport{Hosts: make([]hostReport, 0, len(rs)), Summary: s, Changes: ch}
	for _, r := range rs {
		rep.Hosts = append(rep.Hosts, newHostReport(r))
	}
	switch format {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	case "yaml":
		enc := yaml.NewEncoder(w)
		enc.SetIndent(2)
		if err := enc.Encode(rep); err != nil {
			return err
		}
		return enc.Close()
	}
	return writeTable(w, rs)
}
