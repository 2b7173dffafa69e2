// Package testnet builds throwaway virtual LANs of network namespaces for
// ifl's end-to-end tests, benchmarks and demo, and tears them down.
//
// A LAN is a bridge in its own namespace, a router (the default gateway), a
// controller namespace where the scanner under test runs, and one
// namespace per host, each with its role on the agent port (see Role).
// Addresses come from 198.18.0.0/15, and IPv6 ones from 2001:db8::/32, only,
// and exist only inside the LAN's namespaces: nothing is added to the
// caller's namespace, and every process started is recorded by PID and
// stopped by PID. Every IPv6 address, link-local ones included, is usable
// as soon as Up returns: none waits for duplicate address detection.
//
// From Go:
//
//	lan, err := testnet.Up(ctx, spec, testnet.Options{IFL: "/path/to/ifl"})
//	defer lan.Down()
//	out, err := lan.Controller.Command(ctx, lan.IFL, "probe", lan.Prefix.String()).Output()
//
// From the shell, scripts/testnet.sh wraps the same code.
//
// Several LANs make a fleet of sites: JoinCore links their routers to a
// core namespace whose services (an etcd cluster, with
// etcdtest.StartIn) every site's controller reaches, and MoveTo carries
// a host from one LAN to another (sites.go).
//
// A LAN's state (its hosts, their roles, addresses, MACs, identities and
// PIDs) is kept in /run/ifl-testnet/<name>/lan.json; Down(name) works from
// it, and from the namespaces' names, after a crash too.
package testnet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"
)

// StateRoot holds one directory per LAN.
const StateRoot = "/run/ifl-testnet"

// Options say which binaries a LAN runs.
type Options struct {
	// IFL is the ifl binary the agents run. Required when the spec has
	// agents.
	IFL string
	// Helper is a binary that runs Helper when IFL_TESTNET_HELPER is set
	// (see RunHelper); default: this executable.
	Helper string
	// ReadyTimeout bounds the wait for every service to listen; default 20s.
	ReadyTimeout time.Duration
	// NetworkKey, if set, is a key file the LAN's agents share (a copy
	// of it): the LANs of one fleet, another LAN's NetworkKey. Default:
	// a key of the LAN's own.
	NetworkKey string
}

// Host is one machine of the LAN as it was set up: the truth tests compare
// results with.
type Host struct {
	HostSpec
	MAC       string `json:"mac"`
	Namespace string `json:"namespace,omitempty"` // empty for Empty
	// LinkLocal is the host's IPv6 link-local address (EUI-64 of MAC),
	// for hosts that are there.
	LinkLocal netip.Addr `json:"link_local,omitzero"`
	// Identity is the agent's fingerprint, for Agent, WrongKey and
	// Hostile hosts (a churning Hostile host answers with others).
	Identity string `json:"identity,omitempty"`
	// MachineID is the host's own /etc/machine-id, for hosts that run a
	// service.
	MachineID string `json:"machine_id,omitempty"`
	PID       int    `json:"pid,omitempty"`
	// Relay is the namespace of the relay that delays a slow host's
	// frames, and RelayPID its process.
	Relay    string `json:"relay_namespace,omitempty"`
	RelayPID int    `json:"relay_pid,omitempty"`
}

// Node is a namespace of the LAN that is not a managed host.
type Node struct {
	Namespace string     `json:"namespace"`
	Addr      netip.Addr `json:"addr,omitzero"`
	Addr6     netip.Addr `json:"addr6,omitzero"`
	LinkLocal netip.Addr `json:"link_local,omitzero"`
	MAC       string     `json:"mac"`
}

// Command returns a command that runs inside n's namespace.
func (n Node) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.Namespace, name}, args...)...)
}

// LAN is a running test network.
type LAN struct {
	Spec
	Dir        string `json:"dir"`
	IFL        string `json:"ifl"`
	NetworkKey string `json:"network_key"` // key file of the Agent hosts
	WrongKey   string `json:"wrong_key"`   // key file of the WrongKey hosts
	Router     Node   `json:"router"`
	Controller Node   `json:"controller"`
	Bridge     string `json:"bridge_namespace"`
	Hosts      []Host `json:"hosts"`
	// ResponderNode is the responder, when the spec asks for one.
	ResponderNode *Responder `json:"responder_node,omitempty"`

	procs map[int]*proc // by PID: the services this process started
}

