// Package engine runs ifl's discovery stages, for ifl scan and ifl probe
// alike: on the fast path an ARP sweep of the on-link targets, port
// probes (raw SYN) of the hosts that answer and of the unswept targets,
// and for a probe the handshake with every open port; on the connect()
// path every target is dialled. The stages stream into each other: the
// first agent's handshake runs while the sweep goes on.
//
//	links, _ := engine.Links()
//	e, err := engine.OpenRaw(addrs, links, engine.Config{})
//	if err != nil { ... }
//	defer e.Close()
//	// The sockets are open: the process can drop CAP_NET_RAW here.
//	st, err := e.Probe(ctx, prober, results)
//
// An engine is planned once, from the interface list it is given, and
// runs as often as asked (ifl probe --watch). Every stage's failure comes
// back from Scan or Probe, with the stats of what was done.
package engine

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/ifl-project/ifl/arpscan"
	"github.com/ifl-project/ifl/internal/controller/verify"
	"github.com/ifl-project/ifl/synscan"
)

// Sweeper sweeps one link with ARP: an *arpscan.Scanner, or a fake.
type Sweeper interface {
	Scan(ctx context.Context, targets []netip.Addr, cfg *arpscan.Config, out chan<- arpscan.Result) ([]arpscan.Result, arpscan.Stats, error)
	Close() error
}

// Config tunes the stages; nil members mean their packages' defaults.
type Config struct {
	ARP *arpscan.Config
	SYN *synscan.Config
}

// Engine is a planned set of targets and the sockets that probe them.
type Engine struct {
	addrs    []netip.Addr
	plan     Plan
	sweepers map[string]Sweeper
	ports    synscan.Scanner
	raw      bool // ports sends SYNs: sweep first, then hand open ports to the handshake
	arp      *arpscan.Config
	// learn, if set, tells the port scanner the MAC that a host the
	// sweep found answered from, on the link with its index in ifindex:
	// its SYNs go to that MAC as frames, without a second resolution.
	learn   func(a netip.Addr, ifindex int, mac net.HardwareAddr)
	ifindex map[string]int
	// notes say what the plan could not do as planned (a link that
	// could not be opened for a sweep): its addresses go on unswept.
	notes []error
}

// OpenRaw plans addrs over links and opens what the fast path needs: a
// raw SYN socket and an ARP sweeper on each link with targets. It needs
// CAP_NET_RAW; once it has returned, the process needs it no more. A link
// that cannot be opened is no failure: its addresses go on unswept, and
// Notes says so.
func OpenRaw(addrs []netip.Addr, links []Link, cfg Config) (*Engine, error) {
	raw, err := synscan.NewRaw(cfg.SYN)
	if err != nil {
		return nil, err
	}
	e := &Engine{addrs: addrs, plan: NewPlan(addrs, links), sweepers: map[string]Sweeper{}, ports: raw, raw: true, arp: cfg.ARP, learn: raw.Learn, ifindex: map[string]int{}}
	for _, name := range e.plan.LinkNames() {
		s, err := arpscan.Dial(name)
		if err != nil {
			e.notes = append(e.notes, fmt.Errorf("ARP sweep on %s: %w; its %d addresses go on unswept", name, err, len(e.plan.OnLink[name])))
			continue
		}
		e.sweepers[name] = s
		// The hosts the sweep finds get their SYNs as Ethernet frames
		// to the MAC that answered: without the link, through the
		// kernel's own neighbour resolution.
		if ifi, err := net.InterfaceByName(name); err == nil && raw.AddLink(ifi) == nil {
			e.ifindex[name] = ifi.Index
		}
	}
	return e, nil
}

// NewConnect returns the engine of the path without privilege: every
// address is dialled with connect(), no sweep.
func NewConnect(addrs []netip.Addr, cfg Config) *Engine {
	return New(addrs, Parts{Plan: Plan{Direct: addrs}, Ports: synscan.NewConnect(cfg.SYN), Config: cfg})
}

