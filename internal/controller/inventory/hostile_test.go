package inventory

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"

	"github.com/ifl-project/ifl/proto"
)

var t0 = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

// hostileFacts puts payload in every string an agent chooses.
func hostileFacts(hostname, payload string, labels map[string]string) *proto.Facts {
	return &proto.Facts{
		Hostname: hostname, MachineID: payload, OS: proto.OSRelease{ID: payload, PrettyName: payload}, Kernel: payload, AgentVersion: payload,
		Interfaces: []proto.Interface{
			{Name: payload, MAC: payload, MTU: 1500, Flags: []string{payload}, Addrs: []string{"198.18.0.9/24", payload}},
		},
		DefaultRoutes: []proto.Route{{Family: "inet", Gateway: payload, Interface: payload}},
		Labels:        labels,
	}
}

// decodedList is List() as JSON, decoded with every host's variables.
func decodedList(t testing.TB, inv *Ansible) (map[string]any, map[string]map[string]any) {
	t.Helper()
	b, err := json.Marshal(inv.List())
	if err != nil {
		t.Fatal(err)
	}
	var list map[string]any
	if err := json.Unmarshal(b, &list); err != nil {
		t.Fatal(err)
	}
	hv := map[string]map[string]any{}
	for name, v := range list["_meta"].(map[string]any)["hostvars"].(map[string]any) {
		hv[name] = v.(map[string]any)
	}
	return list, hv
}

// plainVars are the variables ifl computes itself; every other one holds
// what an agent chose and must be marked unsafe throughout.
var plainVars = map[string]bool{
	"ansible_host": true, "ifl_identity": true, "ifl_machine_id_hash": true, "ifl_port": true,
	"ifl_first_seen": true, "ifl_last_seen": true, "ifl_stale": true, "ifl_verified_addresses": true,
}

// checkWrapped fails unless every string in v is inside an
// {"__ansible_unsafe": ...} object, and returns those strings.
func checkWrapped(t testing.TB, where string, v any) []string {
	t.Helper()
	switch v := v.(type) {
	case map[string]any:
		if u, ok := v["__ansible_unsafe"]; ok {
			s, isStr := u.(string)
			if len(v) != 1 || !isStr {
				t.Errorf("%s: malformed unsafe object %#v", where, v)
			}
			return []string{s}
		}
		var out []string
		for k, e := range v {
			out = append(out, checkWrapped(t, where+"."+k, e)...)
		}
		return out
	case []any:
		var out []string
		for i, e := range v {
			out = append(out, checkWrapped(t, fmt.Sprintf("%s[%d]", where, i), e)...)
		}
		return out
	case string:
		t.Errorf("%s: agent string %q is not marked unsafe", where, v)
	}
	return nil
}

// checkHostVars checks one host's variables: the plain ones are ifl's,
// the others are wrapped throughout.
func checkHostVars(t testing.TB, name string, vars map[string]any) []string {
	t.Helper()
	var strs []string
	for k, v := range vars {
		if plainVars[k] {
			if _, isMap := v.(map[string]any); isMap {
				t.Errorf("%s.%s: ifl's own value is wrapped: %v", name, k, v)
			}
			continue
		}
		strs = append(strs, checkWrapped(t, name+"."+k, v)...)
	}
	return strs
}