// proc is a service started by this process, reaped by a goroutine of its
// own: exited is closed when it has exited, and state is then set.
type proc struct {
	exited chan struct{}
	state  *os.ProcessState
}

// Up builds the LAN, after tearing down any leftover of a LAN of the same
// name. On failure it tears down what it built.
func Up(ctx context.Context, spec Spec, opts Options) (lan *LAN, err error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("testnet: needs root (network namespaces)")
	}
	routerAddr, ctlAddr, err := spec.resolve()
	if err != nil {
		return nil, err
	}
	rspHosts, err := spec.responderHosts()
	if err != nil {
		return nil, err
	}
	if err := opts.fill(); err != nil {
		return nil, err
	}
	if err := Down(spec.Name); err != nil {
		return nil, fmt.Errorf("testnet: cleaning up a previous %s: %w", spec.Name, err)
	}
	lan = newLAN(spec, opts, routerAddr, ctlAddr)
	if spec.Responder != nil {
		lan.ResponderNode = &Responder{Namespace: "ifl-" + spec.Name + "-rsp", MAC: responderMAC, Groups: spec.responderGroups(), Hosts: rspHosts}
	}
	defer func() {
		if err != nil {
			lan.Down()
			lan = nil
		}
	}()
	if err := lan.makeDir(); err != nil {
		return lan, err
	}
	// Saved before anything is created, so that Down finds it all.
	if err := lan.save(); err != nil {
		return lan, err
	}
	if err := lan.build(ctx); err != nil {
		return lan, err
	}
	if err := lan.start(ctx, opts); err != nil {
		return lan, err
	}
	return lan, lan.save()
}

// fill fills in the defaults of o, and makes IFL absolute.
func (o *Options) fill() (err error) {
	if o.Helper == "" {
		if o.Helper, err = os.Executable(); err != nil {
			return err
		}
	}
	if o.IFL != "" {
		// The helper execs it from another working directory.
		if o.IFL, err = filepath.Abs(o.IFL); err != nil {
			return err
		}
	}
	if o.ReadyTimeout <= 0 {
		o.ReadyTimeout = 20 * time.Second
	}
	return nil
}

// newLAN lays out the LAN of a resolved spec: its namespaces, addresses
// and MACs. It creates nothing.
func newLAN(spec Spec, opts Options, routerAddr, ctlAddr netip.Addr) *LAN {
	prefix := "ifl-" + spec.Name + "-"
	lan := &LAN{
		Spec:       spec,
		Dir:        filepath.Join(StateRoot, spec.Name),
		IFL:        opts.IFL,
		Bridge:     prefix + "br",
		Router:     Node{Namespace: prefix + "gw", Addr: routerAddr, MAC: mac(routerAddr)},
		Controller: Node{Namespace: prefix + "ctl", Addr: ctlAddr, MAC: mac(ctlAddr)},
	}
	for _, n := range []*Node{&lan.Router, &lan.Controller} {
		n.LinkLocal = linkLocal(n.MAC)
		if spec.Prefix6.IsValid() {
			n.Addr6 = spec.addr6(n.Addr)
		}
	}
	for _, h := range spec.Hosts {
		lan.Hosts = append(lan.Hosts, newHost(h, prefix))
	}
	return lan
}

// newHost lays out host h of a LAN whose namespaces' names start with
// prefix.
func newHost(h HostSpec, prefix string) Host {
	host := Host{HostSpec: h}
	if h.NoIPv4 {
		host.MAC = mac(h.Addr6)
	} else {
		host.MAC = mac(h.Addr)
	}
	if h.Duplicate {
		host.MAC = host.MAC[:3] + "19" + host.MAC[5:] // the address's owner has 02:18… (02:20…)
	}
	if h.Role != Empty {
		host.Namespace = prefix + h.Name
		host.LinkLocal = linkLocal(host.MAC)
	}
	if h.Delay > 0 {
		host.Relay = prefix + h.Name + "-slow"
	}
	return host
}

// makeDir makes the LAN's state directory.
func (l *LAN) makeDir() error {
	// Traversable, so that a sandboxed agent reaches its own directory;
	// every file in it is 0600.
	if err := os.MkdirAll(l.Dir, 0o711); err != nil {
		return err
	}
	for _, d := range []string{StateRoot, l.Dir} {
		if err := os.Chmod(d, 0o711); err != nil {
			return err
		}
	}
	return nil
}

