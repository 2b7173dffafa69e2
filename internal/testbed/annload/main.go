// Command annload plays many ifl agents in one process, for the
// benchmark of a DHCP server that restarted: -n agents, each with an
// identity, facts (hostname, machine-id, a MAC of its own) and an
// address of its own on one interface, each served by the agent package
// itself (the real handshake, ping and announcer), behind one listening
// socket that hands each connection to the agent whose address it came
// to. A namespace of a test LAN runs it, as root, in place of -n
// namespaces each running ifl agent, which this machine could not hold.
//
// It adds the -n old addresses to the interface, serves, and prints a
// "ready" line (JSON, as every line it prints) naming the agents. Told
// "move" on its standard input, it moves every agent within -over, one
// after another, evenly spread: the old address removed, the new one
// added (netlink, as a DHCP client would), and the agent told at once,
// as netlink tells a real agent; its announcer then announces the new
// address to the controllers it learned from their pings, with the
// agent's own sealing, retries, back-off and budget. It prints a
// "moved" line, waits until every agent's announcement was acknowledged
// (a verified ping at its new address) or -wait has passed, prints a
// "done" line with each agent's count, and stops when its input ends.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/ifl-project/ifl/agent"
	"github.com/ifl-project/ifl/internal/testbed/annload/report"
	"github.com/ifl-project/ifl/internal/testbed/testnet"
	"github.com/ifl-project/ifl/proto"
)

func main() {
	c := parseFlags()
	if err := run(c); err != nil {
		fmt.Fprintln(os.Stderr, "annload:", err)
		os.Exit(1)
	}
}

// config is the command line.
type config struct {
	keyFile, dev       string
	port, n, bits      int
	oldFirst, newFirst netip.Addr
	over, wait         time.Duration
}

func parseFlags() *config {
	c := &config{}
	var oldFirst, newFirst string
	flag.StringVar(&c.keyFile, "k", "", "network key file")
	flag.StringVar(&c.dev, "dev", "eth0", "the interface that carries every agent's address")
	flag.IntVar(&c.port, "port", 7440, "agent port")
	flag.IntVar(&c.n, "n", 1000, "agents")
	flag.IntVar(&c.bits, "bits", 24, "prefix length of the agents' addresses")
	flag.StringVar(&oldFirst, "old", "", "first of the agents' addresses before the move (then the next ones, .0 and .255 left out)")
	flag.StringVar(&newFirst, "new", "", "first of their addresses after the move")
	flag.DurationVar(&c.over, "over", time.Second, "the moves are spread over this time")
	flag.DurationVar(&c.wait, "wait", time.Minute, "how long to wait for the acknowledgements after the last move")
	flag.Parse()
	if c.n < 1 || c.bits < 1 || c.bits > 32 || c.over < 0 || c.wait < 0 {
		fmt.Fprintln(os.Stderr, "annload: want -n 1 or more, -bits 1-32, and -over and -wait not negative")
		os.Exit(2)
	}
	var err error
	if c.oldFirst, err = netip.ParseAddr(oldFirst); err != nil {
		fmt.Fprintln(os.Stderr, "annload: -old:", err)
		os.Exit(2)
	}
	if c.newFirst, err = netip.ParseAddr(newFirst); err != nil {
		fmt.Fprintln(os.Stderr, "annload: -new:", err)
		os.Exit(2)
	}
	return c
}

func run(c *config) error {
	key, err := proto.LoadNetworkKey(c.keyFile)
	if err != nil {
		return err
	}
	olds, err := addrsFrom(c.oldFirst, c.n)
	if err != nil {
		return fmt.Errorf("-old: %w", err)
	}
	news, err := addrsFrom(c.newFirst, c.n)
	if err != nil {
		return fmt.Errorf("-new: %w", err)
	}
	if err := disjoint(olds, news); err != nil {
		return err
	}
	ifi, err := net.InterfaceByName(c.dev)
	if err != nil {
		return err
	}
	nl, err := openNetlink()
	if err != nil {
		return err
	}
	defer nl.close()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	f, err := newFleet(key, c, olds, news)
	if err != nil {
		return err
	}
	for _, a := range olds {
		if err := nl.addr(true, ifi.Index, a, c.bits); err != nil {
			return fmt.Errorf("adding %s to %s: %w", a, c.dev, err)
		}
	}
	ln, err := net.Listen("tcp", fmt.Sprintf(":%d", c.port))
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	errs := make(chan error, 1)
	f.serve(ctx, ln, &wg, errs)
	defer func() {
		stop()
		wg.Wait()
	}()

	out := json.NewEncoder(os.Stdout)
	if err := out.Encode(report.Line{Event: "ready", Agents: f.lines()}); err != nil {
		return err
	}
	// One move; then the agents serve until the input ends.
	in := bufio.NewScanner(os.Stdin)
	for moved := false; in.Scan(); moved = true {
		if in.Text() != "move" || moved {
			return fmt.Errorf("%q on the input: want one line move, then the end of the input", in.Text())
		}
		first, last, err := f.move(ctx, nl, ifi.Index)
		if err != nil {
			return err
		}
		if err := out.Encode(report.Line{Event: "moved", First: first.UnixNano(), Last: last.UnixNano()}); err != nil {
			return err
		}
		acked := f.waitAcked(ctx, c.wait)
		if err := out.Encode(report.Line{Event: "done", Acked: acked, Agents: f.lines()}); err != nil {
			return err
		}
	}
	stop()
	select {
	case err := <-errs:
		return err
	default:
		return nil
	}
}

