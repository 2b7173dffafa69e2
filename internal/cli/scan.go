package cli

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"time"

	"github.com/ifl-project/ifl/internal/controller/engine"
	"github.com/ifl-project/ifl/internal/controller/inventory"
	"github.com/ifl-project/ifl/internal/support/caps"
	"github.com/ifl-project/ifl/internal/support/progress"
	"github.com/ifl-project/ifl/internal/support/untrusted"
	"github.com/ifl-project/ifl/synscan"

	"github.com/ifl-project/ifl/internal/support/defaults"
)

// ScanCmd is a general port scanner.
type ScanCmd struct {
	Targets     []string      `arg:"" optional:"" placeholder:"TARGET" help:"Addresses, CIDR prefixes, ranges or host names (or --input-list FILE)."`
	Ports       string        `name:"port" short:"p" aliases:"ports" default:"${agent_port}" placeholder:"PORTS" help:"Ports, as nmap's -p: numbers and ranges (22,80,7000-7010), 1024- (to 65535), - (every port), service names from /etc/services (ssh,https) (default ${default}, the ifl agent port)."`
	All         bool          `help:"Also list closed and filtered ports, and the ports of down hosts, on the SYN and connect() paths alike (default: open only)."`
	Connect     bool          `help:"Use connect() instead of raw SYN probes (needs no privilege): no ARP sweep, so no --patience or --arp-probes."`
	Rate        int           `default:"0" help:"Most probes per second: the rate starts there and halves when answers go missing; 0, the default: ${syn_rate} raw SYNs, or ${connect_rate} first dials to hosts with connect() (a host that has answered gets its other ports 256 dials at a time)."`
	MinRate     int           `default:"0" help:"Least probes per second, however much is lost; 0, the default: a 16th of --rate."`
	Retries     int           `default:"${syn_retries}" help:"Extra SYNs (or dials) for a port that did not answer: a port gets 1 + --retries tries."`
	Timeout     time.Duration `default:"${syn_timeout}" help:"Wait for an answer before any round trip is measured, and the most a probe waits: waits follow the round trips measured (the host's ARP reply, then its answers), at least twice a slow host's."`
	SweepFlags  `embed:""`
	OutputFlags `embed:""`
	TargetFlags `embed:""`
	State       string `type:"path" env:"IFL_STATE" placeholder:"FILE" help:"Inventory state to name the hosts from, by the address where each last proved its identity (default: as ifl inventory reads it)."`
	NoState     bool   `help:"Leave the inventory out: no names."`
	StoreFlags  `embed:""`
}

// Help is shown by 'ifl scan --help'.
func (c *ScanCmd) Help() string {
	return `With CAP_NET_RAW, on-link addresses are first swept with ARP, as nmap does,
and the ports of those that do not answer are not probed (they are down).
Then it sends SYN packets on a raw socket at a steady rate and
matches the answers statelessly (the sequence number is a keyed hash of the
probe): SYN-ACK is open, RST closed, no answer after the retries filtered.
The kernel resets every half-open connection. Without the capability, or
with --connect, it uses connect() and says so.

Answers this host's sockets dropped for want of room are probed again;
a port or address still silent after them is counted unsure.

An address where the inventory last verified an agent is shown with the
agent's inventory name: a scan verifies nobody, so the name says who was
there, not who is.

Exit status: 0 when the scan ran, 1 when results may be wrong (unsure),
2 for usage errors, 130 when interrupted.

Examples:
  sudo ifl scan 198.18.0.0/24 -p 22,80,443
  sudo ifl scan 198.18.0.5 -p-                 # every port
  ifl scan --connect 198.18.0.5 -p ssh,1-1024 --all --json`
}

// scanRow is one port of one address.
type scanRow struct {
	Address string   `json:"address" yaml:"address"`
	Port    uint16   `json:"port" yaml:"port"`
	Status  string   `json:"status" yaml:"status"`                     // open, closed, filtered or down
	RTTMS   *float64 `json:"rtt_ms,omitempty" yaml:"rtt_ms,omitempty"` // for open and closed
	// Name is the inventory name of the host last verified at Address.
	Name string `json:"name,omitempty" yaml:"name,omitempty"`
}

