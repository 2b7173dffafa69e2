package engine

import (
	"context"
	"net/netip"
	"slices"
	"time"

	"github.com/ifl-project/ifl/internal/controller/inventory"
	"github.com/ifl-project/ifl/internal/controller/verify"
)

// Methods: how a round found what it verified.
const (
	MethodRaw       = "arp+syn"   // an ARP sweep of the on-link targets, then SYN probes
	MethodConnect   = "connect"   // connect() to every target
	MethodBroadcast = "broadcast" // an authenticated UDP query to the targets' links
)

// RoundOptions are what one round is asked for.
type RoundOptions struct {
	// All keeps in Round.Results every target the round looked at, not
	// only those whose port opened.
	All bool
	// Progress, if set, is told how far the round has come each time a
	// target settles, one call at a time.
	Progress func(Progress)
	// Known is the inventory as it stood before the round, nil for
	// none. A broadcast round dials the addresses where it verified an
	// identity whatever the bounds on answers claiming that identity,
	// and says so when it hears no agent where the inventory has some.
	Known *inventory.State
	// Pace, if set, is waited for before each address an announcement
	// round (Announced) dials: a bound shared by the rounds a key holder
	// can start at will. An error from it ends the round, cut short.
	Pace func(context.Context) error
}

// Progress is how far a round has come.
type Progress struct {
	Settled int // targets with a result: ruled out by the sweep or the SYN probes, or verified
	Agents  int // of which verified agents
}

// Round is what one round found and did.
type Round struct {
	Method string // MethodRaw, MethodConnect or MethodBroadcast
	// Results, by address: every target looked at with RoundOptions.All,
	// else those whose port opened. A broadcast round lists a verified
	// agent once, at its IPv4 address if it has one, with its other
	// addresses in Also.
	Results []verify.Result
	Stats   Stats
	Elapsed time.Duration
	// Complete is false when the round was cut short: its context was
	// cancelled, or a stage failed.
	Complete bool
	// Observations are the verified agents, one per address each was
	// verified at: the inventory learns a dual-stack host's IPv4 and
	// IPv6 addresses from one round.
	Observations []inventory.Observation
	// Warnings are what a person should know of the round: answers
	// dropped past discovery's bounds.
	Warnings []string
	// Silent, if set, says why a broadcast round that heard no agent
	// should have heard some.
	Silent error
	// looked reports whether the round looked at an address: a known
	// host there that did not answer is not seen.
	looked func(netip.Addr) bool
	// port is the agent port the round dialled: a known host that
	// answers on another port was not looked for.
	port int
	// start is when the round started: what it saw of a host that
	// another round recorded since may be older than that record.
	start time.Time
}