// nodes returns every namespace with an interface on the bridge.
func (l *LAN) nodes() []Node {
	out := []Node{l.Router, l.Controller}
	for _, h := range l.Hosts {
		if h.Namespace != "" {
			out = append(out, Node{Namespace: h.Namespace, Addr: h.Addr, Addr6: h.Addr6, LinkLocal: h.LinkLocal, MAC: h.MAC})
		}
	}
	return out
}

// relays maps the namespace of each slow host to its relay's.
func (l *LAN) relays() map[string]string {
	out := map[string]string{}
	for _, h := range l.Hosts {
		if h.Relay != "" && h.Namespace != "" {
			out[h.Namespace] = h.Relay
		}
	}
	return out
}

// build creates the namespaces, links and addresses: one ip -batch in the
// caller's namespace that creates every namespace and creates each link
// directly inside its namespaces, then one ip -batch per namespace.
func (l *LAN) build(ctx context.Context) error {
	var b strings.Builder
	nodes := l.nodes()
	fmt.Fprintf(&b, "netns add %s\n", l.Bridge)
	for _, n := range nodes {
		fmt.Fprintf(&b, "netns add %s\n", n.Namespace)
	}
	relays := l.relays()
	for _, r := range relays {
		fmt.Fprintf(&b, "netns add %s\n", r)
	}
	fmt.Fprintf(&b, "link add br0 netns %s type bridge forward_delay 0\n", l.Bridge)
	if l.ResponderNode != nil {
		l.buildResponder(&b, "prsp")
	}
	for i, n := range nodes {
		if r := relays[n.Namespace]; r != "" {
			// A slow host: its link ends in the relay's namespace,
			// and the relay's other link on the bridge.
			fmt.Fprintf(&b, "link add eth0 netns %s address %s type veth peer name host0 netns %s\n", n.Namespace, n.MAC, r)
			fmt.Fprintf(&b, "link add lan0 netns %s type veth peer name p%d netns %s\n", r, i, l.Bridge)
			continue
		}
		fmt.Fprintf(&b, "link add eth0 netns %s address %s type veth peer name p%d netns %s\n", n.Namespace, n.MAC, i, l.Bridge)
	}
	if err := ipBatch(ctx, "", b.String()); err != nil {
		return err
	}
	for _, r := range relays {
		// The relay's namespace only forwards: no address, and no IPv6
		// of its own to announce.
		if err := run(ctx, nil, "ip", "netns", "exec", r, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"); err != nil {
			return err
		}
		if err := ipBatch(ctx, r, "link set lo up\nlink set host0 up\nlink set lan0 up\n"); err != nil {
			return err
		}
	}

	b.Reset()
	b.WriteString("link set lo up\nlink set br0 up\n")
	for i := range nodes {
		fmt.Fprintf(&b, "link set p%d master br0\nlink set p%d up\n", i, i)
	}
	if l.ResponderNode != nil {
		b.WriteString("link set prsp master br0\nlink set prsp up\n")
	}
	if err := ipBatch(ctx, l.Bridge, b.String()); err != nil {
		return err
	}

	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for _, n := range nodes {
		g.Go(func() error { return ipBatch(gctx, n.Namespace, l.nodeCommands(n)) })
	}
	if err := g.Wait(); err != nil {
		return err
	}
	forward := []string{"net.ipv4.ip_forward=1"}
	if l.Prefix6.IsValid() {
		forward = append(forward, "net.ipv6.conf.all.forwarding=1")
	}
	if err := run(ctx, nil, "ip", append([]string{"netns", "exec", l.Router.Namespace, "sysctl", "-qw"}, forward...)...); err != nil {
		return err
	}
	if l.ResponderNode != nil {
		if err := l.setUpResponder(ctx); err != nil {
			return err
		}
	}
	return l.firewall(ctx)
}