// scanSummary counts what a scan did and found.
type scanSummary struct {
	Method      string  `json:"method" yaml:"method"` // "arp+syn" or "connect"
	Addresses   int     `json:"addresses" yaml:"addresses"`
	Ports       int     `json:"ports" yaml:"ports"`         // per address
	ARPSwept    int     `json:"arp_swept" yaml:"arp_swept"` // addresses swept with ARP
	ARPLive     int     `json:"arp_live" yaml:"arp_live"`   // of which answered
	Routed      int     `json:"routed" yaml:"routed"`       // addresses that went on unswept
	Down        int     `json:"down" yaml:"down"`           // addresses found down: silent to ARP, or unreachable
	Open        int     `json:"open" yaml:"open"`           // ports
	Closed      int     `json:"closed" yaml:"closed"`
	Filtered    int     `json:"filtered" yaml:"filtered"`
	SYNSent     int     `json:"syn_sent" yaml:"syn_sent"`       // SYN packets sent, retries included (arp+syn)
	Connections int     `json:"connections" yaml:"connections"` // connect() attempts, retries included (connect; IPv6 targets on arp+syn)
	Dropped     int     `json:"dropped" yaml:"dropped"`         // answers this host's sockets dropped
	Unsure      int     `json:"unsure" yaml:"unsure"`           // results down or filtered that may be wrong
	Seconds     float64 `json:"seconds" yaml:"seconds"`
	Complete    bool    `json:"complete" yaml:"complete"`
}

type scanReport struct {
	SchemaVersion int         `json:"schema_version" yaml:"schema_version"`
	Ports         []scanRow   `json:"ports" yaml:"ports"`
	Summary       scanSummary `json:"summary" yaml:"summary"`
}

// engineConfig is how the engine's stages are tuned for a scan.
func (c *ScanCmd) engineConfig() engine.Config {
	return engine.Config{SYN: &synscan.Config{Rate: c.Rate, MinRate: c.MinRate, Retries: defaults.None(c.Retries), Timeout: c.Timeout}, ARP: c.arpConfig()}
}

// wantsRaw: SYN probes need raw sockets; --connect needs no capability.
func (c *ScanCmd) wantsRaw() bool { return !c.Connect }

// stateFile is the state the scan names hosts from, "" for none.
func (c *ScanCmd) stateFile() string {
	switch {
	case c.NoState:
		return ""
	case c.State != "":
		return c.State
	}
	return inventory.ReadPath()
}

// Run scans.
func (c *ScanCmd) Run(ctx context.Context, env *Env) error {
	ports, err := c.check()
	if err != nil {
		return err
	}
	if err := checkState(env, c.State, c.NoState); err != nil {
		return err
	}
	words, err := c.TargetFlags.words("scan", c.Targets, env)
	if err != nil {
		return err
	}
	if len(words) == 0 {
		return fmt.Errorf("scan: no targets: give addresses, prefixes, ranges or host names, or --input-list FILE")
	}
	addrs, err := expandTargets(ctx, "scan", words, &c.TargetFlags)
	if err != nil {
		return err
	}
	path := c.stateFile()
	var keep []int
	if c.wantsRaw() {
		keep = append(keep, caps.NetRaw)
	}
	if c.etcd() {
		path = ""
	}
	if err := becomeStateOwner(env, "scan", path, keep...); err != nil {
		return err
	}
	st, err := readState(env, "scan", path, env.Given("state"))
	if err == nil && c.etcd() && !c.NoState {
		st, err = readStore(ctx, env, "scan", &c.StoreFlags)
	}
	if err != nil {
		return err
	}
	e, err := openEngine(env, "scan", addrs, c.engineConfig(), c.Connect)
	if err != nil {
		return err
	}
	defer e.Close()
	rep, err := c.scan(ctx, env, e, addrs, ports)
	rep.name(namesByAddress(st))
	if werr := c.write(env.Stdout, rep); werr != nil {
		return werr
	}
	fmt.Fprintln(env.Stderr, rep.Summary)
	if err != nil {
		return err
	}
	return unsureError("scan", rep.Summary.Dropped, rep.Summary.Unsure, "addresses down or ports filtered")
}

// check checks the flags, and returns the ports to scan.
func (c *ScanCmd) check() ([]uint16, error) {
	if _, err := c.format(); err != nil {
		return nil, err
	}
	rate := c.Rate
	switch {
	case rate == 0:
		rate = synscan.DefaultRate
	case rate < 0 || rate > 1_000_000:
		return nil, fmt.Errorf("--rate %d: want 1 to 1000000 probes per second, or 0 for the default (%d raw SYNs, %d dials with connect())", rate, synscan.DefaultRate, synscan.DefaultConnectRate)
	}
	if err := checkPacing(rate, "probes", c.Retries, 10, c.Timeout, "100ms"); err != nil {
		return nil, err
	}
	if c.MinRate < 0 || c.MinRate > rate {
		return nil, fmt.Errorf("--min-rate %d: want 0 (a 16th of --rate) to --rate (%d) probes per second", c.MinRate, rate)
	}
	noSweep := ""
	if c.Connect {
		noSweep = "--connect"
	}
	if err := c.SweepFlags.check("scan", noSweep); err != nil {
		return nil, err
	}
	ports, err := parsePorts(c.Ports)
	if err != nil {
		return nil, fmt.Errorf("--port %s: %w", c.Ports, err)
	}
	return ports, nil
}

