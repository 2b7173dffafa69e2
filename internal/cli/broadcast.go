package cli

import (
	"context"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"time"

	"github.com/rs/zerolog"
	"go4.org/netipx"

	"github.com/ifl-project/ifl/internal/discover"
	"github.com/ifl-project/ifl/internal/inventory"
	"github.com/ifl-project/ifl/internal/netinfo"
	"github.com/ifl-project/ifl/internal/targets"
	"github.com/ifl-project/ifl/internal/verify"
)

// BroadcastFlags are ifl probe's flags for discovery by broadcast.
type BroadcastFlags struct {
	Broadcast      bool          `help:"Find agents with one authenticated UDP query to the broadcast (IPv4) and all-nodes (IPv6) addresses of the targets' links, sweeping none of them (a prefix of any size will do), and verify each address that answers with the handshake; needs no privilege. Misses agents whose firewall drops the UDP port and segments that filter broadcast."`
	BroadcastEvery time.Duration `name:"broadcast-every" default:"30s" placeholder:"INTERVAL" help:"With --watch: a broadcast round this often between full probes, so that a moved agent shows up within INTERVAL; 0 for none."`
}

const broadcastHelp = `--broadcast: one query (and one repeat, for loss) goes to each IPv4 subnet
broadcast address and to the IPv6 all-nodes address (ff02::1) of the links:
the default route's interface without targets, or the directly attached
links whose subnets overlap the targets (ff02::1 only where they hold IPv6
targets). Targets are never swept, so a prefix of any size will do
(2001:db8:48::/64), and answers from outside them are dropped, IPv6 ones
included. The ff02::1 query goes from the link's link-local address and
again from each of its global IPv6 addresses, so that agents answer at
their global addresses too. Agents holding the network key answer; each
address that answers then gets the full handshake and ping, and only that
makes it an agent. An agent answering at several addresses is one host,
listed at its IPv4 address (else a global IPv6 one) with the others under
also_at, and the inventory keeps them all. It takes a fraction of a
second and no capability, but it can miss agents: those whose firewall
drops the UDP port, those bound to one address, routed targets, and
segments that filter broadcast or multicast. A probe without --broadcast
finds them.

Queries leave with TTL 255, the only one agents answer, and an answer
counts only from the link its query went out on: no routed address is
ever dialled. A holder of the network key on the link can forge
answers; a round dials at most 2 addresses of each kind (IPv4,
link-local, other IPv6) claiming one identity, past those where the
inventory verified it, and 1,024 for one query. A round that hears no
agent while the inventory has agents on its links says so and exits 1.

--watch with --broadcast-every (default 30s): between the full probes, a
broadcast round that often, so that a moved agent shows up within it
without sweeping the segment; a broadcast round never reports a host
unseen (silence is not absence). --watch --broadcast makes every round a
broadcast round.`

// broadcastPlan is where the queries go and which answers count.
type broadcastPlan struct {
	dests []netip.AddrPort
	// accept narrows the answers to the targets, nil for none: only the
	// links queried may answer anyway (discover.Reach).
	accept func(netip.Addr) bool
	// size is how many addresses the targets hold, as many as an int
	// holds if more.
	size int
}

func (c *ProbeCmd) checkBroadcast() error {
	switch {
	case c.Broadcast && c.Connect:
		return fmt.Errorf("probe: --broadcast and --connect exclude each other")
	case c.Broadcast && c.Fast:
		return fmt.Errorf("probe: --broadcast and --fast exclude each other")
	case c.BroadcastEvery < 0 || (c.BroadcastEvery > 0 && c.BroadcastEvery < time.Second):
		return fmt.Errorf("--broadcast-every %v: want an interval of a second or more, such as 30s, or 0 for none", c.BroadcastEvery)
	}
	return nil
}

// planBroadcast finds the links to query, for --broadcast and for the
// broadcast rounds of --watch. For the latter a failure only means no
// such rounds.
func (r *prober) planBroadcast(env *Env) error {
	c := r.cmd
	if !c.Broadcast && (c.Watch == 0 || c.BroadcastEvery == 0 || c.BroadcastEvery >= c.Watch) {
		return nil
	}
	plan, err := c.broadcastPlan()
	switch {
	case err == nil:
		r.bcast = plan
	case c.Broadcast:
		return fmt.Errorf("probe --broadcast: %w", err)
	default:
		fmt.Fprintf(env.Stderr, "probe: no broadcast rounds between probes: %v\n", err)
	}
	return nil
}

