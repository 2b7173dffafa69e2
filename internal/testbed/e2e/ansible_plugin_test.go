package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ifl-project/ifl/internal/controller/inventory"
	"github.com/ifl-project/ifl/internal/testbed/testnet"
)

// The inventory plugin ifl.fleet.ifl (scripts/ansible_collections/ifl/fleet),
// run by the real ansible-core with the collection from the source tree.

// collections is the folder that holds ansible_collections/ifl/fleet, as
// Ansible's collections path.
func collections(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs("../../../scripts")
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// ansibleEnv is the environment of an Ansible command in these tests: the
// collection from the source tree and nowhere else, a fresh home, no
// colour, no byte code written into the source tree, and an inventory
// that fails to parse an error rather than a warning.
func ansibleEnv(t *testing.T, extra ...string) []string {
	t.Helper()
	var env []string
	for _, e := range os.Environ() {
		k, _, _ := strings.Cut(e, "=")
		if k == "IFL" || strings.HasPrefix(k, "IFL_") || strings.HasPrefix(k, "ANSIBLE_") {
			continue
		}
		env = append(env, e)
	}
	return append(append(env, "ANSIBLE_COLLECTIONS_PATH="+collections(t), "HOME="+t.TempDir(),
		"ANSIBLE_LOCAL_TEMP="+t.TempDir(), "ANSIBLE_NOCOLOR=1", "PYTHONDONTWRITEBYTECODE=1",
		"ANSIBLE_INVENTORY_UNPARSED_FAILED=true"), extra...)
}

// runAnsible runs an Ansible program (ansible-inventory, ansible,
// ansible-doc) on this machine with ansibleEnv.
func runAnsible(t *testing.T, env []string, bin string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = env
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	return out.String(), errb.String(), err
}

// countingIFL writes a program that records each command line it is run
// with, one line each, and runs ifl with it: given as the plugin's
// binary, it counts the plugin's calls of ifl.
func countingIFL(t *testing.T, ifl string) (bin string, calls func() []string) {
	t.Helper()
	dir := t.TempDir()
	bin, log := filepath.Join(dir, "ifl"), filepath.Join(dir, "calls")
	script := fmt.Sprintf("#!/bin/sh\nprintf '%%s\\n' \"$*\" >> %s\nexec %s \"$@\"\n", log, ifl)
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return bin, func() []string {
		b, err := os.ReadFile(log)
		if os.IsNotExist(err) {
			return nil
		}
		if err != nil {
			t.Fatal(err)
		}
		return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	}
}

// writeConfig writes an inventory file for the plugin (its name ends in
// ifl.yml, as the plugin wants) and returns its path.
func writeConfig(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ifl.yml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// exampleConfig is the inventory file of README's example, with the
// program, state and cache folder of the test.
func exampleConfig(bin, state, cacheDir string, cache bool) string {
	return fmt.Sprintf(`plugin: ifl.fleet.ifl
binary: %s
state: %s
stale: exclude
prefer: ipv4
keyed_groups:
  - key: ifl_labels.site
    prefix: site
  - key: ifl_os | regex_replace(' .*', '')
    prefix: os
compose:
  ansible_port: 2222 if 'bastion' in (ifl_labels.role | default('')) else 22
groups:
  stale_but_known: ifl_stale
cache: %t
cache_plugin: ansible.builtin.jsonfile
cache_connection: %s
cache_timeout: 60
`, bin, state, cache, cacheDir)
}

// inventoryList is ansible-inventory --list: groups, and hostvars kept as
// raw JSON, unsafe markers and all.
type inventoryList struct {
	Groups   map[string][]string
	Children []string
	HostVars map[string]map[string]json.RawMessage
}

func parseList(t *testing.T, stdout string) inventoryList {
	t.Helper()
	var raw map[string]json.RawMessage
	if err := json.Unmarshal([]byte(stdout), &raw); err != nil {
		t.Fatalf("ansible-inventory --list: %v\n%s", err, stdout)
	}
	inv := inventoryList{Groups: map[string][]string{}}
	for name, body := range raw {
		switch name {
		case "_meta":
			var meta struct {
				HostVars map[string]map[string]json.RawMessage `json:"hostvars"`
			}
			if err := json.Unmarshal(body, &meta); err != nil {
				t.Fatal(err)
			}
			inv.HostVars = meta.HostVars
		case "all":
			var all struct {
				Children []string `json:"children"`
			}
			if err := json.Unmarshal(body, &all); err != nil {
				t.Fatal(err)
			}
			inv.Children = all.Children
		default:
			var g struct {
				Hosts []string `json:"hosts"`
			}
			if err := json.Unmarshal(body, &g); err != nil {
				t.Fatal(err)
			}
			sort.Strings(g.Hosts)
			inv.Groups[name] = g.Hosts
		}
	}
	return inv
}

// parseGraph reads ansible-inventory --graph: the hosts of each group
// under all, sorted.
func parseGraph(t *testing.T, stdout string) map[string][]string {
	t.Helper()
	groups := map[string][]string{}
	group := ""
	for _, line := range strings.Split(strings.TrimSpace(stdout), "\n") {
		switch {
		case line == "@all:":
		case strings.HasPrefix(line, "  |--@") && strings.HasSuffix(line, ":"):
			group = strings.TrimSuffix(strings.TrimPrefix(line, "  |--@"), ":")
			groups[group] = []string{}
		case strings.HasPrefix(line, "  |  |--") && group != "":
			groups[group] = append(groups[group], strings.TrimPrefix(line, "  |  |--"))
		default:
			t.Fatalf("--graph: unexpected line %q in\n%s", line, stdout)
		}
	}
	for g := range groups {
		sort.Strings(groups[g])
	}
	return groups
}

// unsafeString reads a variable that must be marked unsafe, as Ansible
// writes one: {"__ansible_unsafe": "..."}.
func unsafeString(raw json.RawMessage) (string, bool) {
	var u map[string]string
	if json.Unmarshal(raw, &u) != nil || len(u) != 1 {
		return "", false
	}
	s, ok := u["__ansible_unsafe"]
	return s, ok
}

// noWarnings fails the test when an Ansible command said anything on
// stderr: a warning, a deprecation, an error.
func noWarnings(t *testing.T, what, stderr string) {
	t.Helper()
	if strings.TrimSpace(stderr) != "" {
		t.Errorf("%s wrote to stderr:\n%s", what, stderr)
	}
}

// ansibleGroupSafe is the group name Ansible's keyed_groups makes of a
// value: every character but letters, digits and _ made _, and a leading
// digit too.
func ansibleGroupSafe(s string) string {
	return regexp.MustCompile(`^[^A-Za-z_]|[^A-Za-z0-9_]`).ReplaceAllString(s, "_")
}

// iflList runs ifl inventory --list on state and returns its hostvars, raw.
func iflList(t *testing.T, ifl, state string) map[string]map[string]json.RawMessage {
	t.Helper()
	out, err := exec.Command(ifl, "inventory", "--list", "--state", state).Output()
	if err != nil {
		t.Fatalf("ifl inventory --list: %v", err)
	}
	return parseList(t, string(out)).HostVars
}

// makeStale marks the hosts of names as last seen two days ago, as a
// state would hold hosts that stopped answering.
func makeStale(t *testing.T, state string, names []string) {
	t.Helper()
	then := time.Now().Add(-48 * time.Hour).UTC().Truncate(time.Second)
	err := inventory.Update(state, func(s *inventory.State) error {
		n := 0
		for _, h := range s.Hosts {
			if slices.Contains(names, h.Name) {
				h.FirstSeen, h.LastSeen = then, then
				for i := range h.Verified {
					h.Verified[i].At = then
				}
				n++
			}
		}
		if n != len(names) {
			return fmt.Errorf("%d of %v in the state", n, names)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// median of durations.
func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// pluginSpec is a /22 of 40 agents among hosts of every other role; the
// agents carry labels site (a or b) and role (web, db, or bastion).
func pluginSpec() testnet.Spec {
	hosts := testnet.Mix(map[testnet.Role]int{
		testnet.Agent: 40, testnet.WrongKey: 2, testnet.Impostor: 2,
		testnet.Closed: 10, testnet.Dropped: 4, testnet.Empty: 6,
	}, 11)
	n := 0
	for i := range hosts {
		if hosts[i].Role == testnet.Agent {
			hosts[i].Labels = map[string]string{"site": []string{"a", "b"}[n%2], "role": []string{"web", "db", "bastion", "web", "db"}[n%5]}
			n++
		}
	}
	return testnet.Spec{Name: "e2eplug", Prefix: netip.MustParsePrefix("198.19.64.0/22"), Port: 7440, Hosts: hosts}
}

// TestAnsiblePlugin reads a /22 of 40 agents through the plugin with the
// README's example (keyed groups, compose, groups, stale hosts excluded,
// a jsonfile cache): every verified agent that is not stale is listed with
// ansible_host at its address and exactly the variables ifl gave it
// (unsafe ones still unsafe), the groups are exact in --list and --graph,
// a second run comes from the cache without starting ifl, stale: only and
// include select the stale hosts, and the plugin adds at most a fifth to
// the time of the same ansible-inventory --list through the script.
func TestAnsiblePlugin(t *testing.T) {
	testnet.Require(t, true)
	testnet.RequireCommands(t, "ansible-core", "ansible-inventory")
	lan := testnet.Start(t, pluginSpec(), testnet.BuildIFL(t))
	state := filepath.Join(t.TempDir(), "inventory.json")
	if _, stderr, code := ifl(t, lan, "probe", "--state", state, lan.Prefix.String()); code != 0 {
		t.Fatalf("probe: exit %d: %s", code, stderr)
	}
	agents := map[string]testnet.Host{}
	var names []string
	for _, h := range lan.Hosts {
		if h.Role == testnet.Agent {
			agents[h.Name] = h
			names = append(names, h.Name)
		}
	}
	sort.Strings(names)
	// Four agents stopped answering two days ago.
	stale := []string{names[0], names[9], names[18], names[27]}
	makeStale(t, state, stale)
	truth := iflList(t, lan.IFL, state)
	if len(truth) != 40 {
		t.Fatalf("ifl inventory lists %d hosts, want the 40 agents", len(truth))
	}

	bin, calls := countingIFL(t, lan.IFL)
	cacheDir := t.TempDir()
	cfg := writeConfig(t, exampleConfig(bin, state, cacheDir, true))
	env := ansibleEnv(t)
	stdout, stderr, err := runAnsible(t, env, "ansible-inventory", "-i", cfg, "--list")
	if err != nil {
		t.Fatalf("ansible-inventory --list: %v\n%s", err, stderr)
	}
	noWarnings(t, "ansible-inventory --list", stderr)
	list := parseList(t, stdout)
	first, _ := json.Marshal(list)
	wantArgs := "inventory --list --prefer ipv4 --stale-after 24h --state " + state
	if got := calls(); !slices.Equal(got, []string{wantArgs}) {
		t.Errorf("ifl was run %q, want once with %q", got, wantArgs)
	}

	// Hosts, addresses, variables, groups.
	osName, _ := unsafeString(truth[names[1]]["ifl_os"])
	osGroup := "os_" + ansibleGroupSafe(strings.SplitN(osName, " ", 2)[0])
	wantGroups := map[string][]string{"ifl_all": {}, osGroup: {}}
	var fresh []string
	for _, name := range names {
		if slices.Contains(stale, name) {
			continue
		}
		fresh = append(fresh, name)
		h := agents[name]
		for _, g := range []string{"ifl_all", osGroup, "site_" + h.Labels["site"], "role_" + h.Labels["role"]} {
			wantGroups[g] = append(wantGroups[g], name)
		}
		vars := list.HostVars[name]
		port := "22"
		if h.Labels["role"] == "bastion" {
			port = "2222"
		}
		// Made of an agent's label, so unsafe too, as Ansible keeps
		// whatever an expression made of unsafe values.
		if got, ok := unsafeString(vars["ansible_port"]); !ok || got != port {
			t.Errorf("%s: ansible_port %s, want %s marked unsafe (compose)", name, vars["ansible_port"], port)
		}
		if string(vars["ansible_host"]) != `"`+h.Addr.String()+`"` {
			t.Errorf("%s: ansible_host %s, want %v", name, vars["ansible_host"], h.Addr)
		}
		delete(vars, "ansible_port")
		if diff := cmp.Diff(jsonValues(t, truth[name]), jsonValues(t, vars)); diff != "" {
			t.Errorf("%s: variables differ from ifl's (-ifl +plugin):\n%s", name, diff)
		}
		for _, v := range []string{"ifl_hostname", "ifl_os", "ifl_kernel", "ifl_agent_version"} {
			if _, ok := unsafeString(vars[v]); !ok {
				t.Errorf("%s: %s is %s, not marked unsafe", name, v, vars[v])
			}
		}
	}
	if got := slices.Sorted(maps.Keys(list.HostVars)); !slices.Equal(got, fresh) {
		t.Errorf("hosts %v, want the 36 agents not stale %v", got, fresh)
	}
	gotGroups := map[string][]string{}
	for g, hosts := range list.Groups {
		if g != "ungrouped" {
			gotGroups[g] = hosts
		}
	}
	for g := range wantGroups {
		sort.Strings(wantGroups[g])
	}
	if diff := cmp.Diff(wantGroups, gotGroups); diff != "" {
		t.Errorf("groups (-want +got):\n%s", diff)
	}

	// The same groups in the graph, ifl_stale and stale_but_known empty.
	stdout, stderr, err = runAnsible(t, env, "ansible-inventory", "-i", cfg, "--graph")
	if err != nil {
		t.Fatalf("ansible-inventory --graph: %v\n%s", err, stderr)
	}
	noWarnings(t, "ansible-inventory --graph", stderr)
	wantGraph := map[string][]string{"ungrouped": {}, "ifl_stale": {}}
	for g, hosts := range wantGroups {
		wantGraph[g] = hosts
	}
	if diff := cmp.Diff(wantGraph, parseGraph(t, stdout)); diff != "" {
		t.Errorf("--graph (-want +got):\n%s", diff)
	}
	// The graph came from the cache: ifl still ran once.
	if n := len(calls()); n != 1 {
		t.Errorf("after a second run with the cache, ifl ran %d times, want 1", n)
	}
	cached, stderr, err := runAnsible(t, env, "ansible-inventory", "-i", cfg, "--list")
	if err != nil || len(calls()) != 1 {
		t.Fatalf("cached --list: %v, ifl ran %d times, want 1\n%s", err, len(calls()), stderr)
	}
	if again, _ := json.Marshal(parseList(t, cached)); string(again) != string(first) {
		t.Errorf("the cached inventory differs from the first:\n%s", cached)
	}
	// ansible-playbook --flush-cache asks the plugin for a fresh inventory.
	play := filepath.Join(t.TempDir(), "play.yml")
	if err := os.WriteFile(play, []byte("- hosts: all\n  gather_facts: false\n  tasks: []\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if stdout, stderr, err = runAnsible(t, env, "ansible-playbook", "-i", cfg, play, "--list-hosts", "--flush-cache"); err != nil || len(calls()) != 2 {
		t.Errorf("ansible-playbook --flush-cache: %v, ifl ran %d times, want 2\n%s", err, len(calls()), stderr)
	}
	noWarnings(t, "ansible-playbook --list-hosts --flush-cache", stderr)
	if want := fmt.Sprintf("  hosts (%d):", len(fresh)); !strings.Contains(stdout, want) {
		t.Errorf("ansible-playbook --list-hosts: want %q in\n%s", want, stdout)
	}

	// stale: only lists the stale hosts, include every host; both with
	// the group stale_but_known of the example.
	for _, tc := range []struct {
		mode string
		want []string
	}{{"only", stale}, {"include", names}} {
		text := strings.Replace(exampleConfig(bin, state, cacheDir, false), "stale: exclude", "stale: "+tc.mode, 1)
		stdout, stderr, err := runAnsible(t, env, "ansible-inventory", "-i", writeConfig(t, text), "--list")
		if err != nil {
			t.Fatalf("stale: %s: %v\n%s", tc.mode, err, stderr)
		}
		noWarnings(t, "stale: "+tc.mode, stderr)
		l := parseList(t, stdout)
		if got := slices.Sorted(maps.Keys(l.HostVars)); !slices.Equal(got, tc.want) {
			t.Errorf("stale: %s: hosts %v, want %v", tc.mode, got, tc.want)
		}
		if !slices.Equal(l.Groups["ifl_stale"], stale) || !slices.Equal(l.Groups["stale_but_known"], stale) {
			t.Errorf("stale: %s: ifl_stale %v, stale_but_known %v, want %v", tc.mode, l.Groups["ifl_stale"], l.Groups["stale_but_known"], stale)
		}
	}

	// Time: ansible-inventory --list through the plugin (no cache: ifl
	// runs each time) and through the script, interleaved, 5 each.
	script, err := filepath.Abs("../../../scripts/ifl-inventory")
	if err != nil {
		t.Fatal(err)
	}
	nocache := writeConfig(t, exampleConfig(lan.IFL, state, cacheDir, false))
	scriptEnv := append(slices.Clone(env), "IFL="+lan.IFL, "IFL_STATE="+state)
	var viaPlugin, viaScript []time.Duration
	for range 5 {
		for _, run := range []struct {
			env []string
			inv string
			to  *[]time.Duration
		}{{env, nocache, &viaPlugin}, {scriptEnv, script, &viaScript}} {
			start := time.Now()
			if _, stderr, err := runAnsible(t, run.env, "ansible-inventory", "-i", run.inv, "--list"); err != nil {
				t.Fatalf("ansible-inventory -i %s --list: %v\n%s", run.inv, err, stderr)
			}
			*run.to = append(*run.to, time.Since(start))
		}
	}
	p, s := median(viaPlugin), median(viaScript)
	// A figure for README, not an assertion: a shared machine's timings
	// are noise.
	t.Logf("ansible-inventory --list, 40 agents, median of 5: plugin %v, script %v (%.2fx)", p.Round(time.Millisecond), s.Round(time.Millisecond), float64(p)/float64(s))
}

// jsonValues decodes raw variables, to compare them whatever their
// formatting.
func jsonValues(t *testing.T, vars map[string]json.RawMessage) map[string]any {
	t.Helper()
	out := map[string]any{}
	for k, v := range vars {
		var x any
		if err := json.Unmarshal(v, &x); err != nil {
			t.Fatalf("%s: %v", k, err)
		}
		out[k] = x
	}
	return out
}

// warnings returns what an Ansible command warned, one string each, its
// lines joined as they were before Ansible wrapped them.
func warnings(stderr string) []string {
	var out []string
	for _, w := range strings.Split(stderr, "[WARNING]:")[1:] {
		out = append(out, strings.Join(strings.Fields(w), " "))
	}
	sort.Strings(out)
	return out
}

// TestAnsiblePluginHostile puts compromised agents on a LAN beside an
// honest one and reads them through the plugin with keyed_groups made of
// their labels and hostnames with no prefix, compose made of their facts,
// and a group conditional on them, through a jsonfile cache. The labels
// name Ansible's reserved groups, ifl's groups, the control node and the
// honest host; the facts carry Jinja that would run commands on the
// control node. No keyed group takes a reserved name, an ifl_* group or
// a host's name (each refusal is one warning, and nothing else is
// warned), every variable is what ifl gave (unsafe stays unsafe; ifl
// drops labels named __ansible_unsafe or __ansible_vault), what compose
// made of agent values is unsafe, and templating every variable of every
// host, before and after the cache, runs no payload.
func TestAnsiblePluginHostile(t *testing.T) {
	testnet.Require(t, true)
	testnet.RequireCommands(t, "ansible-core", "ansible", "ansible-inventory")
	dir := t.TempDir()
	marker := filepath.Join(dir, "pwned")
	pipe := func(n int) string { return fmt.Sprintf("{{ lookup('pipe', 'touch %s%d') }}", marker, n) }
	evil := &testnet.HostSpec{Role: testnet.Hostile, Name: "evil"}
	evil.Facts = testnet.HostileFacts()
	evil.Facts.MachineID = "3123456789abcdef0123456789abcdef"
	evil.Facts.OS.PrettyName = pipe(1)
	evil.Facts.Kernel = "{% for x in [1] %}" + pipe(2) + "{% endfor %}"
	evil.Facts.Interfaces[0].MAC = pipe(3)
	evil.Facts.Labels = map[string]string{
		"role": "all", "site": "ifl_stale", "tier": "localhost", "zone": "web", "group": "ungrouped",
		"meta": "_meta", "rack": "IFL_All", "env": pipe(4), "__ansible_unsafe": "x", "__ansible_vault": "y",
	}
	squat := &testnet.HostSpec{Role: testnet.Hostile, Name: "squat"}
	squat.Facts = testnet.HostileFacts()
	squat.Facts.Hostname = "web"
	squat.Facts.MachineID = "4123456789abcdef0123456789abcdef"
	squat.Facts.Labels = map[string]string{"role": "frontend"}
	spec := testnet.Spec{Name: "e2eplhx", Prefix: netip.MustParsePrefix("198.19.68.0/28"), Port: 7440, Hosts: []testnet.HostSpec{
		{Role: testnet.Agent, Name: "web", Labels: map[string]string{"role": "frontend"}}, *evil, *squat,
	}}
	lan := testnet.Start(t, spec, testnet.BuildIFL(t))
	state := filepath.Join(dir, "inventory.json")
	// The honest web is known first; the squatter must not take its name.
	if _, stderr, code := ifl(t, lan, "probe", "--state", state, lan.Hosts[0].Addr.String()); code != 0 {
		t.Fatalf("probe of web: exit %d: %s", code, stderr)
	}
	if _, stderr, code := ifl(t, lan, "probe", "--state", state, lan.Prefix.String()); code != 0 {
		t.Fatalf("probe: exit %d: %s", code, stderr)
	}
	truth := iflList(t, lan.IFL, state)
	byAddr := map[string]string{}
	for name, vars := range truth {
		var addr string
		json.Unmarshal(vars["ansible_host"], &addr)
		byAddr[addr] = name
	}
	web, evilName, squatName := byAddr[lan.Hosts[0].Addr.String()], byAddr[lan.Hosts[1].Addr.String()], byAddr[lan.Hosts[2].Addr.String()]
	if web != "web" || !strings.HasPrefix(evilName, "ifl-") || !strings.HasPrefix(squatName, "web-") || len(truth) != 3 {
		t.Fatalf("ifl named the hosts %v: want web, ifl-... for localhost, web-... for the squatter", byAddr)
	}

	bin, calls := countingIFL(t, lan.IFL)
	cfg := writeConfig(t, fmt.Sprintf(`plugin: ifl.fleet.ifl
binary: %s
state: %s
leading_separator: false
keyed_groups:
  - key: ifl_labels.role
  - key: ifl_labels.site
  - key: ifl_labels.tier
  - key: ifl_labels.zone
  - key: ifl_labels.group
  - key: ifl_labels.meta
  - key: ifl_labels.rack
  - key: ifl_labels.env
    prefix: env
  - key: ifl_hostname
    prefix: name
compose:
  os_text: ifl_os
  kernel_text: ifl_kernel
  env_text: ifl_labels.env | default('')
groups:
  says_touch: "'touch' in ifl_os"
cache: true
cache_plugin: ansible.builtin.jsonfile
cache_connection: %s
`, bin, state, t.TempDir()))
	env := ansibleEnv(t)
	from := func(key, name, why string) string {
		return fmt.Sprintf("ifl.fleet.ifl: no group %s for host %s from keyed_groups key %s: %s", name, evilName, key, why)
	}
	wantWarnings := []string{
		from("ifl_labels.role", "all", "reserved by Ansible"),
		from("ifl_labels.site", "ifl_stale", "the groups ifl and ifl_* are ifl's"),
		from("ifl_labels.tier", "localhost", "reserved by Ansible"),
		from("ifl_labels.zone", "web", "a host's name"),
		from("ifl_labels.group", "ungrouped", "reserved by Ansible"),
		from("ifl_labels.meta", "_meta", "reserved by Ansible"),
		from("ifl_labels.rack", "IFL_All", "the groups ifl and ifl_* are ifl's"),
	}
	sort.Strings(wantWarnings)

	stdout, stderr, err := runAnsible(t, env, "ansible-inventory", "-i", cfg, "--list")
	if err != nil {
		t.Fatalf("ansible-inventory --list: %v\n%s", err, stderr)
	}
	if diff := cmp.Diff(wantWarnings, warnings(stderr)); diff != "" || strings.Count(stderr, "[WARNING]") != len(wantWarnings) {
		t.Errorf("warnings (-want +got):\n%s\nstderr:\n%s", diff, stderr)
	}
	list := parseList(t, stdout)
	envGroup := "env_" + ansibleGroupSafe(pipe(4))
	want := map[string][]string{
		"ifl_all":         {evilName, web, squatName},
		"role_frontend":   {web, squatName},
		"frontend":        {web, squatName},
		"role_all":        {evilName},
		"site_ifl_stale":  {evilName},
		"tier_localhost":  {evilName},
		"zone_web":        {evilName},
		"group_ungrouped": {evilName},
		"meta__meta":      {evilName},
		"rack_IFL_All":    {evilName},
		envGroup:          {evilName},
		"name_localhost":  {evilName},
		"name_web":        {web, squatName},
		"says_touch":      {evilName},
	}
	for g := range want {
		sort.Strings(want[g])
	}
	if diff := cmp.Diff(want, list.Groups); diff != "" {
		t.Errorf("groups (-want +got):\n%s", diff)
	}
	composed := map[string]string{"os_text": "ifl_os", "kernel_text": "ifl_kernel"}
	for name, vars := range list.HostVars {
		for c, from := range composed {
			v, ok := unsafeString(vars[c])
			if w, _ := unsafeString(truth[name][from]); !ok || v != w {
				t.Errorf("%s: %s is %s, want %q marked unsafe", name, c, vars[c], w)
			}
			delete(vars, c)
		}
		if name == evilName {
			if got, ok := unsafeString(vars["env_text"]); !ok || got != pipe(4) {
				t.Errorf("%s: env_text is %s, want %q marked unsafe", name, vars["env_text"], pipe(4))
			}
		}
		delete(vars, "env_text")
		if diff := cmp.Diff(jsonValues(t, truth[name]), jsonValues(t, vars)); diff != "" {
			t.Errorf("%s: variables differ from ifl's (-ifl +plugin):\n%s", name, diff)
		}
	}

	// Templating every variable of every host shows the payloads and
	// runs none of them: first from ifl, then from the cache.
	for _, round := range []string{"first", "cached"} {
		stdout, stderr, err := runAnsible(t, env, "ansible", "-i", cfg, "all", "-m", "debug", "-a", "var=hostvars[inventory_hostname]")
		if err != nil {
			t.Errorf("%s: ansible all -m debug: %v\n%s\n%s", round, err, stdout, stderr)
		}
		if diff := cmp.Diff(wantWarnings, warnings(stderr)); diff != "" {
			t.Errorf("%s: ansible warned (-want +got):\n%s", round, diff)
		}
		if !strings.Contains(stdout, "lookup('pipe', 'touch "+marker+"1')") || !strings.Contains(stdout, "lookup('pipe', 'touch "+marker+"4')") {
			t.Errorf("%s: the payloads are not shown literally:\n%s", round, stdout)
		}
		stdout, stderr, err = runAnsible(t, env, "ansible", "-i", cfg, "all", "-m", "debug", "-a", "var=[os_text,kernel_text,env_text,ifl_labels]")
		if err != nil || !strings.Contains(stdout, "lookup('pipe', 'touch "+marker+"2')") || !strings.Contains(stdout, "lookup('pipe', 'touch "+marker+"4')") {
			t.Errorf("%s: ansible all -m debug -a msg=...: %v\n%s\n%s", round, err, stdout, stderr)
		}
		// The control node is still the implicit localhost.
		stdout, stderr, err = runAnsible(t, env, "ansible", "-i", cfg, "localhost", "-m", "debug", "-a", "var=ifl_identity")
		if err != nil || !strings.Contains(stdout, "VARIABLE IS NOT DEFINED") {
			t.Errorf("%s: ansible localhost reached an agent: %v\n%s\n%s", round, err, stdout, stderr)
		}
		if m, _ := filepath.Glob(marker + "*"); len(m) > 0 {
			t.Fatalf("%s: an agent's template ran on the control node: %v", round, m)
		}
	}
	if n := len(calls()); n != 1 {
		t.Errorf("ifl ran %d times, want 1: every run after the first reads the cache", n)
	}
}
