// Package rtt estimates round-trip times as TCP does (RFC 6298: a
// smoothed round trip and its mean deviation) and turns them into the
// time a probe waits for its answer, within a floor and a ceiling.
//
//	seg := rtt.New(rtt.Limits{Initial: 100 * time.Millisecond, Floor: time.Millisecond})
//	seg.Observe(400 * time.Microsecond)
//	wait := seg.Timeout() // a few round trips, not the initial 100 ms
package rtt

import "time"

// Limits bound an estimator's timeouts.
type Limits struct {
	// Initial is the timeout before anything is measured, and the
	// ceiling: a flag's --timeout.
	Initial time.Duration
	// Floor is the least a timeout may be: the scheduler's and the
	// peer's jitter, which one sample does not show.
	Floor time.Duration
}

// Estimator is one smoothed round trip. The zero value is not usable;
// New makes one. It is not safe for concurrent use (Table is).
type Estimator struct {
	lim          Limits
	srtt, rttvar time.Duration
	n            int
}

// New returns an estimator with nothing measured.
func New(lim Limits) *Estimator {
	if lim.Floor > lim.Initial {
		lim.Floor = lim.Initial
	}
	return &Estimator{lim: lim}
}

// Observe adds a measured round trip. Gains of 1/8 and 1/4, as RFC 6298.
func (e *Estimator) Observe(d time.Duration) {
	if d <= 0 {
		d = time.Microsecond
	}
	if e.n == 0 {
		e.srtt, e.rttvar = d, d/2
	} else {
		dev := e.srtt - d
		if dev < 0 {
			dev = -dev
		}
		e.rttvar += (dev - e.rttvar) / 4
		e.srtt += (d - e.srtt) / 8
	}
	e.n++
}

// Known reports whether a round trip has been measured.
func (e *Estimator) Known() bool { return e.n > 0 }

// SRTT is the smoothed round trip, 0 before any sample.
func (e *Estimator) SRTT() time.Duration { return e.srtt }

// Timeout is how long a probe waits for its answer: the smoothed round
// trip plus four deviations, as TCP's RTO, between Floor and Initial;
// Initial before any sample.
func (e *Estimator) Timeout() time.Duration {
	if e.n == 0 {
		return e.lim.Initial
	}
	return clamp(e.srtt+4*e.rttvar, e.lim.Floor, e.lim.Initial)
}

// Backoff is the timeout of the try-th try (0 for the first): doubled
// for each try before it, as TCP backs off, within the same ceiling.
func (e *Estimator) Backoff(try int) time.Duration {
	t := e.Timeout()
	for range min(try, 16) {
		t *= 2
	}
	return min(t, e.lim.Initial)
}

func clamp(d, lo, hi time.Duration) time.Duration {
	return max(lo, min(d, hi))
}
