package inventory

import (
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestSites: a host seen by one site and then by another is one host,
// moved from the first site's address to the second's; only the site
// that saw a host last reports it unseen, and a complete round of a
// site marks its own sighting missed.
func TestSites(t *testing.T) {
	s := New()
	t0 := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	x := obs(idA, "10.1.2.3", "laptop", "m1")
	ch := s.ApplySite("lyon", t0, []Observation{x}, all, true)
	if len(ch.New) != 1 {
		t.Fatalf("first sighting: %+v", ch)
	}
	// The same private address at another site is another network.
	y := obs(idA, "10.9.8.7", "laptop", "m1")
	t1 := t0.Add(time.Minute)
	ch = s.ApplySite("oslo", t1, []Observation{y}, all, true)
	want := []HostChange{{Identity: idA, Name: "laptop", Hostname: "laptop", From: "lyon 10.1.2.3", To: "10.9.8.7"}}
	if diff := cmp.Diff(want, ch.Moved); diff != "" || len(ch.New)+len(ch.Unseen) != 0 {
		t.Fatalf("seen at another site (-want +got moves):\n%s\n%+v", diff, ch)
	}
	// The same round again (a write retried after a conflict) counts
	// once.
	if ch := s.ApplySite("oslo", t1, []Observation{y}, all, true); len(ch.Moved)+len(ch.New) != 0 {
		t.Errorf("a round applied again reported changes: %+v", ch)
	}
	h := s.Hosts[idA]
	if diff := cmp.Diff([]Move{{At: t1, From: "10.1.2.3", To: "10.9.8.7", FromSite: "lyon", ToSite: "oslo"}}, h.History); diff != "" {
		t.Errorf("history (-want +got):\n%s", diff)
	}
	wantSites := map[string]*Sighting{
		"lyon": {Addr: "10.1.2.3", MAC: "10:22:33:44:55:56", LastSeen: t0},
		"oslo": {Addr: "10.9.8.7", MAC: "10:22:33:44:55:56", LastSeen: t1},
	}
	if diff := cmp.Diff(wantSites, h.Sites); diff != "" || h.Site != "oslo" || h.IP != "10.9.8.7" || h.Rounds != 2 {
		t.Errorf("sightings (-want +got):\n%s\nsite %s ip %s rounds %d", diff, h.Site, h.IP, h.Rounds)
	}
	// Lyon no longer sees it: not its host to report unseen.
	t2 := t1.Add(time.Minute)
	if ch := s.ApplySite("lyon", t2, nil, all, true); len(ch.Unseen) != 0 {
		t.Errorf("another site's host reported unseen: %+v", ch.Unseen)
	}
	if !h.Sites["lyon"].Missed.IsZero() {
		t.Errorf("lyon's sighting marked missed, but the host is oslo's now")
	}
	// Oslo no longer sees it: unseen, and its sighting missed.
	ch = s.ApplySite("oslo", t2, nil, func(a netip.Addr) bool { return a == netip.MustParseAddr("10.9.8.7") }, true)
	if len(ch.Unseen) != 1 || !h.Sites["oslo"].Missed.Equal(t2) {
		t.Errorf("oslo's own host gone: unseen %+v, missed %v", ch.Unseen, h.Sites["oslo"].Missed)
	}
	if s.Rounds["oslo"].Rounds != 2 || s.Rounds["lyon"].Rounds != 2 {
		t.Errorf("site rounds %+v, want 2 each", s.Rounds)
	}
}

// TestSiteBehindInTime: a site whose round is recorded after a later
// one of another site (the two wrote at once, or its clock is behind)
// leaves a host that is still a valid record: last seen never before
// first seen, nor going back.
func TestSiteBehindInTime(t *testing.T) {
	s := New()
	t0 := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	s.ApplySite("lyon", t0, []Observation{obs(idA, "10.1.2.3", "laptop", "m1")}, all, true)
	s.ApplySite("oslo", t0.Add(-time.Second), []Observation{obs(idA, "10.9.8.7", "laptop", "m1")}, all, true)
	h := s.Hosts[idA]
	if err := h.check(idA); err != nil {
		t.Fatalf("the record after a round behind in time: %v", err)
	}
	if !h.LastSeen.Equal(t0) || !h.Sites["oslo"].LastSeen.Equal(t0.Add(-time.Second)) || h.Rounds != 2 {
		t.Errorf("last seen %v, oslo's %v, rounds %d; want %v, a second before, 2", h.LastSeen, h.Sites["oslo"].LastSeen, h.Rounds, t0)
	}
}