// Parts are what New assembles an engine from.
type Parts struct {
	Plan Plan
	// Sweepers sweep the plan's links, by name; a link without one goes
	// on unswept.
	Sweepers map[string]Sweeper
	Ports    synscan.Scanner
	// Learn, if set, is told the MAC each host the sweep finds answered
	// from, with the index of its link (Raw.Learn).
	Learn func(a netip.Addr, ifindex int, mac net.HardwareAddr)
	// Raw says Ports sends raw SYNs, and open ports go on to
	// verification; else Ports dials, and the dial is the probe.
	Raw    bool
	Config Config
}

// New assembles an engine from its parts, for tests and callers that
// open their own sockets.
func New(addrs []netip.Addr, p Parts) *Engine {
	if p.Sweepers == nil {
		p.Sweepers = map[string]Sweeper{}
	}
	return &Engine{addrs: addrs, plan: p.Plan, sweepers: p.Sweepers, ports: p.Ports, raw: p.Raw, arp: p.Config.ARP, learn: p.Learn, ifindex: map[string]int{}}
}

// Raw reports whether the engine is on the fast path.
func (e *Engine) Raw() bool { return e.raw }

// Notes says what the plan could not do as planned.
func (e *Engine) Notes() []error { return e.notes }

// Close closes the sockets, all at once: the kernel waits for an RCU
// grace period (milliseconds) to release each packet socket, and one
// after the other they would add up to much of a short scan's time.
func (e *Engine) Close() error {
	var wg sync.WaitGroup
	for _, s := range e.sweepers {
		wg.Go(func() { s.Close() })
	}
	err := e.ports.Close()
	wg.Wait()
	return err
}

// Stats count what one run did. One value for both commands: the
// fields a path does not use stay 0.
type Stats struct {
	Addresses int // targets
	Swept     int // ARP-swept
	Live      int // of which answered
	Direct    int // went on unswept: routed, IPv6, the host's own, or a link that could not be swept
	Down      int // addresses silent to the sweep, or unreachable to connect()
	// Port probes' results, one per address and port.
	Open, Closed, Filtered int
	SYNSent                int // raw SYN probes, retries included
	Connections            int // connect() attempts by the port probes, retries included
	// Dropped counts the answers (ARP replies, SYN-ACKs and RSTs) this
	// host's reading sockets dropped for want of room; Unsure the
	// results reported down or filtered although answers were dropped
	// after their last try: they may be wrong.
	Dropped, Unsure int
	// A probe round's verification: addresses dialled, and what they
	// were (Agents counts hosts once in a broadcast round).
	Probed, Agents, Busy, Rejected, NotAgents, Errors int
	// A broadcast round's queries sent, addresses that answered, and
	// answers dropped past discovery's bounds; and the hosts that
	// answered the query and not a connection to the agent port.
	Queries, Answers, Capped int
	TCPFiltered              int
}

// Errors of the results Probe sends for the addresses it ruled out.
var (
	errNoARP       = errors.New("no ARP reply (host down)")
	errSynClosed   = errors.New("connection refused (RST to a SYN: no agent listening on that port)")
	errSynFiltered = errors.New("no answer to SYN probes (the port is filtered)")
)

// Scan probes every port of every target and sends one result per
// address and port on out: Down for the addresses silent to the sweep.
// It does not close out.
func (e *Engine) Scan(ctx context.Context, ports []uint16, out chan<- synscan.Result) (Stats, error) {
	if !e.raw && len(ports) > 1 {
		return e.scanConnect(ctx, ports, out)
	}
	r := e.start(ctx)
	defer r.cancel()
	livec := r.sweepLinks(func(a netip.Addr) bool {
		for _, p := range ports {
			if !send(r, out, synscan.Result{Target: synscan.Target{Addr: a, Port: p}, State: synscan.Down}) {
				return false
			}
		}
		return true
	})
	results := make(chan synscan.Result, 64)
	r.wg.Go(func() { r.scanPorts(livec, ports, results) })
	for res := range results {
		send(r, out, res)
	}
	return r.finish()
}

