package synscan

import (
	"context"
	"errors"
	"net/netip"
	"time"
)

// ErrPermission is returned by NewRaw when the process may not open raw
// sockets.
var ErrPermission = errors.New("no permission to open a raw socket (needs CAP_NET_RAW)")

// State is a port's state.
type State uint8

// States.
const (
	Open     State = iota + 1 // SYN-ACK, or connect() succeeded
	Closed                    // RST, or connection refused
	Filtered                  // no answer
	Down                      // the host is not there: no ARP reply, or host unreachable
)

func (s State) String() string {
	switch s {
	case Open:
		return "open"
	case Closed:
		return "closed"
	case Filtered:
		return "filtered"
	case Down:
		return "down"
	}
	return "unknown"
}

// MarshalText prints a State as its name in JSON.
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Target is one address and port.
type Target struct {
	Addr netip.Addr
	Port uint16
	// RTT is a round trip already measured to Addr (its ARP reply's, say);
	// 0: unknown. Two targets that differ only in RTT are the same
	// target.
	RTT time.Duration
}

// key is what tells targets apart.
type key struct {
	addr netip.Addr
	port uint16
}

func (t Target) key() key { return key{t.Addr, t.Port} }

// Result is what a scan found for one target: Target as it was given,
// its RTT the hint; RTT the round trip this scan measured.
type Result struct {
	Target
	State State
	RTT   time.Duration // from the last probe to the answer; 0 for Filtered
}

// Defaults for the zero values of Config.
const (
	DefaultRate    = 10000
	DefaultRetries = 2
	// DefaultTimeout is how long a probe waits for an answer before it is
	// sent again, and how long the scan waits after the last probe: ample
	// on a LAN, where a port answers within a millisecond; raise it for
	// distant networks.
	DefaultTimeout = 100 * time.Millisecond
	// DefaultConcurrency bounds connect-mode dials in flight.
	DefaultConcurrency = 256
)

// Config tunes a scan. Zero values mean the defaults.
type Config struct {
	Rate        int           // probes per second
	Retries     int           // extra probes for a target that did not answer; negative: none
	Timeout     time.Duration // see DefaultTimeout
	Concurrency int           // connect mode only
}

func (c *Config) withDefaults() Config {
	out := Config{Rate: DefaultRate, Retries: DefaultRetries, Timeout: DefaultTimeout, Concurrency: DefaultConcurrency}
	if c == nil {
		return out
	}
	if c.Rate > 0 {
		out.Rate = c.Rate
	}
	switch {
	case c.Retries < 0:
		out.Retries = 0
	case c.Retries > 0:
		out.Retries = c.Retries
	}
	if c.Timeout > 0 {
		out.Timeout = c.Timeout
	}
	if c.Concurrency > 0 {
		out.Concurrency = c.Concurrency
	}
	return out
}

// Stats count what a scan sent.
type Stats struct {
	Targets int // targets scanned
	Sent    int // probes sent, retries included (connect mode: dials)
}

// Scanner scans targets. Stream reads targets until in is closed and sends
// one Result per target on out (closed by neither); it returns when every
// target has a result or ctx is done.
type Scanner interface {
	Stream(ctx context.Context, in <-chan Target, out chan<- Result) (Stats, error)
	Close() error
}

// Scan scans every address on every port and returns the results sorted
// by address, then port.
func Scan(ctx context.Context, s Scanner, addrs []netip.Addr, ports []uint16) ([]Result, Stats, error) {
	in := make(chan Target)
	out := make(chan Result, 64)
	go func() {
		defer close(in)
		for _, a := range addrs {
			for _, p := range ports {
				select {
				case in <- Target{Addr: a, Port: p}:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	var res []Result
	done := make(chan struct{})
	go func() {
		defer close(done)
		for r := range out {
			res = append(res, r)
		}
	}()
	st, err := s.Stream(ctx, in, out)
	close(out)
	<-done
	Sort(res)
	return res, st, err
}
