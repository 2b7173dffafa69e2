package cli

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"time"

	"github.com/ifl-project/ifl/arpscan"
	"github.com/ifl-project/ifl/internal/support/progress"

	"github.com/ifl-project/ifl/internal/support/defaults"
)

// ArpScanCmd sweeps a segment with ARP.
type ArpScanCmd struct {
	Interface   string        `arg:"" help:"Interface on the segment to sweep, e.g. eth0."`
	Targets     []string      `arg:"" optional:"" placeholder:"TARGET" help:"Addresses, prefixes or ranges to sweep. Default: the interface's IPv4 subnets."`
	Rate        int           `default:"${arp_rate}" help:"Most broadcast ARP requests per second: the sending rate starts there, halves when requests go unanswered and grows back while answers come; 0: the default."`
	MinRate     int           `default:"${arp_min_rate}" help:"Least broadcast ARP requests per second, however much is lost; 0, the default: a 16th of --rate."`
	Retries     int           `default:"${arp_retries}" help:"Extra requests for a silent address once the sweep has seen requests get lost: it gets 1 + --retries requests then."`
	MinRetries  int           `default:"${arp_min_retries}" help:"Extra requests for a silent address when no loss is seen (at most --retries)."`
	Timeout     time.Duration `default:"${arp_timeout}" help:"Wait for a reply before any round trip is measured, and the most any wait lasts; the waits follow the round trips the answers show."`
	SweepFlags  `embed:""`
	OutputFlags `embed:""`
	TargetFlags `embed:""`
}

// Help is shown by 'ifl arp-scan --help'.
func (c *ArpScanCmd) Help() string {
	return `Broadcasts an ARP request to every target address at a steady rate while
collecting the replies, retries the silent ones, and lists every host that
answered: IP, MAC, vendor (IEEE registry, built in) and round-trip time,
sorted by IP. An address that answers from two MACs is flagged: an address
conflict, or spoofing.

A silent address gets --min-retries retries. The first hosts to answer are
asked again a few times by unicast, which costs the segment next to
nothing; if one of them misses several requests, the segment loses enough
for that to matter and every silent address gets --retries. With
--min-retries N --retries N every silent address gets N retries.

Timing follows the segment: a retry waits a few of the round trips the
answers have shown (smoothed, with their deviation, as TCP does), at most
--timeout, and a sweep ends when that wait has passed since its last
request and --patience (40 ms) since the last address's first: a host
farther away than that among fast ones needs it raised (e.g. 400ms for
one behind a satellite link, 300 ms away); a sweep then lasts that much
longer, and its longest wait is raised to it. The rate starts at --rate
and halves when requests go unanswered (confirmations, retries that draw
an answer, the kernel's ENOBUFS), at least --min-rate, and grows back
while answers come: a flood of broadcasts that overruns the hosts slows
itself down.

--arp-probes broadcasts ARP probes (RFC 5227, from 0.0.0.0), not
requests from the interface's address. Every host on the segment reads
every broadcast, and a Linux host that a probe is not for skips the route
and neighbour lookups that a request costs it: sweeps of virtual segments
(VMs or containers bridged on one machine) go faster, three times on a
/21 of 400 hosts. Hosts that answer are then sent a unicast request, so
that they know the scanner's MAC. It is off by default because a host
checking an address before it takes it (DHCP conflict detection,
link-local addressing) gives the address up when probed for it; ifl probe
refuses it with --watch, which sweeps again and again. The sweeps of ifl
probe and ifl scan take --patience and --arp-probes too.

Needs CAP_NET_RAW: run it with sudo, or grant the binary the capability
once with: sudo setcap cap_net_raw+ep $(command -v ifl)

Exit status: 0 when the sweep ran, 1 when replies this host dropped may
have hidden hosts (unsure), 2 for usage and environment errors, 130 when
interrupted.

Examples:
  sudo ifl arp-scan eth0
  sudo ifl arp-scan eth0 198.18.0.0/22 --json
  sudo ifl arp-scan eth0 --rate 500 --min-retries 4 --retries 4   # gentler, for a busy or lossy LAN`
}

// arpHost is one host that answered.
type arpHost struct {
	Address string   `json:"address" yaml:"address"`
	MAC     string   `json:"mac" yaml:"mac"`
	Vendor  string   `json:"vendor" yaml:"vendor"` // "" when the IEEE registry does not know the MAC's prefix
	RTTMS   float64  `json:"rtt_ms" yaml:"rtt_ms"`
	Others  []string `json:"conflicting_macs,omitempty" yaml:"conflicting_macs,omitempty"` // other MACs that answered for the address
}

