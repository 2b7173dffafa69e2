package inventory

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const (
	idOld  = "aaaaaaaa00000000000000000000000a" // db1 before its re-image
	idNew  = "bbbbbbbb00000000000000000000000b" // db1 after
	idEvil = "cccccccc00000000000000000000000c"
	idD    = "dddddddd00000000000000000000000d"
)

// TestNamesIgnoreCase: web1 and WEB1 are one name, in one probe or two,
// and in a state written when they were two.
func TestNamesIgnoreCase(t *testing.T) {
	s := New()
	s.Apply(t0, []Observation{ob(idOld, "198.18.0.1", "web1")}, all, true)
	s.Apply(t0.Add(time.Minute), []Observation{ob(idNew, "198.18.0.2", "WEB1"), ob(idEvil, "198.18.0.3", "Web1")}, all, true)
	want := map[string]string{idOld: "web1", idNew: "WEB1-bbbbbbbb00000000", idEvil: "Web1-cccccccc00000000"}
	if diff := cmp.Diff(want, named(s)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}

	path := filepath.Join(t.TempDir(), "inventory.json")
	old := `{"format": "ifl-inventory", "version": 1, "hosts": {
 "` + idNew + `": {"identity": "` + idNew + `", "name": "WEB1", "hostname": "WEB1", "ip": "198.18.0.2", "port": 7440, "first_seen": "2026-11-01T11:30:00Z", "last_seen": "2026-11-01T12:00:00Z", "probes": 3},
 "` + idOld + `": {"identity": "` + idOld + `", "name": "web1", "hostname": "web1", "ip": "198.18.0.1", "port": 7440, "first_seen": "2026-11-01T11:00:00Z", "last_seen": "2026-11-01T12:00:00Z", "probes": 3}
}}`
	if err := os.WriteFile(path, []byte(old), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	want = map[string]string{idOld: "web1", idNew: "WEB1-bbbbbbbb00000000"}
	if diff := cmp.Diff(want, named(s)); diff != "" {
		t.Errorf("a state with both (-want +got):\n%s", diff)
	}
}

// reimaged is the re-image of db1: its old identity known in two probes,
// then a new one with the same hostname and machine-id.
func reimaged(t *testing.T) *State {
	t.Helper()
	s := New()
	o := func(id string) Observation {
		x := ob(id, "198.18.0.10", "db1")
		x.Facts.MachineID = "m1"
		return x
	}
	s.Apply(t0, []Observation{o(idOld)}, all, true)
	s.Apply(t0.Add(time.Hour), []Observation{o(idOld)}, all, true)
	s.Apply(t0.Add(2*time.Hour), []Observation{o(idNew)}, all, true)
	s.Apply(t0.Add(3*time.Hour), []Observation{o(idNew)}, all, true)
	if diff := cmp.Diff(map[string]string{idOld: "db1", idNew: "db1-bbbbbbbb00000000"}, named(s)); diff != "" {
		t.Fatalf("re-imaged (-want +got):\n%s", diff)
	}
	return s
}

// TestPrunedNameIsReserved: once the old identity of a re-imaged host is
// pruned, no other identity is given its name, whatever it calls itself,
// for ReserveFor; the operator gives it to the new identity; the old
// identity, if it comes back, has it back.
func TestPrunedNameIsReserved(t *testing.T) {
	s := reimaged(t)
	at := t0.Add(4 * time.Hour)
	pruned, dropped := s.Prune(at, 90*time.Minute)
	if len(pruned) != 1 || pruned[0].Identity != idOld || len(dropped) != 0 {
		t.Fatalf("pruned %v, dropped %v", pruned, dropped)
	}
	wantRes := []Reservation{{Name: "db1", Identity: idOld, Since: at, Why: ReservedPruned}}
	if diff := cmp.Diff(wantRes, s.Reserved); diff != "" {
		t.Fatalf("reserved (-want +got):\n%s", diff)
	}
	// A hostile agent that calls itself db1, or DB1, or renames itself
	// so, does not get it; nor does the new identity on its own.
	s.Apply(at.Add(time.Minute), []Observation{ob(idEvil, "198.18.0.66", "x"), ob(idNew, "198.18.0.10", "db1")}, all, true)
	for i, hostname := range []string{"db1", "DB1"} {
		s.Apply(at.Add(time.Duration(i+2)*time.Minute), []Observation{ob(idEvil, "198.18.0.66", hostname), ob(idNew, "198.18.0.10", "db1")}, all, true)
		want := map[string]string{idNew: "db1-bbbbbbbb00000000", idEvil: hostname + "-cccccccc00000000"}
		if diff := cmp.Diff(want, named(s)); diff != "" {
			t.Fatalf("%s (-want +got):\n%s", hostname, diff)
		}
	}
	// It stays so in the file.
	path := filepath.Join(t.TempDir(), "inventory.json")
	if err := Update(path, func(st *State) error { *st = *s; return nil }); err != nil {
		t.Fatal(err)
	}
	s, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(wantRes, s.Reserved); diff != "" {
		t.Fatalf("reserved after a round trip (-want +got):\n%s", diff)
	}

	// The operator gives it to the new identity: by force, as it is
	// reserved for the old one.
	if _, err := s.GiveName(at.Add(time.Hour), "db1", idNew, false); !errors.Is(err, ErrNameReserved) {
		t.Fatalf("unforced: %v", err)
	}
	done, err := s.GiveName(at.Add(time.Hour), "db1", idNew, true)
	if err != nil {
		t.Fatal(err)
	}
	if done.Host.Identity != idNew || done.OldName != "db1-bbbbbbbb00000000" || done.From != nil || done.Unreserved == nil || *done.Unreserved != wantRes[0] {
		t.Errorf("named %+v", done)
	}
	want := map[string]string{idNew: "db1", idEvil: "DB1-cccccccc00000000"}
	if diff := cmp.Diff(want, named(s)); diff != "" {
		t.Fatalf("given (-want +got):\n%s", diff)
	}
	if len(s.Reserved) != 0 {
		t.Errorf("reservations left: %+v", s.Reserved)
	}
	// It keeps it from probe to probe.
	s.Apply(at.Add(2*time.Hour), []Observation{ob(idEvil, "198.18.0.66", "db1"), ob(idNew, "198.18.0.10", "db1")}, all, true)
	if diff := cmp.Diff(map[string]string{idNew: "db1", idEvil: "db1-cccccccc00000000"}, named(s)); diff != "" {
		t.Fatalf("after a probe (-want +got):\n%s", diff)
	}

	// Without the operator: the old identity comes back within
	// ReserveFor and has its name back; past it, the name is free.
	s = reimaged(t)
	s.Prune(at, 90*time.Minute)
	s.Apply(at.Add(ReserveFor-time.Minute), []Observation{ob(idOld, "198.18.0.10", "db1")}, all, false)
	if got := named(s)[idOld]; got != "db1" || len(s.Reserved) != 0 {
		t.Errorf("back within %v: %q, %+v", ReserveFor, got, s.Reserved)
	}
	s = reimaged(t)
	s.Prune(at, 90*time.Minute)
	s.Apply(at.Add(ReserveFor), []Observation{ob(idEvil, "198.18.0.66", "db1")}, all, false)
	if got := named(s)[idEvil]; got != "db1" || len(s.Reserved) != 0 {
		t.Errorf("after %v: %q, %+v", ReserveFor, got, s.Reserved)
	}
}

// TestEvictedNameIsReserved: an established host pushed out of the state
// by new identities at its address keeps its name reserved; a host seen
// in one probe only does not.
func TestEvictedNameIsReserved(t *testing.T) {
	const ip = "198.18.0.7"
	s := New()
	s.Apply(t0, []Observation{ob(idOld, ip, "db1")}, all, true)
	s.Apply(t0.Add(time.Minute), []Observation{ob(idOld, ip, "db1")}, all, true)
	for i := range MaxPerAddress {
		id := fmt.Sprintf("%032x", 0xe0+i)
		for j := range 2 {
			s.Apply(t0.Add(time.Duration(2+2*i+j)*time.Minute), []Observation{ob(id, ip, fmt.Sprintf("x%d", i))}, all, true)
		}
	}
	if s.Hosts[idOld] != nil {
		t.Fatal("not evicted")
	}
	if len(s.Reserved) != 1 || s.Reserved[0].Name != "db1" || s.Reserved[0].Identity != idOld || s.Reserved[0].Why != ReservedEvicted {
		t.Fatalf("reserved %+v", s.Reserved)
	}
	s.Apply(t0.Add(time.Hour), []Observation{ob(idEvil, "198.18.0.8", "db1")}, all, true)
	if got := named(s)[idEvil]; got != "db1-cccccccc00000000" {
		t.Errorf("evil is %q", got)
	}
}

// TestReservationsAreBounded: past MaxReserved, the reservations an
// eviction made go first, the oldest first; a prune's stay.
func TestReservationsAreBounded(t *testing.T) {
	s := New()
	for i := range MaxReserved {
		why := ReservedEvicted
		if i%2 == 0 {
			why = ReservedPruned
		}
		h := &Host{Identity: fmt.Sprintf("%032x", i), Name: fmt.Sprintf("h%d", i)}
		if d := s.reserve(h, why, t0.Add(time.Duration(i)*time.Second)); len(d) != 0 {
			t.Fatalf("%d: dropped %v", i, d)
		}
	}
	for i := range MaxReserved {
		h := &Host{Identity: fmt.Sprintf("%032x", MaxReserved+i), Name: fmt.Sprintf("e%d", i)}
		d := s.reserve(h, ReservedEvicted, t0.Add(time.Hour))
		if len(s.Reserved) != MaxReserved || len(d) != 1 {
			t.Fatalf("%d: %d reservations, %d dropped", i, len(s.Reserved), len(d))
		}
		if i < MaxReserved/2 {
			want := []Reservation{{Name: fmt.Sprintf("h%d", 2*i+1), Identity: fmt.Sprintf("%032x", 2*i+1), Since: t0.Add(time.Duration(2*i+1) * time.Second), Why: ReservedEvicted}}
			if diff := cmp.Diff(want, d); diff != "" {
				t.Fatalf("%d: (-want +got):\n%s", i, diff)
			}
		} else if d[0].Why != ReservedEvicted {
			t.Fatalf("%d: a prune's reservation went: %+v", i, d)
		}
	}
	pruned := 0
	for _, r := range s.Reserved {
		if r.Why == ReservedPruned {
			pruned++
		}
	}
	if pruned != MaxReserved/2 {
		t.Errorf("%d of the prune's reservations kept, want %d", pruned, MaxReserved/2)
	}
	// A name with a suffix of 16 hex digits needs none.
	if d := s.reserve(&Host{Identity: idD, Name: "web-dddddddd00000000"}, ReservedPruned, t0); len(d) != 0 || s.reservation("web-dddddddd00000000") != nil {
		t.Errorf("a suffixed name was reserved")
	}
}

// TestGiveName: what the operator may give, and what takes --force.
func TestGiveName(t *testing.T) {
	setup := func() *State {
		s := reimaged(t)
		s.Prune(t0.Add(4*time.Hour), 90*time.Minute)
		s.Apply(t0.Add(5*time.Hour), []Observation{ob(idEvil, "198.18.0.66", "web"), ob(idNew, "198.18.0.10", "db1")}, all, true)
		return s
	}
	at := t0.Add(6 * time.Hour)
	for _, c := range []struct{ name, id, err string }{
		{"db_1", idNew, `inventory: name "db_1" is not a host name: want letters, digits, "-" and ".", in labels of 1 to 63 characters that neither start nor end with "-", 253 in all`},
		{"web.", idNew, `inventory: name "web." is not a host name: want letters, digits, "-" and ".", in labels of 1 to 63 characters that neither start nor end with "-", 253 in all`},
		{"{{x}}", idNew, `inventory: name "{{x}}" is not a host name: want letters, digits, "-" and ".", in labels of 1 to 63 characters that neither start nor end with "-", 253 in all`},
		{strings.Repeat("a", 64), idNew, `inventory: name "` + strings.Repeat("a", 64) + `" is not a host name: want letters, digits, "-" and ".", in labels of 1 to 63 characters that neither start nor end with "-", 253 in all`},
		{"LocalHost", idNew, `inventory: name "LocalHost" means something else to Ansible (localhost, localhost.*, *.localhost, all, ungrouped, or an IP address): no host may have it`},
		{"10.0.0.1", idNew, `inventory: name "10.0.0.1" means something else to Ansible (localhost, localhost.*, *.localhost, all, ungrouped, or an IP address): no host may have it`},
		{"db1-cccccccc00000000", idNew, `inventory: name "db1-cccccccc00000000" ends in "-" and hex digits that do not start identity ` + idNew + `: such a name is another identity's suffixed name`},
		{"db1", idD, `inventory: no host with identity ` + idD},
		{"WEB", idNew, `inventory: name "WEB" is held by web (identity ` + idEvil + `, last seen 2026-11-01T17:00:00Z): name held by another host`},
		{"DB1", idNew, `inventory: name "DB1" is reserved until 2026-12-01T16:00:00Z for identity ` + idOld + `, which held it until it was pruned on 2026-11-01T16:00:00Z: name reserved for another identity`},
	} {
		s := setup()
		before := named(s)
		_, err := s.GiveName(at, c.name, c.id, false)
		if err == nil || err.Error() != c.err {
			t.Errorf("%s to %s: %v\nwant %s", c.name, c.id, err, c.err)
		}
		if diff := cmp.Diff(before, named(s)); diff != "" {
			t.Errorf("%s to %s: a refusal changed names (-before +after):\n%s", c.name, c.id, diff)
		}
	}
	s := setup()
	if _, err := s.GiveName(at, "web", idNew, false); !errors.Is(err, ErrNameHeld) {
		t.Errorf("held: %v", err)
	}
	done, err := s.GiveName(at, "web", idNew, true)
	if err != nil || done.From == nil || done.From.Identity != idEvil || done.From.Name != "web-cccccccc00000000" {
		t.Fatalf("forced from a live host: %+v, %v", done, err)
	}
	// The name it had needs no reservation: 16 hex digits of its own.
	if r := s.reservation("db1-bbbbbbbb00000000"); r != nil {
		t.Errorf("a name of 16 hex digits reserved: %+v", r)
	}
	s = setup()
	if _, err := s.GiveName(at, "db1", idNew, false); !errors.Is(err, ErrNameReserved) {
		t.Errorf("reserved: %v", err)
	}
	done, err = s.GiveName(at, "DB1", idNew, true)
	if err != nil || done.Unreserved == nil || done.Unreserved.Identity != idOld || done.Host.Name != "DB1" || len(s.Reserved) != 0 {
		t.Fatalf("forced from a reservation: %+v, %v, %+v", done, err, s.Reserved)
	}
	// A name given with 8 hex digits before stays reserved for its
	// host when the host is given another: 32 bits can be ground.
	s = setup()
	s.Hosts[idNew].Name = "db1-bbbbbbbb"
	if _, err := s.GiveName(at, "db-primary", idNew, false); err != nil {
		t.Fatal(err)
	}
	if r := s.reservation("db1-bbbbbbbb"); r == nil || r.Identity != idNew || r.Why != ReservedNamed {
		t.Errorf("old name not reserved: %+v", s.Reserved)
	}
}
