package cli

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"time"

	"github.com/ifl-project/ifl/internal/controller/engine"
	"github.com/ifl-project/ifl/internal/support/progress"
	"github.com/ifl-project/ifl/synscan"

	"github.com/ifl-project/ifl/internal/support/defaults"
)

// ScanCmd is a general port scanner.
type ScanCmd struct {
	Targets     []string      `arg:"" optional:"" placeholder:"TARGET" help:"Addresses, CIDR prefixes, ranges or host names (or --input-list FILE)."`
	Ports       string        `short:"p" default:"${agent_port}" placeholder:"PORTS" help:"Ports: a list of ports and ranges, e.g. 22,80,7000-7010 (default ${default}, the ifl agent port)."`
	All         bool          `help:"Also list closed and filtered ports, and the ports of down hosts, on the SYN and connect() paths alike (default: open only)."`
	Connect     bool          `help:"Use connect() instead of raw SYN probes (needs no privilege)."`
	Rate        int           `default:"0" help:"Most probes per second: the rate starts there and halves when answers go missing; 0: ${syn_rate} raw SYNs, or ${connect_rate} first dials to hosts with connect() (a host that has answered gets its other ports 256 dials at a time)."`
	MinRate     int           `default:"0" help:"Least probes per second, however much is lost; 0: a 16th of --rate."`
	Retries     int           `default:"${syn_retries}" help:"Extra probes for a port that did not answer."`
	Timeout     time.Duration `default:"${syn_timeout}" help:"Wait for an answer before any round trip is measured, and the most a probe waits: waits follow the round trips measured (the host's ARP reply, then its answers), at least twice a slow host's."`
	SweepFlags  `embed:""`
	OutputFlags `embed:""`
	TargetFlags `embed:""`
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

Exit status: 0 when the scan ran, 1 when results may be wrong (unsure),
2 for usage errors.

Examples:
  sudo ifl scan 198.18.0.0/24 -p 22,80,443
  ifl scan --connect 198.18.0.5 -p 1-1024 --all --json`
}

// scanRow is one port of one address.
type scanRow struct {
	Address string   `json:"address" yaml:"address"`
	Port    uint16   `json:"port" yaml:"port"`
	Status  string   `json:"status" yaml:"status"`                     // open, closed, filtered or down
	RTTMS   *float64 `json:"rtt_ms,omitempty" yaml:"rtt_ms,omitempty"` // for open and closed
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

// Run scans.
func (c *ScanCmd) Run(ctx context.Context, env *Env) error {
	ports, err := c.check()
	if err != nil {
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
	e, err := openEngine(env, "scan", addrs, c.engineConfig(), c.Connect)
	if err != nil {
		return err
	}
	defer e.Close()
	rep, err := c.scan(ctx, env, e, addrs, ports)
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
		return nil, fmt.Errorf("--rate %d: want 1 to 1000000 probes per second, or 0 for the default", rate)
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
	ports, err := synscan.ParsePorts(c.Ports)
	if err != nil {
		return nil, fmt.Errorf("scan: %w", err)
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

// write writes the report in the format asked for.
func (c *ScanCmd) write(w io.Writer, rep scanReport) error {
	if ok, err := writeMachine(w, c.Output, rep); ok {
		return err
	}
	if c.Output == formatTSV {
		t := newTSV(w, c.NoHeader, "address", "port", "status", "rtt_ms")
		for _, r := range rep.Ports {
			t.row(r.Address, strconv.Itoa(int(r.Port)), r.Status, tsvMS(r.RTTMS))
		}
		return t.Flush()
	}
	tw := newTable(w)
	fmt.Fprintln(tw, "ADDRESS\tPORT\tSTATE\tRTT")
	for _, r := range rep.Ports {
		rtt := "-"
		if r.RTTMS != nil {
			rtt = fmt.Sprintf("%.2fms", *r.RTTMS)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", r.Address, r.Port, r.Status, rtt)
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