// broadcastPlan plans for the targets expandTargets kept.
func (c *ProbeCmd) broadcastPlan() (*broadcastPlan, error) {
	set := c.TargetFlags.set
	if set == nil {
		set = &netipx.IPSet{}
	}
	size := math.MaxInt
	if n := targets.Count(set); n.IsInt64() && n.Int64() <= math.MaxInt {
		size = int(n.Int64())
	}
	if len(c.Targets) == 0 && c.InputList == "" {
		// The default targets: the default route's link, IPv6 too.
		ifname, err := netinfo.DefaultInterface()
		if err != nil {
			return nil, err
		}
		dests, err := discover.Destinations(ifname, c.Port, true)
		if err != nil {
			return nil, err
		}
		// Any address of the link may answer, IPv6 ones included, and
		// none from elsewhere.
		return &broadcastPlan{dests: dests, size: size}, nil
	}
	// The links whose subnets overlap the targets. A target keeps no
	// zone: a link-local one is on every link.
	dests, err := discover.LinkDestinations(c.Port, set.OverlapsPrefix)
	if err != nil {
		return nil, err
	}
	if len(dests) == 0 {
		hint := "probe without --broadcast to try every address"
		if size > maxForced {
			hint = "give a prefix of an attached link, or few enough addresses to probe each without --broadcast"
		}
		return nil, fmt.Errorf("no target is on a directly attached link with an IPv4 broadcast address or IPv6, and a query reaches no other (%s)", hint)
	}
	return &broadcastPlan{dests: dests, size: size, accept: func(a netip.Addr) bool { return set.Contains(a.WithZone("")) }}, nil
}

// onceBroadcast runs one broadcast round: the query, then the handshake
// with every address that answered, as the answers come.
func (r *prober) onceBroadcast(ctx context.Context) (*probeRun, error) {
	start := time.Now()
	// The inventory says where each agent was verified, so that forged
	// answers claiming an agent's identity cannot crowd out its own from
	// there, and whether a round that hears no agent should have.
	var known *inventory.State
	if r.statePath != "" {
		known, _ = inventory.Load(r.statePath) // checked when the probe started: a failure now only means no help
	}
	d := &discover.Discoverer{Key: r.p.Key, Port: r.cmd.Port, Accept: r.bcast.accept, Known: verifiedIn(known)}
	answers := make(chan discover.Answer)
	addrs := make(chan verify.Target)
	results := make(chan verify.Result)
	var dst discover.Stats
	derr := make(chan error, 1)
	go func() {
		var err error
		dst, err = d.Run(ctx, r.bcast.dests, answers)
		close(answers)
		derr <- err
	}()
	go func() {
		defer close(addrs)
		for a := range answers {
			select {
			case addrs <- verify.Target{Addr: a.Addr}:
			case <-ctx.Done():
			}
		}
	}()
	perr := make(chan error, 1)
	go func() {
		perr <- r.p.Stream(ctx, addrs, results)
		close(results)
	}()
	var all []verify.Result
	for res := range results {
		all = append(all, res)
	}
	runErr := <-perr
	if err := <-derr; err != nil && runErr == nil {
		runErr = err
	}
	s := summary{Addresses: r.bcast.size, Method: "broadcast", Queries: dst.Queries, Answers: dst.Answers}
	for _, res := range all {
		s.add(res)
	}
	found := mergeByIdentity(all)
	if !r.cmd.All {
		found = slices.DeleteFunc(found, func(res verify.Result) bool { return !res.Status.Open() })
	}
	s.Agents = 0
	for _, res := range found {
		if res.Status == verify.Agent {
			s.Agents++
		}
	}
	// Every verified address is an observation, not only the one a host
	// is listed at: the inventory learns a dual-stack host's IPv4 and
	// IPv6 addresses from one round, each with the facts its own
	// handshake returned.
	var obs []inventory.Observation
	for _, res := range all {
		if res.Status == verify.Agent {
			obs = append(obs, inventory.Observation{Identity: res.Identity, Addr: res.Addr, Port: res.Port, Facts: res.Facts})
		}
	}
	s.Seconds = time.Since(start).Seconds()
	s.Complete = runErr == nil
	sortResults(found)
	run := &probeRun{found: found, summary: s}
	if dst.Capped > 0 {
		run.warnings = append(run.warnings, fmt.Sprintf("%s dropped past discovery's bounds (more than %d addresses of one kind claiming one identity, or %d for one query): forged by a holder of the network key on the link, or agents on more subnets of one link than that",
			plural(dst.Capped, "answer"), discover.MaxAddrsPerKind, discover.MaxAnswersPerQuery))
	}
	if runErr == nil && len(obs) == 0 && known != nil {
		if n := r.knownOnLinks(known); n > 0 {
			run.silent = fmt.Errorf("probe --broadcast: no agent answered, though the inventory has %s on these links: the queries or the answers were lost, or drowned out (a holder of the network key flooding the link with queries can do that); a probe without --broadcast tries every address", plural(n, "agent"))
		}
	}
	if r.statePath != "" {
		// Only what was probed counts as looked at: a host that did not
		// answer the broadcast may be there still.
		probed := make(map[netip.Addr]bool, len(all))
		for _, res := range all {
			probed[res.Addr] = true
		}
		run.stateErr = inventory.Update(r.statePath, func(st *inventory.State) error {
			ch := st.Apply(time.Now().UTC(), obs, func(a netip.Addr) bool { return probed[a] }, s.Complete)
			run.changes = &ch
			return nil
		})
	}
	return run, runErr
}