// scanConnect is Scan on the connect() path, with host discovery first,
// as nmap's: every address's first port is dialled, and only the
// addresses that answer it (a connection, or a refusal) get the other
// ports. An address that does not (the kernel found no host, or nothing
// came) is down, and so are its ports, as on the fast path for an
// address silent to ARP: dialling every port of an empty address costs
// the kernel's neighbour resolution for each, seconds a port.
func (e *Engine) scanConnect(ctx context.Context, ports []uint16, out chan<- synscan.Result) (Stats, error) {
	r := e.start(ctx)
	defer r.cancel()
	r.count(func(st *Stats) { st.Direct += len(e.addrs) })
	all := make(chan live)
	r.wg.Go(func() {
		defer close(all)
		for _, a := range e.addrs {
			if !send(r, all, live{addr: a}) {
				return
			}
		}
	})
	first := make(chan synscan.Result, 64)
	r.wg.Go(func() { r.scanPorts(all, ports[:1], first) })
	var up []netip.Addr
	for res := range first {
		switch res.State {
		case synscan.Open, synscan.Closed:
			up = append(up, res.Addr)
			send(r, out, res)
			continue
		}
		// Down, or silent: the address is down, its ports with it.
		r.count(func(st *Stats) {
			if res.State == synscan.Filtered {
				st.Filtered--
			}
			r.markDown(res.Addr)
		})
		for _, p := range ports {
			if !send(r, out, synscan.Result{Target: synscan.Target{Addr: res.Addr, Port: p}, State: synscan.Down}) {
				break
			}
		}
	}
	rest := make(chan live)
	r.wg.Go(func() {
		defer close(rest)
		for _, a := range up {
			if !send(r, rest, live{addr: a}) {
				return
			}
		}
	})
	results := make(chan synscan.Result, 64)
	r.wg.Go(func() { r.scanPorts(rest, ports[1:], results) })
	for res := range results {
		send(r, out, res)
	}
	return r.finish()
}

// Probe runs a probe round: on the fast path the hosts that answer the
// sweep get a SYN to v's port and the open ones are verified; on the
// connect() path every target is dialled and verified. Its error is the
// first stage's failure, or ctx's; the round has what was found by then.
func (e *Engine) Probe(ctx context.Context, v *verify.Verifier, opts RoundOptions) (*Round, error) {
	start := time.Now()
	method := MethodConnect
	if e.raw {
		method = MethodRaw
	}
	c := newCollector(method, opts)
	ruled, verified := make(chan verify.Result), make(chan verify.Result)
	fin := make(chan error, 1)
	var st Stats
	go func() {
		var err error
		st, err = e.probe(ctx, v, ruled, verified)
		close(ruled)
		close(verified)
		fin <- err
	}()
	for ruled != nil || verified != nil {
		select {
		case res, ok := <-ruled:
			if !ok {
				ruled = nil
				continue
			}
			c.add(res, false)
		case res, ok := <-verified:
			if !ok {
				verified = nil
				continue
			}
			c.add(res, true)
		}
	}
	err := <-fin
	r := c.round
	counts := r.Stats
	r.Stats = st
	r.Stats.Probed, r.Stats.Agents, r.Stats.Busy, r.Stats.Rejected, r.Stats.NotAgents, r.Stats.Errors =
		counts.Probed, counts.Agents, counts.Busy, counts.Rejected, counts.NotAgents, counts.Errors
	if !e.raw {
		// Without SYN probes, the open ports are those that answered
		// the dial.
		r.Stats.Open = counts.Agents + counts.Busy + counts.Rejected + counts.NotAgents
	}
	r.Results = c.results(c.all)
	r.start = start
	r.Elapsed = time.Since(start)
	r.Complete = err == nil
	targets := make(map[netip.Addr]bool, len(e.addrs))
	for _, a := range e.addrs {
		targets[a] = true
	}
	r.looked = func(a netip.Addr) bool { return targets[a] }
	r.port = v.Port
	return r, err
}

