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

	"github.com/ifl-project/ifl/internal/testnet"
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
	Loss      int          `default:"0" help:"Percentage of ARP and TCP packets dropped by the lossy hosts."`
	Lossy     int          `default:"0" help:"How many agent hosts have --loss."`
	Seed      uint64       `default:"1" help:"Seed for the order of roles over the prefix."`
	Spec      string       `type:"existingfile" help:"A YAML spec (name, prefix, port, hosts: [{role, name, addr, loss, labels}]) instead of the counts."`
	IFL       string       `default:"./ifl" type:"path" help:"The ifl binary the agents run."`
	JSON      bool         `help:"Print the LAN as JSON."`
}

func (c *upCmd) Run(ctx context.Context) error {
	spec := testnet.Spec{Name: c.Name, Prefix: c.Prefix, Port: c.Port}
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
		lossy := c.Lossy
		for i := range spec.Hosts {
			if lossy > 0 && spec.Hosts[i].Role == testnet.Agent {
				spec.Hosts[i].Loss = c.Loss
				lossy--
			}
		}
	}
	start := time.Now()
	lan, err := testnet.Up(ctx, spec, testnet.Options{IFL: c.IFL})
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "LAN %s up in %.2fs: %d hosts on %v; controller namespace %s (%v)\n",
		lan.Name, time.Since(start).Seconds(), len(lan.Hosts), lan.Prefix, lan.Controller.Namespace, lan.Controller.Addr)
	return print(lan, c.JSON)
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
	sort.Slice(hosts, func(i, j int) bool { return hosts[i].Addr.Less(hosts[j].Addr) })
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ADDRESS\tNAME\tROLE\tMAC\tLOSS\tIDENTITY")
	fmt.Fprintf(w, "%v\t%s\t%s\t%s\t-\t-\n", lan.Router.Addr, "gw", "router", lan.Router.MAC)
	fmt.Fprintf(w, "%v\t%s\t%s\t%s\t-\t-\n", lan.Controller.Addr, "ctl", "controller", lan.Controller.MAC)
	for _, h := range hosts {
		id := h.Identity
		if id == "" {
			id = "-"
		}
		fmt.Fprintf(w, "%v\t%s\t%s\t%s\t%d%%\t%s\n", h.Addr, h.Name, h.Role, h.MAC, h.Loss, id)
	}
	return w.Flush()
}

type moveCmd struct {
	Name string     `default:"demo" help:"LAN name."`
	Host string     `arg:"" help:"Host name, e.g. h001."`
	To   netip.Addr `arg:"" help:"Its new address, on the LAN's prefix."`
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
		kong.Description("Virtual LANs of network namespaces (198.18.0.0/15 only) for testing ifl. Needs root."),
		kong.BindTo(ctx, (*context.Context)(nil)))
	if err := k.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "ifl-testnet: %v\n", err)
		stop()
		os.Exit(1)
	}
}
