package cli

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/ifl-project/ifl/internal/probe"
	"github.com/ifl-project/ifl/internal/progress"
	"github.com/ifl-project/ifl/synscan"
)

// ScanCmd is a general port scanner.
type ScanCmd struct {
	Targets     []string      `arg:"" optional:"" placeholder:"TARGET" help:"Addresses, CIDR prefixes, ranges or host names (or --input-list FILE)."`
	Ports       string        `short:"p" default:"${agent_port}" placeholder:"PORTS" help:"Ports: a list of ports and ranges, e.g. 22,80,7000-7010 (default ${default}, the ifl agent port)."`
	All         bool          `help:"Also list closed and filtered ports, and the ports of down hosts, on the SYN and connect() paths alike (default: open only)."`
	Connect     bool          `help:"Use connect() instead of raw SYN probes (needs no privilege)."`
	Rate        int           `default:"${syn_rate}" help:"Probes per second."`
	Retries     int           `default:"${syn_retries}" help:"Extra probes for a port that did not answer."`
	Timeout     time.Duration `default:"${syn_timeout}" help:"Wait for an answer before a retry, and after the last probe."`
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
	Seconds     float64 `json:"seconds" yaml:"seconds"`
	Complete    bool    `json:"complete" yaml:"complete"`
}

type scanReport struct {
	SchemaVersion int         `json:"schema_version" yaml:"schema_version"`
	Ports         []scanRow   `json:"ports" yaml:"ports"`
	Summary       scanSummary `json:"summary" yaml:"summary"`
}

