package engine

import (
	"context"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/ifl-project/ifl/internal/controller/inventory"
	"github.com/ifl-project/ifl/proto"
)

// TestRecordOvertaken: a sweep that started before an announcement round
// recorded host a at its new address, and saw a at its old one, does
// not move it back; nor does it report b unseen, recorded too since the
// sweep started, though it saw b nowhere; c, recorded before the sweep,
// moves and d is unseen, as ever.
func TestRecordOvertaken(t *testing.T) {
	path := filepath.Join(t.TempDir(), "inventory.json")
	start := time.Date(2026, 12, 7, 1, 0, 0, 0, time.UTC)
	host := func(id, ip string, seen time.Time) *inventory.Host {
		return &inventory.Host{Identity: id, Name: id, Hostname: id, IP: ip, Verified: []inventory.Verified{{Addr: ip, At: seen}},
			Port: 7440, FirstSeen: start.Add(-time.Hour), LastSeen: seen, Rounds: 3}
	}
	ids := map[string]string{"a": "0000000000000000000000000000000a", "b": "0000000000000000000000000000000b",
		"c": "0000000000000000000000000000000c", "d": "0000000000000000000000000000000d"}
	err := inventory.Update(path, func(st *inventory.State) error {
		for _, h := range []*inventory.Host{
			host(ids["a"], "198.18.0.2", start.Add(time.Second)),
			host(ids["b"], "198.18.0.3", start.Add(time.Second)),
			host(ids["c"], "198.18.0.4", start.Add(-time.Minute)),
			host(ids["d"], "198.18.0.5", start.Add(-time.Minute)),
		} {
			st.Hosts[h.Identity] = h
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	obs := func(id, ip string) inventory.Observation {
		return inventory.Observation{Identity: ids[id], Addr: netip.MustParseAddr(ip), Port: 7440, Facts: &proto.Facts{Hostname: ids[id]}}
	}
	r := &Round{Method: MethodConnect, Complete: true, port: 7440, start: start,
		Observations: []inventory.Observation{obs("a", "198.18.0.1"), obs("c", "198.18.0.6")},
		looked:       func(netip.Addr) bool { return true }}
	ch, err := r.Record(context.Background(), &inventory.File{Path: path}, "", start.Add(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if len(ch.Moved) != 1 || ch.Moved[0].Identity != ids["c"] || len(ch.Unseen) != 1 || ch.Unseen[0].Identity != ids["d"] || len(ch.New)+len(ch.Renamed)+len(ch.Warnings) != 0 {
		t.Fatalf("changes %+v, want c moved and d unseen alone", ch)
	}
	st, err := inventory.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if ip := st.Hosts[ids["a"]].IP; ip != "198.18.0.2" {
		t.Errorf("a at %s, want left at 198.18.0.2, where it was recorded after the sweep started", ip)
	}
}
