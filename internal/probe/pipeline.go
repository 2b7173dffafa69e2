package probe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/ifl-project/ifl/arpscan"
	"github.com/ifl-project/ifl/internal/netinfo"
	"github.com/ifl-project/ifl/synscan"
)

// Pipeline is ifl probe's fast path: targets on a directly attached segment
// are ARP-swept first and only the hosts that answer go on; routed targets
// go on directly. With a SYN scanner, those hosts get a SYN to the agent
// port and only the open ones are dialled and verified; without one every
// host that went on is dialled. The stages stream into each other, so the
// handshake with the first agent runs while the sweep goes on.
type Pipeline struct {
	Prober *Prober
	// ARP tunes the sweeps; nil means arpscan's defaults.
	ARP *arpscan.Config
	// Sweepers sweep the on-link targets; targets on an interface without
	// one go on unswept.
	Sweepers Sweepers
	// SYN, if set, finds the hosts with the agent port open.
	SYN synscan.Scanner
	// Settled, if set, is called with the number of addresses a sweep
	// ruled out (they did not answer ARP), for progress reporting. It may
	// be called from several goroutines at once.
	Settled func(n int)
	// All, if set, makes Run send a Result for every address it rules
	// out too: Down for those silent to ARP, Closed and Filtered for the
	// SYN probes' answers. Then every target has a Result, as on the
	// connect() path.
	All bool
}

// PipelineStats count what the pipeline did besides probing.
type PipelineStats struct {
	DiscoverStats
	// SYN results, with a SYN scanner.
	SynSent, SynOpen, SynClosed, SynFiltered int
}

// Plan splits targets into those on the subnets of an Ethernet interface
// (by interface name) and the rest.
func Plan(addrs []netip.Addr) (onLink map[string][]netip.Addr, routed []netip.Addr) {
	type subnet struct {
		ifname string
		prefix netip.Prefix
	}
	var subnets []subnet
	// The host's own addresses answer no ARP request of its own: they
	// go on unswept, as connect() finds them.
	own := map[netip.Addr]bool{}
	ifis, _ := net.Interfaces()
	for _, ifi := range ifis {
		if ifi.Flags&net.FlagUp == 0 || ifi.Flags&net.FlagLoopback != 0 || len(ifi.HardwareAddr) != 6 {
			continue
		}
		ps, _ := netinfo.IPv4Prefixes(&ifi)
		for _, p := range ps {
			own[p.Addr()] = true
			subnets = append(subnets, subnet{ifi.Name, p.Masked()})
		}
	}
	onLink = map[string][]netip.Addr{}
next:
	for _, a := range addrs {
		if own[a] {
			routed = append(routed, a)
			continue
		}
		for _, s := range subnets {
			if s.prefix.Contains(a) {
				onLink[s.ifname] = append(onLink[s.ifname], a)
				continue next
			}
		}
		routed = append(routed, a)
	}
	return onLink, routed
}

// DiscoverStats count what Discover did.
type DiscoverStats struct {
	Swept int // addresses ARP-swept
	Live  int // of which answered
	// Direct is how many addresses went on without a sweep: routed, or on
	// an interface that could not be swept.
	Direct int
}

// Sweepers are ARP scanners by interface name, opened ahead so that a
// process can drop its privileges and still sweep, again and again.
type Sweepers map[string]*arpscan.Scanner

// OpenSweepers opens an ARP scanner on every interface that has some of
// addrs on its subnets. An interface that cannot be opened is left out:
// its addresses are then probed without a sweep.
func OpenSweepers(addrs []netip.Addr) Sweepers {
	onLink, _ := Plan(addrs)
	sw := Sweepers{}
	for ifname := range onLink {
		if s, err := arpscan.Dial(ifname); err == nil {
			sw[ifname] = s
		}
	}
	return sw
}

// Close closes every scanner.
func (sw Sweepers) Close() {
	for _, s := range sw {
		s.Close()
	}
}

