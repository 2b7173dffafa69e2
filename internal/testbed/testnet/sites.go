package testnet

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// A fleet of several sites: LANs whose routers a Core joins, as a WAN
// joins the sites of a company, with the services every site reaches
// (the shared inventory's etcd members) in the core:
//
//	a, _ := testnet.Up(ctx, specA, testnet.Options{IFL: ifl})
//	b, _ := testnet.Up(ctx, specB, testnet.Options{IFL: ifl, NetworkKey: a.NetworkKey})
//	core, _ := testnet.JoinCore(ctx, "fleet", netip.MustParsePrefix("198.19.160.192/26"), 3, a, b)
//	// run services in core.Namespace on core.Services, e.g.
//	// etcdtest.StartIn(t, etcdtest.Net{Namespace: core.Namespace, Addrs: core.Services})
//	a.Controller.Command(ctx, ifl, "probe", "--store", "etcd://...", "--site", "a", a.Prefix.String())
//	a.MoveTo(ctx, "h001", b, addrInB) // a laptop carried to site b
//
// Each controller reaches the core's services through its LAN's router;
// the core forwards nothing between the LANs, so no site reaches
// another's hosts (as sites behind NAT and firewalls), and a probe of one
// LAN sees only that LAN.

// Core is a namespace linked to the router of each of several LANs.
type Core struct {
	Name      string
	Namespace string
	Prefix    netip.Prefix
	// Services are addresses on the core's loopback, for services that
	// every LAN's hosts and controller reach.
	Services []netip.Addr
}

// JoinCore makes the core called name (a LAN name: 1-8 of [a-z0-9], torn
// down by Down(name)) on prefix, a /24 to /28 inside TestRange that no
// LAN uses, with services addresses for services, and links it to the
// router of each LAN: the services take the first addresses of prefix,
// and each link a /30 of its upper half. On failure it tears down what
// it built.
func JoinCore(ctx context.Context, name string, prefix netip.Prefix, services int, lans ...*LAN) (core *Core, err error) {
	if !nameRE.MatchString(name) {
		return nil, fmt.Errorf("testnet: core name %q: want 1 to 8 of [a-z0-9]", name)
	}
	if !prefix.IsValid() || !prefix.Addr().Is4() || prefix.Bits() < 24 || prefix.Bits() > 28 || !TestRange.Contains(prefix.Addr()) {
		return nil, fmt.Errorf("testnet: core prefix %v: want an IPv4 /24 to /28 inside %v", prefix, TestRange)
	}
	prefix = prefix.Masked()
	size := 1 << (32 - prefix.Bits())
	if services < 1 || services > size/2-2 || len(lans) < 1 || len(lans) > size/8 {
		return nil, fmt.Errorf("testnet: core %v: room for 1 to %d services and 1 to %d LANs, not %d and %d", prefix, size/2-2, size/8, services, len(lans))
	}
	for _, l := range lans {
		if l.Prefix.Overlaps(prefix) {
			return nil, fmt.Errorf("testnet: core prefix %v overlaps LAN %s's %v", prefix, l.Name, l.Prefix)
		}
	}
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("testnet: needs root (network namespaces)")
	}
	if err := Down(name); err != nil {
		return nil, fmt.Errorf("testnet: cleaning up a previous %s: %w", name, err)
	}
	core = &Core{Name: name, Namespace: "ifl-" + name + "-core", Prefix: prefix}
	defer func() {
		if err != nil {
			Down(name)
			core = nil
		}
	}()
	var top, inCore strings.Builder
	fmt.Fprintf(&top, "netns add %s\n", core.Namespace)
	inCore.WriteString("link set lo up\n")
	for i := range services {
		a := nth(prefix.Addr(), i+1)
		core.Services = append(core.Services, a)
		fmt.Fprintf(&inCore, "addr add %s/32 dev lo\n", a)
	}
	for i, l := range lans {
		// The link's /30: the core's end, then the router's.
		c, r := nth(prefix.Addr(), size/2+4*i+1), nth(prefix.Addr(), size/2+4*i+2)
		fmt.Fprintf(&top, "link add core0 netns %s type veth peer name lan%d netns %s\n", l.Router.Namespace, i, core.Namespace)
		fmt.Fprintf(&inCore, "addr add %s/30 dev lan%d\nlink set lan%d up\nroute add %s via %s\n", c, i, i, l.Prefix, r)
		if err := ipBatch(ctx, "", top.String()); err != nil {
			return core, err
		}
		top.Reset()
		if err := ipBatch(ctx, l.Router.Namespace, fmt.Sprintf("addr add %s/30 dev core0\nlink set core0 up\nroute add %s via %s\n", r, prefix, c)); err != nil {
			return core, err
		}
	}
	return core, ipBatch(ctx, core.Namespace, inCore.String())
}

