package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ifl-project/ifl/internal/controller/inventory"
	"github.com/ifl-project/ifl/internal/testbed/testnet"
)

// The collection ifl.fleet as a whole, and the inventory plugin where no
// LAN is needed: its errors, its documentation, Ansible's own sanity
// tests, the tarball, and a state of 10,000 hosts.

// oneLine joins what Ansible wrapped at the terminal's width.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// squashed is s without its white space: Ansible wraps long lines at
// spaces and at hyphens too (--stale-after), so a wrapped message is
// compared with what it should say this way.
func squashed(s string) string { return strings.Join(strings.Fields(s), "") }

// fakeIFL writes a program, the shell script body, to stand in for ifl.
func fakeIFL(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ifl")
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestAnsiblePluginErrors: when ifl fails, the inventory source fails with
// ifl's own message (and ansible-inventory with it, under
// ANSIBLE_INVENTORY_UNPARSED_FAILED); so it does when the program is
// missing, does not answer within the timeout (it is stopped), or prints
// what is not an inventory. What ifl says on stderr when it succeeds
// comes out as a warning.
func TestAnsiblePluginErrors(t *testing.T) {
	testnet.RequireCommands(t, "ansible-core", "ansible-inventory")
	iflBin := testnet.BuildIFL(t)
	missing := filepath.Join(t.TempDir(), "inventory.json")
	out, err := exec.Command(iflBin, "inventory", "--list", "--state", missing).CombinedOutput()
	iflSays := strings.TrimSpace(string(out))
	if err == nil || !strings.HasPrefix(iflSays, "ifl: inventory: no inventory state at "+missing) {
		t.Fatalf("ifl inventory on a missing state: %v: %s", err, out)
	}
	state := filepath.Join(t.TempDir(), "inventory.json")
	now := time.Now().UTC().Truncate(time.Second)
	err = inventory.Update(state, func(s *inventory.State) error {
		id := "00112233445566778899aabbccddeeff"
		s.Hosts[id] = &inventory.Host{Identity: id, Name: "web", Hostname: "web", IP: "198.18.1.1",
			Verified: []inventory.Verified{{Addr: "198.18.1.1", At: now}}, Port: 7440, FirstSeen: now, LastSeen: now}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slow := fakeIFL(t, "exec sleep 300")
	for _, tc := range []struct {
		name, config string
		want         string // in stderr, lines joined
		warning      string // a success that warns
	}{
		{"missing state", "binary: " + iflBin + "\nstate: " + missing,
			iflBin + " inventory --list --prefer ipv4 --stale-after 24h --state " + missing + " failed (exit status 2): " + iflSays, ""},
		{"bad flag value", "binary: " + iflBin + "\nstate: " + state + "\nstale_after: soon",
			iflBin + " inventory --list --prefer ipv4 --stale-after soon --state " + state +
				" failed (exit status 2): ifl: --stale-after: bad age \"soon\": want a positive duration such as 90m, 24h or 7d", ""},
		{"no program", "binary: /nonexistent/ifl",
			"cannot run /nonexistent/ifl: No such file or directory (install ifl, or set the option binary or IFL to its path)", ""},
		{"timeout", "binary: " + slow + "\ntimeout: 1",
			slow + " inventory --list --prefer ipv4 --stale-after 24h: no answer within 1.0 s: it was stopped (the option timeout sets the limit)", ""},
		{"not JSON", "binary: " + fakeIFL(t, "echo 'not an inventory'"),
			"ifl inventory --list printed what is not JSON: Expecting value: line 1 column 1 (char 0)", ""},
		{"not an inventory", "binary: " + fakeIFL(t, "echo '{\"all\": {}}'"),
			"ifl inventory --list printed no _meta.hostvars: is this ifl?", ""},
		{"warning", "binary: " + fakeIFL(t, "echo 'inventory: warning: a word from ifl' >&2\nexec "+iflBin+` "$@"`) + "\nstate: " + state,
			"", "[WARNING]: ifl: inventory: warning: a word from ifl"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := writeConfig(t, "plugin: ifl.fleet.ifl\n"+tc.config+"\n")
			start := time.Now()
			stdout, stderr, err := runAnsible(t, ansibleEnv(t), "ansible-inventory", "-i", cfg, "--list")
			took := time.Since(start)
			if tc.want == "" {
				if err != nil || squashed(stderr) != squashed(tc.warning) || !strings.Contains(stdout, `"web"`) {
					t.Errorf("want web listed and only %q on stderr: %v\n%s\n%s", tc.warning, err, stdout, stderr)
				}
				return
			}
			if err == nil {
				t.Errorf("ansible-inventory succeeded; want it to fail with %q", tc.want)
			}
			if want := "Failed to parse " + cfg + " with auto plugin: " + tc.want; !strings.Contains(squashed(stderr), squashed(want)) {
				t.Errorf("stderr does not say %q:\n%s", want, stderr)
			}
			if tc.name == "timeout" && took > time.Minute {
				t.Errorf("took %v: the slow program was not stopped at the timeout", took)
			}
		})
	}
}

// TestAnsibleCollection: ansible-doc renders the plugin's documentation
// and lists it; the sanity tests of ansible-test that need no container
// and no download pass (ansible-test's pep8 and yamllint run as
// ansible-test runs them, with Debian's pycodestyle and yamllint, since
// ansible-test would install its own with pip); make collection builds a
// tarball with the licence, which ansible-galaxy installs, and from which
// ansible-doc reads the plugin.
func TestAnsibleCollection(t *testing.T) {
	testnet.RequireCommands(t, "ansible-core", "ansible-doc", "ansible-test", "ansible-galaxy")
	testnet.RequireCommands(t, "pycodestyle", "pycodestyle")
	testnet.RequireCommands(t, "yamllint", "yamllint")
	env := ansibleEnv(t)

	stdout, stderr, err := runAnsible(t, env, "ansible-doc", "-t", "inventory", "ifl.fleet.ifl")
	if err != nil {
		t.Fatalf("ansible-doc: %v\n%s", err, stderr)
	}
	noWarnings(t, "ansible-doc", stderr)
	for _, want := range []string{"> IFL.FLEET.IFL", "ifl inventory --list", "- binary", "- state", "set_via:", "IFL_STATE",
		"- prefer", "- stale", "- stale_after", "- timeout", "- keyed_groups", "- compose", "- cache_plugin",
		"EXAMPLES:", "plugin: ifl.fleet.ifl", "stale: exclude", "prefix: site"} {
		if !strings.Contains(squashed(stdout), squashed(want)) {
			t.Errorf("ansible-doc does not show %q:\n%s", want, stdout)
		}
	}
	stdout, stderr, err = runAnsible(t, env, "ansible-doc", "-t", "inventory", "-l", "ifl.fleet")
	if err != nil || !strings.HasPrefix(stdout, "ifl.fleet.ifl ") || strings.Count(stdout, "\n") != 1 {
		t.Errorf("ansible-doc -l ifl.fleet: %v\n%s\n%s", err, stdout, stderr)
	}
	noWarnings(t, "ansible-doc -l", stderr)

	// ansible-test wants the collection under ansible_collections/ and
	// writes its results there: a copy.
	root := filepath.Join(t.TempDir(), "ansible_collections", "ifl", "fleet")
	if err := os.MkdirAll(filepath.Dir(root), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", "-R", filepath.Join(collections(t), "ansible_collections", "ifl", "fleet"), filepath.Dir(root)).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	py, err := exec.Command("/usr/bin/python3", "-c", "import sys; print('%d.%d' % sys.version_info[:2])").Output()
	if err != nil {
		t.Fatal(err)
	}
	// The sanity tests that run offline with Debian's ansible-core: the
	// others (ansible-doc, import, pep8, pylint, runtime-metadata,
	// validate-modules, yamllint) install pinned packages with pip first.
	sanity := []string{"action-plugin-docs", "changelog", "compile", "empty-init", "future-import-boilerplate", "ignores",
		"line-endings", "metaclass-boilerplate", "no-assert", "no-basestring", "no-dict-iteritems", "no-dict-iterkeys",
		"no-dict-itervalues", "no-get-exception", "no-illegal-filenames", "no-main-display", "no-smart-quotes",
		"no-unicode-literals", "replace-urlopen", "shebang", "symlinks", "use-argspec-type-path", "use-compat-six"}
	args := []string{"sanity", "--python", strings.TrimSpace(string(py)), "--color", "no"}
	for _, s := range sanity {
		args = append(args, "--test", s)
	}
	cmd := exec.Command("ansible-test", args...)
	cmd.Dir, cmd.Env = root, env
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Errorf("ansible-test sanity: %v\n%s", err, out)
	}
	for _, s := range sanity {
		if !strings.Contains(string(out), fmt.Sprintf("Running sanity test %q", s)) {
			t.Errorf("ansible-test did not run %s:\n%s", s, out)
		}
	}
	// pep8 and yamllint as ansible-test runs them.
	plugin := filepath.Join("plugins", "inventory", "ifl.py")
	cmd = exec.Command("/usr/bin/python3", "-m", "pycodestyle", "--max-line-length", "160", "--ignore", "E402,W503,W504,E741", plugin)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("pycodestyle, as ansible-test's pep8: %v\n%s", err, out)
	}
	linter, err := exec.Command("/usr/bin/python3", "-c", "import ansible_test, os; print(os.path.dirname(ansible_test.__file__))").Output()
	if err != nil {
		t.Fatal(err)
	}
	cmd = exec.Command("/usr/bin/python3", filepath.Join(strings.TrimSpace(string(linter)), "_util", "controller", "sanity", "yamllint", "yamllinter.py"),
		"galaxy.yml", filepath.Join("meta", "runtime.yml"), plugin)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil || oneLine(string(out)) != `{ "messages": [] }` {
		t.Errorf("yamllint, as ansible-test's yamllint: %v\n%s", err, out)
	}

	// The tarball, installed the way users of ansible-galaxy would.
	dist := t.TempDir()
	cmd = exec.Command("make", "-s", "collection", "COLLECTION_OUT="+dist)
	cmd.Dir, cmd.Env = filepath.Join("..", "..", ".."), env
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make collection: %v\n%s", err, out)
	}
	tarball := filepath.Join(dist, "ifl-fleet-1.0.0.tar.gz")
	list, err := exec.Command("tar", "tzf", tarball).Output()
	if err != nil {
		t.Fatalf("tar tzf %s: %v", tarball, err)
	}
	files := strings.Fields(string(list))
	slices.Sort(files)
	want := []string{"CHANGELOG.md", "FILES.json", "LICENSE", "MANIFEST.json", "README.md", "meta/", "meta/runtime.yml",
		"plugins/", "plugins/inventory/", "plugins/inventory/ifl.py"}
	if !slices.Equal(files, want) {
		t.Errorf("the tarball holds %v, want %v", files, want)
	}
	installed := t.TempDir()
	if _, stderr, err := runAnsible(t, env, "ansible-galaxy", "collection", "install", "-p", installed, tarball); err != nil {
		t.Fatalf("ansible-galaxy collection install: %v\n%s", err, stderr)
	}
	fromTarball := ansibleEnv(t)
	for i, e := range fromTarball {
		if strings.HasPrefix(e, "ANSIBLE_COLLECTIONS_PATH=") {
			fromTarball[i] = "ANSIBLE_COLLECTIONS_PATH=" + installed
		}
	}
	stdout, stderr, err = runAnsible(t, fromTarball, "ansible-doc", "-t", "inventory", "ifl.fleet.ifl")
	if err != nil || !strings.Contains(stdout, filepath.Join(installed, "ansible_collections", "ifl", "fleet", plugin)) {
		t.Errorf("ansible-doc of the installed tarball: %v\n%s\n%s", err, stdout, stderr)
	}
}

