package cli

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/ifl-project/ifl/internal/caps"
	"github.com/ifl-project/ifl/internal/netinfo"
	"github.com/ifl-project/ifl/internal/probe"
	"github.com/ifl-project/ifl/internal/progress"
	"github.com/ifl-project/ifl/internal/targets"
	"github.com/ifl-project/ifl/proto"
)

// ProbeCmd finds agents.
type ProbeCmd struct {
	Targets     []string      `arg:"" optional:"" placeholder:"TARGET" help:"Addresses, CIDR prefixes (198.18.0.0/24), ranges (198.18.0.1-50) or host names. Default: the subnets of the interface of the default route."`
	Port        int           `short:"p" default:"${agent_port}" help:"Agent port."`
	Connect     bool          `help:"Skip the ARP sweep: connect() to every address (needs no privilege)."`
	Timeout     time.Duration `default:"1.5s" help:"Per-host time for one TCP connection attempt, and again for the handshake and ping."`
	Retries     int           `default:"1" help:"Connection attempts repeated for hosts that did not answer."`
	Concurrency int           `default:"256" help:"Hosts probed at once."`
	Rate        int           `default:"1000" help:"New addresses dialled per second (each may cost an ARP broadcast); 0 for no limit."`
	Output      string        `short:"o" enum:"table,json,yaml" default:"table" help:"Output format: table, json or yaml."`
	JSON        bool          `help:"Same as -o json."`
	All         bool          `help:"List every address probed, closed and filtered ones too (default: open ports only)."`
	Force       bool          `help:"Allow more than 65536 addresses."`
}

// Help is shown by 'ifl probe --help'.
func (c *ProbeCmd) Help() string {
	return `Targets on a directly attached segment are first swept with ARP (as
'ifl arp-scan' does; needs CAP_NET_RAW), and only the hosts that answer are
probed further; without the capability, or with --connect, every address is
probed. A probe opens a TCP connection to the agent port and, where one
opens, runs the authenticated handshake and a ping on it. Hosts
whose port is open but fail the handshake are reported as "rejected" (wrong
network key, or clocks more than a minute apart) or "not-agent" (another
service), never as agents. Results are sorted by address; progress shows on
stderr when it is a terminal. Ctrl-C stops and prints what was found.

Exit status: 0 when the probe ran (whatever it found), 2 for usage errors.

Examples:
  ifl probe 198.18.0.0/24
  ifl probe --connect 198.18.0.1-50 198.18.4.7 -o json
  ifl probe                      # the subnets of the default-route interface`
}

// Run probes the targets and prints the report.
func (c *ProbeCmd) Run(ctx context.Context, g *Globals, env *Env) error {
	if c.JSON {
		c.Output = "json"
	}
	switch {
	case c.Port < 1 || c.Port > 65535:
		return fmt.Errorf("--port %d: want 1-65535", c.Port)
	case c.Retries < 0 || c.Retries > 10:
		return fmt.Errorf("--retries %d: want 0-10", c.Retries)
	case c.Concurrency < 1 || c.Concurrency > 4096:
		return fmt.Errorf("--concurrency %d: want 1-4096", c.Concurrency)
	case c.Rate < 0:
		return fmt.Errorf("--rate %d: want a number of addresses per second, or 0 for no limit", c.Rate)
	case c.Timeout <= 0:
		return fmt.Errorf("--timeout %v: want a positive duration such as 1.5s", c.Timeout)
	}
	addrs, err := c.expand(ctx)
	if err != nil {
		return err
	}
	key, err := proto.LoadNetworkKey(g.NetworkKey)
	if err != nil {
		return err
	}
	p := &probe.Prober{Key: key, Port: c.Port, Timeout: c.Timeout, Retries: c.Retries, Concurrency: c.Concurrency, Rate: c.Rate}
	if c.Retries == 0 {
		p.Retries = -1
	}
	if c.Rate == 0 {
		p.Rate = -1
	}

	start := time.Now()
	results := make(chan probe.Result)
	done := make(chan error, 1)
	var settled atomic.Int64
	s := summary{Addresses: len(addrs), Method: "connect"}
	useARP := !c.Connect
	if useARP {
		if ok, _ := caps.Has(caps.NetRaw); !ok {
			useARP = false
			fmt.Fprintln(env.Stderr, "probe: no CAP_NET_RAW: probing every address with connect() instead of an ARP sweep first (slower on a LAN). Grant it with sudo, or: sudo setcap cap_net_raw+ep $(command -v ifl); --connect silences this.")
		}
	}
	var pst probe.PipelineStats
	go func() {
		var err error
		if useARP {
			pl := &probe.Pipeline{Prober: p, Settled: func(n int) { settled.Add(int64(n)) }}
			pst, err = pl.Run(ctx, addrs, results)
		} else {
			err = p.Run(ctx, addrs, results)
		}
		done <- err
		close(results)
	}()
	bar := progress.New(env.Stderr, len(addrs), "addresses", env.Terminal)
	var found []probe.Result
	for r := range results {
		s.add(r)
		if r.Status.Open() || c.All {
			found = append(found, r)
		}
		bar.Set(s.Probed+int(settled.Load()), fmt.Sprintf("%d agents", s.Agents))
	}
	bar.Done()
	runErr := <-done
	if useARP {
		s.Method = "arp+connect"
		s.Live = pst.Live
		s.Swept = pst.Swept
	}
	s.Seconds = time.Since(start).Seconds()
	s.Complete = runErr == nil
	sortResults(found)
	if err := writeReport(env.Stdout, c.Output, found, s); err != nil {
		return err
	}
	fmt.Fprintln(env.Stderr, s)
	return runErr
}

func (c *ProbeCmd) expand(ctx context.Context) ([]netip.Addr, error) {
	words := c.Targets
	if len(words) == 0 {
		ifname, err := netinfo.DefaultInterface()
		if err != nil {
			return nil, fmt.Errorf("probe: %w", err)
		}
		prefixes, err := netinfo.InterfacePrefixes(ifname)
		if err != nil {
			return nil, fmt.Errorf("probe: %w", err)
		}
		for _, p := range prefixes {
			words = append(words, p.String())
		}
	}
	max := targets.DefaultMax
	if c.Force {
		max = 1 << 24
	}
	addrs, err := targets.Expand(ctx, words, max, nil)
	if err != nil {
		return nil, fmt.Errorf("probe: %w", err)
	}
	if len(addrs) == 0 {
		return nil, errors.New("probe: no addresses to probe")
	}
	return addrs, nil
}
