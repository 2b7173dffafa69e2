// Command ifl-testnet brings up and tears down the virtual LANs of network
// namespaces that ifl is tested, benchmarked and demonstrated on. Run it
// through scripts/testnet.sh, as root.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"sort"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/alecthomas/kong"
	"go.yaml.in/yaml/v3"

	"github.com/ifl-project/ifl/internal/testbed/responder"
	"github.com/ifl-project/ifl/internal/testbed/testnet"
)

type upCmd struct {
	Name      string       `default:"demo" help:"LAN name (1-8 of [a-z0-9]); namespaces are ifl-NAME-*."`
	Prefix    netip.Prefix `default:"198.18.0.0/24" help:"LAN prefix, inside 198.18.0.0/15."`
	Port      int          `default:"7440" help:"Agent port."`
	Agents    int          `default:"10" help:"Hosts running an agent with the LAN's key."`
	WrongKey  int          `name:"wrong-key" default:"2" help:"Hosts running an agent with another key."`
	Impostors int          `default:"2" help:"Hosts with an HTTP server on the agent port."`
	Hostile   int          `default:"0" help:"Compromised hosts: the network key, and facts that attack the controller's terminal and Ansible."`
	Closed    int          `default:"2" help:"Hosts with the agent port closed."`
	Dropped   int          `default:"2" help:"Hosts whose firewall drops the agent port."`
	Empty     int          `default:"2" help:"Addresses with no host."`
	Loss      int          `default:"0" help:"Percentage of ARP, neighbour solicitation and TCP packets dropped by the lossy hosts."`
	Lossy     int          `default:"0" help:"How many agent hosts have --loss."`
	DropUDP   int          `name:"drop-udp" default:"0" placeholder:"N" help:"How many agent hosts have a firewall that drops the agent port on UDP: found by a sweep, never by --broadcast."`
	DropTCP   int          `name:"drop-tcp" default:"0" placeholder:"N" help:"How many agent hosts have a firewall that drops the agent port on TCP (the last ones in the order): they answer --broadcast's query, and a probe finds their port filtered."`
	Prefix6   netip.Prefix `name:"prefix6" placeholder:"PREFIX" help:"The LAN's IPv6 prefix: a /64 inside 2001:db8::/32 (documentation addresses), e.g. 2001:db8:48::/64. The router is ::1, the controller ::2, and a host's IPv6 address is its IPv4 address's offset in --prefix (198.18.0.5 of a /24 is 2001:db8:48::5). Without it, hosts have link-local IPv6 addresses only."`
	DualStack int          `name:"dual-stack" default:"-1" placeholder:"N" help:"With --prefix6: how many hosts also have an IPv6 address; -1, the default, for all (the IPv6-only ones aside)."`
	V6Only    int          `name:"v6-only" default:"0" placeholder:"N" help:"With --prefix6: how many hosts have an IPv6 address and no IPv4 address at all."`
	Seed      uint64       `default:"1" help:"Seed for the order of roles over the prefix."`

	Responder         int           `name:"responder" default:"0" placeholder:"N" help:"Hosts answered for by one process on a link of its own (ARP and TCP SYNs, each host at its own MAC), beside the namespace hosts: up to the whole prefix."`
	ResponderOpen     int           `name:"responder-open" default:"0" placeholder:"N" help:"How many of the responder's hosts have the agent port open (a SYN-ACK); the others answer a reset."`
	ResponderFiltered int           `name:"responder-filtered" default:"0" placeholder:"N" help:"How many of the responder's hosts drop the agent port silently."`
	ResponderDelay    time.Duration `name:"responder-delay" default:"0" placeholder:"D" help:"How long the responder's replies wait (up to 2s)."`
	ResponderLoss     int           `name:"responder-loss" default:"0" placeholder:"PERCENT" help:"Percentage of ARP requests and SYNs the responder leaves unanswered."`

	Spec string `type:"existingfile" help:"A YAML spec (name, prefix, prefix6, port, hosts: [{role, name, addr, addr6, ipv6, no_ipv4, drop_udp, loss, labels}]) instead of the counts."`
	IFL  string `default:"./ifl" type:"path" help:"The ifl binary the agents run."`
	JSON bool   `help:"Print the LAN as JSON."`
}

// Help is shown by 'ifl-testnet up --help'.
func (c *upCmd) Help() string {
	return `Hosts are of the roles counted by the flags, in an order that --seed
fixes. --lossy and --drop-udp pick agents, the first ones in that order;
--v6-only and --dual-stack pick hosts of every role (empty addresses
included), in the same order: the IPv6-only ones first, then the
dual-stack ones among the rest. IPv6 addresses are usable at once: no
address waits for duplicate address detection.

Examples:
  ifl-testnet up --name demo
  ifl-testnet up --name v6 --prefix 198.18.48.0/24 --prefix6 2001:db8:48::/64 --v6-only 3 --drop-udp 2 --json`
}

