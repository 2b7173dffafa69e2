package engine

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/ifl-project/ifl/internal/controller/discover"
	"github.com/ifl-project/ifl/internal/controller/inventory"
	"github.com/ifl-project/ifl/internal/controller/verify"
	"github.com/ifl-project/ifl/internal/support/netinfo"
)

// BroadcastPlan is where a broadcast round's queries go and which answers
// count.
type BroadcastPlan struct {
	Dests []netip.AddrPort
	// Accept narrows the answers to the targets, nil for none: only the
	// links queried may answer anyway (discover.Reach).
	Accept func(netip.Addr) bool
	// Size is how many addresses the targets hold, as many as an int
	// holds if more.
	Size int
}

// Broadcast runs a broadcast round: discovery's query to the plan's
// links, then the verification of every address that answered, as the
// answers come. Only what was verified counts as looked at: a host that
// did not answer the query may be there still, and is not reported
// unseen.
func Broadcast(ctx context.Context, plan *BroadcastPlan, v *verify.Verifier, opts RoundOptions) (*Round, error) {
	start := time.Now()
	d := &discover.Discoverer{Key: v.Key, Port: v.Port, Accept: plan.Accept, Known: verifiedIn(opts.Known)}
	answers := make(chan discover.Answer)
	targets := make(chan verify.Target)
	results := make(chan verify.Result)
	var dst discover.Stats
	derr := make(chan error, 1)
	go func() {
		var err error
		dst, err = d.Run(ctx, plan.Dests, answers)
		close(answers)
		derr <- err
	}()
	go func() {
		defer close(targets)
		for a := range answers {
			select {
			// The answer's round trip is the host's: its port is
			// given a few of them to answer a connection, not the
			// timeout of a host nothing is known of.
			case targets <- verify.Target{Addr: a.Addr, RTT: a.RTT, Answered: true}:
			case <-ctx.Done():
			}
		}
	}()
	verr := make(chan error, 1)
	go func() {
		verr <- v.Stream(ctx, targets, results)
		close(results)
	}()
	c := newCollector(MethodBroadcast, opts)
	for res := range results {
		c.add(res, true)
	}
	err := <-verr
	if derr := <-derr; derr != nil && err == nil {
		err = derr
	}
	r := c.round
	r.Stats.Addresses = plan.Size
	r.Stats.Queries, r.Stats.Answers, r.Stats.Capped = dst.Queries, dst.Answers, dst.Capped
	r.Results = c.results(mergeByIdentity(c.all))
	r.Stats.Agents = 0
	for _, res := range r.Results {
		if res.Status == verify.Agent {
			r.Stats.Agents++
		}
	}
	if dst.Capped > 0 {
		r.Warnings = append(r.Warnings, fmt.Sprintf("%s dropped past discovery's bounds (more than %d addresses of one kind claiming one identity, or %d for one query): forged by a holder of the network key on the link, or agents on more subnets of one link than that",
			count(dst.Capped, "answer"), discover.MaxAddrsPerKind, discover.MaxAnswersPerQuery))
	}
	if err == nil && len(r.Observations) == 0 && opts.Known != nil {
		if n := knownOnLinks(opts.Known, plan); n > 0 {
			r.Silent = fmt.Errorf("no agent answered, though the inventory has %s on these links: this controller's network key is not the fleet's (agents answer no other; compare the ids of ifl keycheck here and on an agent), the queries or the answers were lost, or drowned out (a holder of the network key flooding the link with queries can do that)", count(n, "agent"))
		}
	}
	probed := make(map[netip.Addr]bool, len(c.all))
	for _, res := range c.all {
		probed[res.Addr] = true
	}
	r.looked = func(a netip.Addr) bool { return probed[a] }
	r.port = v.Port
	r.start = start
	r.Elapsed = time.Since(start)
	r.Complete = err == nil
	return r, err
}

// verifiedIn returns whether the inventory has an address verified as an
// identity's; nil for no inventory.
func verifiedIn(st *inventory.State) func(string, netip.Addr) bool {
	if st == nil {
		return nil
	}
	return func(id string, a netip.Addr) bool {
		h := st.Hosts[id]
		return h != nil && slices.Contains(verifiedAddrs(h), a)
	}
}

// verifiedAddrs are the addresses where h proved its identity; a state
// written before they were kept has only its last address.
func verifiedAddrs(h *inventory.Host) []netip.Addr {
	var out []netip.Addr
	for _, v := range h.Verified {
		if a, err := netip.ParseAddr(v.Addr); err == nil {
			out = append(out, a)
		}
	}
	if a, err := netip.ParseAddr(h.IP); err == nil && len(out) == 0 {
		out = append(out, a)
	}
	return out
}

// knownOnLinks counts the agents of the inventory verified at an address
// that could have answered the round: on the links queried, among the
// targets.
func knownOnLinks(st *inventory.State, plan *BroadcastPlan) int {
	reach, err := discover.Reach(plan.Dests)
	if err != nil {
		return 0
	}
	n := 0
	for _, h := range st.Hosts {
		for _, a := range verifiedAddrs(h) {
			if reach(a) && (plan.Accept == nil || plan.Accept(a)) {
				n++
				break
			}
		}
	}
	return n
}

// mergeByIdentity lists each verified agent once: at its IPv4 address if
// it has one (then a global IPv6, then a link-local one), with the others
// in Also. Other results stay as they are.
func mergeByIdentity(rs []verify.Result) []verify.Result {
	rank := netinfo.Kind
	byID := map[string]int{}
	var out []verify.Result
	for _, res := range rs {
		if res.Status != verify.Agent || res.Identity == "" {
			out = append(out, res)
			continue
		}
		i, ok := byID[res.Identity]
		if !ok {
			byID[res.Identity] = len(out)
			out = append(out, res)
			continue
		}
		first := &out[i]
		if rank(res.Addr) < rank(first.Addr) || (rank(res.Addr) == rank(first.Addr) && res.Addr.Less(first.Addr)) {
			res.Also = append(first.Also, first.Addr)
			*first = res
		} else {
			first.Also = append(first.Also, res.Addr)
		}
		slices.SortFunc(first.Also, func(a, b netip.Addr) int { return a.Compare(b) })
	}
	return out
}

// count is n and the noun, plural unless n is 1.
func count(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
