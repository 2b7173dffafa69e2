package synscan

import (
	"context"
	"errors"
	"net/netip"
	"time"

	"github.com/ifl-project/ifl/internal/support/defaults"
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
	// 0: unknown. RTTMax, when more, is the most it may be (a reply that
	// came after several requests may answer the first): the raw
	// scanner's last probe to the target waits until twice that since
	// its first, unless an answer of the scan has measured the host, so
	// that a host whose hint came out short is not given up before it
	// could answer. Two targets that differ only in RTT and RTTMax are
	// the same target.
	RTT, RTTMax time.Duration
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
	// RTT runs from the last probe sent before the answer came (raw; the
	// dial, connect) to the answer; 0 for Filtered and Down.
	RTT time.Duration
}

// Defaults for the zero values of Config.
const (
	// DefaultRate is the most raw probes per second, where the sending
	// rate starts; it falls when probes get lost (see Config.Rate). SYNs
	// are unicast, 84 bytes on the wire with the preamble and the gap:
	// 250,000 a second is 168 Mbit/s (every port of a host in a quarter
	// of a second, if it answers as fast), a sixth of a gigabit link.
	DefaultRate = 250000
	// DefaultConnectRate paces connect()'s first dials to hosts: each
	// makes the kernel resolve a new neighbour with a broadcast, and a
	// burst of those is lost as a burst of ARP requests is.
	DefaultConnectRate = 2000
	// DefaultMinRateDivisor sets the least the rate falls to when
	// Config.MinRate is 0: a 16th of Rate.
	DefaultMinRateDivisor = 16
	DefaultRetries        = 2
	// DefaultTimeout is how long a probe waits for its answer before
	// anything is measured, and the ceiling of the waits that follow
	// the round trips measured, but for a slow host's, which are twice
	// its own round trip (a slow host is no lost one): ample on a LAN,
	// where a port answers within a millisecond; raise it for distant
	// networks.
	DefaultTimeout = 100 * time.Millisecond
	// DefaultConcurrency bounds connect-mode dials in flight.
	DefaultConcurrency = 256
)

// timeoutFloor is the least a probe waits before it is sent again: the
// jitter of a loaded machine's scheduler and of the host's answer, which
// a few fast samples do not show. It is below the sweep's floor
// (arpscan): a SYN sent again for an answer that was only late costs one
// packet to one host, where a broadcast costs every host of the segment;
// and the reader's mark keeps a reader that fell behind from being taken
// for loss.
const timeoutFloor = 5 * time.Millisecond

// Config tunes a scan. Zero values mean the defaults.
type Config struct {
	// Rate is the most probes per second (raw), or dials to hosts that
	// have not answered yet (connect: once a port of a host answered, its
	// other ports are dialled as fast as Concurrency allows). The raw
	// sending rate starts there, falls when the kernel has no room for a
	// probe or answers come only to retries, and grows back while
	// answers keep up.
	Rate int
	// MinRate is the least the raw sending rate falls to; 0: Rate
	// divided by DefaultMinRateDivisor.
	MinRate int
	// Retries are the extra probes for a target that did not answer;
	// negative: none.
	Retries int
	// Timeout is how long a probe (or dial) waits for its answer when
	// nothing is known of its host's round trip, and the most a wait
	// computed from a round trip may be. Waits follow each host's round trip (a
	// Target's RTT, then its answers), or the round trip of the hosts
	// that came without one; a host whose round trip is known waits
	// twice that, even past Timeout, for a slow host is not a lost one.
	Timeout time.Duration
	// Concurrency bounds connect-mode dials in flight.
	Concurrency int

	// minWait, when set, replaces timeoutFloor: tests that must see no
	// retry raise it, as a loaded machine (the race detector, packages
	// tested side by side) can make a goroutine of the fake network later
	// than timeoutFloor.
	minWait time.Duration
}

func (c *Config) withDefaults() Config {
	out := Config{Rate: DefaultRate, Retries: DefaultRetries, Timeout: DefaultTimeout, Concurrency: DefaultConcurrency, minWait: timeoutFloor}
	if c != nil {
		if c.Rate > 0 {
			out.Rate = c.Rate
		}
		if c.MinRate > 0 {
			out.MinRate = c.MinRate
		}
		out.Retries = defaults.Count(c.Retries, DefaultRetries)
		if c.Timeout > 0 {
			out.Timeout = c.Timeout
		}
		if c.Concurrency > 0 {
			out.Concurrency = c.Concurrency
		}
		if c.minWait > 0 {
			out.minWait = c.minWait
		}
	}
	if out.MinRate == 0 {
		out.MinRate = max(1, out.Rate/DefaultMinRateDivisor)
	}
	out.MinRate = min(out.MinRate, out.Rate)
	out.minWait = min(out.minWait, out.Timeout)
	return out
}

// Stats count what a scan did.
type Stats struct {
	Targets int // targets scanned
	Sent    int // probes sent, retries included (connect mode: dials)
	Retries int // of those, the ones sent again to a target
	// Refused counts the probes held back because the kernel had no room
	// (ENOBUFS), sent again after a pause; they are not in Sent. A probe
	// the kernel refused after it was queued (NewRaw queues them all) is
	// in Sent, and counts as lost: the next write reports the refusal.
	Refused int
	// RateCuts counts the times loss cut the sending rate; MinRate is the
	// lowest rate it reached (raw mode).
	RateCuts int
	MinRate  int
	// SRTT is the smoothed round trip of the answers to first probes.
	SRTT time.Duration
	// Dropped counts the answers this host's reading sockets dropped
	// for want of room (raw mode); Unsure the targets reported filtered
	// although answers were dropped while they waited: their state may
	// be wrong.
	Dropped, Unsure int
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
