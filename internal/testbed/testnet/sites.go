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
	if top.Len() > 0 {
		if err := ipBatch(ctx, "", top.String()); err != nil {
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
