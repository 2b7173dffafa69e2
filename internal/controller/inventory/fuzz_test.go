package inventory

import (
	"encoding/json"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// ansibleCases are inputs that once broke the rendering, or nearly did;
// they stay here as table cases.
var ansibleCases = []struct{ host1, host2, os, key, value string }{
	{"web", "web", "{{ lookup('pipe', 'id') }}", "role", "all"},
	{"localhost", "web-aaaaaaaa", "{% for x in [1] %}{% endfor %}", "ifl", "all"},
	{"web-bbbbbbbb", "web", "\x1b]0;x\a\r\n\x00", "env", "123"},
	{"127.0.0.1", "::1", "\xff\xfe", "_meta", "ungrouped"},
	{"", " ", "\u2028\u0085\ufeff", "k", "\xff"},
	{"a.", "ALL", "!unsafe x", "a.b-c", "{{x}}"},
}

func FuzzAnsible(f *testing.F) {
	for _, c := range ansibleCases {
		f.Add(c.host1, c.host2, c.os, c.key, c.value)
	}
	f.Fuzz(func(t *testing.T, host1, host2, os, key, value string) {
		// Each string lands in a dozen facts of three hosts: past a
		// few hundred bytes an input only slows the search down, and
		// the length bounds are tested on their own.
		if len(host1)+len(host2)+len(os)+len(key)+len(value) > 512 {
			t.Skip()
		}
		checkAnsible(t, host1, host2, os, key, value)
	})
}

func first(s string, _ bool) string { return s }

func TestAnsibleCases(t *testing.T) {
	for _, c := range ansibleCases {
		checkAnsible(t, c.host1, c.host2, c.os, c.key, c.value)
	}
}

// checkAnsible renders two agents with the given facts, the second one
// twice under two identities, and checks what Ansible would read.
func checkAnsible(t *testing.T, host1, host2, os, key, value string) {
	s := New()
	o := func(id, ip, host string) Observation {
		f := hostileFacts(host, os, map[string]string{key: value, "role": value, value: key})
		return Observation{Identity: id, Addr: netip.MustParseAddr(ip), Port: 7440, Facts: f}
	}
	s.Apply(t0, []Observation{o("aaaaaaaa00000000000000000000000a", "198.18.0.1", host1)}, all, true)
	s.Apply(t0.Add(time.Minute), []Observation{
		o("aaaaaaaa00000000000000000000000a", "198.18.0.1", host1),
		o("bbbbbbbb00000000000000000000000b", "198.18.0.2", host2),
		o("cccccccc00000000000000000000000c", "198.18.0.3", host2),
	}, all, true)
	inv := s.BuildAnsible(t0, time.Hour, PreferIPv4)
	checkListing(t, s)
	list, hv := decodedList(t, inv)
	if len(hv) != 3 {
		t.Fatalf("%d hosts: %v", len(hv), hv)
	}
	for name, vars := range hv {
		if reservedName(name) || !nameFor(name, vars["ifl_identity"].(string)) {
			t.Errorf("host name %q", name)
		}
		checkHostVars(t, name, vars)
		if list[name] != nil {
			t.Errorf("host %q is also a group", name)
		}
	}
	for g := range list {
		if g == "all" || g == "_meta" {
			continue
		}
		if g == "ungrouped" || groupUnsafe.MatchString(g) || g[0] >= '0' && g[0] <= '9' ||
			(strings.HasPrefix(strings.ToLower(g), "ifl_") && g != "ifl_all" && g != "ifl_stale") {
			t.Errorf("group %q", g)
		}
	}
	y, err := inv.YAML()
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(y, &doc); err != nil {
		t.Fatalf("YAML does not parse: %v\n%s", err, y)
	}
	for name := range hv {
		checkYAMLHost(t, &doc, name)
	}
	// The values read back are the agent's, up to invalid UTF-8 and the
	// bound on their length.
	var back struct {
		All struct {
			Children map[string]struct {
				Hosts map[string]map[string]any `yaml:"hosts"`
			} `yaml:"children"`
		} `yaml:"all"`
	}
	if err := yaml.Unmarshal(y, &back); err != nil {
		t.Fatal(err)
	}
	for name, vars := range back.All.Children["ifl_all"].Hosts {
		if got, want := vars["ifl_os"], first(bound(os, MaxOS)); got != want {
			t.Errorf("%s: ifl_os read back as %q, want %q", name, got, want)
		}
	}
}

// stateSeeds are states to start FuzzState from, beside the corpus in
// testdata/fuzz/FuzzState.
var stateSeeds = []string{
	`{"format": "ifl-inventory", "version": 1}`,
	`{"format": "ifl-inventory", "version": 1, "hosts": {"aaaaaaaa00000000000000000000000a": {"identity": "aaaaaaaa00000000000000000000000a", "name": "WEB", "hostname": "web", "ip": "fe80::1%eth0", "verified": [{"addr": "fe80::1%eth0", "at": "2026-11-01T12:00:00Z"}], "port": 7440, "first_seen": "2026-11-01T12:00:00Z", "last_seen": "2026-11-01T12:00:00Z", "probes": 2}, "bbbbbbbb00000000000000000000000b": {"identity": "bbbbbbbb00000000000000000000000b", "name": "web", "hostname": "web", "ip": "198.18.0.2", "port": 7440, "first_seen": "2026-11-01T12:00:00Z", "last_seen": "2026-11-01T12:00:00Z"}}, "reserved": [{"name": "db1", "identity": "cccccccc00000000000000000000000c", "since": "2026-11-01T12:00:00Z", "why": "pruned"}]}`,
}

// FuzzState reads states as Load does: one it takes holds only what ifl
// writes, renders for Ansible with ifl's values plain and valid and every
// other one unsafe, and reads back as it was written.
func FuzzState(f *testing.F) {
	f.Add(goodState(f))
	for _, s := range stateSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := parse("fuzz", b)
		if err != nil {
			if !errors.Is(err, ErrForeign) && !strings.Contains(err.Error(), "this ifl reads version") {
				t.Fatalf("an error that is not ErrForeign: %v", err)
			}
			return
		}
		checkState(t, s)
		checkListing(t, s)
		out, err := json.Marshal(s)
		if err != nil {
			t.Fatalf("a state read cannot be written: %v", err)
		}
		back, err := parse("fuzz", out)
		if err != nil {
			t.Fatalf("a state written cannot be read: %v\n%s", err, out)
		}
		if again, _ := json.Marshal(back); string(again) != string(out) {
			t.Fatalf("read back differently:\n%s\n%s", out, again)
		}
	})
}

