package inventory

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"

	"github.com/ifl-project/ifl/proto"
)

func facts(host, mid, ip string, labels map[string]string) *proto.Facts {
	return &proto.Facts{
		Hostname: host, MachineID: mid, OS: proto.OSRelease{PrettyName: "Debian GNU/Linux 12 (bookworm)"}, Kernel: "6.1.0",
		Interfaces: []proto.Interface{
			{Name: "lo", MTU: 65536, Addrs: []string{"127.0.0.1/8"}},
			{Name: "eth0", MAC: "10:22:33:44:55:56", MTU: 1500, Addrs: []string{ip + "/24"}},
		},
		DefaultRoutes: []proto.Route{{Family: "inet", Gateway: "198.18.0.1", Interface: "eth0"}},
		Labels:        labels,
	}
}

func obs(id, ip, host, mid string) Observation {
	return Observation{Identity: id, Addr: netip.MustParseAddr(ip), Port: 7440, Facts: facts(host, mid, ip, map[string]string{"role": "web"})}
}

func all(netip.Addr) bool { return true }

// idA is an identity as the state file holds them.
const idA = "aaaaaaaa00000000000000000000000a"

func TestApply(t *testing.T) {
	s := New()
	t0 := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	ch := s.Apply(t0, []Observation{obs("aaaa", "198.18.0.5", "web-1", "m1"), obs("bbbb", "198.18.0.6", "db-1", "m2")}, all, true)
	if len(ch.New) != 2 || len(ch.Moved)+len(ch.Renamed)+len(ch.Unseen)+len(ch.Warnings) != 0 {
		t.Fatalf("first probe: %+v", ch)
	}

	// web-1 moved and was renamed; db-1 is gone.
	t1 := t0.Add(time.Hour)
	ch = s.Apply(t1, []Observation{obs("aaaa", "198.18.0.23", "web-01", "m1")}, all, true)
	want := Changes{
		New:      []HostChange{},
		Warnings: []Warning{},
		Moved:    []HostChange{{Identity: "aaaa", Name: "web-01", Hostname: "web-01", From: "198.18.0.5", To: "198.18.0.23"}},
		Renamed:  []HostChange{{Identity: "aaaa", Name: "web-01", Hostname: "web-01", OldName: "web-1", From: "web-1", To: "web-01"}},
		Unseen:   []HostChange{{Identity: "bbbb", Name: "db-1", Hostname: "db-1", From: "198.18.0.6", Unseen: time.Hour}},
	}
	if diff := cmp.Diff(want, ch); diff != "" {
		t.Errorf("second probe (-want +got):\n%s", diff)
	}
	h := s.Hosts["aaaa"]
	if h.IP != "198.18.0.23" || !h.LastSeen.Equal(t1) || !h.FirstSeen.Equal(t0) || len(h.History) != 1 {
		t.Errorf("host after the move: %+v", h)
	}
	if diff := cmp.Diff([]string{"198.18.0.23"}, h.Addresses); diff != "" {
		t.Errorf("addresses: %s", diff)
	}

	// An interrupted probe, or one that did not cover db-1's address,
	// reports nothing unseen.
	if ch := s.Apply(t1, nil, all, false); len(ch.Unseen) != 0 {
		t.Errorf("interrupted: %+v", ch.Unseen)
	}
	if ch := s.Apply(t1, nil, func(netip.Addr) bool { return false }, true); len(ch.Unseen) != 0 {
		t.Errorf("not covered: %+v", ch.Unseen)
	}

	// Conflicts: one identity from two addresses; a known machine-id with
	// a new key.
	ch = s.Apply(t1, []Observation{obs("aaaa", "198.18.0.23", "web-01", "m1"), obs("aaaa", "198.18.0.99", "web-01", "m1"), obs("cccc", "198.18.0.7", "db-1", "m2")}, all, true)
	if len(ch.Warnings) != 2 || !strings.Contains(ch.Warnings[0].Message+ch.Warnings[1].Message, "answered from both 198.18.0.23 and 198.18.0.99") ||
		!strings.Contains(ch.Warnings[0].Message+ch.Warnings[1].Message, "machine-id of db-1 (bbbb) now answers with identity cccc") {
		t.Errorf("conflicts: %+v", ch.Warnings)
	}

	// Two new keys with one machine-id in the same probe: a cloned VM.
	ch = s.Apply(t1, []Observation{obs("dddd", "198.18.0.40", "clone", "m9"), obs("eeee", "198.18.0.41", "clone", "m9")}, func(netip.Addr) bool { return false }, true)
	if len(ch.Warnings) != 1 || !strings.Contains(ch.Warnings[0].Message, "machine-id of clone (dddd) now answers with identity eeee") {
		t.Errorf("clone conflicts: %+v", ch.Warnings)
	}

	if pruned, _ := s.Prune(t1.Add(time.Minute), 30*time.Minute); len(pruned) != 1 || pruned[0].Identity != "bbbb" {
		t.Errorf("pruned %v", pruned)
	}
}