func TestAgentStringsAreUnsafe(t *testing.T) {
	const payload = "{{ lookup('pipe', 'id') }}{% for x in [1] %}x{% endfor %}{# c #}"
	s := New()
	s.Apply(t0, []Observation{{Identity: "0123456789abcdef0123456789abcdef", Addr: netip.MustParseAddr("198.18.0.9"), Port: 7440,
		Facts: hostileFacts("web", payload, map[string]string{"role": payload})}}, all, true)
	inv := s.BuildAnsible(t0, time.Hour, PreferIPv4)
	_, hv := decodedList(t, inv)
	vars := hv["web"]
	if vars == nil {
		t.Fatalf("no host web: %v", hv)
	}
	strs := checkHostVars(t, "web", vars)
	n := 0
	for _, s := range strs {
		if s == payload {
			n++
		}
	}
	// hostname is "web"; os, kernel, agent_version, gateway, mac, label.
	if n != 6 {
		t.Errorf("payload wrapped %d times, want 6: %q", n, strs)
	}
	if vars["ansible_host"] != "198.18.0.9" || vars["ifl_port"] != float64(7440) {
		t.Errorf("ansible_host/port: %v %v", vars["ansible_host"], vars["ifl_port"])
	}
	// --host gives the same.
	one, err := inv.Host("web")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(one)
	var back map[string]any
	json.Unmarshal(b, &back)
	checkHostVars(t, "--host web", back)
	if !strings.Contains(string(b), `"ifl_os":{"__ansible_unsafe":`) {
		t.Errorf("--host: %s", b)
	}

	// YAML: every agent string is tagged !unsafe, nothing else is.
	y, err := inv.YAML()
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(y, &doc); err != nil {
		t.Fatal(err)
	}
	unsafeN := checkYAMLHost(t, &doc, "web")
	if unsafeN != 8 { // hostname, os, kernel, version, gateway, address, mac, label
		t.Errorf("%d !unsafe values, want 8:\n%s", unsafeN, y)
	}
}

// checkYAMLHost finds host name's variables under ifl_all in a YAML
// inventory and checks that the agent's values, and only they, are
// tagged !unsafe; it returns how many are.
func checkYAMLHost(t testing.TB, doc *yaml.Node, name string) int {
	t.Helper()
	get := func(n *yaml.Node, key string) *yaml.Node {
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == key {
				return n.Content[i+1]
			}
		}
		t.Fatalf("no key %q", key)
		return nil
	}
	vars := get(get(get(get(get(doc.Content[0], "all"), "children"), "ifl_all"), "hosts"), name)
	n := 0
	var walk func(key string, v *yaml.Node)
	walk = func(key string, v *yaml.Node) {
		switch v.Kind {
		case yaml.ScalarNode:
			if plainVars[key] {
				if v.Tag == "!unsafe" {
					t.Errorf("%s: ifl's own value tagged !unsafe", key)
				}
				return
			}
			if v.Tag != "!unsafe" {
				t.Errorf("%s: agent value %q has tag %s, want !unsafe", key, v.Value, v.Tag)
			}
			n++
		case yaml.SequenceNode:
			for _, e := range v.Content {
				walk(key, e)
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(v.Content); i += 2 {
				if v.Content[i].Tag == "!unsafe" {
					t.Errorf("%s: a key is tagged", key)
				}
				walk(key, v.Content[i+1])
			}
		}
	}
	for i := 0; i+1 < len(vars.Content); i += 2 {
		walk(vars.Content[i].Value, vars.Content[i+1])
	}
	return n
}

func named(s *State) map[string]string {
	out := map[string]string{}
	for name, h := range s.Names() {
		out[h.Identity] = name
	}
	return out
}

func ob(id, ip, hostname string) Observation {
	return Observation{Identity: id, Addr: netip.MustParseAddr(ip), Port: 7440, Facts: &proto.Facts{Hostname: hostname}}
}

