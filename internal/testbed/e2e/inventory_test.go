package e2e

import (
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ifl-project/ifl/internal/testbed/testnet"
)

// ansibleInventory runs the real ansible-inventory against the wrapper
// script in scripts/, with ifl and the state of the test.
func ansibleInventory(t *testing.T, lan *testnet.LAN, state string, args ...string) (stdout, stderr string) {
	t.Helper()
	script, err := filepath.Abs("../../../scripts/ifl-inventory")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ansible-inventory", append([]string{"-i", script}, args...)...)
	cmd.Env = append(os.Environ(), "IFL="+lan.IFL, "IFL_STATE="+state,
		"ANSIBLE_INVENTORY_UNPARSED_FAILED=true", "ANSIBLE_LOCAL_TEMP="+t.TempDir(), "HOME="+t.TempDir())
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("ansible-inventory %v: %v\n%s", args, err, errb.String())
	}
	return out.String(), errb.String()
}

type ansibleList struct {
	Meta struct {
		HostVars map[string]map[string]any `json:"hostvars"`
	} `json:"_meta"`
	All struct {
		Children []string `json:"children"`
	} `json:"all"`
}

func TestAnsibleInventoryFollowsMoves(t *testing.T) {
	testnet.Require(t, true)
	testnet.RequireCommands(t, "ansible-core", "ansible-inventory")
	spec := mixedSpec("e2eansi")
	lan := testnet.Start(t, spec, testnet.BuildIFL(t))
	state := filepath.Join(t.TempDir(), "inventory.json")

	probeOnce := func() string {
		t.Helper()
		_, stderr, code := ifl(t, lan, "probe", "--state", state, lan.Prefix.String())
		if code != 0 {
			t.Fatalf("probe: exit %d: %s", code, stderr)
		}
		return stderr
	}
	check := func() {
		t.Helper()
		stdout, stderr := ansibleInventory(t, lan, state, "--list")
		if strings.Contains(stderr, "WARNING") || strings.Contains(stderr, "ERROR") {
			t.Errorf("ansible-inventory warned:\n%s", stderr)
		}
		var inv ansibleList
		if err := json.Unmarshal([]byte(stdout), &inv); err != nil {
			t.Fatalf("%v\n%s", err, stdout)
		}
		got := map[string]string{}
		for name, vars := range inv.Meta.HostVars {
			got[name], _ = vars["ansible_host"].(string)
			if vars["ifl_machine_id_hash"] == "" || strings.Contains(stdout, `"machine_id"`) {
				t.Errorf("%s: machine-id hash missing, or the raw machine-id shown", name)
			}
		}
		want := map[string]string{}
		for _, h := range lan.Hosts {
			if h.Role == testnet.Agent {
				want[h.Name] = h.Addr.String()
			}
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("inventory hosts and ansible_host (-want +got):\n%s", diff)
		}
		// Label groups: every agent has role=web, the group role_web.
		groups, _ := ansibleInventory(t, lan, state, "--graph")
		if !strings.Contains(groups, "@role_web:") || !strings.Contains(groups, "@ifl_all:") {
			t.Errorf("groups:\n%s", groups)
		}
	}

	stderr := probeOnce()
	if strings.Count(stderr, "new:") != 8 || strings.Contains(stderr, "warning:") {
		t.Errorf("first probe: want 8 new hosts reported and no warning:\n%s", stderr)
	}
	check()

	// DHCP gives an agent another address.
	var mover testnet.Host
	for _, h := range lan.Hosts {
		if h.Role == testnet.Agent {
			mover = h
			break
		}
	}
	to := netip.MustParseAddr("198.18.4.250")
	if err := lan.Move(context.Background(), mover.Name, to); err != nil {
		t.Fatal(err)
	}
	stderr = probeOnce()
	want := "moved:     " + mover.Name + " " + mover.Addr.String() + " -> " + to.String()
	if !strings.Contains(stderr, want) || strings.Contains(stderr, "new:") {
		t.Errorf("second probe: want %q and nothing new:\n%s", want, stderr)
	}
	check()

	// The static YAML inventory says the same to ansible-inventory.
	yml, _, code := ifl(t, lan, "inventory", "--state", state, "-o", "yaml")
	if code != 0 {
		t.Fatalf("inventory -o yaml: exit %d", code)
	}
	file := filepath.Join(t.TempDir(), "hosts.yaml")
	os.WriteFile(file, []byte(yml), 0o600)
	cmd := exec.Command("ansible-inventory", "-i", file, "--host", mover.Name)
	cmd.Env = append(os.Environ(), "ANSIBLE_LOCAL_TEMP="+t.TempDir(), "HOME="+t.TempDir())
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), `"ansible_host": "`+to.String()+`"`) || strings.Contains(string(out), "WARNING") {
		t.Errorf("static inventory: %v\n%s", err, out)
	}
}

// TestProbeWatch runs ifl probe --watch, moves a host while it runs, and
// stops it with SIGTERM: each change is one event, and it stops cleanly.
func TestProbeWatch(t *testing.T) {
	testnet.Require(t, true)
	spec := testnet.Spec{Name: "e2ewatch", Prefix: netip.MustParsePrefix("198.18.6.0/26"), Port: 7440,
		Hosts: testnet.Mix(map[testnet.Role]int{testnet.Agent: 3, testnet.Closed: 1}, 5)}
	lan := testnet.Start(t, spec, testnet.BuildIFL(t))
	state := filepath.Join(t.TempDir(), "inventory.json")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := lan.Controller.Command(ctx, lan.IFL, "probe", "--network-key", lan.NetworkKey, "--watch", "1s", "--state", state)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	log := readEvents(stderr, 100, "")
	next := func(name string) map[string]any { t.Helper(); return log.next(t, name) }
	var agent testnet.Host
	for range 3 {
		ev := next("host_new")
		for _, h := range lan.Hosts {
			if h.Identity == ev["identity"] {
				agent = h
			}
		}
	}
	next("probed")
	to := netip.MustParseAddr("198.18.6.60")
	if err := lan.Move(context.Background(), agent.Name, to); err != nil {
		t.Fatal(err)
	}
	ev := next("host_moved")
	if ev["hostname"] != agent.Name || ev["from"] != agent.Addr.String() || ev["to"] != to.String() {
		t.Errorf("move event %v, want %s from %v to %v", ev, agent.Name, agent.Addr, to)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	next("stopped")
	if err := cmd.Wait(); err != nil {
		t.Errorf("watch did not stop cleanly on SIGTERM: %v", err)
	}
}