// arpSummary counts what a sweep did and found.
type arpSummary struct {
	Addresses      int     `json:"addresses" yaml:"addresses"`               // swept
	Hosts          int     `json:"hosts" yaml:"hosts"`                       // that answered
	Conflicts      int     `json:"conflicts" yaml:"conflicts"`               // addresses that answered from two MACs or more
	ARPSent        int     `json:"arp_sent" yaml:"arp_sent"`                 // broadcast requests, retries included
	ARPUnicastSent int     `json:"arp_unicast_sent" yaml:"arp_unicast_sent"` // unicast requests that measure loss
	LossSeen       bool    `json:"loss_seen" yaml:"loss_seen"`
	Dropped        int     `json:"dropped" yaml:"dropped"` // replies this host's socket dropped
	Unsure         int     `json:"unsure" yaml:"unsure"`   // silent addresses that may be there
	Seconds        float64 `json:"seconds" yaml:"seconds"`
	Complete       bool    `json:"complete" yaml:"complete"`
}

type arpReport struct {
	SchemaVersion int        `json:"schema_version" yaml:"schema_version"`
	Interface     string     `json:"interface" yaml:"interface"`
	Hosts         []arpHost  `json:"hosts" yaml:"hosts"`
	Summary       arpSummary `json:"summary" yaml:"summary"`
}

// sweepConfig is the sweep's configuration from the flags.
func (c *ArpScanCmd) sweepConfig() *arpscan.Config {
	cfg := c.arpConfig()
	cfg.Rate, cfg.MinRate, cfg.Timeout = c.Rate, c.MinRate, c.Timeout
	cfg.Retries, cfg.MinRetries = defaults.None(c.Retries), defaults.None(c.MinRetries)
	return cfg
}

// wantsRaw: a sweep is raw ARP, always.
func (c *ArpScanCmd) wantsRaw() bool { return true }

// Run sweeps.
func (c *ArpScanCmd) Run(ctx context.Context, env *Env) error {
	if err := c.check(); err != nil {
		return err
	}
	s, err := arpscan.Dial(c.Interface)
	if err != nil {
		return fmt.Errorf("arp-scan: %w", rawHint(err))
	}
	defer s.Close()
	// The sockets are open: nothing that follows needs a capability.
	if err := dropAllCaps(env, "arp-scan"); err != nil {
		return err
	}
	addrs, err := c.expand(ctx, s, env)
	if err != nil {
		return err
	}
	rep, err := c.sweep(ctx, env, s, addrs)
	if werr := c.write(env.Stdout, rep); werr != nil {
		return werr
	}
	fmt.Fprintln(env.Stderr, c.summary(rep.Summary))
	if err != nil {
		return err
	}
	return unsureError("arp-scan", rep.Summary.Dropped, rep.Summary.Unsure, "addresses found silent")
}

// check checks the flags.
func (c *ArpScanCmd) check() error {
	if _, err := c.format(); err != nil {
		return err
	}
	if c.Rate == 0 {
		c.Rate = arpscan.DefaultRate
	}
	if err := checkPacing(c.Rate, "requests", c.Retries, 20, c.Timeout, "20ms"); err != nil {
		return err
	}
	if c.MinRate < 0 || c.MinRate > c.Rate {
		return fmt.Errorf("--min-rate %d: want 0 (a 16th of --rate) to --rate (%d) requests per second", c.MinRate, c.Rate)
	}
	if err := c.SweepFlags.check("arp-scan", ""); err != nil {
		return err
	}
	if c.MinRetries < 0 || c.MinRetries > 20 {
		return fmt.Errorf("--min-retries %d: want 0-20", c.MinRetries)
	}
	return nil
}

