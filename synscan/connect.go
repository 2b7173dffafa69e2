package synscan

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/ifl-project/ifl/internal/pace"
)

// Connect scans with connect(2): it needs no privilege.
type Connect struct {
	cfg  Config
	dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// NewConnect returns a connect-mode scanner.
func NewConnect(cfg *Config) *Connect {
	return &Connect{cfg: cfg.withDefaults(), dial: (&net.Dialer{}).DialContext}
}

// Close implements Scanner.
func (c *Connect) Close() error { return nil }

// Stream implements Scanner: dials paced at the rate, at most Concurrency
// at once, each retried if it timed out.
func (c *Connect) Stream(ctx context.Context, in <-chan Target, out chan<- Result) (Stats, error) {
	var st Stats
	var mu sync.Mutex
	pace.Each(ctx, in, c.cfg.Rate, c.cfg.Concurrency, func(ctx context.Context, t Target) {
		res, sent := c.probe(ctx, t)
		mu.Lock()
		st.Targets++
		st.Sent += sent
		mu.Unlock()
		if ctx.Err() != nil {
			return
		}
		select {
		case out <- res:
		case <-ctx.Done():
		}
	})
	return st, ctx.Err()
}

func (c *Connect) probe(ctx context.Context, t Target) (Result, int) {
	addr := netip.AddrPortFrom(t.Addr, t.Port).String()
	for try := 0; ; try++ {
		start := time.Now()
		dctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
		conn, err := c.dial(dctx, "tcp", addr)
		cancel()
		switch {
		case err == nil:
			conn.Close()
			return Result{Target: t, State: Open, RTT: time.Since(start)}, try + 1
		case errors.Is(err, syscall.ECONNREFUSED):
			return Result{Target: t, State: Closed, RTT: time.Since(start)}, try + 1
		case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
			// The kernel's ARP probes went unanswered, or a router
			// said so: as a silent ARP sweep on the raw path.
			return Result{Target: t, State: Down}, try + 1
		case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded):
			if try < c.cfg.Retries && ctx.Err() == nil {
				continue
			}
		}
		return Result{Target: t, State: Filtered}, try + 1
	}
}