// checkState checks what a state that Load took gives Ansible.
func checkState(t *testing.T, s *State) {
	t.Helper()
	names := map[string]bool{}
	for id, h := range s.Hosts {
		if !validIdentity(id) || h.Identity != id || !nameFor(h.Name, id) || names[strings.ToLower(h.Name)] {
			t.Fatalf("host %q named %q", id, h.Name)
		}
		names[strings.ToLower(h.Name)] = true
	}
	for _, r := range s.Reserved {
		if names[strings.ToLower(r.Name)] {
			t.Fatalf("reserved name %q is held", r.Name)
		}
	}
	for _, prefer := range []Prefer{PreferIPv4, PreferIPv6} {
		_, hv := decodedList(t, s.BuildAnsible(t0, time.Hour, prefer))
		for name, vars := range hv {
			checkHostVars(t, name, vars)
			if a, ok := vars["ansible_host"].(string); !ok {
				t.Fatalf("%s: ansible_host %v", name, vars["ansible_host"])
			} else if p, err := parseAddr(a); err != nil || p.String() != a {
				t.Fatalf("%s: ansible_host %q", name, a)
			}
			if id, _ := vars["ifl_identity"].(string); !validIdentity(id) {
				t.Fatalf("%s: ifl_identity %v", name, vars["ifl_identity"])
			}
			for _, v := range vars["ifl_verified_addresses"].([]any) {
				if a, ok := v.(string); !ok {
					t.Fatalf("%s: verified address %v", name, v)
				} else if _, err := parseAddr(a); err != nil {
					t.Fatalf("%s: verified address %q", name, a)
				}
			}
		}
	}
}