func TestReservedNames(t *testing.T) {
	const id = "0123456789abcdef0123456789abcdef"
	for hostname, want := range map[string]string{
		"web":                     "web",
		"web.example.com":         "web.example.com",
		"localhost":               "ifl-0123456789abcdef",
		"LocalHost":               "ifl-0123456789abcdef",
		"localhost.localdomain":   "ifl-0123456789abcdef",
		"db.localhost":            "ifl-0123456789abcdef",
		"127.0.0.1":               "ifl-0123456789abcdef",
		"::1":                     "ifl-0123456789abcdef",
		"10.1.2.3":                "ifl-0123456789abcdef",
		"127.1":                   "ifl-0123456789abcdef",
		"2130706433":              "ifl-0123456789abcdef",
		"0x7f000001":              "ifl-0123456789abcdef",
		"fe80::1%eth0":            "ifl-0123456789abcdef",
		"all":                     "ifl-0123456789abcdef",
		"ungrouped":               "ifl-0123456789abcdef",
		"ifl_all":                 "ifl-0123456789abcdef",
		"_meta":                   "ifl-0123456789abcdef",
		"role_web":                "ifl-0123456789abcdef",
		"":                        "ifl-0123456789abcdef",
		"web 1":                   "ifl-0123456789abcdef",
		"web\x1b[2J":              "ifl-0123456789abcdef",
		"web\n":                   "ifl-0123456789abcdef",
		"-web":                    "ifl-0123456789abcdef",
		"web.":                    "ifl-0123456789abcdef",
		"{{ 1 }}":                 "ifl-0123456789abcdef",
		"web[1:3]":                "ifl-0123456789abcdef",
		"web:22":                  "ifl-0123456789abcdef",
		strings.Repeat("a", 64):   "ifl-0123456789abcdef",
		strings.Repeat("a.", 127): "ifl-0123456789abcdef",
		"web-deadbeef":            "web-deadbeef-0123456789abcdef",
		"web-01234567":            "web-01234567",
		"ifl-deadbeef":            "ifl-deadbeef-0123456789abcdef",
	} {
		s := New()
		s.Apply(t0, []Observation{ob(id, "198.18.0.5", hostname)}, all, true)
		if got := named(s)[id]; got != want {
			t.Errorf("hostname %q: name %q, want %q", hostname, got, want)
		}
		for name := range s.BuildAnsible(t0, time.Hour, PreferIPv4).HostVars {
			if reservedName(name) {
				t.Errorf("hostname %q: reserved name %q", hostname, name)
			}
		}
	}
}