// Record applies the round to the inventory in st, as site's (""
// for a controller without one), at now, and returns what changed: the
// one place where a round reaches the inventory. An announcement round
// records only hosts the inventory knows, and counts in no round
// (inventory.State.ApplyKnown). A round cut short, or whose own dropped
// answers may hide hosts (Stats.Unsure), reports no host unseen; nor
// does any round report a host known on another port, or at an address
// that rejected the handshake. Recording the same round again, at the
// same now, after a failure, counts it once.
//
// A host that another round recorded after this one started (an
// announcement round while a sweep ran, or another controller's round in
// the same inventory) is not moved back to an address this round saw it
// at, which it may have left since, nor reported unseen: rounds record
// in the order they end, not the order they saw.
func (r *Round) Record(ctx context.Context, st inventory.Store, site string, now time.Time) (*inventory.Changes, error) {
	var ch inventory.Changes
	err := st.Update(ctx, func(s *inventory.State) error {
		apply := s.ApplySite
		if r.Method == MethodAnnouncement {
			// A key holder starts these rounds at will.
			apply = s.ApplyKnown
		}
		obs, since := r.overtaken(s)
		run := apply(site, now, obs, r.looked, r.Complete && r.Stats.Unsure == 0)
		run.Unseen = slices.DeleteFunc(run.Unseen, func(c inventory.HostChange) bool { return since[c.Identity] })
		run.Unseen = r.notRejected(s, r.onPort(s, run.Unseen))
		s.OnCommit(func(ids map[string]bool) { ch.Keep(run, ids) })
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &ch, nil
}

// overtaken returns the round's observations but those of a host
// recorded since the round started at an address other than its
// verified ones now, and the identities of the hosts recorded since.
func (r *Round) overtaken(st *inventory.State) ([]inventory.Observation, map[string]bool) {
	since := map[string]bool{}
	if r.start.IsZero() {
		return r.Observations, since
	}
	for id, h := range st.Hosts {
		if h.LastSeen.After(r.start) {
			since[id] = true
		}
	}
	if len(since) == 0 {
		return r.Observations, since
	}
	obs := slices.DeleteFunc(slices.Clone(r.Observations), func(o inventory.Observation) bool {
		h := st.Hosts[o.Identity]
		return since[o.Identity] && !slices.ContainsFunc(h.Verified, func(v inventory.Verified) bool { return v.Addr == o.Addr.String() })
	})
	return obs, since
}

// onPort keeps the hosts of unseen that the inventory knows on the port
// the round dialled: one known on another port (a second agent of the
// same machine, say) was not looked for, wherever the round looked.
func (r *Round) onPort(st *inventory.State, unseen []inventory.HostChange) []inventory.HostChange {
	if r.port == 0 {
		return unseen
	}
	return slices.DeleteFunc(unseen, func(c inventory.HostChange) bool {
		h := st.Hosts[c.Identity]
		return h != nil && h.Port != r.port
	})
}

// notRejected keeps the hosts of unseen none of whose addresses
// rejected the handshake in this round: a rejection is an agent there
// that the round could not verify (the controller's key is not the
// fleet's, or the clocks are apart), which may well be the host.
func (r *Round) notRejected(st *inventory.State, unseen []inventory.HostChange) []inventory.HostChange {
	rejected := map[string]bool{}
	for _, res := range r.Results {
		if res.Status == verify.Rejected {
			rejected[res.Addr.String()] = true
		}
	}
	if len(rejected) == 0 {
		return unseen
	}
	return slices.DeleteFunc(unseen, func(c inventory.HostChange) bool {
		h := st.Hosts[c.Identity]
		if h == nil {
			return rejected[c.From]
		}
		if rejected[h.IP] {
			return true
		}
		return slices.ContainsFunc(h.Verified, func(v inventory.Verified) bool { return rejected[v.Addr] })
	})
}

// roundCollector gathers one round's results as they settle.
type roundCollector struct {
	round *Round
	opts  RoundOptions
	all   []verify.Result // every result, for the observations
	prog  Progress
}

func newCollector(method string, opts RoundOptions) *roundCollector {
	return &roundCollector{round: &Round{Method: method}, opts: opts}
}

// add takes one target's result: dialled is false for the targets the
// sweep or the SYN probes ruled out.
func (c *roundCollector) add(res verify.Result, dialled bool) {
	c.all = append(c.all, res)
	if dialled {
		c.round.Stats.count(res)
	}
	c.prog.Settled++
	if res.Status == verify.Agent {
		c.prog.Agents++
		c.round.Observations = append(c.round.Observations, inventory.Observation{Identity: res.Identity, Addr: res.Addr, Port: res.Port, Facts: res.Facts})
	}
	if c.opts.Progress != nil {
		c.opts.Progress(c.prog)
	}
}

// results keeps what the round lists of rs, sorted by address: the open
// ports, and a port that did not answer although its host answered on
// another path (an operator's firewall mistake worth showing); every
// target with All.
func (c *roundCollector) results(rs []verify.Result) []verify.Result {
	if !c.opts.All {
		rs = slices.DeleteFunc(rs, func(r verify.Result) bool { return !r.Status.Open() && r.Reason != verify.ReasonTCPFiltered })
	}
	slices.SortFunc(rs, func(a, b verify.Result) int { return a.Addr.Compare(b.Addr) })
	return rs
}

// count counts one verified target.
func (st *Stats) count(r verify.Result) {
	st.Probed++
	switch r.Status {
	case verify.Agent:
		st.Agents++
	case verify.Busy:
		st.Busy++
	case verify.Rejected, verify.Mismatch:
		st.Rejected++
	case verify.NotAgent:
		st.NotAgents++
	case verify.Failed:
		st.Errors++
	case verify.Filtered:
		if r.Reason == verify.ReasonTCPFiltered {
			st.TCPFiltered++
		}
	}
}
