package cli

import (
	"context"
	"fmt"
	"math"
	"net/netip"
	"time"

	"github.com/rs/zerolog"
	"go4.org/netipx"

	"github.com/ifl-project/ifl/internal/controller/discover"
	"github.com/ifl-project/ifl/internal/controller/engine"
	"github.com/ifl-project/ifl/internal/support/netinfo"
	"github.com/ifl-project/ifl/internal/support/targets"
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
func (r *rounds) planBroadcast(env *Env) error {
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
func (c *ProbeCmd) broadcastPlan() (*engine.BroadcastPlan, error) {
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
		return &engine.BroadcastPlan{Dests: dests, Size: size}, nil
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
	return &engine.BroadcastPlan{Dests: dests, Size: size, Accept: func(a netip.Addr) bool { return set.Contains(a.WithZone("")) }}, nil
}

// logWarnings logs what a round warns of, a silenced broadcast round and
// a key most agents refuse included, as warnings: a watch goes on.
func (res *probeRun) logWarnings(log zerolog.Logger) {
	if res == nil {
		return
	}
	for _, w := range res.round.Warnings {
		log.Warn().Str("event", "broadcast_capped").Msg(w)
	}
	if err := res.silent(); err != nil {
		log.Warn().Str("event", "broadcast_silent").Msg(err.Error())
	}
	if res.rejected != nil {
		s := res.summary
		log.Warn().Str("event", "key_rejected").Int("rejected", s.Rejected).Int("open", s.Agents+s.Busy+s.Rejected+s.NotAgents).Msg(res.rejected.Error())
	}
}

// waitWatch waits out --watch's interval, running broadcast rounds every
// --broadcast-every meanwhile; false means ctx is done.
func (r *rounds) waitWatch(ctx context.Context, log zerolog.Logger) bool {
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
		res, err := r.run(ctx, true, false)
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
