package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ifl-project/ifl/arpscan"
	"github.com/ifl-project/ifl/internal/controller/verify"
	"github.com/ifl-project/ifl/proto"
	"github.com/ifl-project/ifl/synscan"
)

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

func addrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, addr(s))
	}
	return out
}

func TestNewPlan(t *testing.T) {
	links := []Link{
		{Name: "eth0", Prefixes: []netip.Prefix{netip.MustParsePrefix("198.18.0.2/24")}},
		{Name: "eth1", Prefixes: []netip.Prefix{netip.MustParsePrefix("198.18.4.1/22"), netip.MustParsePrefix("198.18.0.9/24")}},
	}
	got := NewPlan(addrs("198.18.0.5", "198.18.0.2", "198.18.5.7", "198.18.9.1", "2001:db8::5", "198.18.0.6"), links)
	want := Plan{
		OnLink: map[string][]netip.Addr{
			// The first link whose subnet holds an address sweeps it.
			"eth0": addrs("198.18.0.5", "198.18.0.6"),
			"eth1": addrs("198.18.5.7"),
		},
		// The host's own address, a routed one, an IPv6 one.
		Direct: addrs("198.18.0.2", "198.18.9.1", "2001:db8::5"),
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("NewPlan:\n got %v\nwant %v", got, want)
	}
	if names := got.LinkNames(); !slices.Equal(names, []string{"eth0", "eth1"}) {
		t.Errorf("LinkNames: %v", names)
	}
	if p := NewPlan(addrs("198.18.0.5"), nil); len(p.OnLink) != 0 || len(p.Direct) != 1 {
		t.Errorf("no links: %v, want everything direct", p)
	}
}

// fakeSweeper answers ARP for the addresses in live, each after rtt, and
// fails with err once it has sent failAfter answers (if err is set).
type fakeSweeper struct {
	live      map[netip.Addr]bool
	rtt       time.Duration
	rttMax    time.Duration // each Result's RTTMax
	err       error
	failAfter int
	closed    bool
}

func (f *fakeSweeper) Scan(ctx context.Context, targets []netip.Addr, cfg *arpscan.Config, out chan<- arpscan.Result) ([]arpscan.Result, arpscan.Stats, error) {
	var res []arpscan.Result
	for _, a := range targets {
		if f.err != nil && len(res) == f.failAfter {
			return res, arpscan.Stats{}, f.err
		}
		if !f.live[a] {
			continue
		}
		r := arpscan.Result{IP: a, MAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, RTT: f.rtt, RTTMax: f.rttMax}
		res = append(res, r)
		select {
		case out <- r:
		case <-ctx.Done():
			return res, arpscan.Stats{}, ctx.Err()
		}
	}
	return res, arpscan.Stats{Targets: len(targets)}, nil
}

func (f *fakeSweeper) Close() error { f.closed = true; return nil }

// fakePorts answers port probes from a table; unknown targets are
// filtered. It fails with err after failAfter probes, if err is set. It
// records the targets it was given, hints included.
type fakePorts struct {
	states    map[synscan.Target]synscan.State
	rtt       time.Duration
	err       error
	failAfter int
	got       []synscan.Target
}

func (f *fakePorts) Stream(ctx context.Context, in <-chan synscan.Target, out chan<- synscan.Result) (synscan.Stats, error) {
	var st synscan.Stats
	for t := range in {
		if f.err != nil && st.Sent == f.failAfter {
			return st, f.err
		}
		st.Sent++
		st.Targets++
		f.got = append(f.got, t)
		state, ok := f.states[synscan.Target{Addr: t.Addr, Port: t.Port}]
		if !ok {
			state = synscan.Filtered
		}
		select {
		case out <- synscan.Result{Target: t, State: state, RTT: f.rtt}:
		case <-ctx.Done():
			return st, ctx.Err()
		}
	}
	return st, nil
}

func (f *fakePorts) Close() error { return nil }