func TestAnsible(t *testing.T) {
	s := New()
	t0 := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	o1 := obs("aaaa1111", "198.18.0.5", "web", "m1")
	o2 := obs("bbbb2222", "198.18.0.6", "web", "m2") // same hostname
	o2.Facts.Labels = map[string]string{"role": "db-primary", "rack": "1"}
	s.Apply(t0, []Observation{o1}, all, true)
	s.Apply(t0.Add(time.Minute), []Observation{o1, o2}, all, true)

	inv := s.BuildAnsible(t0.Add(48*time.Hour), 24*time.Hour, PreferIPv4)
	wantGroups := map[string][]string{
		"ifl_all":         {"web", "web-bbbb2222"},
		"ifl_stale":       {"web", "web-bbbb2222"},
		"role_web":        {"web"},
		"role_db_primary": {"web-bbbb2222"},
		"rack_1":          {"web-bbbb2222"},
	}
	if diff := cmp.Diff(wantGroups, inv.Groups); diff != "" {
		t.Errorf("groups (-want +got):\n%s", diff)
	}
	v, err := inv.Host("web")
	if err != nil {
		t.Fatal(err)
	}
	if v["ansible_host"] != "198.18.0.5" || v["ifl_identity"] != "aaaa1111" || v["ifl_machine_id_hash"] == "m1" || len(v["ifl_machine_id_hash"].(string)) != 32 {
		t.Errorf("hostvars %v", v)
	}
	if _, err := inv.Host("nope"); err == nil {
		t.Error("no error for an unknown host")
	}
	b, _ := json.Marshal(inv.List())
	if strings.Contains(string(b), `"m1"`) || !strings.Contains(string(b), `"_meta":{"hostvars"`) {
		t.Errorf("list leaks the machine-id or lacks _meta: %s", b)
	}

	y, err := inv.YAML()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(y), `"10:22:33:44:55:56"`) {
		t.Errorf("MAC not quoted:\n%s", y)
	}
	// Read back as YAML, the MAC is a string.
	var back map[string]any
	if err := yaml.Unmarshal(y, &back); err != nil {
		t.Fatal(err)
	}
	hosts := back["all"].(map[string]any)["children"].(map[string]any)["ifl_all"].(map[string]any)["hosts"].(map[string]any)
	if macs := hosts["web"].(map[string]any)["ifl_macs"].([]any); macs[0] != "10:22:33:44:55:56" {
		t.Errorf("MAC read back as %#v", macs[0])
	}
}

func TestGroupName(t *testing.T) {
	for _, c := range []struct{ k, v, want string }{
		{"role", "web", "role_web"}, {"role", "db-primary", "role_db_primary"}, {"site", "eu.west", "site_eu_west"},
		{"env", "123", "env_123"}, {"1a", "x", "_1a_x"}, {"role", "all", "role_all"}, {"k", "_meta", "k__meta"},
		{"app.kubernetes.io-name", "x", "app_kubernetes_io_name_x"},
	} {
		if got := GroupName(c.k, c.v); got != c.want {
			t.Errorf("GroupName(%q, %q) = %q, want %q", c.k, c.v, got, c.want)
		}
	}
}

func TestUpdateRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state", "inventory.json")
	now := time.Now().UTC().Truncate(time.Second)
	if err := Update(path, func(s *State) error {
		s.Apply(now, []Observation{obs(idA, "198.18.0.5", "web-1", "m1")}, all, true)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	s, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if h := s.Hosts[idA]; h == nil || h.IP != "198.18.0.5" || !h.LastSeen.Equal(now) {
		t.Fatalf("loaded %+v", s.Hosts)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", fi.Mode().Perm())
	}
	// A failing update leaves the file alone.
	before, _ := os.ReadFile(path)
	if err := Update(path, func(s *State) error { s.Hosts = nil; return errors.New("no") }); err == nil {
		t.Fatal("error lost")
	}
	after, _ := os.ReadFile(path)
	if string(before) != string(after) {
		t.Error("a failed update changed the file")
	}
}

func TestForeignFileIsLeftAlone(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{
		"garbage": "not json at all",
		"foreign": `{"format": "something-else", "version": 1}`,
		"empty":   "",
		"damaged": `{"format": "ifl-inventory", "version": 1, "hosts": {"aaaa": {"identity": "bbbb"}}}`,
	} {
		path := filepath.Join(dir, name+".json")
		os.WriteFile(path, []byte(body), 0o600)
		err := Update(path, func(*State) error { return nil })
		if !errors.Is(err, ErrForeign) || !strings.Contains(err.Error(), path) {
			t.Errorf("%s: got %v, want ErrForeign naming the file", name, err)
		}
		if b, _ := os.ReadFile(path); string(b) != body {
			t.Errorf("%s: the file was changed", name)
		}
	}
}

func TestConcurrentUpdatesLoseNothing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "inventory.json")
	const n = 20
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprintf("%032x", i)
			err := Update(path, func(s *State) error {
				s.Apply(time.Now(), []Observation{obs(id, fmt.Sprintf("198.18.0.%d", i+1), id, id)}, func(netip.Addr) bool { return false }, true)
				return nil
			})
			if err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	s, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Hosts) != n {
		t.Fatalf("%d hosts after %d concurrent updates", len(s.Hosts), n)
	}
}

