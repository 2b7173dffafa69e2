package cli

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/ifl-project/ifl/agent"
	"github.com/ifl-project/ifl/internal/controller/verify"
	"github.com/ifl-project/ifl/internal/support/untrusted"
	"github.com/ifl-project/ifl/proto"
)

// PingCmd verifies one agent and shows its facts.
type PingCmd struct {
	Host     string        `arg:"" placeholder:"HOST[:PORT]" help:"Agent address or host name, with an optional port (default ${agent_port})."`
	Timeout  time.Duration `default:"3s" help:"Time allowed for the connection, and again for the handshake and ping."`
	Identity string        `placeholder:"FINGERPRINT" help:"Require this agent identity, or its first 8 or more hex digits (as tables show it); another one is an error."`
	Out      OutputFlags   `embed:""`
	KeyFlag  `embed:""`
}

// Help is shown by 'ifl ping --help'.
func (c *PingCmd) Help() string {
	return `Exit status: 0 for a verified agent; 1 when the host is not one, with the
reason (connection refused, timed out, not an ifl agent, wrong network key,
unknown agent identity); 2 for usage errors.

Examples:
  ifl ping 198.18.0.5
  ifl ping web-1.example:7440 --json
  ifl ping 198.18.0.5 -o tsv --no-header | awk '$1 == "kernel" {print $2}'`
}

// Run pings the agent.
func (c *PingCmd) Run(ctx context.Context, env *Env) error {
	if _, err := c.Out.format(); err != nil {
		return err
	}
	if c.Timeout <= 0 {
		return fmt.Errorf("--timeout %v: want a positive duration such as 3s", c.Timeout)
	}
	if c.Identity != "" {
		p, err := identityPrefix("--identity", c.Identity)
		if err != nil {
			return err
		}
		c.Identity = p
	}
	addr, err := c.resolve(ctx)
	if err != nil {
		return err
	}
	key, err := proto.LoadNetworkKey(c.NetworkKey)
	if err != nil {
		return err
	}
	// The timeout spans the kernel's own SYN retransmissions: no retry.
	p := &verify.Verifier{Key: key, Port: int(addr.Port()), Timeout: c.Timeout, Retries: -1, ExpectIdentity: c.Identity}
	r := p.Verify(ctx, addr.Addr())
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if c.Out.Output != formatTable {
		if err := writePing(env.Stdout, &c.Out, r); err != nil {
			return err
		}
	}
	if r.Status != verify.Agent {
		// The reason may quote the agent's own error message; Main
		// makes the whole line safe for the terminal.
		return problem(fmt.Errorf("ping %s: %s: %v", addr, r.Status, r.Err))
	}
	if c.Out.Output == formatTable {
		printFacts(env, r)
	}
	return nil
}

func (c *PingCmd) resolve(ctx context.Context) (netip.AddrPort, error) {
	host, port := c.Host, agent.DefaultPort
	if h, p, err := net.SplitHostPort(c.Host); err == nil {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return netip.AddrPort{}, fmt.Errorf("%q: bad port %q (want 1-65535)", c.Host, p)
		}
		host, port = h, n
	}
	if a, err := netip.ParseAddr(host); err == nil {
		return netip.AddrPortFrom(a.Unmap(), uint16(port)), nil
	}
	// A prefix, a range or a mistyped address is not a host name.
	switch {
	case strings.Contains(host, "/") || strings.Trim(host, "0123456789.") != "" && strings.Trim(host, "0123456789.-") == "":
		return netip.AddrPort{}, fmt.Errorf("%q: ping takes one host, not a prefix or a range (for many hosts: ifl probe %s)", c.Host, c.Host)
	case strings.Trim(host, "0123456789.") == "":
		return netip.AddrPort{}, fmt.Errorf("%q: not an IP address", c.Host)
	case strings.Contains(host, ":"):
		return netip.AddrPort{}, fmt.Errorf("%q: not an IP address (an IPv6 address with a port goes in brackets: [2001:db8::5]:7440)", c.Host)
	}
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil || len(addrs) == 0 {
		return netip.AddrPort{}, fmt.Errorf("%q: cannot resolve host name: %v", host, err)
	}
	return netip.AddrPortFrom(addrs[0].Unmap(), uint16(port)), nil
}

// printFacts shows an agent's facts to a person. Every value the agent
// chose goes through untrusted.Text: a hostile agent's escape sequences,
// carriage returns and line feeds are shown, never acted on.
func printFacts(env *Env, r verify.Result) {
	f := r.Facts
	w := newTable(env.Stdout)
	row := func(k, v string) {
		if v != "" {
			fmt.Fprintf(w, "%s\t%s\n", k, untrusted.Text(v))
		}
	}
	row("agent", fmt.Sprintf("%s port %d (verified in %s)", r.Addr, r.Port, fmtLatency(r.Latency)))
	row("identity", r.Identity)
	row("hostname", f.Hostname)
	row("machine-id", f.MachineID)
	row("os", f.OS.PrettyName)
	row("kernel", f.Kernel)
	row("uptime", (time.Duration(f.UptimeSeconds) * time.Second).String())
	row("version", f.AgentVersion)
	for _, rt := range f.DefaultRoutes {
		gw := rt.Gateway
		if gw == "" {
			gw = "on-link"
		}
		row("gateway", fmt.Sprintf("%s via %s (%s)", gw, rt.Interface, rt.Family))
	}
	row("labels", formatLabels(f.Labels))
	if t := f.Truncated; t != nil {
		row("truncated", fmt.Sprintf("the agent left out %s and %s: its facts do not fit in one frame", plural(t.Interfaces, "interface"), plural(t.Labels, "label")))
	}
	fmt.Fprintln(w, "interfaces")
	for _, ifc := range f.Interfaces {
		fmt.Fprintf(w, "  %s\t%s\tmtu %d\t%s\t%s\n", untrusted.Text(ifc.Name), untrusted.Text(dash(ifc.MAC)), ifc.MTU,
			untrusted.Text(strings.Join(ifc.Flags, ",")), untrusted.Text(strings.Join(ifc.Addrs, " ")))
	}
	w.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func formatLabels(m map[string]string) string {
	parts := make([]string, 0, len(m))
	for k, v := range m {
		parts = append(parts, k+"="+v)
	}
	sortStrings(parts)
	return strings.Join(parts, " ")
}

func fmtLatency(d time.Duration) string {
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.2fs", d.Seconds())
	case d >= time.Millisecond:
		return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%dµs", d.Microseconds())
}
