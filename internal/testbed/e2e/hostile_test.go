package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/ifl-project/ifl/internal/testbed/testnet"
	"github.com/ifl-project/ifl/proto"
)

// ansibleRun runs an Ansible command on this machine (the control node)
// against inventory inv, with a fresh home and temporary directory.
func ansibleRun(t *testing.T, lan *testnet.LAN, state, bin string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), "IFL="+lan.IFL, "IFL_STATE="+state, "ANSIBLE_INVENTORY_UNPARSED_FAILED=true",
		"ANSIBLE_LOCAL_TEMP="+t.TempDir(), "HOME="+t.TempDir(), "ANSIBLE_NOCOLOR=1", "ANSIBLE_HOST_KEY_CHECKING=false")
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	return out.String(), errb.String(), err
}

// rawControl returns the first rune of s that a terminal would act on:
// anything not printable but the line feeds that end lines.
func rawControl(s string) (string, bool) {
	for _, r := range s {
		if r != '\n' && r != ' ' && !unicode.IsPrint(r) {
			return fmt.Sprintf("%q", r), true
		}
	}
	return "", false
}

// TestHostileAgents puts compromised hosts on a LAN beside an honest agent:
// one whose facts carry Jinja templates that would run commands on the
// control node, terminal escapes, the name localhost and labels named
// after Ansible's reserved groups; one that takes another host's
// hostname; one with a new identity key for every connection. The probes'
// human output must show all of it escaped, the inventory must list each
// host once under a name no agent chose for itself, and the real ansible
// and ansible-inventory must parse it without a warning, show the payloads
// literally and run none of them.
func TestHostileAgents(t *testing.T) {
	testnet.Require(t, true)
	testnet.RequireCommands(t, "ansible-core", "ansible", "ansible-inventory")
	dir := t.TempDir()
	marker := filepath.Join(dir, "pwned")
	pipe := func(n int) string { return fmt.Sprintf("{{ lookup('pipe', 'touch %s%d') }}", marker, n) }
	labels := map[string]string{"group": "all", "meta": "_meta", "ungrouped": "ungrouped", "ifl": "all", "env": "123", pipe(1): pipe(2)}
	for i := range 1000 {
		labels[fmt.Sprintf("l%04d", i)] = fmt.Sprintf("v%d", i%7)
	}
	evil := &proto.Facts{
		Hostname:     "localhost",
		MachineID:    "0123456789abcdef0123456789abcdef",
		OS:           proto.OSRelease{ID: "debian", PrettyName: pipe(3)},
		Kernel:       "{% for x in [1] %}" + pipe(4) + "{% endfor %}",
		AgentVersion: "\x1b[2J\x1b]0;owned\a\r\nidentity 00000000000000000000000000000000\x00",
		Interfaces:   []proto.Interface{{Name: "eth0\x1b[31m", MAC: pipe(5), MTU: 1500, Flags: []string{"up"}, Addrs: []string{"198.18.11.9/28"}}},
		Labels:       labels,
	}
	squat := &proto.Facts{Hostname: "web", MachineID: "1123456789abcdef0123456789abcdef", OS: proto.OSRelease{PrettyName: "web\r\nnew:       web at 198.18.11.1"}}
	churn := &proto.Facts{Hostname: "churn", MachineID: "2123456789abcdef0123456789abcdef"}
	spec := testnet.Spec{Name: "e2ehost", Prefix: netip.MustParsePrefix("198.18.11.0/28"), Port: 7440, Hosts: []testnet.HostSpec{
		{Role: testnet.Agent, Name: "web", Labels: map[string]string{"role": "web"}},
		{Role: testnet.Hostile, Name: "evil", Facts: evil},
		{Role: testnet.Hostile, Name: "squat", Facts: squat},
		{Role: testnet.Hostile, Name: "churn", Facts: churn, Churn: true},
	}}
	lan := testnet.Start(t, spec, testnet.BuildIFL(t))
	state := filepath.Join(dir, "inventory.json")

	// The honest web is known first; the squatter comes later and must
	// not take its name.
	if _, stderr, code := ifl(t, lan, "probe", "--state", state, lan.Hosts[0].Addr.String()); code != 0 {
		t.Fatalf("probe of web: exit %d: %s", code, stderr)
	}
	for i := range 4 {
		stdout, stderr, code := ifl(t, lan, "probe", "--state", state, lan.Prefix.String())
		if code != 0 {
			t.Fatalf("probe %d: exit %d: %s", i, code, stderr)
		}
		if bad, ok := rawControl(stdout + stderr); ok {
			t.Errorf("probe %d shows %s raw:\n%q", i, bad, stdout+stderr)
		}
		if n := strings.Count(stdout, "\n"); n != 5 {
			t.Errorf("probe %d: %d lines, want a header and 4 hosts:\n%s", i, n, stdout)
		}
	}
	stdout, stderr, code := ifl(t, lan, "inventory", "--state", state)
	if code != 0 {
		t.Fatalf("inventory: exit %d: %s", code, stderr)
	}
	if bad, ok := rawControl(stdout + stderr); ok {
		t.Errorf("the inventory table shows %s raw:\n%q", bad, stdout+stderr)
	}

	// Through the inventory script, and through the static YAML file.
	script, err := filepath.Abs("../../../scripts/ifl-inventory")
	if err != nil {
		t.Fatal(err)
	}
	yml, _, code := ifl(t, lan, "inventory", "--state", state, "-o", "yaml")
	if code != 0 {
		t.Fatalf("inventory -o yaml: exit %d", code)
	}
	file := filepath.Join(dir, "hosts.yaml")
	if err := os.WriteFile(file, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	web := lan.Hosts[0]
	for _, inv := range []string{script, file} {
		t.Run(filepath.Base(inv), func(t *testing.T) {
			stdout, stderr, err := ansibleRun(t, lan, state, "ansible-inventory", "-i", inv, "--list")
			if err != nil || strings.Contains(stderr, "WARNING") || strings.Contains(stderr, "ERROR") {
				t.Fatalf("ansible-inventory --list: %v\n%s", err, stderr)
			}
			var list ansibleList
			if err := json.Unmarshal([]byte(stdout), &list); err != nil {
				t.Fatalf("%v\n%s", err, stdout)
			}
			byAddr := map[string][]string{}
			for name, vars := range list.Meta.HostVars {
				addr, _ := vars["ansible_host"].(string)
				byAddr[addr] = append(byAddr[addr], name)
				if name == "localhost" || name == "all" || name == "ungrouped" || name == "127.0.0.1" {
					t.Errorf("an agent took the reserved name %q", name)
				}
			}
			// The honest agent keeps its name; every host is listed.
			if vars := list.Meta.HostVars["web"]; vars == nil || vars["ansible_host"] != web.Addr.String() {
				t.Errorf("web is not the honest agent at %v: %v", web.Addr, vars)
			}
			for _, h := range lan.Hosts {
				if len(byAddr[h.Addr.String()]) == 0 {
					t.Errorf("%s (%v) is not in the inventory", h.Name, h.Addr)
				}
			}
			// A host that changes its key every time is not a new host
			// every time.
			if n := len(byAddr[lan.Hosts[3].Addr.String()]); n > 2 {
				t.Errorf("the churning agent is %d hosts: %v", n, byAddr[lan.Hosts[3].Addr.String()])
			}

			// Templating every variable of every host shows the
			// payloads and runs none of them.
			stdout, stderr, err = ansibleRun(t, lan, state, "ansible", "-i", inv, "all", "-m", "debug", "-a", "var=hostvars[inventory_hostname]")
			if err != nil || strings.Contains(stderr, "WARNING") {
				t.Errorf("ansible all -m debug: %v\n%s\n%s", err, stdout, stderr)
			}
			if !strings.Contains(stdout, "lookup('pipe', 'touch "+marker) {
				t.Errorf("the payload is not shown literally:\n%s", stdout)
			}
			// The control node is still localhost.
			stdout, stderr, err = ansibleRun(t, lan, state, "ansible", "-i", inv, "localhost", "-m", "debug", "-a", "var=ifl_identity")
			if err != nil || !strings.Contains(stdout, "VARIABLE IS NOT DEFINED") {
				t.Errorf("ansible localhost reached an agent: %v\n%s\n%s", err, stdout, stderr)
			}
			if m, _ := filepath.Glob(marker + "*"); len(m) > 0 {
				t.Fatalf("an agent's template ran on the control node: %v", m)
			}
		})
	}
	// Nothing in the state is a file name, and nothing was written beside it.
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if !regexp.MustCompile(`^(inventory\.json(\.lock)?|hosts\.yaml)$`).MatchString(e.Name()) {
			t.Errorf("unexpected file %s", e.Name())
		}
	}
}
