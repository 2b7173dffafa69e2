// Package report holds the lines internal/testbed/annload prints, one
// JSON object a line, for the tests that read them.
package report

import "net/netip"

// Agent is one agent's line in a Line.
type Agent struct {
	Name     string     `json:"name"`
	Identity string     `json:"identity"`
	Old      netip.Addr `json:"old"`
	New      netip.Addr `json:"new"`
	// MovedAt is when its new address was added (Unix nanoseconds).
	MovedAt int64 `json:"moved_at,omitempty"`
	// Sent, Acked, GaveUp and Failed are its announcer's counts.
	Sent   int64 `json:"sent"`
	Acked  int64 `json:"acked"`
	GaveUp int64 `json:"gave_up"`
	Failed int64 `json:"failed"`
}

// Line is one line annload prints: its event (ready, moved, done) and
// what goes with it.
type Line struct {
	Event  string  `json:"event"`
	Agents []Agent `json:"agents,omitempty"`
	// First and Last are when the first move started and the last ended
	// (Unix nanoseconds).
	First int64 `json:"first,omitempty"`
	Last  int64 `json:"last,omitempty"`
	Acked int   `json:"acked,omitempty"` // agents acknowledged
}