// scan runs the scan, with a progress bar on a terminal, and returns its
// report: the open ports, or every port with --all, and the summary.
func (c *ScanCmd) scan(ctx context.Context, env *Env, e *engine.Engine, addrs []netip.Addr, ports []uint16) (scanReport, error) {
	out := make(chan synscan.Result, 64)
	type done struct {
		st  engine.Stats
		err error
	}
	fin := make(chan done, 1)
	start := time.Now()
	go func() {
		st, err := e.Scan(ctx, ports, out)
		close(out)
		fin <- done{st, err}
	}()
	bar := progress.New(env.Stderr, len(addrs)*len(ports), "probes", env.Terminal)
	bar.Width = env.Width
	var res []synscan.Result
	n, open := 0, 0
	for r := range out {
		n++
		if r.State == synscan.Open {
			open++
		}
		if r.State == synscan.Open || c.All {
			res = append(res, r)
		}
		bar.Set(n, fmt.Sprintf("%d open", open))
	}
	bar.Done()
	d := <-fin
	synscan.Sort(res)
	method := engine.MethodConnect
	if e.Raw() {
		method = engine.MethodRaw
	}
	st := d.st
	rep := scanReport{SchemaVersion: SchemaVersion, Ports: make([]scanRow, 0, len(res)), Summary: scanSummary{
		Method: method, Addresses: len(addrs), Ports: len(ports),
		ARPSwept: st.Swept, ARPLive: st.Live, Routed: st.Direct, Down: st.Down,
		Open: st.Open, Closed: st.Closed, Filtered: st.Filtered,
		SYNSent: st.SYNSent, Connections: st.Connections, Dropped: st.Dropped, Unsure: st.Unsure,
		Seconds: time.Since(start).Seconds(), Complete: d.err == nil,
	}}
	for _, r := range res {
		rep.Ports = append(rep.Ports, scanRow{Address: r.Addr.String(), Port: r.Port, Status: r.State.String(), RTTMS: msOrNil(r.RTT)})
	}
	return rep, d.err
}

// name gives each row the inventory name of its address, if any.
func (rep *scanReport) name(names addrNames) {
	for i, r := range rep.Ports {
		if a, err := netip.ParseAddr(r.Address); err == nil {
			rep.Ports[i].Name = names.name(a, int(r.Port))
		}
	}
}

// write writes the report in the format asked for.
func (c *ScanCmd) write(w io.Writer, rep scanReport) error {
	if ok, err := writeMachine(w, c.Output, rep); ok {
		return err
	}
	if c.Output == formatTSV {
		// The name last, so that the fields before it keep their places.
		t := newTSV(w, c.NoHeader, "address", "port", "status", "rtt_ms", "name")
		for _, r := range rep.Ports {
			t.row(r.Address, strconv.Itoa(int(r.Port)), r.Status, tsvMS(r.RTTMS), tsvText(r.Name))
		}
		return t.Flush()
	}
	tw := newTable(w)
	fmt.Fprintln(tw, "ADDRESS\tPORT\tSTATUS\tRTT\tNAME")
	for _, r := range rep.Ports {
		rtt := "-"
		if r.RTTMS != nil {
			rtt = fmt.Sprintf("%.2fms", *r.RTTMS)
		}
		// Names are ifl's, checked when the state was read; Cell
		// guards the column all the same.
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\n", r.Address, r.Port, r.Status, rtt, untrusted.Cell(dash(r.Name), 0))
	}
	return tw.Flush()
}

func (s scanSummary) String() string {
	out := fmt.Sprintf("%d open, %d closed, %d filtered", s.Open, s.Closed, s.Filtered)
	if s.Down > 0 {
		out += fmt.Sprintf(", %s down", plural(s.Down, "address"))
	}
	if s.Method == engine.MethodRaw {
		sent := plural(s.SYNSent, "SYN packet") + " sent"
		if s.Connections > 0 {
			sent += fmt.Sprintf(" and %s with connect() (IPv6)", plural(s.Connections, "connection"))
		}
		out += fmt.Sprintf("; %s (%d swept with ARP, %d live; %d not swept), %s, in %.2fs",
			plural(s.Addresses, "address"), s.ARPSwept, s.ARPLive, s.Routed, sent, s.Seconds)
	} else {
		out += fmt.Sprintf("; %s, %s with connect(), in %.2fs", plural(s.Addresses, "address"), plural(s.Connections, "connection"), s.Seconds)
	}
	if s.Dropped > 0 {
		out += fmt.Sprintf("; %d answers dropped by this host, their probes sent again", s.Dropped)
	}
	if !s.Complete {
		out += " (interrupted)"
	}
	return out
}
