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
	in := make(chan verify.Target)
	var paceErr error // written before in is closed, read once Stream is done
	go func() {
		defer close(in)
		for _, a := range addrs {
			if opts.Pace != nil {
				if paceErr = opts.Pace(ctx); paceErr != nil {
					return
				}
			}
			select {
			case in <- verify.Target{Addr: a}:
			case <-ctx.Done():
				return
			}
		}
	}()
	go func() {
		verr <- v.Stream(ctx, in, results)
		close(results)
	}()
	c := newCollector(MethodAnnouncement, opts)
	for res := range results {
		c.add(res, true)
	}
	err := <-verr
	if err == nil {
		err = paceErr
	}
	r := c.round
	r.port = v.Port
	r.start = start
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
