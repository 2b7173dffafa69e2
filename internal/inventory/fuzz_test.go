package inventory

import (
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
	// The values read back are the agent's, up to invalid UTF-8.
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
		if got, want := vars["ifl_os"], strings.ToValidUTF8(os, "\uFFFD"); got != want {
			t.Errorf("%s: ifl_os read back as %q, want %q", name, got, want)
		}
	}
}