// sweep sweeps addrs, with a progress bar on a terminal, and returns the
// report.
func (c *ArpScanCmd) sweep(ctx context.Context, env *Env, s *arpscan.Scanner, addrs []netip.Addr) (arpReport, error) {
	found := make(chan arpscan.Result)
	type scanned struct {
		res   []arpscan.Result
		stats arpscan.Stats
		err   error
	}
	done := make(chan scanned, 1)
	go func() {
		res, st, err := s.Scan(ctx, addrs, c.sweepConfig(), found)
		close(found)
		done <- scanned{res, st, err}
	}()
	bar := progress.New(env.Stderr, len(addrs), "addresses", env.Terminal)
	bar.Width = env.Width
	n := 0
	start := time.Now()
	for range found {
		n++
		// The sweep's progress is its time: requests go out at a
		// steady rate, about len(addrs) per try.
		est := time.Duration(len(addrs)) * time.Second / time.Duration(c.Rate)
		bar.Set(min(len(addrs), int(float64(len(addrs))*time.Since(start).Seconds()/est.Seconds())), plural(n, "host"))
	}
	bar.Done()
	r := <-done
	rep := arpReport{SchemaVersion: SchemaVersion, Interface: c.Interface, Hosts: []arpHost{}}
	for _, h := range r.res {
		ah := arpHost{Address: h.IP.String(), MAC: h.MAC.String(), Vendor: h.Vendor, RTTMS: float64(h.RTT.Microseconds()) / 1000}
		for _, o := range h.Others {
			ah.Others = append(ah.Others, o.String())
		}
		if len(ah.Others) > 0 {
			rep.Summary.Conflicts++
		}
		rep.Hosts = append(rep.Hosts, ah)
	}
	rep.Summary.Hosts = len(r.res)
	rep.Summary.Addresses = r.stats.Targets
	rep.Summary.ARPSent = r.stats.Sent
	rep.Summary.ARPUnicastSent = r.stats.Confirmations
	rep.Summary.LossSeen = r.stats.LossSeen
	rep.Summary.Dropped, rep.Summary.Unsure = r.stats.Dropped, r.stats.Unsure
	rep.Summary.Seconds = r.stats.Elapsed.Seconds()
	rep.Summary.Complete = r.err == nil
	return rep, r.err
}

// write writes the report in the format asked for.
func (c *ArpScanCmd) write(w io.Writer, rep arpReport) error {
	if ok, err := writeMachine(w, c.Output, rep); ok {
		return err
	}
	if c.Output == formatTSV {
		t := newTSV(w, c.NoHeader, "address", "mac", "vendor", "rtt_ms", "conflicting_macs")
		for _, h := range rep.Hosts {
			rtt := h.RTTMS
			t.row(h.Address, h.MAC, tsvText(h.Vendor), tsvMS(&rtt), tsvList(h.Others))
		}
		return t.Flush()
	}
	tw := newTable(w)
	fmt.Fprintln(tw, "ADDRESS\tMAC\tVENDOR\tRTT\tNOTE")
	for _, h := range rep.Hosts {
		note := ""
		if len(h.Others) > 0 {
			note = "CONFLICT: also answered by " + strings.Join(h.Others, ", ")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.2fms\t%s\n", h.Address, h.MAC, dash(h.Vendor), h.RTTMS, note)
	}
	return tw.Flush()
}

// summary is the sweep's summary line.
func (c *ArpScanCmd) summary(s arpSummary) string {
	sum := fmt.Sprintf("%s found; %d addresses swept on %s in %.2fs, %d requests broadcast, %d unicast",
		plural(s.Hosts, "host"), s.Addresses, c.Interface, s.Seconds, s.ARPSent, s.ARPUnicastSent)
	if s.LossSeen {
		sum += fmt.Sprintf("; requests were lost, so silent addresses got %d tries", 1+c.Retries)
	}
	if s.Conflicts > 0 {
		sum += fmt.Sprintf("; %d address conflicts", s.Conflicts)
	}
	if s.Dropped > 0 {
		sum += fmt.Sprintf("; %d replies dropped by this host, their addresses asked again", s.Dropped)
	}
	if !s.Complete {
		sum += " (interrupted)"
	}
	return sum
}

func (c *ArpScanCmd) expand(ctx context.Context, s *arpscan.Scanner, env *Env) ([]netip.Addr, error) {
	words, err := c.TargetFlags.words("arp-scan", c.Targets, env)
	if err != nil {
		return nil, err
	}
	if len(words) == 0 {
		for _, p := range s.Prefixes() {
			words = append(words, p.String())
		}
	}
	addrs, err := expandTargets(ctx, "arp-scan", words, &c.TargetFlags)
	if err != nil {
		return nil, err
	}
	var v4 []netip.Addr
	off := 0
	for _, a := range addrs {
		if !a.Is4() {
			return nil, fmt.Errorf("arp-scan: %v: ARP is IPv4 only", a)
		}
		if !s.OnLink(a) {
			off++
		}
		v4 = append(v4, a)
	}
	if off > 0 {
		fmt.Fprintf(env.Stderr, "arp-scan: warning: %d of %d addresses are not on %s's subnets %v; hosts there answer only if they share the segment\n",
			off, len(v4), c.Interface, s.Prefixes())
	}
	if len(v4) == 0 {
		return nil, fmt.Errorf("arp-scan: no addresses to sweep")
	}
	return v4, nil
}