// lan is a planned /24 on eth0 with hosts .1-.4 live: .1 and .2 have the
// port open, .3 closed, .4 filtered; .5 and .6 are silent; 198.18.9.9 is
// routed with the port open.
func lan(port uint16) ([]netip.Addr, Plan, *fakeSweeper, *fakePorts) {
	targets := addrs("198.18.0.1", "198.18.0.2", "198.18.0.3", "198.18.0.4", "198.18.0.5", "198.18.0.6", "198.18.9.9")
	links := []Link{{Name: "eth0", Prefixes: []netip.Prefix{netip.MustParsePrefix("198.18.0.250/24")}}}
	sw := &fakeSweeper{live: map[netip.Addr]bool{}, rtt: 300 * time.Microsecond, rttMax: 30 * time.Millisecond}
	for _, a := range targets[:4] {
		sw.live[a] = true
	}
	ports := &fakePorts{rtt: 400 * time.Microsecond, states: map[synscan.Target]synscan.State{
		{Addr: addr("198.18.0.1"), Port: port}: synscan.Open,
		{Addr: addr("198.18.0.2"), Port: port}: synscan.Open,
		{Addr: addr("198.18.0.3"), Port: port}: synscan.Closed,
		{Addr: addr("198.18.9.9"), Port: port}: synscan.Open,
	}}
	return targets, NewPlan(targets, links), sw, ports
}

// collect runs f with a channel it drains, as the commands do, and fails
// the test if f does not return in time.
func collect[T any](t *testing.T, f func(out chan<- T) (Stats, error)) ([]T, Stats, error) {
	t.Helper()
	out := make(chan T)
	type done struct {
		st  Stats
		err error
	}
	fin := make(chan done, 1)
	go func() {
		st, err := f(out)
		close(out)
		fin <- done{st, err}
	}()
	var got []T
	timeout := time.After(30 * time.Second)
	for {
		select {
		case v, ok := <-out:
			if !ok {
				d := <-fin
				return got, d.st, d.err
			}
			got = append(got, v)
		case <-timeout:
			t.Fatal("the run did not end")
		}
	}
}