// TestNamesAreHeld: suffix squatting in both orders over several probes,
// duplicates, persistence and renames.
func TestNamesAreHeld(t *testing.T) {
	const (
		a = "aaaaaaaa00000000000000000000000a"
		b = "bbbbbbbb00000000000000000000000b"
		c = "cccccccc00000000000000000000000c"
	)
	t.Run("squatter after", func(t *testing.T) {
		s := New()
		s.Apply(t0, []Observation{ob(a, "198.18.0.1", "web"), ob(b, "198.18.0.2", "web")}, all, true)
		want := map[string]string{a: "web", b: "web-bbbbbbbb00000000"}
		if diff := cmp.Diff(want, named(s)); diff != "" {
			t.Fatalf("(-want +got):\n%s", diff)
		}
		for i := range 4 {
			// c calls itself by b's name, and the probe order varies.
			obs := []Observation{ob(c, "198.18.0.3", "web-bbbbbbbb00000000"), ob(b, "198.18.0.2", "web"), ob(a, "198.18.0.1", "web")}
			if i%2 == 1 {
				obs[0].Addr = netip.MustParseAddr("198.18.0.0")
			}
			s.Apply(t0.Add(time.Duration(i+1)*time.Minute), obs, all, true)
			want[c] = "web-bbbbbbbb00000000-cccccccc00000000"
			if diff := cmp.Diff(want, named(s)); diff != "" {
				t.Fatalf("probe %d (-want +got):\n%s", i, diff)
			}
		}
	})
	t.Run("squatter first", func(t *testing.T) {
		s := New()
		s.Apply(t0, []Observation{ob(c, "198.18.0.3", "web-bbbbbbbb00000000"), ob(a, "198.18.0.1", "web")}, all, true)
		s.Apply(t0.Add(time.Minute), []Observation{ob(b, "198.18.0.2", "web"), ob(c, "198.18.0.3", "web-bbbbbbbb00000000"), ob(a, "198.18.0.1", "web")}, all, true)
		want := map[string]string{a: "web", b: "web-bbbbbbbb00000000", c: "web-bbbbbbbb00000000-cccccccc00000000"}
		if diff := cmp.Diff(want, named(s)); diff != "" {
			t.Fatalf("(-want +got):\n%s", diff)
		}
	})
	t.Run("grinding a prefix extends the suffix", func(t *testing.T) {
		b2 := "bbbbbbbb00000000ffff00000000000f"
		s := New()
		s.Apply(t0, []Observation{ob(a, "198.18.0.1", "web"), ob(b, "198.18.0.2", "web")}, all, true)
		s.Apply(t0.Add(time.Minute), []Observation{ob(b2, "198.18.0.4", "web")}, all, false)
		if got := named(s)[b2]; got != "web-bbbbbbbb00000000ffff" {
			t.Errorf("name %q", got)
		}
	})
	t.Run("first seen keeps it; persisted", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "inventory.json")
		apply := func(at time.Time, obs ...Observation) {
			t.Helper()
			if err := Update(path, func(s *State) error { s.Apply(at, obs, all, false); return nil }); err != nil {
				t.Fatal(err)
			}
		}
		apply(t0, ob(b, "198.18.0.2", "web"))
		apply(t0.Add(time.Minute), ob(a, "198.18.0.1", "web"))
		// Though a sorts first and both answer, b holds web.
		apply(t0.Add(2*time.Minute), ob(a, "198.18.0.1", "web"), ob(b, "198.18.0.2", "web"))
		s, err := Load(path)
		if err != nil {
			t.Fatal(err)
		}
		if s.Hosts[b].Name != "web" || s.Hosts[a].Name != "web-aaaaaaaa00000000" {
			t.Errorf("names %q %q", s.Hosts[b].Name, s.Hosts[a].Name)
		}
		raw, _ := os.ReadFile(path)
		if !strings.Contains(string(raw), `"name": "web-aaaaaaaa00000000"`) {
			t.Errorf("names are not in the state file:\n%s", raw)
		}
	})
	t.Run("rename releases the old name, no one takes a held one", func(t *testing.T) {
		s := New()
		s.Apply(t0, []Observation{ob(a, "198.18.0.1", "web"), ob(b, "198.18.0.2", "web")}, all, true)
		ch := s.Apply(t0.Add(time.Minute), []Observation{ob(a, "198.18.0.1", "api"), ob(b, "198.18.0.2", "web")}, all, true)
		// b keeps its name though web is free now: names are stable.
		want := map[string]string{a: "api", b: "web-bbbbbbbb00000000"}
		if diff := cmp.Diff(want, named(s)); diff != "" {
			t.Fatalf("(-want +got):\n%s", diff)
		}
		wantCh := []HostChange{{Identity: a, Name: "api", Hostname: "api", OldName: "web", From: "web", To: "api"}}
		if diff := cmp.Diff(wantCh, ch.Renamed); diff != "" {
			t.Errorf("renamed (-want +got):\n%s", diff)
		}
		// A new host called web gets the free name; a's old name is not
		// given back to a when it returns to web.
		s.Apply(t0.Add(2*time.Minute), []Observation{ob(c, "198.18.0.3", "web")}, all, false)
		s.Apply(t0.Add(3*time.Minute), []Observation{ob(a, "198.18.0.1", "web")}, all, false)
		want = map[string]string{a: "web-aaaaaaaa00000000", b: "web-bbbbbbbb00000000", c: "web"}
		if diff := cmp.Diff(want, named(s)); diff != "" {
			t.Fatalf("(-want +got):\n%s", diff)
		}
	})
}

