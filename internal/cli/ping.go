package cli

import (
	"cmp"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/ifl-project/ifl/agent"
	"github.com/ifl-project/ifl/internal/controller/inventory"
	"github.com/ifl-project/ifl/internal/controller/verify"
	"github.com/ifl-project/ifl/internal/support/untrusted"
)

// PingCmd verifies one agent and shows its facts.
type PingCmd struct {
	Host       string        `arg:"" placeholder:"HOST[:PORT]" help:"The agent: an address; an inventory name, or the first 8 or more hex digits of an identity, looked up in the inventory; else a host name for DNS. With an optional port."`
	Port       *int          `short:"p" type:"port" aliases:"ports" placeholder:"PORT" help:"Agent port, a number or a service name (default ${agent_port}, or the port the inventory knows the host on); HOST:PORT says the same."`
	Timeout    time.Duration `default:"3s" help:"Time allowed for the connection, and again for the handshake and ping."`
	Identity   string        `placeholder:"FINGERPRINT" help:"Require this agent identity, or its first 8 or more hex digits (as tables show it); another one is an error."`
	Out        OutputFlags   `embed:""`
	KeyFlag    `embed:""`
	State      string `type:"path" env:"IFL_STATE" placeholder:"FILE" help:"Inventory state to look HOST up in, and to name the agent from (default: as ifl inventory reads it)."`
	NoState    bool   `help:"Leave the inventory out: HOST is an address or a host name for DNS."`
	StoreFlags `embed:""`
}

// Help is shown by 'ifl ping --help'.
func (c *PingCmd) Help() string {
	return `HOST is looked up in the inventory first: an inventory name (in any
case), or the first 8 or more hex digits of an identity. The agent is then
pinged at its address there (ansible_host; IFL_PREFER=ipv6 prefers a
dual-stack host's IPv6 one) and on its port, and must prove that identity:
another agent at that address is an identity-mismatch. It says so on
stderr. A name the inventory does not know is looked up in DNS.

The machine-id shows here as the agent sent it, and as the hash the
inventory keeps (machine_id_hash); a probe's reports carry only the hash.

Exit status: 0 for a verified agent; 1 when the host is not one, with the
reason (connection refused, timed out, not an ifl agent, wrong network key,
unknown agent identity); 2 for usage errors; 130 when interrupted.

Examples:
  ifl ping 198.18.0.5
  ifl ping web-1                 # by inventory name
  ifl ping web-1.example:7440 --json
  ifl ping 198.18.0.5 -o tsv --no-header | awk '$1 == "kernel" {print $2}'`
}

// stateFile is the state ping reads, "" for none.
func (c *PingCmd) stateFile() string {
	switch {
	case c.NoState:
		return ""
	case c.State != "":
		return c.State
	}
	return inventory.ReadPath()
}

// target is where ping goes, and what the inventory says is there.
type target struct {
	addr netip.AddrPort
	// host is the inventory's host that HOST named, nil when HOST was
	// an address or a DNS name.
	host *inventory.Host
}

// Run pings the agent.
func (c *PingCmd) Run(ctx context.Context, env *Env) error {
	if _, err := c.Out.format(); err != nil {
		return err
	}
	if err := checkState(env, c.State, c.NoState); err != nil {
		return err
	}
	if c.Timeout <= 0 {
		return fmt.Errorf("--timeout %v: want a positive duration such as 3s", c.Timeout)
	}
	if c.Port != nil && (*c.Port < 1 || *c.Port > 65535) {
		return fmt.Errorf("--port %d: want 1-65535", *c.Port)
	}
	if c.Identity != "" {
		p, err := identityPrefix("--identity", c.Identity)
		if err != nil {
			return err
		}
		c.Identity = p
	}
	hp, err := c.split()
	if err != nil {
		return err
	}
	key, err := loadNetworkKey(c.NetworkKey)
	if err != nil {
		return err
	}
	path := c.stateFile()
	if c.etcd() {
		path = ""
	}
	if err := becomeStateOwner(env, "ping", path); err != nil {
		return err
	}
	st, err := readState(env, "ping", path, env.Given("state"))
	if err == nil && c.etcd() && !c.NoState {
		st, err = readStore(ctx, env, "ping", &c.StoreFlags)
	}
	if err != nil {
		return err
	}
	tg, err := c.resolve(ctx, env, hp, st)
	if err != nil {
		return err
	}
	expect := c.Identity
	if h := tg.host; h != nil {
		if expect != "" && !strings.HasPrefix(h.Identity, expect) {
			return fmt.Errorf("--identity %s: %s is identity %s in the inventory: give one of them", c.Identity, c.Host, h.Identity)
		}
		expect = h.Identity
	}
	// The timeout spans the kernel's own SYN retransmissions: no retry.
	p := &verify.Verifier{Key: key, Port: int(tg.addr.Port()), Timeout: c.Timeout, Retries: -1, ExpectIdentity: expect}
	r := p.Verify(ctx, tg.addr.Addr())
	if ctx.Err() != nil {
		return ctx.Err()
	}
	name := ""
	if r.Status == verify.Agent {
		name = namesByIdentity(st)[r.Identity]
	}
	if c.Out.Output != formatTable {
		if err := writePing(env.Stdout, &c.Out, r, name); err != nil {
			return err
		}
	}
	if r.Status != verify.Agent {
		// The reason may quote the agent's own error message; Main
		// makes the whole line safe for the terminal.
		err := fmt.Errorf("ping %s: %s: %v", tg.addr, r.Status, r.Err)
		if tg.host != nil && r.Status == verify.Mismatch {
			err = fmt.Errorf("%w (%s has left that address, or another agent took it: 'ifl probe' finds where it is now)", err, c.Host)
		}
		return problem(err)
	}
	if c.Out.Output == formatTable {
		printFacts(env, r, name)
	}
	return nil
}

