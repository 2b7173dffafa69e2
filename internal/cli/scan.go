package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"time"

	"github.com/ifl-project/ifl/internal/probe"
	"github.com/ifl-project/ifl/internal/progress"
	"github.com/ifl-project/ifl/synscan"
)

// ScanCmd is a general port scanner.
type ScanCmd struct {
	Targets     []string      `arg:"" optional:"" placeholder:"TARGET" help:"Addresses, CIDR prefixes, ranges or host names (or --input-list FILE)."`
	Ports       string        `short:"p" default:"${agent_port}" placeholder:"PORTS" help:"Ports: a list of ports and ranges, e.g. 22,80,7000-7010 (default ${default}, the ifl agent port)."`
	All         bool          `help:"Also list closed and filtered ports (default: open only)."`
	Connect     bool          `help:"Use connect() instead of raw SYN probes (needs no privilege)."`
	Rate        int           `default:"${syn_rate}" help:"Probes per second."`
	Retries     int           `default:"${syn_retries}" help:"Extra probes for a port that did not answer."`
	Timeout     time.Duration `default:"${syn_timeout}" help:"Wait for an answer before a retry, and after the last probe."`
	Output      string        `short:"o" enum:"table,json" default:"table" help:"Output format: table or json."`
	JSON        bool          `help:"Same as -o json."`
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

Examples:
  sudo ifl scan 198.18.0.0/24 -p 22,80,443
  ifl scan --connect 198.18.0.5 -p 1-1024 --all --json`
}

type scanRow struct {
	Address string  `json:"address"`
	Port    uint16  `json:"port"`
	State   string  `json:"state"`
	RTTMS   float64 `json:"rtt_ms"`
}

// Run scans.
func (c *ScanCmd) Run(ctx context.Context, env *Env) error {
	var err error
	if c.Output, err = outputFormat(c.JSON, c.Output); err != nil {
		return err
	}
	if err := checkPacing(c.Rate, "probes", c.Retries, 10, c.Timeout, "100ms"); err != nil {
		return err
	}
	ports, err := synscan.ParsePorts(c.Ports)
	if err != nil {
		return fmt.Errorf("scan: %w", err)
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
	var v4 []netip.Addr
	for _, a := range addrs {
		if a.Is4() {
			v4 = append(v4, a)
		}
	}
	if len(v4) == 0 {
		return fmt.Errorf("scan: no IPv4 address to scan")
	}
	cfg := &synscan.Config{Rate: c.Rate, Retries: orNone(c.Retries), Timeout: c.Timeout}
	var s synscan.Scanner
	method := "connect"
	if rawAllowed(env, "scan", c.Connect) {
		if err := keepOnlyNetRaw(env, "scan"); err != nil {
			return err
		}
		raw, err := synscan.NewRaw(cfg)
		if err != nil {
			return fmt.Errorf("scan: %w", err)
		}
		s, method = raw, "syn"
	} else {
		s = synscan.NewConnect(cfg)
	}
	defer s.Close()

	// As nmap does, on-link addresses that do not answer ARP are down:
	// their ports are not probed (with the kernel resolving each of them,
	// a sweep of an empty subnet would take seconds per address).
	var live <-chan netip.Addr
	discovered := func() probe.DiscoverStats { return probe.DiscoverStats{Direct: len(v4)} }
	if method == "syn" {
		sweepers := probe.OpenSweepers(v4)
		defer sweepers.Close()
		if err := dropAllCaps(env, "scan"); err != nil {
			return err
		}
		live, discovered = probe.Discover(ctx, v4, sweepers, nil, nil)
	} else {
		ch := make(chan netip.Addr)
		go func() {
			defer close(ch)
			for _, a := range v4 {
				select {
				case ch <- a:
				case <-ctx.Done():
					return
				}
			}
		}()
		live = ch
	}
	in := make(chan synscan.Target)
	out := make(chan synscan.Result, 64)
	go func() {
		defer close(in)
		for a := range live {
			for _, p := range ports {
				select {
				case in <- synscan.Target{Addr: a, Port: p}:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	type done struct {
		st  synscan.Stats
		err error
	}
	fin := make(chan done, 1)
	start := time.Now()
	go func() {
		st, err := s.Stream(ctx, in, out)
		close(out)
		fin <- done{st, err}
	}()
	bar := progress.New(env.Stderr, len(v4)*len(ports), "probes", env.Terminal)
	bar.Width = env.Width
	var res []synscan.Result
	counts := map[synscan.State]int{}
	for r := range out {
		counts[r.State]++
		if r.State == synscan.Open || c.All {
			res = append(res, r)
		}
		bar.Set(counts[synscan.Open]+counts[synscan.Closed]+counts[synscan.Filtered], fmt.Sprintf("%d open", counts[synscan.Open]))
	}
	bar.Done()
	d := <-fin
	disc := discovered()
	down := disc.Swept - disc.Live
	synscan.Sort(res)

	rows := make([]scanRow, 0, len(res))
	for _, r := range res {
		rows = append(rows, scanRow{Address: r.Addr.String(), Port: r.Port, State: r.State.String(), RTTMS: float64(r.RTT.Microseconds()) / 1000})
	}
	elapsed := time.Since(start).Seconds()
	if c.Output == "json" {
		rep := map[string]any{
			"ports": rows,
			"summary": map[string]any{
				"method": method, "addresses": len(v4), "down": down, "ports": len(ports),
				"open": counts[synscan.Open], "closed": counts[synscan.Closed],
				"filtered": counts[synscan.Filtered], "probes_sent": d.st.Sent, "seconds": elapsed, "complete": d.err == nil,
			},
		}
		enc := json.NewEncoder(env.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		tw := newTable(env.Stdout)
		fmt.Fprintln(tw, "ADDRESS\tPORT\tSTATE\tRTT")
		for _, r := range rows {
			rtt := "-"
			if r.State != "filtered" {
				rtt = fmt.Sprintf("%.2fms", r.RTTMS)
			}
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", r.Address, r.Port, r.State, rtt)
		}
		tw.Flush()
	}
	sum := fmt.Sprintf("%d open, %d closed, %d filtered (%s) on %s, %d of them down (no ARP answer), in %.2fs; %d packets sent",
		counts[synscan.Open], counts[synscan.Closed], counts[synscan.Filtered], method, plural(len(v4), "address"), down, elapsed, d.st.Sent)
	if d.err != nil {
		sum += " (interrupted)"
	}
	fmt.Fprintln(env.Stderr, sum)
	return d.err
}