// probe is Probe's stages: it sends the result of every target the sweep
// or the SYN probes ruled out on ruled, and of every target dialled on
// verified; it closes neither.
func (e *Engine) probe(ctx context.Context, v *verify.Verifier, ruled, verified chan<- verify.Result) (Stats, error) {
	r := e.start(ctx)
	defer r.cancel()
	if !e.raw {
		r.fail(v.Run(r.ctx, e.addrs, verified))
		return r.finish()
	}
	port := uint16(v.Port)
	ruledOut := func(res verify.Result) bool { return send(r, ruled, res) }
	livec := r.sweepLinks(func(a netip.Addr) bool {
		return ruledOut(verify.Result{Addr: a, Port: v.Port, Status: verify.Down, Reason: verify.ReasonNoARP, Err: errNoARP})
	})
	results := make(chan synscan.Result, 64)
	r.wg.Go(func() { r.scanPorts(livec, []uint16{port}, results) })
	open := make(chan verify.Target)
	r.wg.Go(func() {
		defer close(open)
		for res := range results {
			var vr verify.Result
			switch res.State {
			case synscan.Open:
				// The SYN-ACK's round trip tells the verification
				// what to expect.
				send(r, open, verify.Target{Addr: res.Addr, RTT: res.RTT})
				continue
			case synscan.Closed:
				vr = verify.Result{Addr: res.Addr, Port: v.Port, Status: verify.Closed, Reason: verify.ReasonRefused, Err: errSynClosed}
			case synscan.Down:
				vr = verify.Result{Addr: res.Addr, Port: v.Port, Status: verify.Down, Reason: verify.ReasonUnreach, Err: errNoARP}
			default:
				vr = verify.Result{Addr: res.Addr, Port: v.Port, Status: verify.Filtered, Reason: verify.ReasonTimeout, Err: errSynFiltered}
			}
			ruledOut(vr)
		}
	})
	r.fail(v.Stream(r.ctx, open, verified))
	// finish waits for every stage: none sends after probe returns.
	return r.finish()
}

// run is one Scan or Probe.
type run struct {
	e      *Engine
	ctx    context.Context
	cancel context.CancelFunc
	parent context.Context
	wg     sync.WaitGroup // the stages' goroutines

	mu   sync.Mutex
	st   Stats
	errs []error
	down map[netip.Addr]bool // counted in st.Down
}

func (e *Engine) start(ctx context.Context) *run {
	r := &run{e: e, parent: ctx, down: map[netip.Addr]bool{}}
	r.ctx, r.cancel = context.WithCancel(ctx)
	r.st.Addresses = len(e.addrs)
	return r
}

// fail records a stage's error and stops the run: a run that lost a
// stage is not a complete run. Errors of a cancelled run are not the
// stage's.
func (r *run) fail(err error) {
	if err == nil || r.ctx.Err() != nil && errors.Is(err, context.Canceled) {
		return
	}
	r.mu.Lock()
	r.errs = append(r.errs, err)
	r.mu.Unlock()
	r.cancel()
}

// note records an error that does not stop the run.
func (r *run) note(err error) {
	r.mu.Lock()
	r.errs = append(r.errs, err)
	r.mu.Unlock()
}

// send sends v on ch unless the run stops first; it reports whether it
// sent.
func send[T any](r *run, ch chan<- T, v T) bool {
	select {
	case ch <- v:
		return true
	case <-r.ctx.Done():
		return false
	}
}

func (r *run) finish() (Stats, error) {
	r.cancel()
	r.wg.Wait()
	r.mu.Lock()
	defer r.mu.Unlock()
	errs := r.errs
	if err := r.parent.Err(); err != nil {
		errs = append([]error{err}, errs...)
	}
	return r.st, errors.Join(errs...)
}

// markDown counts a down address once, with the run locked.
func (r *run) markDown(a netip.Addr) {
	if !r.down[a] {
		r.down[a] = true
		r.st.Down++
	}
}

func (r *run) count(f func(st *Stats)) {
	r.mu.Lock()
	f(&r.st)
	r.mu.Unlock()
}

// live is a host worth a port probe, with the round trip its ARP reply
// took (0: not swept).
type live struct {
	addr        netip.Addr
	rtt, rttMax time.Duration // see arpscan.Result
}