func scanLines(res []synscan.Result) string {
	var lines []string
	for _, r := range res {
		lines = append(lines, fmt.Sprintf("%v:%d %v", r.Addr, r.Port, r.State))
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

func TestScanStages(t *testing.T) {
	targets, plan, sw, ports := lan(22)
	e := New(targets, Parts{Plan: plan, Sweepers: map[string]Sweeper{"eth0": sw}, Ports: ports, Raw: true})
	res, st, err := collect(t, func(out chan<- synscan.Result) (Stats, error) {
		return e.Scan(context.Background(), []uint16{22, 80}, out)
	})
	if err != nil {
		t.Fatalf("Scan: %v", err)
	}
	want := strings.Join([]string{
		"198.18.0.1:22 open", "198.18.0.1:80 filtered",
		"198.18.0.2:22 open", "198.18.0.2:80 filtered",
		"198.18.0.3:22 closed", "198.18.0.3:80 filtered",
		"198.18.0.4:22 filtered", "198.18.0.4:80 filtered",
		"198.18.0.5:22 down", "198.18.0.5:80 down",
		"198.18.0.6:22 down", "198.18.0.6:80 down",
		"198.18.9.9:22 open", "198.18.9.9:80 filtered",
	}, "\n")
	if got := scanLines(res); got != want {
		t.Errorf("results:\n%s\nwant:\n%s", got, want)
	}
	wantSt := Stats{Addresses: 7, Swept: 6, Live: 4, Direct: 1, Down: 2, Open: 3, Closed: 1, Filtered: 6, SYNSent: 10}
	if st != wantSt {
		t.Errorf("stats %+v\nwant  %+v", st, wantSt)
	}
	// Only live and routed hosts are probed, the swept ones with the
	// round trip their ARP reply took, for the probes' waits.
	for _, g := range ports.got {
		if g.Addr == addr("198.18.0.5") || g.Addr == addr("198.18.0.6") {
			t.Errorf("probed %v, which the sweep found down", g.Addr)
		}
		want, wantMax := sw.rtt, sw.rttMax
		if g.Addr == addr("198.18.9.9") {
			want, wantMax = 0, 0 // routed: nothing measured
		}
		if g.RTT != want || g.RTTMax != wantMax {
			t.Errorf("%v:%d probed with the hint %v to %v, want %v to %v", g.Addr, g.Port, g.RTT, g.RTTMax, want, wantMax)
		}
	}
}

func TestScanConnectPath(t *testing.T) {
	targets, _, _, ports := lan(22)
	ports.states[synscan.Target{Addr: addr("198.18.0.5"), Port: 22}] = synscan.Down
	e := New(targets, Parts{Plan: Plan{Direct: targets}, Ports: ports})
	res, st, err := collect(t, func(out chan<- synscan.Result) (Stats, error) {
		return e.Scan(context.Background(), []uint16{22}, out)
	})
	if err != nil {
		t.Fatalf("Scan: %v", err)
	}
	if len(res) != len(targets) {
		t.Errorf("%d results, want one per address (%d)", len(res), len(targets))
	}
	wantSt := Stats{Addresses: 7, Direct: 7, Down: 1, Open: 3, Closed: 1, Filtered: 2, Connections: 7}
	if st != wantSt {
		t.Errorf("stats %+v\nwant  %+v", st, wantSt)
	}
}

// TestScanPortFailure: a port scanner that fails ends the run with its
// error, as an incomplete run, and nothing stays blocked.
func TestScanPortFailure(t *testing.T) {
	targets, plan, sw, ports := lan(22)
	errSend := errors.New("sendto: operation not permitted")
	ports.err, ports.failAfter = errSend, 2
	e := New(targets, Parts{Plan: plan, Sweepers: map[string]Sweeper{"eth0": sw}, Ports: ports, Raw: true})
	_, st, err := collect(t, func(out chan<- synscan.Result) (Stats, error) {
		return e.Scan(context.Background(), []uint16{22}, out)
	})
	if !errors.Is(err, errSend) {
		t.Fatalf("Scan: %v, want the scanner's error", err)
	}
	if st.SYNSent != 2 {
		t.Errorf("SYNSent %d, want the 2 sent before the failure", st.SYNSent)
	}
}

// TestSweepFailure: a sweep that breaks off is an error of the run, and
// the addresses it had not heard from still get their port probe.
func TestSweepFailure(t *testing.T) {
	targets, plan, sw, ports := lan(22)
	errIface := errors.New("eth0: network is down")
	sw.err, sw.failAfter = errIface, 1
	e := New(targets, Parts{Plan: plan, Sweepers: map[string]Sweeper{"eth0": sw}, Ports: ports, Raw: true})
	res, st, err := collect(t, func(out chan<- synscan.Result) (Stats, error) {
		return e.Scan(context.Background(), []uint16{22}, out)
	})
	if !errors.Is(err, errIface) || !strings.Contains(err.Error(), "ARP sweep on eth0") {
		t.Fatalf("Scan: %v, want the sweep's error, naming the link", err)
	}
	for _, r := range res {
		if r.State == synscan.Down {
			t.Errorf("%v down: a broken sweep proves nothing down", r.Addr)
		}
	}
	if len(res) != len(targets) {
		t.Errorf("%d results, want every address probed (%d)", len(res), len(targets))
	}
	if st.Live != 1 || st.Direct != 1+5 {
		t.Errorf("stats %+v: want 1 live, and the 5 unheard plus the routed one direct", st)
	}
}

func TestScanCancelled(t *testing.T) {
	targets, plan, sw, ports := lan(22)
	e := New(targets, Parts{Plan: plan, Sweepers: map[string]Sweeper{"eth0": sw}, Ports: ports, Raw: true})
	ctx, cancel := context.WithCancel(context.Background())
	out := make(chan synscan.Result)
	fin := make(chan error, 1)
	go func() {
		_, err := e.Scan(ctx, []uint16{22}, out)
		fin <- err
	}()
	<-out // the run is under way, and then nobody reads
	cancel()
	select {
	case err := <-fin:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Scan: %v, want context.Canceled", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Scan did not return after its context was cancelled")
	}
}

// TestProbeStages: only the open ports reach the handshake (here a
// listener that is no agent), and every other address has a result.
func TestProbeStages(t *testing.T) {
	targets, plan, sw, ports := lan(7440)
	key, _ := proto.NewNetworkKey()
	dialled := make(chan netip.Addr, 16)
	p := &verify.Verifier{Key: key, Port: 7440, Timeout: 2 * time.Second, Dial: func(ctx context.Context, network, a string) (net.Conn, error) {
		ap := netip.MustParseAddrPort(a)
		dialled <- ap.Addr()
		c1, c2 := net.Pipe()
		go func() {
			// Another service: it answers with garbage and hangs up.
			go io.Copy(io.Discard, c2)
			c2.Write([]byte("HTTP/1.0 400 Bad Request\r\n\r\n"))
			c2.Close()
		}()
		return c1, nil
	}}
	e := New(targets, Parts{Plan: plan, Sweepers: map[string]Sweeper{"eth0": sw}, Ports: ports, Raw: true})
	var progress []Progress
	round, err := e.Probe(context.Background(), p, RoundOptions{All: true, Progress: func(p Progress) { progress = append(progress, p) }})
	if err != nil {
		t.Fatalf("Probe: %v", err)
	}
	res, st := round.Results, round.Stats
	close(dialled)
	var got []string
	for a := range dialled {
		got = append(got, a.String())
	}
	sort.Strings(got)
	if want := []string{"198.18.0.1", "198.18.0.2", "198.18.9.9"}; !slices.Equal(got, want) {
		t.Errorf("dialled %v, want the open ports only %v", got, want)
	}
	byAddr := map[string]string{}
	for _, r := range res {
		byAddr[r.Addr.String()] = fmt.Sprintf("%v/%v", r.Status, r.Reason)
	}
	want := map[string]string{
		"198.18.0.1": "not-agent/other-service",
		"198.18.0.2": "not-agent/other-service",
		"198.18.9.9": "not-agent/other-service",
		"198.18.0.3": "closed/refused",
		"198.18.0.4": "filtered/timeout",
		"198.18.0.5": "down/no-arp-reply",
		"198.18.0.6": "down/no-arp-reply",
	}
	if fmt.Sprint(byAddr) != fmt.Sprint(want) {
		t.Errorf("results:\n got %v\nwant %v", byAddr, want)
	}
	if len(progress) != 7 || progress[6] != (Progress{Settled: 7}) {
		t.Errorf("progress %v, want one step for each of the 7 targets", progress)
	}
	if st.Open != 3 || st.Down != 2 || st.SYNSent != 5 || st.Probed != 3 || st.NotAgents != 3 {
		t.Errorf("stats %+v", st)
	}
	if !round.Complete || round.Method != MethodRaw || len(round.Observations) != 0 {
		t.Errorf("round %+v", round)
	}
}

func TestProbeSYNFailure(t *testing.T) {
	targets, plan, sw, ports := lan(7440)
	errSend := errors.New("sendto: no buffer space")
	ports.err, ports.failAfter = errSend, 1
	key, _ := proto.NewNetworkKey()
	p := &verify.Verifier{Key: key, Port: 7440, Dial: func(ctx context.Context, network, a string) (net.Conn, error) {
		return nil, errors.New("refused")
	}}
	e := New(targets, Parts{Plan: plan, Sweepers: map[string]Sweeper{"eth0": sw}, Ports: ports, Raw: true})
	round, err := e.Probe(context.Background(), p, RoundOptions{})
	if !errors.Is(err, errSend) || round.Complete {
		t.Fatalf("Probe: %v, want the SYN stage's error", err)
	}
}

// learningPorts is fakePorts that is told the MACs a sweep learned.
type learningPorts struct {
	fakePorts
	mu      sync.Mutex
	learned map[netip.Addr]string
	early   []netip.Addr // probed before their MAC was learned
}

func (l *learningPorts) Learn(a netip.Addr, ifindex int, mac net.HardwareAddr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.learned[a] = fmt.Sprintf("%d/%v", ifindex, mac)
}

func (l *learningPorts) Stream(ctx context.Context, in <-chan synscan.Target, out chan<- synscan.Result) (synscan.Stats, error) {
	check := make(chan synscan.Target)
	go func() {
		defer close(check)
		for t := range in {
			l.mu.Lock()
			if _, ok := l.learned[t.Addr]; !ok && t.Addr != addr("198.18.9.9") {
				l.early = append(l.early, t.Addr)
			}
			l.mu.Unlock()
			check <- t
		}
	}()
	return l.fakePorts.Stream(ctx, check, out)
}

// TestScanTeachesMACs: each host a sweep finds is learned, with its link
// and MAC, before its first probe, so that the SYNs go to that MAC.
func TestScanTeachesMACs(t *testing.T) {
	targets, plan, sw, ports := lan(22)
	lp := &learningPorts{fakePorts: *ports, learned: map[netip.Addr]string{}}
	e := New(targets, Parts{Plan: plan, Sweepers: map[string]Sweeper{"eth0": sw}, Ports: lp, Learn: lp.Learn, Raw: true})
	e.ifindex["eth0"] = 7
	if _, _, err := collect(t, func(out chan<- synscan.Result) (Stats, error) {
		return e.Scan(context.Background(), []uint16{22}, out)
	}); err != nil {
		t.Fatal(err)
	}
	want := map[netip.Addr]string{}
	for a := range sw.live {
		want[a] = "7/02:00:00:00:00:01"
	}
	if fmt.Sprint(lp.learned) != fmt.Sprint(want) || len(lp.early) > 0 {
		t.Errorf("learned %v (probed before: %v), want %v", lp.learned, lp.early, want)
	}
}

// TestScanConnectFindsHostsFirst: without a sweep, each address's first
// port tells up from down; only the addresses that answer it get their
// other ports, and the ports of the others are down.
func TestScanConnectFindsHostsFirst(t *testing.T) {
	targets := addrs("198.18.0.1", "198.18.0.2", "198.18.0.3", "198.18.0.4")
	ports := &fakePorts{states: map[synscan.Target]synscan.State{
		{Addr: addr("198.18.0.1"), Port: 22}: synscan.Closed,
		{Addr: addr("198.18.0.1"), Port: 80}: synscan.Open,
		{Addr: addr("198.18.0.2"), Port: 22}: synscan.Open,
		{Addr: addr("198.18.0.3"), Port: 22}: synscan.Down, // the kernel found no host
		// .4 is silent: filtered, and so down.
	}}
	e := New(targets, Parts{Plan: Plan{Direct: targets}, Ports: ports})
	res, st, err := collect(t, func(out chan<- synscan.Result) (Stats, error) {
		return e.Scan(context.Background(), []uint16{22, 80, 443}, out)
	})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, r := range res {
		got[fmt.Sprintf("%v:%d", r.Addr, r.Port)] = r.State.String()
	}
	want := map[string]string{
		"198.18.0.1:22": "closed", "198.18.0.1:80": "open", "198.18.0.1:443": "filtered",
		"198.18.0.2:22": "open", "198.18.0.2:80": "filtered", "198.18.0.2:443": "filtered",
		"198.18.0.3:22": "down", "198.18.0.3:80": "down", "198.18.0.3:443": "down",
		"198.18.0.4:22": "down", "198.18.0.4:80": "down", "198.18.0.4:443": "down",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("results (-want +got):\n%s", diff)
	}
	if len(ports.got) != 4+2*2 {
		t.Errorf("%d dials, want one per address and the rest of the ports of the 2 that answered: %v", len(ports.got), ports.got)
	}
	if st.Down != 2 || st.Open != 2 || st.Closed != 1 || st.Filtered != 3 || st.Direct != 4 {
		t.Errorf("stats %+v", st)
	}
}
