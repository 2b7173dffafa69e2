package synscan

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/ifl-project/ifl/internal/support/pace"
	"github.com/ifl-project/ifl/internal/support/rtt"
)

// Connect scans with connect(2): it needs no privilege.
type Connect struct {
	cfg Config
	// dial connects to an address and port and closes the connection:
	// nil when it was accepted, else why not; it gives up at the deadline
	// or when ctx is done.
	dial func(ctx context.Context, ap netip.AddrPort, deadline time.Time) error
}

// NewConnect returns a connect-mode scanner.
func NewConnect(cfg *Config) *Connect {
	c := cfg.withDefaults()
	if cfg == nil || cfg.Rate == 0 {
		c.Rate = DefaultConnectRate
	}
	return &Connect{cfg: c, dial: dialTCP}
}

// Close implements Scanner.
func (c *Connect) Close() error { return nil }

// Stream implements Scanner: at most Concurrency dials at once, each
// given up and dialled again after its host's round trips, or Timeout
// while none is known. The first dials to a host are paced at Rate, as
// the kernel resolves and probes a new neighbour for each; once a port of
// the host has answered, its other ports are dialled as fast as
// Concurrency allows, so that the ports of one host take the time a
// host's kernel takes to answer them.
func (c *Connect) Stream(ctx context.Context, in <-chan Target, out chan<- Result) (Stats, error) {
	d := &dialer{c: c, hosts: map[netip.Addr]*dialHost{}, lim: rtt.Limits{Initial: c.cfg.Timeout, Floor: c.cfg.minWait}}
	var g errgroup.Group
	g.SetLimit(c.cfg.Concurrency)
	pacer := pace.New(c.cfg.Rate)
loop:
	for {
		var t Target
		select {
		case <-ctx.Done():
			break loop
		case x, ok := <-in:
			if !ok {
				break loop
			}
			t = x
		}
		t.Addr = t.Addr.Unmap()
		h := d.host(t)
		if !d.answered(h) {
			if pacer.Wait(ctx) != nil {
				d.done(t.Addr, h)
				break loop
			}
			pacer.Sent(time.Now())
		}
		g.Go(func() error {
			defer d.done(t.Addr, h)
			res := d.probe(ctx, h, t)
			if ctx.Err() != nil {
				return nil
			}
			select {
			case out <- res:
			case <-ctx.Done():
			}
			return nil
		})
	}
	g.Wait()
	return d.stats(), ctx.Err()
}

// dialer is the state of one connect Stream, shared by its dials.
type dialer struct {
	c     *Connect
	lim   rtt.Limits
	mu    sync.Mutex
	hosts map[netip.Addr]*dialHost
	st    Stats
}

// dialHost is what a connect scan knows of an address.
type dialHost struct {
	est      *rtt.Estimator // nil: nothing known
	answered bool           // a port of it was open or closed
	dials    int            // not yet done
}

// host returns t's host, its round trip seeded from t's hint if nothing
// is known, counting a dial to it.
func (d *dialer) host(t Target) *dialHost {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.st.Targets++
	h := d.hosts[t.Addr]
	if h == nil {
		h = &dialHost{}
		d.hosts[t.Addr] = h
	}
	if h.est == nil && t.RTT > 0 {
		h.est = rtt.New(d.lim)
		h.est.Observe(t.RTT)
	}
	h.dials++
	return h
}

func (d *dialer) answered(h *dialHost) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return h.answered
}

// done counts a dial to h over; past maxIdleHosts, a host with no dial
// left is forgotten.
func (d *dialer) done(addr netip.Addr, h *dialHost) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if h.dials--; h.dials == 0 && len(d.hosts) > maxIdleHosts {
		delete(d.hosts, addr)
	}
}

// timeout is how long the try-th dial (from 0) to h waits: as a raw probe
// waits, from its host's round trip; Timeout while none is known. Unlike
// a probe's, a dial's answer is lost once it is given up, so a host's
// last dial waits at least Timeout until one of its own answers has
// measured it: a hint (an ARP reply's round trip) says where the host
// is, not how soon its TCP answers.
func (d *dialer) timeout(h *dialHost, try int) time.Duration {
	d.mu.Lock()
	defer d.mu.Unlock()
	if h.est == nil || (try == d.c.cfg.Retries && !h.answered) {
		return max(d.c.cfg.Timeout, d.slow(h))
	}
	return max(h.est.Backoff(try), d.slow(h))
}

// slow is the least a dial to h waits: twice its round trip, even past
// the ceiling, as a slow host is not a lost one.
func (d *dialer) slow(h *dialHost) time.Duration {
	if h.est == nil {
		return 0
	}
	return 2 * h.est.SRTT()
}

// record takes what a dial that took took tells. Each dial is a
// connection of its own, answered only to itself: its round trip is
// measured even when it was dialled again (Karn's ambiguity does not
// arise).
func (d *dialer) record(h *dialHost, took time.Duration, answered bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.st.Sent++
	if answered {
		h.answered = true
		if h.est == nil {
			h.est = rtt.New(d.lim)
		}
		h.est.Observe(took)
	}
}

func (d *dialer) retried() {
	d.mu.Lock()
	d.st.Retries++
	d.mu.Unlock()
}

func (d *dialer) stats() Stats {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.st
}

// probe dials t until it answers, it is found down, or its tries are
// spent.
func (d *dialer) probe(ctx context.Context, h *dialHost, t Target) Result {
	ap := netip.AddrPortFrom(t.Addr, t.Port)
	for try := 0; ; try++ {
		if try > 0 {
			d.retried()
		}
		start := time.Now()
		err := d.c.dial(ctx, ap, start.Add(d.timeout(h, try)))
		took := time.Since(start)
		timedOut := errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded)
		refused := errors.Is(err, syscall.ECONNREFUSED)
		d.record(h, took, err == nil || refused)
		switch {
		case err == nil:
			return Result{Target: t, State: Open, RTT: took}
		case refused:
			return Result{Target: t, State: Closed, RTT: took}
		case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
			// The kernel's ARP probes went unanswered, or a router
			// said so: as a silent ARP sweep on the raw path.
			return Result{Target: t, State: Down}
		case timedOut:
			if try < d.c.cfg.Retries && ctx.Err() == nil {
				continue
			}
		}
		return Result{Target: t, State: Filtered}
	}
}
