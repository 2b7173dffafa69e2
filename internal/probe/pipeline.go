package probe

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/ifl-project/ifl/arpscan"
)

// Pipeline is ifl probe's fast path: targets on a directly attached segment
// are ARP-swept first and only the hosts that answer are probed; routed
// targets are probed directly. Both streams feed one Prober, so the
// handshake with the first live host runs while the sweep goes on.
type Pipeline struct {
	Prober *Prober
	// ARP tunes the sweeps; nil means arpscan's defaults.
	ARP *arpscan.Config
	// Settled, if set, is called with the number of addresses a sweep
	// ruled out (they did not answer ARP), for progress reporting. It may
	// be called from several goroutines at once.
	Settled func(n int)
}

// PipelineStats count what the pipeline did besides probing.
type PipelineStats struct {
	Swept int // addresses ARP-swept
	Live  int // of which answered
	// Direct is how many addresses were probed without a sweep: routed,
	// or on an interface that could not be swept.
	Direct int
}

// Plan splits targets into those on the subnets of an Ethernet interface
// (by interface name) and the rest.
func Plan(addrs []netip.Addr) (onLink map[string][]netip.Addr, routed []netip.Addr) {
	type subnet struct {
		ifname string
		prefix netip.Prefix
	}
	var subnets []subnet
	ifis, _ := net.Interfaces()
	for _, ifi := range ifis {
		if ifi.Flags&net.FlagUp == 0 || ifi.Flags&net.FlagLoopback != 0 || len(ifi.HardwareAddr) != 6 {
			continue
		}
		as, _ := ifi.Addrs()
		for _, a := range as {
			if ipn, ok := a.(*net.IPNet); ok {
				if ip, ok := netip.AddrFromSlice(ipn.IP); ok && ip.Unmap().Is4() {
					ones, _ := ipn.Mask.Size()
					subnets = append(subnets, subnet{ifi.Name, netip.PrefixFrom(ip.Unmap(), ones).Masked()})
				}
			}
		}
	}
	onLink = map[string][]netip.Addr{}
next:
	for _, a := range addrs {
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

// Run sweeps and probes addrs, sending one Result per probed address on out
// (addresses silent to ARP produce none). It does not close out.
func (pl *Pipeline) Run(ctx context.Context, addrs []netip.Addr, out chan<- Result) (PipelineStats, error) {
	onLink, routed := Plan(addrs)
	var st PipelineStats
	var live, swept atomic.Int64
	in := make(chan netip.Addr)
	send := func(a netip.Addr) bool {
		select {
		case in <- a:
			return true
		case <-ctx.Done():
			return false
		}
	}
	var direct []netip.Addr
	direct = append(direct, routed...)
	var scanners []*arpscan.Scanner
	var groups [][]netip.Addr
	for ifname, group := range onLink {
		s, err := arpscan.Dial(ifname)
		if err != nil {
			direct = append(direct, group...)
			continue
		}
		scanners = append(scanners, s)
		groups = append(groups, group)
	}
	st.Direct = len(direct)

	var wg sync.WaitGroup
	var fallback atomic.Int64
	for i, s := range scanners {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer s.Close()
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
			_, _, err := s.Scan(ctx, group, pl.ARP, found)
			close(found)
			<-done
			live.Add(int64(len(answered)))
			swept.Add(int64(len(group)))
			if err != nil && ctx.Err() == nil {
				// The sweep broke off: probe the rest directly rather
				// than miss them.
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
			if pl.Settled != nil {
				pl.Settled(len(group) - len(answered))
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
	err := pl.Prober.Stream(ctx, in, out)
	st.Swept, st.Live = int(swept.Load()), int(live.Load())
	st.Direct += int(fallback.Load())
	return st, err
}