// verifiedIn returns whether the inventory has an address verified as an
// identity's; nil for no inventory.
func verifiedIn(st *inventory.State) func(string, netip.Addr) bool {
	if st == nil {
		return nil
	}
	return func(id string, a netip.Addr) bool {
		h := st.Hosts[id]
		if h == nil {
			return false
		}
		for _, v := range verifiedAddrs(h) {
			if v == a {
				return true
			}
		}
		return false
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
func (r *prober) knownOnLinks(st *inventory.State) int {
	reach, err := discover.Reach(r.bcast.dests)
	if err != nil {
		return 0
	}
	n := 0
	for _, h := range st.Hosts {
		for _, a := range verifiedAddrs(h) {
			if reach(a) && (r.bcast.accept == nil || r.bcast.accept(a)) {
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
	rank := func(a netip.Addr) int {
		switch {
		case a.Is4():
			return 0
		case !a.IsLinkLocalUnicast():
			return 1
		}
		return 2
	}
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

// logWarnings logs what a round warns of, a silenced broadcast round
// included, as warnings: a watch goes on.
func (res *probeRun) logWarnings(log zerolog.Logger) {
	if res == nil {
		return
	}
	for _, w := range res.warnings {
		log.Warn().Str("event", "broadcast_capped").Msg(w)
	}
	if res.silent != nil {
		log.Warn().Str("event", "broadcast_silent").Msg(res.silent.Error())
	}
}

// waitWatch waits out --watch's interval, running broadcast rounds every
// --broadcast-every meanwhile; false means ctx is done.
func (r *prober) waitWatch(ctx context.Context, log zerolog.Logger) bool {
	next := time.Now().Add(r.cmd.Watch)
	for {
		until := next
		round := !r.cmd.Broadcast && r.bcast != nil && r.cmd.BroadcastEvery > 0
		if t := time.Now().Add(r.cmd.BroadcastEvery); round && t.Before(next) {
			until = t
		} else {
			round = false
		}
		t := time.NewTimer(time.Until(until))
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-t.C:
		}
		if !round {
			return true
		}
		res, err := r.onceBroadcast(ctx)
		if ctx.Err() != nil {
			return false
		}
		if r.cmd.Output == "json" && res != nil {
			if werr := writeJSONLine(r.env.Stdout, res); werr != nil {
				log.Error().Str("event", "write_failed").Err(werr).Msg("writing the report failed")
			}
		}
		switch {
		case err != nil:
			log.Error().Str("event", "probe_failed").Str("method", "broadcast").Err(err).Msg("broadcast round failed")
		case res.stateErr != nil:
			log.Error().Str("event", "state_failed").Err(res.stateErr).Msg("updating the inventory failed")
		default:
			logChanges(log, res.changes)
			log.Info().Str("event", "probed").Str("method", "broadcast").Int("agents", res.summary.Agents).
				Int("answers", res.summary.Answers).Float64("seconds", res.summary.Seconds).Msg("broadcast round")
		}
		res.logWarnings(log)
	}
}