// StartCore joins lans with a core for the test, and tears it down when
// the test ends.
func StartCore(t testing.TB, name string, prefix netip.Prefix, services int, lans ...*LAN) *Core {
	t.Helper()
	core, err := JoinCore(context.Background(), name, prefix, services, lans...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := core.Down(); err != nil {
			t.Errorf("tearing down %s: %v", name, err)
		}
	})
	return core
}

// Down stops every process left in the core's namespace and deletes it,
// and with it its links to the routers.
func (c *Core) Down() error { return Down(c.Name) }

// Command returns a command that runs inside the core's namespace.
func (c *Core) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", c.Namespace, name}, args...)...)
}

// MoveTo carries the host called name from l to the LAN to, as a laptop
// taken to another site: its link leaves l's bridge for to's, and it gets
// the address addr of to's prefix and to's router as its gateway; it
// keeps its MAC, its process and its identity. l still owns the host (its
// namespace and process go with l.Down), listed in l.Hosts with its new
// address. Hosts with IPv6 or a delay are not carried.
func (l *LAN) MoveTo(ctx context.Context, name string, to *LAN, addr netip.Addr) error {
	if !to.Prefix.Contains(addr) || addr == to.Prefix.Addr() || addr == last(to.Prefix) || addr == to.Router.Addr || addr == to.Controller.Addr {
		return fmt.Errorf("testnet: move %s to %s: %v is outside %v or taken", name, to.Name, addr, to.Prefix)
	}
	for _, h := range to.Hosts {
		if h.Addr == addr {
			return fmt.Errorf("testnet: move %s to %s: %v is taken by %s", name, to.Name, addr, h.Name)
		}
	}
	port := -1
	for i, n := range l.nodes() {
		if i >= 2 && n.Namespace == "ifl-"+l.Name+"-"+name {
			port = i
		}
	}
	for i := range l.Hosts {
		h := &l.Hosts[i]
		if h.Name != name {
			continue
		}
		if h.Namespace == "" || port < 0 || h.Relay != "" || h.Addr6.IsValid() || !h.Addr.IsValid() {
			return fmt.Errorf("testnet: move %s to %s: only a host that is there, with an IPv4 address only and no delay, is carried", name, to.Name)
		}
		// The port's name on to's bridge: from the MAC, unique.
		newPort := "m" + strings.ReplaceAll(h.MAC[6:], ":", "")
		if err := ipBatch(ctx, l.Bridge, fmt.Sprintf("link set p%d down\nlink set p%d nomaster\nlink set p%d name %s\nlink set %s netns %s\n", port, port, port, newPort, newPort, to.Bridge)); err != nil {
			return err
		}
		if err := ipBatch(ctx, to.Bridge, fmt.Sprintf("link set %s master br0\nlink set %s up\n", newPort, newPort)); err != nil {
			return err
		}
		// The controller's permanent neighbour entry follows too (see
		// nodeCommands).
		cmds := fmt.Sprintf("neigh del %s dev eth0\naddr del %s/%d dev eth0\naddr add %s/%d dev eth0\nroute replace default via %s\nneigh replace %s lladdr %s nud permanent dev eth0\n",
			l.Controller.Addr, h.Addr, l.Prefix.Bits(), addr, to.Prefix.Bits(), to.Router.Addr, to.Controller.Addr, to.Controller.MAC)
		if err := ipBatch(ctx, h.Namespace, cmds); err != nil {
			return err
		}
		h.Addr = addr
		return l.save()
	}
	return fmt.Errorf("testnet: move %s to %s: no host %q in %s", name, to.Name, name, l.Name)
}