// addrsFrom returns n IPv4 addresses from first on, leaving out those
// that end in .0 or .255, which some hosts take for a subnet's own.
func addrsFrom(first netip.Addr, n int) ([]netip.Addr, error) {
	if !first.Is4() {
		return nil, fmt.Errorf("%v: want an IPv4 address", first)
	}
	out := make([]netip.Addr, 0, n)
	for a := first; len(out) < n; a = a.Next() {
		if !a.IsValid() || !a.Is4() {
			return nil, fmt.Errorf("%d addresses from %v run out of IPv4", n, first)
		}
		if !testnet.TestRange.Contains(a) {
			// It adds them to an interface: only ever a test LAN's.
			return nil, fmt.Errorf("%d addresses from %v leave %v, the only range a test LAN may use", n, first, testnet.TestRange)
		}
		if b := a.As4()[3]; b == 0 || b == 255 {
			continue
		}
		out = append(out, a)
	}
	return out, nil
}

// disjoint fails if an address is both old and new.
func disjoint(olds, news []netip.Addr) error {
	seen := make(map[netip.Addr]bool, len(olds))
	for _, a := range olds {
		seen[a] = true
	}
	for _, a := range news {
		if seen[a] {
			return fmt.Errorf("%v is both an old and a new address: want -old and -new far enough apart", a)
		}
	}
	return nil
}

// fleet is the agents, and whose address is whose.
type fleet struct {
	c      *config
	agents []*player
	mu     sync.Mutex
	byAddr map[netip.Addr]*player
}

// player is one agent.
type player struct {
	name     string
	a        *agent.Agent
	old, new netip.Addr
	bits     int
	mac      string
	mid      string
	ln       *chanListener
	events   chan struct{}

	mu      sync.Mutex
	cur     netip.Addr
	movedAt time.Time
}

func newFleet(key proto.NetworkKey, c *config, olds, news []netip.Addr) (*fleet, error) {
	f := &fleet{c: c, byAddr: make(map[netip.Addr]*player, len(olds))}
	for i := range olds {
		id, err := proto.NewIdentity()
		if err != nil {
			return nil, err
		}
		p := &player{
			name: fmt.Sprintf("dhcp%04d", i), old: olds[i], new: news[i], cur: olds[i], bits: c.bits,
			mac:    fmt.Sprintf("02:1f:%02x:%02x:%02x:%02x", byte(i>>24), byte(i>>16), byte(i>>8), byte(i)),
			mid:    fmt.Sprintf("%032x", id.Public[:16]),
			events: make(chan struct{}, 1),
		}
		p.a, err = agent.New(agent.Options{NetworkKeys: []proto.NetworkKey{key}, Identity: id, Version: "annload", Facts: p.facts})
		if err != nil {
			return nil, err
		}
		f.agents = append(f.agents, p)
		f.byAddr[p.old] = p
	}
	return f, nil
}

// facts are the agent's, at its address of the moment: each its own
// MAC, so that the controller's bound on new identities at one MAC
// (inventory.MaxNewPerMAC) counts them as the separate hosts they play.
func (p *player) facts(version string, labels map[string]string) (*proto.Facts, error) {
	p.mu.Lock()
	cur := p.cur
	p.mu.Unlock()
	return &proto.Facts{
		Hostname: p.name, MachineID: p.mid, Kernel: "annload", AgentVersion: version, Labels: labels,
		OS: proto.OSRelease{ID: "annload", PrettyName: "annload"},
		Interfaces: []proto.Interface{{Name: "eth0", MAC: p.mac, MTU: 1500, Flags: []string{"up", "broadcast", "running", "multicast"},
			Addrs: []string{netip.PrefixFrom(cur, p.bits).String()}}},
		Time: time.Now().UTC(),
	}, nil
}

// addrs is what the agent's announcer follows: its own address.
func (p *player) addrs() ([]netip.Addr, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return []netip.Addr{p.cur}, nil
}