func (c *upCmd) Run(ctx context.Context) error {
	spec := testnet.Spec{Name: c.Name, Prefix: c.Prefix, Prefix6: c.Prefix6, Port: c.Port}
	if c.Spec != "" {
		b, err := os.ReadFile(c.Spec)
		if err != nil {
			return err
		}
		dec := yaml.NewDecoder(bytes.NewReader(b))
		dec.KnownFields(true)
		if err := dec.Decode(&spec); err != nil {
			return fmt.Errorf("%s: %w", c.Spec, err)
		}
	} else {
		spec.Hosts = testnet.Mix(map[testnet.Role]int{
			testnet.Agent: c.Agents, testnet.WrongKey: c.WrongKey, testnet.Impostor: c.Impostors, testnet.Hostile: c.Hostile,
			testnet.Closed: c.Closed, testnet.Dropped: c.Dropped, testnet.Empty: c.Empty,
		}, c.Seed)
		if err := c.shape(spec.Hosts); err != nil {
			return err
		}
		rsp, err := c.responder()
		if err != nil {
			return err
		}
		spec.Responder = rsp
	}
	start := time.Now()
	lan, err := testnet.Up(ctx, spec, testnet.Options{IFL: c.IFL})
	if err != nil {
		return err
	}
	on, ctl := lan.Prefix.String(), lan.Controller.Addr.String()
	if lan.Prefix6.IsValid() {
		on += " and " + lan.Prefix6.String()
		ctl += ", " + lan.Controller.Addr6.String()
	}
	fmt.Fprintf(os.Stderr, "LAN %s up in %.2fs: %d hosts on %s; controller namespace %s (%s)\n",
		lan.Name, time.Since(start).Seconds(), len(lan.Hosts), on, lan.Controller.Namespace, ctl)
	if r := lan.ResponderNode; r != nil {
		fmt.Fprintf(os.Stderr, "responder: %d hosts more, in namespace %s (%s, PID %d)\n", len(r.Hosts), r.Namespace, r.MAC, r.PID)
	}
	return print(lan, c.JSON)
}

// responder returns the responder's part of the spec, nil for none.
func (c *upCmd) responder() (*testnet.ResponderSpec, error) {
	closed := c.Responder - c.ResponderOpen - c.ResponderFiltered
	switch {
	case c.Responder == 0 && c.ResponderOpen+c.ResponderFiltered == 0:
		return nil, nil
	case c.ResponderOpen < 0 || c.ResponderFiltered < 0 || closed < 0:
		return nil, fmt.Errorf("--responder-open %d and --responder-filtered %d: want 0 or more, %d together at most (--responder)", c.ResponderOpen, c.ResponderFiltered, c.Responder)
	}
	port := []uint16{uint16(c.Port)}
	g := func(n int, open, filtered []uint16) testnet.ResponderGroup {
		return testnet.ResponderGroup{Hosts: n, Group: responder.Group{Open: open, Filtered: filtered, Delay: c.ResponderDelay, Loss: c.ResponderLoss}}
	}
	return &testnet.ResponderSpec{Groups: []testnet.ResponderGroup{g(c.ResponderOpen, port, nil), g(c.ResponderFiltered, nil, port), g(closed, nil, nil)}}, nil
}

// shape applies the per-host counts to the mixed hosts.
func (c *upCmd) shape(hosts []testnet.HostSpec) error {
	switch {
	case c.DropUDP < 0 || c.Lossy < 0 || c.V6Only < 0 || c.DualStack < -1:
		return fmt.Errorf("--drop-udp, --lossy and --v6-only want 0 or more, --dual-stack -1 or more")
	case !c.Prefix6.IsValid() && (c.V6Only > 0 || c.DualStack > 0):
		return fmt.Errorf("--v6-only and --dual-stack need --prefix6 (a /64 inside 2001:db8::/32)")
	case c.V6Only > len(hosts):
		return fmt.Errorf("--v6-only %d: the LAN has %d hosts", c.V6Only, len(hosts))
	}
	lossy, mute := c.Lossy, c.DropUDP
	for i := range hosts {
		if hosts[i].Role != testnet.Agent {
			continue
		}
		if lossy > 0 {
			hosts[i].Loss = c.Loss
			lossy--
		}
		if mute > 0 {
			hosts[i].DropUDP = true
			mute--
		}
	}
	if mute > 0 {
		return fmt.Errorf("--drop-udp %d: only %d agents", c.DropUDP, c.DropUDP-mute)
	}
	walled := c.DropTCP
	for i := len(hosts) - 1; i >= 0 && walled > 0; i-- {
		if hosts[i].Role == testnet.Agent {
			hosts[i].DropTCP = true
			walled--
		}
	}
	if c.DropTCP < 0 || walled > 0 {
		return fmt.Errorf("--drop-tcp %d: want 0 up to the number of agents", c.DropTCP)
	}
	if !c.Prefix6.IsValid() {
		return nil
	}
	dual := c.DualStack
	for i := range hosts {
		switch {
		case i < c.V6Only:
			hosts[i].NoIPv4 = true
		case dual != 0:
			hosts[i].IPv6 = true
			dual--
		}
	}
	return nil
}

