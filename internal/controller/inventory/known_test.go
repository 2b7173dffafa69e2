package inventory

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/ifl-project/ifl/proto"
)

// TestApplyKnownKeepsReservations: a key holder at one address makes a
// fresh identity for each pair of announcement rounds (ApplyKnown), as
// fast as announcements allow, to have identities leave probation and
// be evicted, each eviction reserving a junk name, until the
// reservation of a forgotten host, db1, is pushed out and the name is
// its own. None of those identities is recorded: db1 stays reserved,
// and a new identity reporting db1, even once recorded by a sweep, is
// not named db1.
func TestApplyKnownKeepsReservations(t *testing.T) {
	s := New()
	now := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
	legit := netip.MustParseAddr("10.0.0.5")
	for range 2 {
		now = now.Add(5 * time.Minute)
		s.Apply(now, []Observation{{Identity: "legit-db1", Addr: legit, Port: 7440, Facts: &proto.Facts{Hostname: "db1"}}}, func(a netip.Addr) bool { return a == legit }, true)
	}
	if h := s.Hosts["legit-db1"]; h == nil || h.Name != "db1" {
		t.Fatalf("db1's host %+v, want named db1", h)
	}
	delete(s.Hosts, "legit-db1")
	s.reserve(&Host{Identity: "legit-db1", Name: "db1"}, ReservedEvicted, now)
	x := netip.MustParseAddr("10.0.0.66")
	atX := func(a netip.Addr) bool { return a == x }
	// Past MaxReserved evictions, 2 rounds each, at 50 rounds a second.
	for i := range MaxReserved + 100 {
		id := fmt.Sprintf("evil-%05d", i)
		for range 2 {
			now = now.Add(20 * time.Millisecond)
			ch := s.ApplyKnown("", now, []Observation{{Identity: id, Addr: x, Port: 7440, Facts: &proto.Facts{Hostname: fmt.Sprintf("junk%05d", i)}}}, atX, true)
			if !ch.Empty() {
				t.Fatalf("round of %s: changes %+v, want none for an identity the state does not know", id, ch)
			}
		}
	}
	if len(s.Hosts) != 0 || len(s.Reserved) != 1 || s.Reserved[0].Name != "db1" || s.Reserved[0].Identity != "legit-db1" {
		t.Fatalf("hosts %v, reserved %+v; want no host, db1 reserved for legit-db1", s.Hosts, s.Reserved)
	}
	now = now.Add(time.Minute)
	s.Apply(now, []Observation{{Identity: "evil-final", Addr: x, Port: 7440, Facts: &proto.Facts{Hostname: "db1"}}}, atX, true)
	if h := s.Hosts["evil-final"]; h == nil || h.Name == "db1" {
		t.Fatalf("evil-final %+v, want recorded by the sweep under another name than db1", h)
	}
}

// TestApplyKnownCountsNoRound: an announcement round records a known
// host's move and facts but not a round, so a host in probation stays
// in it until sweeps see it again; copies of its key elsewhere are
// warned about as in any round.
func TestApplyKnownCountsNoRound(t *testing.T) {
	s := New()
	now := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
	a, b := netip.MustParseAddr("10.0.0.5"), netip.MustParseAddr("10.0.1.5")
	all := func(netip.Addr) bool { return true }
	s.Apply(now, []Observation{{Identity: "h", Addr: a, Port: 7440, Facts: &proto.Facts{Hostname: "web"}}}, all, true)
	for i := range 3 {
		now = now.Add(time.Second)
		ch := s.ApplyKnown("", now, []Observation{{Identity: "h", Addr: b, Port: 7440, Facts: &proto.Facts{Hostname: "web"}}}, func(x netip.Addr) bool { return x == b }, true)
		if want := i == 0; (len(ch.Moved) == 1) != want || len(ch.New)+len(ch.Unseen)+len(ch.Warnings) != 0 {
			t.Fatalf("announcement round %d: changes %+v, want only a move in the first", i, ch)
		}
	}
	h := s.Hosts["h"]
	if h.IP != b.String() || h.Rounds != 1 || !h.LastSeen.Equal(now) {
		t.Fatalf("host %+v, want at %v, seen at %v, in 1 round", h, b, now)
	}
	now = now.Add(time.Minute)
	s.Apply(now, []Observation{{Identity: "h", Addr: b, Port: 7440, Facts: &proto.Facts{Hostname: "web"}}}, all, true)
	if h.Rounds != 2 {
		t.Errorf("after a sweep: %d rounds, want 2", h.Rounds)
	}
}
