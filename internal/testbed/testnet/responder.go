package testnet

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/ifl-project/ifl/internal/testbed/responder"
)

// ResponderSpec puts on the LAN many more hosts than namespaces can be:
// one process on a link of its own answers ARP and TCP SYNs for them
// (package responder), each at its own MAC. Its hosts take addresses the
// namespace hosts leave free, spread over the prefix. Namespace hosts
// (agents among them) sit beside it.
type ResponderSpec struct {
	Groups []ResponderGroup `json:"groups" yaml:"groups"`
}

// ResponderGroup is Hosts hosts of the responder that behave alike.
type ResponderGroup struct {
	Hosts           int `json:"hosts" yaml:"hosts"`
	responder.Group `yaml:",inline"`
}

// Responder is the responder of a running LAN: its namespace, its link's
// MAC, its process, and the hosts it answers for.
type Responder struct {
	Namespace string            `json:"namespace"`
	MAC       string            `json:"mac"`
	PID       int               `json:"pid,omitempty"`
	Groups    []responder.Group `json:"groups"`
	Hosts     []responder.Host  `json:"hosts"`
}

// helperResponder, given as the program to exec, makes the helper the
// LAN's responder: args LINK CONFIG-FILE (a responder.Config in JSON).
// SIGUSR1 makes it log its counts so far; it logs them when it stops too.
const helperResponder = "@responder"

// responderMAC is the responder's own link's MAC, outside the hosts'
// 02:18, 02:19 and 02:20.
const responderMAC = "02:16:00:00:00:01"

// responderHosts gives the responder's hosts of a resolved spec their
// addresses: evenly spread over the addresses no namespace host, router,
// controller or empty host has, the groups mixed in an order fixed by the
// LAN's prefix.
func (s *Spec) responderHosts() ([]responder.Host, error) {
	if s.Responder == nil {
		return nil, nil
	}
	n := 0
	for i, g := range s.Responder.Groups {
		if g.Hosts < 0 {
			return nil, fmt.Errorf("testnet: responder group %d: %d hosts: want 0 or more", i, g.Hosts)
		}
		n += g.Hosts
	}
	taken := map[netip.Addr]bool{}
	for _, h := range s.Hosts {
		if h.Name == "rsp" {
			return nil, fmt.Errorf("testnet: host name %q is the responder's namespace's", h.Name)
		}
		if h.Addr.IsValid() {
			taken[h.Addr] = true
		}
	}
	router := s.Prefix.Addr().Next()
	taken[router], taken[router.Next()] = true, true
	var free []netip.Addr
	for a := router; s.Prefix.Contains(a) && a != last(s.Prefix); a = a.Next() {
		if !taken[a] {
			free = append(free, a)
		}
	}
	if n > len(free) || n > responder.MaxHosts {
		return nil, fmt.Errorf("testnet: responder: %d hosts: %v has room for %d beside the others (and a responder answers for at most %d)", n, s.Prefix, len(free), responder.MaxHosts)
	}
	groups := make([]int, 0, n)
	for i, g := range s.Responder.Groups {
		for range g.Hosts {
			groups = append(groups, i)
		}
	}
	seed := uint64(u32(s.Prefix.Addr()))
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	rng.Shuffle(len(groups), func(i, j int) { groups[i], groups[j] = groups[j], groups[i] })
	hosts := make([]responder.Host, n)
	for i := range hosts {
		hosts[i] = responder.Host{Addr: free[(2*i+1)*len(free)/(2*n)], Group: groups[i]}
	}
	return hosts, nil
}

func (s *Spec) responderGroups() []responder.Group {
	var out []responder.Group
	if s.Responder != nil {
		for _, g := range s.Responder.Groups {
			out = append(out, g.Group)
		}
	}
	return out
}

// buildResponder adds the responder's namespace and link to the batch b
// run in the caller's namespace; bridgePort names its port on the
// bridge.
func (l *LAN) buildResponder(b *strings.Builder, bridgePort string) {
	fmt.Fprintf(b, "netns add %s\n", l.ResponderNode.Namespace)
	fmt.Fprintf(b, "link add eth0 netns %s address %s type veth peer name %s netns %s\n", l.ResponderNode.Namespace, l.ResponderNode.MAC, bridgePort, l.Bridge)
}