// TestOldStateKeepsItsNames: a state written before names were kept
// loads with the names the old rule gave (first seen keeps the hostname,
// the others get "-" and 8 hex digits of their identity).
func TestOldStateKeepsItsNames(t *testing.T) {
	const old = `{"format": "ifl-inventory", "version": 1, "updated": "2026-11-01T12:00:00Z", "hosts": {
 "bbbbbbbb00000000000000000000000b": {"identity": "bbbbbbbb00000000000000000000000b", "hostname": "web", "ip": "198.18.0.2", "first_seen": "2026-11-01T11:00:00Z", "last_seen": "2026-11-01T12:00:00Z"},
 "aaaaaaaa00000000000000000000000a": {"identity": "aaaaaaaa00000000000000000000000a", "hostname": "web", "ip": "198.18.0.1", "first_seen": "2026-11-01T11:30:00Z", "last_seen": "2026-11-01T12:00:00Z"},
 "cccccccc00000000000000000000000c": {"identity": "cccccccc00000000000000000000000c", "hostname": "db-1", "ip": "198.18.0.3", "first_seen": "2026-11-01T11:00:00Z", "last_seen": "2026-11-01T12:00:00Z"},
 "dddddddd00000000000000000000000d": {"identity": "dddddddd00000000000000000000000d", "hostname": "", "ip": "198.18.0.4", "first_seen": "2026-11-01T11:00:00Z", "last_seen": "2026-11-01T12:00:00Z"}
}}`
	path := filepath.Join(t.TempDir(), "inventory.json")
	os.WriteFile(path, []byte(old), 0o600)
	s, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"bbbbbbbb00000000000000000000000b": "web",
		"aaaaaaaa00000000000000000000000a": "web-aaaaaaaa",
		"cccccccc00000000000000000000000c": "db-1",
		"dddddddd00000000000000000000000d": "ifl-dddddddd",
	}
	if diff := cmp.Diff(want, named(s)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	// A probe of that state keeps them, and so does the file it writes.
	if err := Update(path, func(s *State) error {
		s.Apply(t0, []Observation{ob("aaaaaaaa00000000000000000000000a", "198.18.0.1", "web")}, all, true)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	s, _ = Load(path)
	if diff := cmp.Diff(want, named(s)); diff != "" {
		t.Errorf("after a probe (-want +got):\n%s", diff)
	}
	// A name edited into a state that a host may not hold is given anew,
	// with today's suffix.
	s.Hosts["cccccccc00000000000000000000000c"].Name = "localhost"
	s.Hosts["dddddddd00000000000000000000000d"].Name = "web"
	want["dddddddd00000000000000000000000d"] = "ifl-dddddddd00000000"
	if diff := cmp.Diff(want, named(s)); diff != "" {
		t.Errorf("after a bad edit (-want +got):\n%s", diff)
	}
}

func TestLabelGroups(t *testing.T) {
	many := map[string]string{}
	for i := range 5000 {
		many[fmt.Sprintf("k%04d", i)] = "v"
	}
	s := New()
	ch := s.Apply(t0, []Observation{
		{Identity: "aaaa", Addr: netip.MustParseAddr("198.18.0.1"), Facts: &proto.Facts{Hostname: "a", Labels: map[string]string{
			"role": "all", "env": "123", "stage": "123", "x": "_meta", "y": "ungrouped", "z": "ifl_all",
		}}},
		{Identity: "bbbb", Addr: netip.MustParseAddr("198.18.0.2"), Facts: &proto.Facts{Hostname: "b", Labels: map[string]string{
			"ifl": "all", "IFL_x": "1", "ifl.stale": "1", "": "empty key", "bad key": "v", "{{x}}": "v", "e": "",
			"long": strings.Repeat("v", 129), strings.Repeat("k", 65): "v", "ok": "yes",
		}}},
		{Identity: "cccc", Addr: netip.MustParseAddr("198.18.0.3"), Facts: &proto.Facts{Hostname: "c", Labels: many}},
	}, all, true)
	inv := s.BuildAnsible(t0, time.Hour, PreferIPv4)
	got := map[string][]string{}
	for g, hs := range inv.Groups {
		if !strings.HasPrefix(g, "k") {
			got[g] = hs
		}
	}
	want := map[string][]string{
		"ifl_all": {"a", "b", "c"}, "ifl_stale": {},
		"role_all": {"a"}, "env_123": {"a"}, "stage_123": {"a"}, "x__meta": {"a"}, "y_ungrouped": {"a"}, "z_ifl_all": {"a"},
		"ok_yes": {"b"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("groups (-want +got):\n%s", diff)
	}
	if n := len(inv.Groups) - len(got); n != MaxLabels {
		t.Errorf("%d groups from 5000 labels, want %d", n, MaxLabels)
	}
	if n := len(s.Hosts["cccc"].Labels); n != MaxLabels {
		t.Errorf("%d labels kept in the state", n)
	}
	var warned []string
	for _, w := range ch.Warnings {
		if w.Kind != KindLabels {
			t.Errorf("unexpected warning %+v", w)
		}
		warned = append(warned, fmt.Sprintf("%s %d", w.Name, w.DroppedCount))
	}
	if diff := cmp.Diff([]string{"b 9", "c 4936"}, warned); diff != "" {
		t.Errorf("one warning per host (-want +got):\n%s", diff)
	}
	for _, w := range ch.Warnings {
		if len(w.Dropped) > 20 || len(w.Message) > 1000 {
			t.Errorf("unbounded warning: %d dropped, %d bytes", len(w.Dropped), len(w.Message))
		}
	}
	// No group is a host's name, a built-in or ifl's, and every group
	// name is one Ansible takes without a warning.
	for g := range inv.Groups {
		if inv.HostVars[g] != nil || g == "all" || g == "ungrouped" || g == "_meta" || (strings.HasPrefix(g, "ifl_") && g != "ifl_all" && g != "ifl_stale") {
			t.Errorf("group %q", g)
		}
		if groupUnsafe.MatchString(g) || (g[0] >= '0' && g[0] <= '9') {
			t.Errorf("group %q is not a valid Ansible group name", g)
		}
	}
	// A state from before labels were checked renders without them.
	s.Hosts["aaaa"].Labels["ifl"] = "stale"
	if inv := s.BuildAnsible(t0, time.Hour, PreferIPv4); inv.Groups["ifl_stale"] == nil || len(inv.Groups["ifl_stale"]) != 0 {
		t.Errorf("an old label joined ifl_stale: %v", inv.Groups["ifl_stale"])
	}
}

// TestChurnAtOneAddressIsBounded: an agent that makes a new key for each
// probe stays one host, reported as a conflict each time; one that keeps
// each key for two probes is bounded by MaxPerAddress; a re-imaged host
// whose old identity was established appears as new.
func TestChurnAtOneAddressIsBounded(t *testing.T) {
	const ip = "198.18.0.7"
	s := New()
	s.Apply(t0, []Observation{ob("legit000", "198.18.0.8", "legit")}, all, true)
	for i := range 50 {
		ch := s.Apply(t0.Add(time.Duration(i)*time.Minute), []Observation{ob(fmt.Sprintf("churn%03d", i), ip, "churn"), ob("legit000", "198.18.0.8", "legit")}, all, true)
		if len(ch.New) != 1 {
			t.Fatalf("probe %d: new %+v", i, ch.New)
		}
		if i > 0 && (len(ch.Warnings) != 1 || ch.Warnings[0].Kind != KindReplaced || ch.Warnings[0].OtherIdentity != fmt.Sprintf("churn%03d", i-1) ||
			!strings.Contains(ch.Warnings[0].Message, "replaces churn (churn"+fmt.Sprintf("%03d", i-1)+")")) {
			t.Fatalf("probe %d: warnings %+v", i, ch.Warnings)
		}
		if len(ch.Unseen) != 0 {
			t.Fatalf("probe %d: a replaced host reported unseen: %+v", i, ch.Unseen)
		}
	}
	if len(s.Hosts) != 2 {
		t.Fatalf("%d hosts after 50 keys at one address, want 2", len(s.Hosts))
	}
	if got := named(s)["churn049"]; got != "churn" {
		t.Errorf("the last key is named %q, want churn (the name was freed)", got)
	}

	// Keys kept for two probes each: at most MaxPerAddress at the address.
	s = New()
	var evicted int
	for i := range 40 {
		id := fmt.Sprintf("slow%03d", i/2)
		ch := s.Apply(t0.Add(time.Duration(i)*time.Minute), []Observation{ob(id, ip, "slow")}, all, true)
		for _, w := range ch.Warnings {
			if w.Kind == KindEvicted {
				evicted++
			}
		}
		if len(s.Hosts) > MaxPerAddress {
			t.Fatalf("probe %d: %d hosts at one address", i, len(s.Hosts))
		}
	}
	if evicted != 20-MaxPerAddress {
		t.Errorf("%d evictions reported, want %d", evicted, 20-MaxPerAddress)
	}

	// Re-imaged: the old identity answered twice, the new one is new and
	// the old one is not seen, with the machine-id conflict.
	s = New()
	re := func(id string) Observation {
		o := ob(id, ip, "db")
		o.Facts.MachineID = "m1"
		return o
	}
	s.Apply(t0, []Observation{re("old")}, all, true)
	s.Apply(t0.Add(time.Hour), []Observation{re("old")}, all, true)
	ch := s.Apply(t0.Add(2*time.Hour), []Observation{re("new")}, all, true)
	if len(s.Hosts) != 2 || len(ch.New) != 1 || len(ch.Unseen) != 1 || ch.Unseen[0].Identity != "old" ||
		len(ch.Warnings) != 1 || ch.Warnings[0].Kind != KindMachineID {
		t.Errorf("re-imaged: %d hosts, %+v", len(s.Hosts), ch)
	}
	if got := named(s); got["old"] != "db" || got["new"] != "db-new" {
		t.Errorf("names %v", got)
	}
}

// TestChangesCarryNames: "moved" and "not seen" in one probe name two
// hosts that share a hostname by their inventory names.
func TestChangesCarryNames(t *testing.T) {
	s := New()
	s.Apply(t0, []Observation{ob("aaaa0000", "198.18.0.1", "vm"), ob("bbbb0000", "198.18.0.2", "vm")}, all, true)
	ch := s.Apply(t0.Add(time.Hour), []Observation{ob("bbbb0000", "198.18.0.3", "vm")}, all, true)
	got := []string{ch.Moved[0].Name, ch.Unseen[0].Name}
	if diff := cmp.Diff([]string{"vm-bbbb0000", "vm"}, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	b, _ := json.Marshal(ch)
	if !strings.Contains(string(b), `"name":"vm-bbbb0000","hostname":"vm"`) {
		t.Errorf("json: %s", b)
	}
	var names []string
	for n := range s.Names() {
		names = append(names, n)
	}
	sort.Strings(names)
	if diff := cmp.Diff([]string{"vm", "vm-bbbb0000"}, names); diff != "" {
		t.Errorf("names (-want +got):\n%s", diff)
	}
}

// TestBadLabelsWarnOnce: a host that keeps sending the same bad labels is
// warned about when they appear and when they change, not at every probe.
func TestBadLabelsWarnOnce(t *testing.T) {
	s := New()
	obs := func(labels map[string]string) []Observation {
		return []Observation{{Identity: "0123456789abcdef0123456789abcdef", Addr: netip.MustParseAddr("198.18.0.9"), Port: 7440,
			Facts: &proto.Facts{Hostname: "web", Labels: labels}}}
	}
	count := func(ch Changes) int {
		n := 0
		for _, w := range ch.Warnings {
			if w.Kind == KindLabels {
				n++
			}
		}
		return n
	}
	bad := map[string]string{"role": "web", "bad key": "x", "ifl": "all"}
	for i, tc := range []struct {
		labels map[string]string
		want   int
	}{
		{bad, 1},
		{bad, 0},
		{bad, 0},
		{map[string]string{"role": "web", "bad key": "x"}, 1}, // changed
		{map[string]string{"role": "web"}, 0},                 // clean
		{bad, 1},                                              // back
	} {
		if got := count(s.Apply(t0.Add(time.Duration(i)*time.Minute), obs(tc.labels), all, true)); got != tc.want {
			t.Errorf("probe %d: %d label warnings, want %d", i, got, tc.want)
		}
	}
}