// serve starts every agent's server and announcer, and the one
// listener that hands them their connections, until ctx is done.
func (f *fleet) serve(ctx context.Context, ln net.Listener, wg *sync.WaitGroup, errs chan<- error) {
	fail := func(err error) {
		select {
		case errs <- err:
		default:
		}
	}
	for _, p := range f.agents {
		p.ln = newChanListener(ln.Addr())
		wg.Add(2)
		go func() {
			defer wg.Done()
			if err := p.a.Serve(ctx, p.ln); err != nil {
				fail(fmt.Errorf("%s: %w", p.name, err))
			}
		}()
		go func() {
			defer wg.Done()
			cfg := agent.AnnounceConfig{Listen: netip.AddrPortFrom(netip.IPv4Unspecified(), uint16(f.c.port)), Addrs: p.addrs}
			if err := p.a.Announce(ctx, cfg, p.events); err != nil {
				fail(fmt.Errorf("%s: %w", p.name, err))
			}
		}()
	}
	context.AfterFunc(ctx, func() { ln.Close() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				if ctx.Err() == nil {
					fail(err)
				}
				return
			}
			f.dispatch(c)
		}
	}()
}

// dispatch hands c to the agent whose address it came to, or closes it.
func (f *fleet) dispatch(c net.Conn) {
	var to netip.Addr
	if ta, ok := c.LocalAddr().(*net.TCPAddr); ok {
		to = ta.AddrPort().Addr().Unmap()
	}
	f.mu.Lock()
	p := f.byAddr[to]
	f.mu.Unlock()
	if p == nil || !p.ln.put(c) {
		c.Close()
	}
}

// move moves every agent, evenly spread over c.over, and returns when
// the first move started and the last ended.
func (f *fleet) move(ctx context.Context, nl *netlink, index int) (first, last time.Time, err error) {
	first = time.Now()
	for i, p := range f.agents {
		due := first.Add(f.c.over * time.Duration(i) / time.Duration(len(f.agents)))
		if d := time.Until(due); d > 0 {
			select {
			case <-time.After(d):
			case <-ctx.Done():
				return first, last, ctx.Err()
			}
		}
		if err := nl.addr(false, index, p.old, f.c.bits); err != nil {
			return first, last, fmt.Errorf("%s: removing %s: %w", p.name, p.old, err)
		}
		f.mu.Lock()
		delete(f.byAddr, p.old)
		f.byAddr[p.new] = p
		f.mu.Unlock()
		if err := nl.addr(true, index, p.new, f.c.bits); err != nil {
			return first, last, fmt.Errorf("%s: adding %s: %w", p.name, p.new, err)
		}
		p.mu.Lock()
		p.cur, p.movedAt = p.new, time.Now()
		p.mu.Unlock()
		select {
		case p.events <- struct{}{}:
		default:
		}
	}
	return first, time.Now(), nil
}

// waitAcked waits until every agent's announcement is acknowledged, or
// wait has passed, and returns how many agents are.
func (f *fleet) waitAcked(ctx context.Context, wait time.Duration) int {
	deadline := time.Now().Add(wait)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		n := 0
		for _, p := range f.agents {
			if p.a.AnnounceStats().Acked > 0 {
				n++
			}
		}
		if n == len(f.agents) || time.Now().After(deadline) {
			return n
		}
		select {
		case <-ctx.Done():
			return n
		case <-tick.C:
		}
	}
}

// lines describes every agent.
func (f *fleet) lines() []report.Agent {
	out := make([]report.Agent, len(f.agents))
	for i, p := range f.agents {
		st := p.a.AnnounceStats()
		p.mu.Lock()
		at := p.movedAt
		p.mu.Unlock()
		out[i] = report.Agent{Name: p.name, Identity: p.a.Identity(), Old: p.old, New: p.new, Sent: st.Sent, Acked: st.Acked, GaveUp: st.GaveUp, Failed: st.Failed}
		if !at.IsZero() {
			out[i].MovedAt = at.UnixNano()
		}
	}
	return out
}

// chanListener is one agent's listener: the connections the fleet's
// one socket hands it.
type chanListener struct {
	addr  net.Addr
	conns chan net.Conn
	once  sync.Once
	done  chan struct{}
}

func newChanListener(addr net.Addr) *chanListener {
	return &chanListener{addr: addr, conns: make(chan net.Conn, 16), done: make(chan struct{})}
}

// put hands c to the listener, and reports whether it took it: not when
// its backlog is full, or it is closed.
func (l *chanListener) put(c net.Conn) bool {
	select {
	case <-l.done:
		return false
	default:
	}
	select {
	case l.conns <- c:
		return true
	default:
		return false
	}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close closes the listener and the connections it was handed and did
// not give out.
func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.done) })
	for {
		select {
		case c := <-l.conns:
			c.Close()
		default:
			return nil
		}
	}
}

func (l *chanListener) Addr() net.Addr { return l.addr }