// TestKillDuringWritesLosesNothing kills a process that updates the state
// in a loop, at several moments, and checks each time that the file reads
// back whole with every host the child had confirmed writing.
func TestKillDuringWritesLosesNothing(t *testing.T) {
	if os.Getenv("INVENTORY_CHILD") != "" {
		path := os.Getenv("INVENTORY_CHILD")
		for i := 0; i < 100000; i++ {
			id := fmt.Sprintf("%032x", i)
			// One address each: new keys at one address replace each
			// other (TestChurnAtOneAddressIsBounded).
			ip := netip.AddrFrom4([4]byte{198, 18 + byte(i>>16), byte(i >> 8), byte(i)}).String()
			Update(path, func(s *State) error {
				s.Apply(time.Now(), []Observation{obs(id, ip, id, id)}, func(netip.Addr) bool { return false }, true)
				return nil
			})
			fmt.Println(id) // written and renamed
		}
		return
	}
	path := filepath.Join(t.TempDir(), "inventory.json")
	for round := range 5 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestKillDuringWritesLosesNothing$")
		cmd.Env = append(os.Environ(), "INVENTORY_CHILD="+path)
		out, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Wait for some confirmed writes, then kill -9.
		buf := make([]byte, 4096)
		var got []byte
		for strings.Count(string(got), "\n") < 5*(round+1) {
			k, err := out.Read(buf)
			if err != nil {
				break
			}
			got = append(got, buf[:k]...)
		}
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		s, err := Load(path)
		if err != nil {
			t.Fatalf("round %d: after kill -9: %v", round, err)
		}
		for _, id := range strings.Fields(string(got)) {
			if s.Hosts[id] == nil {
				t.Fatalf("round %d: confirmed host %s lost", round, id)
			}
		}
	}
}

// TestLabelKeysOfAnsible: a label whose key starts with "__" is dropped:
// Ansible's JSON loader takes {"__ansible_vault": ...} for a vault value,
// and the host's labels would vanish into it.
func TestLabelKeysOfAnsible(t *testing.T) {
	kept, dropped := checkLabels(map[string]string{"__ansible_vault": "x", "__ansible_unsafe": "y", "_ok": "z", "role": "web"})
	if len(kept) != 2 || kept["_ok"] != "z" || kept["role"] != "web" {
		t.Errorf("kept %v, want _ok and role", kept)
	}
	if len(dropped) != 2 || dropped[0].Key != "__ansible_unsafe" || dropped[1].Reason != "reserved key: __* are Ansible's" {
		t.Errorf("dropped %+v", dropped)
	}
}

// TestOldAnsibleLabelKeysAreDropped: a state written when keys of
// Ansible's were kept still loads, without them.
func TestOldAnsibleLabelKeysAreDropped(t *testing.T) {
	s := New()
	s.Apply(time.Now(), []Observation{{Identity: "00112233445566778899aabbccddeeff", Addr: netip.MustParseAddr("198.18.0.5"), Port: 7440,
		Facts: &proto.Facts{Hostname: "web", Labels: map[string]string{"role": "web"}}}}, func(netip.Addr) bool { return false }, true)
	s.Hosts["00112233445566778899aabbccddeeff"].Labels["__ansible_vault"] = "x"
	path := filepath.Join(t.TempDir(), "inventory.json")
	if err := Update(path, func(st *State) error { *st = *s; return nil }); err != nil {
		t.Fatal(err)
	}
	back, err := Load(path)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if l := back.Hosts["00112233445566778899aabbccddeeff"].Labels; len(l) != 1 || l["role"] != "web" {
		t.Errorf("labels %v, want role alone", l)
	}
}