// Discover passes on the addresses worth probing, as they are known: the
// on-link ones that answer an ARP sweep by one of sweepers, and every other
// one. settled, if set, is called (from any goroutine) with the addresses
// a sweep ruled out. The channel is closed when discovery is
// done; stats may be called after that.
func Discover(ctx context.Context, addrs []netip.Addr, sweepers Sweepers, cfg *arpscan.Config, settled func(silent []netip.Addr)) (<-chan netip.Addr, func() DiscoverStats) {
	onLink, routed := Plan(addrs)
	var live, swept, fallback atomic.Int64
	in := make(chan netip.Addr)
	send := func(a netip.Addr) bool {
		select {
		case in <- a:
			return true
		case <-ctx.Done():
			return false
		}
	}
	direct := append([]netip.Addr(nil), routed...)
	var scanners []*arpscan.Scanner
	var groups [][]netip.Addr
	for ifname, group := range onLink {
		s := sweepers[ifname]
		if s == nil {
			direct = append(direct, group...)
			continue
		}
		scanners = append(scanners, s)
		groups = append(groups, group)
	}
	var wg sync.WaitGroup
	for i, s := range scanners {
		wg.Add(1)
		go func() {
			defer wg.Done()
			group := groups[i]
			found := make(chan arpscan.Result)
			done := make(chan struct{})
			answered := map[netip.Addr]bool{}
			go func() {
				defer close(done)
				for r := range found {
					answered[r.IP] = true
					send(r.IP)
				}
			}()
			_, _, err := s.Scan(ctx, group, cfg, found)
			close(found)
			<-done
			live.Add(int64(len(answered)))
			swept.Add(int64(len(group)))
			if err != nil && ctx.Err() == nil {
				// The sweep broke off: pass the rest on rather than
				// miss them.
				for _, a := range group {
					if !answered[a] {
						fallback.Add(1)
						if !send(a) {
							return
						}
					}
				}
				return
			}
			if settled != nil {
				silent := make([]netip.Addr, 0, len(group)-len(answered))
				for _, a := range group {
					if !answered[a] {
						silent = append(silent, a)
					}
				}
				settled(silent)
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for _, a := range direct {
			if !send(a) {
				return
			}
		}
	}()
	go func() {
		wg.Wait()
		close(in)
	}()
	return in, func() DiscoverStats {
		return DiscoverStats{Swept: int(swept.Load()), Live: int(live.Load()), Direct: len(direct) + int(fallback.Load())}
	}
}

// Errors of the results that Run sends with All.
var (
	errNoARP       = errors.New("no ARP reply (host down)")
	errSynClosed   = errors.New("connection refused (RST to a SYN: no agent listening on that port)")
	errSynFiltered = errors.New("no answer to SYN probes (the port is filtered)")
)

// Run sweeps and probes addrs, sending one Result per probed address on out
// (and with All one per address ruled out). It does not close out.
//
// A SYN scanner that fails (a send error) stops the whole run, which
// returns that error with what it found so far: a run that lost its SYN
// stage is not a complete run.
func (pl *Pipeline) Run(ctx context.Context, addrs []netip.Addr, out chan<- Result) (PipelineStats, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var st PipelineStats
	var synErr error // written before synDone is closed
	settled := func(silent []netip.Addr) {
		if pl.Settled != nil {
			pl.Settled(len(silent))
		}
		if !pl.All {
			return
		}
		for _, a := range silent {
			r := Result{Addr: a, Port: pl.Prober.Port, Status: Down, Reason: ReasonNoARP, Err: errNoARP}
			select {
			case out <- r:
			case <-ctx.Done():
				return
			}
		}
	}
	in, dstats := Discover(ctx, addrs, pl.Sweepers, pl.ARP, settled)
	var probeIn <-chan netip.Addr = in
	synDone := make(chan struct{})
	if pl.SYN != nil {
		probeIn = pl.synStage(ctx, in, out, &st, synDone, func(err error) {
			synErr = err
			cancel()
		})
	} else {
		close(synDone)
	}
	err := pl.Prober.Stream(ctx, probeIn, out)
	<-synDone
	st.DiscoverStats = dstats()
	if synErr != nil {
		return st, fmt.Errorf("SYN scan: %w", synErr)
	}
	return st, err
}

// synStage sends a SYN to the agent port of every IPv4 address from live
// and passes on the open ones, and every IPv6 address as it is (the raw
// path speaks IPv4 only: the prober dials those). The returned channel is
// closed when the scan is done; done is closed after the last write to st.
// A scanner error is handed to fail before done is closed.
func (pl *Pipeline) synStage(ctx context.Context, live <-chan netip.Addr, out chan<- Result, st *PipelineStats, done chan<- struct{}, fail func(error)) <-chan netip.Addr {
	targets := make(chan synscan.Target)
	results := make(chan synscan.Result, 64)
	bypass := make(chan netip.Addr)
	open := make(chan netip.Addr)
	port := uint16(pl.Prober.Port)
	go func() {
		defer close(targets)
		defer close(bypass)
		for a := range live {
			if !a.Is4() {
				select {
				case bypass <- a:
				case <-ctx.Done():
					return
				}
				continue
			}
			select {
			case targets <- synscan.Target{Addr: a, Port: port}:
			case <-ctx.Done():
				return
			}
		}
	}()
	var forwarded sync.WaitGroup
	forwarded.Add(1)
	go func() {
		defer forwarded.Done()
		for a := range bypass {
			select {
			case open <- a:
			case <-ctx.Done():
			}
		}
	}()
	var sst synscan.Stats
	scanned := make(chan struct{})
	go func() {
		var err error
		sst, err = pl.SYN.Stream(ctx, targets, results)
		if err != nil && ctx.Err() == nil {
			fail(err)
		}
		close(results)
		// A scanner that stopped early leaves the feeder sending: let
		// it finish (fail cancelled its context) rather than block.
		for range targets {
		}
		close(scanned)
	}()
	go func() {
		defer close(done)
		for r := range results {
			switch r.State {
			case synscan.Open:
				st.SynOpen++
				select {
				case open <- r.Addr:
				case <-ctx.Done():
				}
				continue
			case synscan.Closed:
				st.SynClosed++
			default:
				st.SynFiltered++
			}
			if pl.Settled != nil {
				pl.Settled(1)
			}
			if pl.All {
				res := Result{Addr: r.Addr, Port: pl.Prober.Port, Status: Closed, Reason: ReasonRefused, Err: errSynClosed}
				if r.State != synscan.Closed {
					res.Status, res.Reason, res.Err = Filtered, ReasonTimeout, errSynFiltered
				}
				select {
				case out <- res:
				case <-ctx.Done():
				}
			}
		}
		<-scanned
		st.SynSent = sst.Sent
		forwarded.Wait()
		close(open)
	}()
	return open
}