// nodeCommands are the ip -batch commands that give a node its addresses
// and routes.
//
// No address waits for duplicate address detection, which would leave it
// unusable (tentative) for a second or two after the link comes up: the
// kernel makes no link-local address of its own (addrgenmode none), and
// every IPv6 address, the link-local one made here as the kernel would
// (EUI-64), is added with nodad. Addresses on these links are unique by
// construction, and a test never has to wait for them.
func (l *LAN) nodeCommands(n Node) string {
	var b strings.Builder
	b.WriteString("link set lo up\nlink set eth0 addrgenmode none\n")
	fmt.Fprintf(&b, "addr add %s/64 dev eth0 nodad\n", n.LinkLocal)
	if n.Addr.IsValid() {
		fmt.Fprintf(&b, "addr add %s/%d dev eth0\n", n.Addr, l.Prefix.Bits())
	}
	if n.Addr6.IsValid() {
		fmt.Fprintf(&b, "addr add %s/%d dev eth0 nodad\n", n.Addr6, l.Prefix6.Bits())
	}
	b.WriteString("link set eth0 up\n")
	// The kernel's neighbour tables (1,024 entries each by default) are
	// shared by every namespace of this machine, and a host answers an
	// ARP request or a neighbour solicitation only if it can add the
	// asker to its table. A controller that fills the table, as a
	// connect() sweep of a /22 does, would silence the hosts, which
	// cannot happen between separate machines; so every node knows the
	// controller beforehand, in an entry the table never has to make
	// room for.
	if n.Namespace != l.Controller.Namespace {
		if n.Addr.IsValid() {
			fmt.Fprintf(&b, "neigh replace %s lladdr %s nud permanent dev eth0\n", l.Controller.Addr, l.Controller.MAC)
		}
		if n.Addr6.IsValid() {
			fmt.Fprintf(&b, "neigh replace %s lladdr %s nud permanent dev eth0\n", l.Controller.Addr6, l.Controller.MAC)
		}
	}
	if n.Namespace == l.Router.Namespace {
		// The router's other side: an address on its loopback, so
		// that it routes like a gateway without reaching anything.
		fmt.Fprintf(&b, "addr add %s/32 dev lo\n", l.uplinkAddr())
		if l.Prefix6.IsValid() {
			fmt.Fprintf(&b, "addr add %s/128 dev lo\n", l.uplinkAddr6())
		}
		return b.String()
	}
	if n.Addr.IsValid() {
		fmt.Fprintf(&b, "route add default via %s\n", l.Router.Addr)
	}
	if n.Addr6.IsValid() {
		fmt.Fprintf(&b, "route add default via %s\n", l.Router.Addr6)
	}
	return b.String()
}

// uplinkAddr is the router's address beyond the LAN: in the test
// range, outside the LAN.
func (l *LAN) uplinkAddr() netip.Addr {
	for _, a := range []netip.Addr{netip.MustParseAddr("198.19.255.254"), netip.MustParseAddr("198.18.255.254")} {
		if !l.Prefix.Contains(a) {
			return a
		}
	}
	return netip.MustParseAddr("198.19.255.254") // unreachable: a /15 LAN is refused
}

// uplinkAddr6 is the router's IPv6 address beyond the LAN: in the
// documentation range, outside the LAN's /64.
func (l *LAN) uplinkAddr6() netip.Addr {
	for _, a := range []netip.Addr{netip.MustParseAddr("2001:db8:ffff:ffff::1"), netip.MustParseAddr("2001:db8:ffff:fffe::1")} {
		if !l.Prefix6.Contains(a) {
			return a
		}
	}
	return netip.MustParseAddr("2001:db8:ffff:ffff::1") // unreachable: one /64 holds only one of them
}

// firewall installs the nftables rules of Dropped hosts, hosts that drop
// UDP or TCP and hosts with loss, inside their own namespaces.
func (l *LAN) firewall(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for _, h := range l.Hosts {
		rules := firewallRules(h.HostSpec, h.Namespace != "", l.Port)
		if rules == "" {
			continue
		}
		if _, err := exec.LookPath("nft"); err != nil {
			return errors.New("testnet: nft not found: dropped hosts and packet loss need nftables (apt-get install nftables)")
		}
		g.Go(func() error {
			return run(gctx, strings.NewReader(rules), "ip", "netns", "exec", h.Namespace, "nft", "-f", "-")
		})
	}
	return g.Wait()
}