// Run scans.
func (c *ScanCmd) Run(ctx context.Context, env *Env) error {
	if _, err := c.format(); err != nil {
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
	var v4, v6 []netip.Addr
	for _, a := range addrs {
		if a.Is4() {
			v4 = append(v4, a)
		} else {
			v6 = append(v6, a)
		}
	}
	cfg := &synscan.Config{Rate: c.Rate, Retries: orNone(c.Retries), Timeout: c.Timeout}
	var s synscan.Scanner
	method := methodConnect
	// The raw path is IPv4 only: IPv6 addresses get connect(), beside it.
	var s6 synscan.Scanner
	if len(v4) > 0 && rawAllowed(env, "scan", c.Connect) {
		if len(v6) > 0 {
			fmt.Fprintf(env.Stderr, "scan: %s: no ARP sweep or raw SYN for them (IPv4 only); connect() instead\n", plural(len(v6), "IPv6 address"))
			s6 = synscan.NewConnect(cfg)
			defer s6.Close()
		}
		if err := keepOnlyNetRaw(env, "scan"); err != nil {
			return err
		}
		raw, err := synscan.NewRaw(cfg)
		if err != nil {
			return fmt.Errorf("scan: %w", err)
		}
		s, method = raw, methodRaw
	} else {
		s = synscan.NewConnect(cfg)
	}
	defer s.Close()

	// As nmap does, on-link addresses that do not answer ARP are down:
	// their ports are not probed (with the kernel resolving each of them,
	// a sweep of an empty subnet would take seconds per address).
	var live <-chan netip.Addr
	discovered := func() probe.DiscoverStats { return probe.DiscoverStats{} }
	// The ports of down addresses are results too, with --all, so that
	// both paths list the same rows: the connect() path finds a host down
	// when the kernel's own ARP probes go unanswered.
	var downMu sync.Mutex
	var down []netip.Addr
	if method == methodRaw {
		sweepers := probe.OpenSweepers(v4)
		defer sweepers.Close()
		if err := dropAllCaps(env, "scan"); err != nil {
			return err
		}
		live, discovered = probe.Discover(ctx, v4, sweepers, nil, func(silent []netip.Addr) {
			downMu.Lock()
			down = append(down, silent...)
			downMu.Unlock()
		})
	} else {
		ch := make(chan netip.Addr)
		go func() {
			defer close(ch)
			for _, a := range addrs {
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
	in6 := make(chan synscan.Target)
	go func() {
		defer close(in6)
		if s6 == nil {
			return
		}
		for _, a := range v6 {
			for _, p := range ports {
				select {
				case in6 <- synscan.Target{Addr: a, Port: p}:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	type done struct {
		st, st6 synscan.Stats
		err     error
	}
	fin := make(chan done, 1)
	start := time.Now()
	go func() {
		var d done
		var err6 error
		var wg sync.WaitGroup
		if s6 != nil {
			wg.Add(1)
			go func() {
				defer wg.Done()
				d.st6, err6 = s6.Stream(ctx, in6, out)
			}()
		}
		d.st, d.err = s.Stream(ctx, in, out)
		wg.Wait()
		close(out)
		if d.err == nil {
			d.err = err6
		}
		fin <- d
	}()
	bar := progress.New(env.Stderr, len(addrs)*len(ports), "probes", env.Terminal)
	bar.Width = env.Width
	var res []synscan.Result
	counts := map[synscan.State]int{}
	downAt := map[netip.Addr]bool{}
	for r := range out {
		counts[r.State]++
		if r.State == synscan.Down {
			downAt[r.Addr] = true
		}
		if r.State == synscan.Open || c.All {
			res = append(res, r)
		}
		bar.Set(counts[synscan.Open]+counts[synscan.Closed]+counts[synscan.Filtered]+counts[synscan.Down], fmt.Sprintf("%d open", counts[synscan.Open]))
	}
	bar.Done()
	d := <-fin
	disc := discovered()
	for _, a := range down {
		downAt[a] = true
		if c.All {
			for _, p := range ports {
				res = append(res, synscan.Result{Target: synscan.Target{Addr: a, Port: p}, State: synscan.Down})
			}
		}
	}
	synscan.Sort(res)

	rep := scanReport{SchemaVersion: SchemaVersion, Ports: make([]scanRow, 0, len(res)), Summary: scanSummary{
		Method: method, Addresses: len(addrs), Ports: len(ports),
		ARPSwept: disc.Swept, ARPLive: disc.Live, Routed: disc.Direct, Down: len(downAt),
		Open: counts[synscan.Open], Closed: counts[synscan.Closed], Filtered: counts[synscan.Filtered],
		Seconds: time.Since(start).Seconds(), Complete: d.err == nil,
	}}
	if method == methodRaw {
		rep.Summary.SYNSent = d.st.Sent
		rep.Summary.Connections = d.st6.Sent
	} else {
		rep.Summary.Connections = d.st.Sent
	}
	for _, r := range res {
		rep.Ports = append(rep.Ports, scanRow{Address: r.Addr.String(), Port: r.Port, Status: r.State.String(), RTTMS: msOrNil(r.RTT)})
	}
	if ok, err := writeMachine(env.Stdout, c.Output, rep); ok {
		if err != nil {
			return err
		}
	} else if c.Output == formatTSV {
		t := newTSV(env.Stdout, c.NoHeader, "address", "port", "status", "rtt_ms")
		for _, r := range rep.Ports {
			t.row(r.Address, strconv.Itoa(int(r.Port)), r.Status, tsvMS(r.RTTMS))
		}
		if err := t.Flush(); err != nil {
			return err
		}
	} else {
		tw := newTable(env.Stdout)
		fmt.Fprintln(tw, "ADDRESS\tPORT\tSTATE\tRTT")
		for _, r := range rep.Ports {
			rtt := "-"
			if r.RTTMS != nil {
				rtt = fmt.Sprintf("%.2fms", *r.RTTMS)
			}
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", r.Address, r.Port, r.Status, rtt)
		}
		tw.Flush()
	}
	fmt.Fprintln(env.Stderr, rep.Summary)
	return d.err
}

func (s scanSummary) String() string {
	out := fmt.Sprintf("%d open, %d closed, %d filtered", s.Open, s.Closed, s.Filtered)
	if s.Down > 0 {
		out += fmt.Sprintf(", %s down", plural(s.Down, "address"))
	}
	if s.Method == methodRaw {
		sent := plural(s.SYNSent, "SYN packet") + " sent"
		if s.Connections > 0 {
			sent += fmt.Sprintf(" and %s with connect() (IPv6)", plural(s.Connections, "connection"))
		}
		out += fmt.Sprintf("; %s (%d swept with ARP, %d live; %d not swept), %s, in %.2fs",
			plural(s.Addresses, "address"), s.ARPSwept, s.ARPLive, s.Routed, sent, s.Seconds)
	} else {
		out += fmt.Sprintf("; %s, %s with connect(), in %.2fs", plural(s.Addresses, "address"), plural(s.Connections, "connection"), s.Seconds)
	}
	if !s.Complete {
		out += " (interrupted)"
	}
	return out
}