type downCmd struct {
	Name string `default:"demo" help:"LAN name."`
}

func (c *downCmd) Run() error { return testnet.Down(c.Name) }

type statusCmd struct {
	Name string `default:"demo" help:"LAN name."`
	JSON bool   `help:"Print the LAN as JSON."`
}

func (c *statusCmd) Run() error {
	lan, err := testnet.Load(c.Name)
	if err != nil {
		return fmt.Errorf("no LAN %s: %w", c.Name, err)
	}
	return print(lan, c.JSON)
}

func print(lan *testnet.LAN, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(lan)
	}
	hosts := append([]testnet.Host(nil), lan.Hosts...)
	// IPv6-only hosts, with no IPv4 address, last, by IPv6 address.
	sort.Slice(hosts, func(i, j int) bool {
		a, b := hosts[i].Addr, hosts[j].Addr
		if !a.IsValid() || !b.IsValid() {
			a, b = hosts[i].Addr6, hosts[j].Addr6
			if hosts[i].Addr.IsValid() != hosts[j].Addr.IsValid() {
				return hosts[i].Addr.IsValid()
			}
		}
		return a.Less(b)
	})
	dash := func(a netip.Addr) string {
		if !a.IsValid() {
			return "-"
		}
		return a.String()
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ADDRESS\tIPV6\tNAME\tROLE\tMAC\tLOSS\tFIREWALL\tIDENTITY")
	fmt.Fprintf(w, "%v\t%s\t%s\t%s\t%s\t-\t-\t-\n", lan.Router.Addr, dash(lan.Router.Addr6), "gw", "router", lan.Router.MAC)
	fmt.Fprintf(w, "%v\t%s\t%s\t%s\t%s\t-\t-\t-\n", lan.Controller.Addr, dash(lan.Controller.Addr6), "ctl", "controller", lan.Controller.MAC)
	if r := lan.ResponderNode; r != nil {
		fmt.Fprintf(w, "-\t-\trsp\tresponder of %d hosts (each at 02:18 and its address)\t%s\t-\t-\t-\n", len(r.Hosts), r.MAC)
	}
	for _, h := range hosts {
		id := h.Identity
		if id == "" {
			id = "-"
		}
		udp := "-"
		switch {
		case h.DropUDP:
			udp = "udp dropped"
		case h.DropTCP:
			udp = "tcp dropped"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%d%%\t%s\t%s\n", dash(h.Addr), dash(h.Addr6), h.Name, h.Role, h.MAC, h.Loss, udp, id)
	}
	return w.Flush()
}

type moveCmd struct {
	Name string     `default:"demo" help:"LAN name."`
	Host string     `arg:"" help:"Host name, e.g. h001."`
	To   netip.Addr `arg:"" help:"Its new address, on the LAN's prefix (IPv4) or prefix6 (IPv6)."`
}

func (c *moveCmd) Run(ctx context.Context) error {
	lan, err := testnet.Load(c.Name)
	if err != nil {
		return fmt.Errorf("no LAN %s: %w", c.Name, err)
	}
	return lan.Move(ctx, c.Host, c.To)
}

type cli struct {
	Move   moveCmd   `cmd:"" help:"Give a host a new address, as DHCP would."`
	Up     upCmd     `cmd:"" help:"Bring a LAN up (after tearing down leftovers of one with the same name)."`
	Down   downCmd   `cmd:"" help:"Tear a LAN down: stop its processes, delete its namespaces."`
	Status statusCmd `cmd:"" help:"Show a running LAN: every host with its role, address, MAC and identity."`
}

func main() {
	testnet.RunHelper()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var c cli
	k := kong.Parse(&c, kong.Name("ifl-testnet"),
		kong.Description("Virtual LANs of network namespaces (198.18.0.0/15 and 2001:db8::/32 only) for testing ifl. Needs root."),
		kong.BindTo(ctx, (*context.Context)(nil)))
	if err := k.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "ifl-testnet: %v\n", err)
		stop()
		os.Exit(1)
	}
}