// firewallRules returns the nftables rules of a host, for both families:
// inet tables hook IPv4 and IPv6 alike, and a lossy host loses neighbour
// solicitations as it loses ARP requests.
func firewallRules(h HostSpec, there bool, port int) string {
	var rules strings.Builder
	if h.Role == Dropped {
		fmt.Fprintf(&rules, "table inet ifltest {\n chain input {\n  type filter hook input priority 0; policy accept;\n  tcp dport %d drop\n }\n}\n", port)
	}
	if h.DropTCP && there {
		fmt.Fprintf(&rules, "table inet ifltesttcp {\n chain input {\n  type filter hook input priority 0; policy accept;\n  tcp dport %d drop\n }\n}\n", port)
	}
	if h.DropUDP && there {
		fmt.Fprintf(&rules, "table inet ifltestudp {\n chain input {\n  type filter hook input priority 0; policy accept;\n  udp dport %d drop\n }\n}\n", port)
	}
	if h.Loss > 0 && there {
		fmt.Fprintf(&rules, "table inet ifltestloss {\n chain input {\n  type filter hook input priority 0; policy accept;\n  meta l4proto tcp numgen random mod 100 < %d drop\n  icmpv6 type nd-neighbor-solicit numgen random mod 100 < %d drop\n }\n}\n", h.Loss, h.Loss)
		fmt.Fprintf(&rules, "table arp ifltestloss {\n chain input {\n  type filter hook input priority 0; policy accept;\n  numgen random mod 100 < %d drop\n }\n}\n", h.Loss)
	}
	return rules.String()
}

func (l *LAN) save() error {
	b, err := json.MarshalIndent(l, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(l.Dir, "lan.json.tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(l.Dir, "lan.json"))
}

// Load reads the state of a running LAN.
func Load(name string) (*LAN, error) {
	b, err := os.ReadFile(filepath.Join(StateRoot, name, "lan.json"))
	if err != nil {
		return nil, err
	}
	var l LAN
	if err := json.Unmarshal(b, &l); err != nil {
		return nil, fmt.Errorf("testnet: %s: %w", name, err)
	}
	return &l, nil
}

// ipBatch runs ip -batch, inside ns when it is not empty.
func ipBatch(ctx context.Context, ns, cmds string) error {
	args := []string{"-batch", "-"}
	if ns != "" {
		args = append([]string{"-n", ns}, args...)
	}
	return run(ctx, strings.NewReader(cmds), "ip", args...)
}

func run(ctx context.Context, stdin *strings.Reader, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	if stdin != nil {
		cmd.Stdin = stdin
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("testnet: %s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Move gives the host called name a new address on the LAN, as a DHCP
// server would, and keeps its MAC, processes and identity: an IPv4
// address replaces its IPv4 address, an IPv6 one its IPv6 address.
func (l *LAN) Move(ctx context.Context, name string, to netip.Addr) error {
	prefix, router, ctl := l.Prefix, l.Router.Addr, l.Controller.Addr
	if to.Is6() {
		prefix, router, ctl = l.Prefix6, l.Router.Addr6, l.Controller.Addr6
	}
	if !prefix.IsValid() || !prefix.Contains(to) || to == router || to == ctl || to == prefix.Addr() {
		return fmt.Errorf("testnet: move %s: %v is outside %v or taken", name, to, prefix)
	}
	for i := range l.Hosts {
		if l.Hosts[i].Addr == to || l.Hosts[i].Addr6 == to {
			return fmt.Errorf("testnet: move %s: %v is taken by %s", name, to, l.Hosts[i].Name)
		}
	}
	for i := range l.Hosts {
		h := &l.Hosts[i]
		if h.Name != name {
			continue
		}
		if h.Namespace == "" {
			return fmt.Errorf("testnet: move %s: an empty address has no host to move", name)
		}
		from, nodad := &h.Addr, ""
		if to.Is6() {
			from, nodad = &h.Addr6, " nodad"
		}
		if !from.IsValid() {
			return fmt.Errorf("testnet: move %s: the host has no address of %v's family to move", name, to)
		}
		// Only the address that moves goes: the other family's, and
		// the link-local one, stay.
		cmds := fmt.Sprintf("addr del %s/%d dev eth0\naddr add %s/%d dev eth0%s\nroute replace default via %s\n", *from, prefix.Bits(), to, prefix.Bits(), nodad, router)
		if err := ipBatch(ctx, h.Namespace, cmds); err != nil {
			return err
		}
		*from = to
		return l.save()
	}
	return fmt.Errorf("testnet: move: no host %q", name)
}