// hostPort is HOST[:PORT] and --port, read: the host, an address if it
// is one, and the port, given or not.
type hostPort struct {
	host      string
	addr      netip.Addr
	port      int
	portGiven bool
}

// split reads HOST[:PORT] and --port, and refuses what is not one host.
func (c *PingCmd) split() (hostPort, error) {
	hp := hostPort{host: c.Host, port: agent.DefaultPort}
	if h, p, err := net.SplitHostPort(c.Host); err == nil {
		n, err := portOrService(p)
		if err != nil {
			return hp, fmt.Errorf("%q: %w", c.Host, err)
		}
		hp.host, hp.port, hp.portGiven = h, int(n), true
	}
	if c.Port != nil {
		if hp.portGiven && hp.port != *c.Port {
			return hp, fmt.Errorf("--port %d and %q give two ports: give one", *c.Port, c.Host)
		}
		hp.port, hp.portGiven = *c.Port, true
	}
	host := hp.host
	if a, err := netip.ParseAddr(host); err == nil {
		hp.addr = a.Unmap()
		return hp, nil
	}
	// A prefix, a range or a mistyped address is not a host name.
	switch {
	case strings.Contains(host, "/") || strings.Trim(host, "0123456789.") != "" && strings.Trim(host, "0123456789.-") == "":
		return hp, fmt.Errorf("%q: ping takes one host, not a prefix or a range (for many hosts: ifl probe %s)", c.Host, c.Host)
	case strings.Trim(host, "0123456789.") == "" && !isIdentityPrefix(host):
		return hp, fmt.Errorf("%q: not an IP address", c.Host)
	case strings.Contains(host, ":"):
		return hp, fmt.Errorf("%q: not an IP address (an IPv6 address with a port goes in brackets: [2001:db8::5]:7440)", c.Host)
	}
	return hp, nil
}

// isIdentityPrefix reports whether s may be the start of an identity.
func isIdentityPrefix(s string) bool {
	_, err := identityPrefix("", s)
	return err == nil
}

// resolve finds where HOST is: an address as it is; else a name or an
// identity prefix that the inventory knows, at the address and port it
// knows the host at (and it says so); else a host name for DNS.
func (c *PingCmd) resolve(ctx context.Context, env *Env, hp hostPort, st *inventory.State) (target, error) {
	if hp.addr.IsValid() {
		return target{addr: netip.AddrPortFrom(hp.addr, uint16(hp.port))}, nil
	}
	if st != nil {
		h, err := findHost(st, hp.host)
		if err != nil {
			return target{}, err
		}
		if h != nil {
			return c.fromInventory(env, h, hp)
		}
	}
	if strings.Trim(hp.host, "0123456789") == "" {
		// Digits alone: the start of an identity the inventory does
		// not know; no host name.
		return target{}, fmt.Errorf("%q: not an IP address, nor the start of an identity the inventory knows", c.Host)
	}
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", hp.host)
	if err != nil || len(addrs) == 0 {
		in := "not in the inventory, and DNS"
		if st == nil {
			in = "DNS"
		}
		return target{}, fmt.Errorf("%q: cannot resolve host name: %s: %v", hp.host, in, err)
	}
	return target{addr: netip.AddrPortFrom(addrs[0].Unmap(), uint16(hp.port))}, nil
}

// fromInventory is where the inventory knows h: its ansible_host, on the
// port it answered on unless one was given.
func (c *PingCmd) fromInventory(env *Env, h *inventory.Host, hp hostPort) (target, error) {
	prefer, err := inventory.ParsePrefer(cmp.Or(os.Getenv("IFL_PREFER"), string(inventory.PreferIPv4)))
	if err != nil {
		return target{}, fmt.Errorf("IFL_PREFER=%s: %w", os.Getenv("IFL_PREFER"), err)
	}
	a, err := netip.ParseAddr(h.Address(prefer))
	if err != nil {
		return target{}, fmt.Errorf("%q: the inventory has no address for %s (%s)", c.Host, h.Name, h.Identity)
	}
	port := hp.port
	if !hp.portGiven {
		port = h.Port
	}
	ap := netip.AddrPortFrom(a, uint16(port))
	fmt.Fprintf(env.Stderr, "ping: %s is %s, identity %s, in the inventory (last seen %s)\n",
		untrusted.Text(c.Host), ap, h.Identity, since(time.Now(), h.LastSeen))
	return target{addr: ap, host: h}, nil
}

// printFacts shows an agent's facts to a person. Every value the agent
// chose goes through untrusted.Text: a hostile agent's escape sequences,
// carriage returns and line feeds are shown, never acted on.
func printFacts(env *Env, r verify.Result, name string) {
	f := r.Facts
	w := newTable(env.Stdout)
	row := func(k, v string) {
		if v != "" {
			fmt.Fprintf(w, "%s\t%s\n", k, untrusted.Text(v))
		}
	}
	row("agent", fmt.Sprintf("%s port %d (verified in %s)", r.Addr, r.Port, fmtLatency(r.Latency)))
	row("identity", r.Identity)
	row("name", name)
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