// writeHosts writes a state of n hosts that passes ifl's checks: site
// labels s0 to s19, two operating systems, roles, every tenth host last
// seen two days ago.
func writeHosts(t *testing.T, path string, n int) {
	t.Helper()
	now := time.Now().UTC().Truncate(time.Second)
	err := inventory.Update(path, func(s *inventory.State) error {
		for i := range n {
			id := fmt.Sprintf("%032x", uint64(i)*2654435761+1)
			ip := fmt.Sprintf("198.%d.%d.%d", 18+i/65536, i/256%256, i%256)
			name := fmt.Sprintf("h%05d", i)
			seen := now
			if i%10 == 0 {
				seen = now.Add(-48 * time.Hour)
			}
			s.Hosts[id] = &inventory.Host{Identity: id, Name: name, Hostname: name, MachineID: id, IP: ip,
				Verified: []inventory.Verified{{Addr: ip, At: seen}}, Port: 7440, Addresses: []string{ip},
				MACs: []string{fmt.Sprintf("02:00:%02x:%02x:%02x:%02x", i>>24&255, i>>16&255, i>>8&255, i&255)},
				OS:   []string{"Debian GNU/Linux 12 (bookworm)", "Ubuntu 24.04.1 LTS"}[i%2], Kernel: "6.1.0-28-amd64", AgentVersion: "1.0.0",
				Labels:    map[string]string{"site": fmt.Sprintf("s%d", i%20), "role": []string{"web", "db", "bastion"}[i%3]},
				FirstSeen: seen, LastSeen: seen, Rounds: 2}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestAnsiblePlugin10k reads a state of 10,000 hosts through the plugin
// with keyed groups on two facts (site label, OS), as ansible-inventory
// --list and --graph, beside the script, and from the cache: every host
// and group is there, and the plugin adds at most a fifth to the
// script's ansible-inventory --list, and at most half to its --graph,
// which loads the inventory and no more. The times are logged.
func TestAnsiblePlugin10k(t *testing.T) {
	testnet.RequireCommands(t, "ansible-core", "ansible-inventory")
	iflBin := testnet.BuildIFL(t)
	state := filepath.Join(t.TempDir(), "inventory.json")
	writeHosts(t, state, 10000)
	bin, calls := countingIFL(t, iflBin)
	config := fmt.Sprintf(`plugin: ifl.fleet.ifl
binary: %s
state: %s
keyed_groups:
  - key: ifl_labels.site
    prefix: site
  - key: ifl_os | regex_replace(' .*', '')
    prefix: os
`, bin, state)
	cfg := writeConfig(t, config)
	cached := writeConfig(t, config+"cache: true\ncache_plugin: ansible.builtin.jsonfile\ncache_connection: "+t.TempDir()+"\n")
	script, err := filepath.Abs("../../../scripts/ifl-inventory")
	if err != nil {
		t.Fatal(err)
	}
	env := ansibleEnv(t)
	scriptEnv := append(slices.Clone(env), "IFL="+iflBin, "IFL_STATE="+state)
	timed := func(env []string, inv, action string) (string, time.Duration) {
		t.Helper()
		start := time.Now()
		stdout, stderr, err := runAnsible(t, env, "ansible-inventory", "-i", inv, action)
		took := time.Since(start)
		if err != nil {
			t.Fatalf("ansible-inventory -i %s %s: %v\n%s", inv, action, err, stderr)
		}
		noWarnings(t, "ansible-inventory "+action, stderr)
		return stdout, took
	}

	stdout, pluginList := timed(env, cfg, "--list")
	_, scriptList := timed(scriptEnv, script, "--list")
	list := parseList(t, stdout)
	if len(list.HostVars) != 10000 {
		t.Errorf("%d hosts, want 10000", len(list.HostVars))
	}
	sizes := map[string]int{}
	for g, hosts := range list.Groups {
		sizes[g] = len(hosts)
	}
	want := map[string]int{"ifl_all": 10000, "ifl_stale": 1000, "os_Debian": 5000, "os_Ubuntu": 5000,
		"role_web": 3334, "role_db": 3333, "role_bastion": 3333}
	for i := range 20 {
		want[fmt.Sprintf("site_s%d", i)] = 500
	}
	if diff := cmp.Diff(want, sizes); diff != "" {
		t.Errorf("group sizes (-want +got):\n%s", diff)
	}

	var pluginGraph, scriptGraph, cachedGraph []time.Duration
	timed(env, cached, "--graph") // fills the cache
	for range 3 {
		_, d := timed(env, cfg, "--graph")
		pluginGraph = append(pluginGraph, d)
		_, d = timed(scriptEnv, script, "--graph")
		scriptGraph = append(scriptGraph, d)
		_, d = timed(env, cached, "--graph")
		cachedGraph = append(cachedGraph, d)
	}
	if n := len(calls()); n != 5 {
		t.Errorf("ifl ran %d times, want 5: once for --list, once to fill the cache, three times uncached", n)
	}
	start := time.Now()
	if out, err := exec.Command(iflBin, "inventory", "--list", "--state", state).Output(); err != nil || len(out) == 0 {
		t.Fatalf("ifl inventory --list: %v", err)
	}
	iflAlone := time.Since(start)
	t.Logf("10,000 hosts, keyed groups on site and OS: ansible-inventory --list: plugin %v, script %v (%.2fx); --graph (median of 3): plugin %v, script %v, plugin from its cache %v; ifl inventory --list alone %v",
		pluginList.Round(time.Millisecond), scriptList.Round(time.Millisecond), float64(pluginList)/float64(scriptList),
		median(pluginGraph).Round(time.Millisecond), median(scriptGraph).Round(time.Millisecond), median(cachedGraph).Round(time.Millisecond),
		iflAlone.Round(time.Millisecond))
	// Times are figures for README, not assertions: a shared machine's
	// timings are noise. The plugin's cost is measured in make bench.
}
