package engine

import (
	"context"
	"net/netip"
	"slices"
	"time"

	"github.com/ifl-project/ifl/internal/controller/verify"
)

// MethodAnnouncement is how a round found what it verified: agents'
// announcements of their addresses (internal/controller/announce).
const MethodAnnouncement = "announcement"

// Announced runs an announcement round: the verification of the
// addresses that announcements came from, and of those alone, as a
// probe verifies an open port. An announcement is only a hint: only a
// verified agent is observed, and only an address where an agent proved
// itself counts as looked at, so that an announcement from an address
// where nothing answers (forged, or the agent gone again) reports no
// host unseen.
func Announced(ctx context.Context, addrs []netip.Addr, v *verify.Verifier, opts RoundOptions) (*Round, error) {
	start := time.Now()
	results := make(chan verify.Result)
	verr := make(chan error, 1)
	go func() {
		verr <- v.Run(ctx, addrs, results)
		close(results)
	}()
	c := newCollector(MethodAnnouncement, opts)
	for res := range results {
		c.add(res, true)
	}
	err := <-verr
	r := c.round
	r.Stats.Addresses = len(addrs)
	// results sorts and filters in place: a copy.
	r.Results = c.results(slices.Clone(c.all))
	verified := make(map[netip.Addr]bool, len(r.Observations))
	for _, o := range r.Observations {
		verified[o.Addr] = true
	}
	r.looked = func(a netip.Addr) bool { return verified[a] }
	r.Elapsed = time.Since(start)
	r.Complete = err == nil
	return r, err
}