// sweepLinks passes on the hosts worth probing as they are known: the
// on-link ones that answer their link's sweep, and the direct ones. down
// is called for each address a sweep found silent; it reports false when
// the run has stopped. A sweep that breaks off passes on its addresses
// that have not answered (the port probes find them) and is recorded as
// an error of the run. The channel is closed when discovery is done.
func (r *run) sweepLinks(down func(netip.Addr) bool) <-chan live {
	out := make(chan live)
	send := func(l live) bool {
		select {
		case out <- l:
			return true
		case <-r.ctx.Done():
			return false
		}
	}
	var wg sync.WaitGroup
	direct := r.e.plan.Direct
	for _, name := range r.e.plan.LinkNames() {
		group := r.e.plan.OnLink[name]
		s := r.e.sweepers[name]
		if s == nil {
			direct = append(direct[:len(direct):len(direct)], group...)
			continue
		}
		wg.Go(func() { r.sweep(name, s, group, send, down) })
	}
	r.count(func(st *Stats) { st.Direct += len(direct) })
	wg.Go(func() {
		for _, a := range direct {
			if !send(live{addr: a}) {
				return
			}
		}
	})
	r.wg.Go(func() {
		wg.Wait()
		close(out)
	})
	return out
}

func (r *run) sweep(name string, s Sweeper, group []netip.Addr, send func(live) bool, down func(netip.Addr) bool) {
	found := make(chan arpscan.Result)
	forwarded := make(chan struct{})
	answered := make(map[netip.Addr]bool, len(group))
	ifindex, linked := r.e.ifindex[name]
	go func() {
		defer close(forwarded)
		for res := range found {
			answered[res.IP] = true
			if r.e.learn != nil && linked {
				r.e.learn(res.IP, ifindex, res.MAC)
			}
			if !send(live{addr: res.IP, rtt: res.RTT, rttMax: res.RTTMax}) {
				// Keep reading: the sweep sends until it sees the
				// run stopped.
				for range found {
				}
				return
			}
		}
	}()
	_, sst, err := s.Scan(r.ctx, group, r.e.arp, found)
	close(found)
	<-forwarded
	r.count(func(st *Stats) {
		st.Swept += len(group)
		st.Live += len(answered)
		st.Dropped += sst.Dropped
		st.Unsure += sst.Unsure
	})
	if r.ctx.Err() != nil {
		return
	}
	if err != nil {
		r.note(fmt.Errorf("ARP sweep on %s: %w", name, err))
		n := 0
		for _, a := range group {
			if !answered[a] {
				n++
				if !send(live{addr: a}) {
					break
				}
			}
		}
		r.count(func(st *Stats) { st.Direct += n })
		return
	}
	for _, a := range group {
		if !answered[a] {
			r.count(func(st *Stats) { r.markDown(a) })
			if !down(a) {
				return
			}
		}
	}
}

// scanPorts probes ports on every host from in and sends each result on
// results, which it closes when done. A swept host's probes carry the
// round trip its ARP reply took, which their waits follow. A scanner that
// fails stops the run.
func (r *run) scanPorts(in <-chan live, ports []uint16, results chan<- synscan.Result) {
	defer close(results)
	// Buffered, so that the scanner finds its next targets ready and sends
	// their probes in batches.
	targets := make(chan synscan.Target, 256)
	go func() {
		defer close(targets)
		for l := range in {
			for _, p := range ports {
				select {
				case targets <- synscan.Target{Addr: l.addr, Port: p, RTT: l.rtt, RTTMax: l.rttMax}:
				case <-r.ctx.Done():
					// Drain, so that discovery never blocks.
					for range in {
					}
					return
				}
			}
		}
	}()
	raw := make(chan synscan.Result, 64)
	go func() {
		defer close(raw)
		st, err := r.e.ports.Stream(r.ctx, targets, raw)
		r.fail(err)
		// A scanner that stopped early leaves the feeder sending: the
		// run is cancelled, and this lets it see so.
		for range targets {
		}
		r.count(func(s *Stats) {
			if r.e.raw {
				s.SYNSent += st.Sent
			} else {
				s.Connections += st.Sent
			}
			s.Dropped += st.Dropped
			s.Unsure += st.Unsure
		})
	}()
	for res := range raw {
		r.count(func(st *Stats) {
			switch res.State {
			case synscan.Open:
				st.Open++
			case synscan.Closed:
				st.Closed++
			case synscan.Down:
				r.markDown(res.Addr)
			default:
				st.Filtered++
			}
		})
		if !send(r, results, res) {
			for range raw {
			}
			return
		}
	}
}