// setUpResponder brings the responder's link up: no address, no IPv6 of
// its own to announce, and no kernel that would answer for its hosts.
// In the controller's namespace, the resets its kernel sends to the
// responder's hosts are dropped before they need a neighbour entry (see
// responderFirewall).
func (l *LAN) setUpResponder(ctx context.Context) error {
	ns := l.ResponderNode.Namespace
	if err := run(ctx, nil, "ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"); err != nil {
		return err
	}
	if err := ipBatch(ctx, ns, "link set lo up\nlink set eth0 addrgenmode none\nlink set eth0 up\n"); err != nil {
		return err
	}
	if len(l.ResponderNode.Hosts) == 0 {
		return nil
	}
	return run(ctx, strings.NewReader(l.responderFirewall()), "ip", "netns", "exec", l.Controller.Namespace, "nft", "-f", "-")
}

// responderFirewall is the controller's rule that drops the resets its
// kernel sends to the responder's hosts. A scanner's kernel answers
// every SYN-ACK to a raw SYN with a reset, and a reset needs a neighbour
// entry for its host; the kernel's neighbour table (gc_thresh3, 1,024
// entries) is one for every namespace of the machine, and this kernel
// has no per-namespace thresholds. Thousands of hosts would overflow it,
// for this LAN and every other on the machine. Dropped at the output
// hook, a reset goes nowhere before its neighbour is looked up; the
// scanners read the SYN-ACK all the same, and the responder keeps no
// half-open connection to be reset.
func (l *LAN) responderFirewall() string {
	var b strings.Builder
	b.WriteString("table ip ifltestrsp {\n set hosts {\n  type ipv4_addr\n  elements = { ")
	for i, h := range l.ResponderNode.Hosts {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(h.Addr.String())
	}
	b.WriteString(" }\n }\n chain output {\n  type filter hook output priority 0; policy accept;\n  ip daddr @hosts tcp flags & rst == rst drop\n }\n}\n")
	return b.String()
}

// startResponder writes the responder's config and starts it.
func (l *LAN) startResponder(opts Options) error {
	cfg := responder.Config{Groups: l.ResponderNode.Groups, Hosts: l.ResponderNode.Hosts, Seed: 1}
	b, err := json.Marshal(&cfg)
	if err != nil {
		return err
	}
	f := filepath.Join(l.Dir, "responder.json")
	if err := os.WriteFile(f, b, 0o600); err != nil {
		return err
	}
	cmd, err := l.spawn(l.ResponderNode.Namespace, l.ResponderLog(), opts.Helper, []string{helperResponder, "eth0", f}, nil)
	if err != nil {
		return err
	}
	l.ResponderNode.PID = l.reap(cmd)
	return nil
}

// ResponderLog is the responder's log: a line when it listens, and its
// counts (responder.Stats, as JSON) on SIGUSR1 and when it stops.
func (l *LAN) ResponderLog() string { return filepath.Join(l.Dir, "responder.log") }

func serveResponder(args []string) error {
	if len(args) != 3 {
		return fmt.Errorf("usage: %s LINK CONFIG-FILE", helperResponder)
	}
	b, err := os.ReadFile(args[2])
	if err != nil {
		return err
	}
	var cfg responder.Config
	if err := json.Unmarshal(b, &cfg); err != nil {
		return fmt.Errorf("%s: %w", args[2], err)
	}
	srv, err := responder.Listen(args[1], &cfg)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	logStats := func(event string, st responder.Stats) {
		b, _ := json.Marshal(struct {
			Event string `json:"event"`
			responder.Stats
		}{event, st})
		fmt.Printf("%s\n", b)
	}
	go func() {
		for range usr1 {
			logStats("stats", srv.Stats())
		}
	}()
	// The same readiness line an agent logs.
	fmt.Printf("{\"event\":\"listening\",\"responder\":%q,\"hosts\":%d}\n", args[1], len(cfg.Hosts))
	st, err := srv.Serve(ctx)
	logStats("stopped", st)
	return err
}
