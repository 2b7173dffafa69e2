package inventory_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ifl-project/ifl/internal/controller/inventory"
	"github.com/ifl-project/ifl/internal/testbed/etcdtest"
	"github.com/ifl-project/ifl/internal/testbed/testnet"
	"github.com/ifl-project/ifl/proto"
)

// requireAnsible skips without ansible-core, or fails where CI requires
// every test to run.
func requireAnsible(t *testing.T) {
	t.Helper()
	testnet.RequireCommands(t, "ansible-core", "ansible", "ansible-inventory")
}

// hostileState writes a state that hostile agents would make: Jinja in
// every string they choose, names that Ansible reserves or that another
// host's suffix uses, control characters, overlong strings and thousands
// of labels. It returns the payloads and the files they would create if
// Ansible templated them.
func hostileState(t *testing.T, path string) (payloads, pwned []string) {
	dir := t.TempDir()
	pwned = []string{filepath.Join(dir, "PWN-expr"), filepath.Join(dir, "PWN-stmt")}
	expr := "{{ lookup('pipe','touch " + pwned[0] + "') }}"
	stmt := "{% for x in [1] %}{{ lookup('pipe','touch " + pwned[1] + "') }}{% endfor %}"
	ctl := "esc\x1b[2J bel\a cr\r lf\n nul\x00 end"
	long := strings.Repeat("L", 5000) + expr
	payloads = []string{expr, stmt, ctl, long}

	many := map[string]string{}
	for i := range 3000 {
		many[fmt.Sprintf("k%04d", i)] = expr
	}
	host := func(id, ip, hostname, payload string, labels map[string]string) inventory.Observation {
		return inventory.Observation{Identity: id, Addr: netip.MustParseAddr(ip), Port: 7440, Facts: &proto.Facts{
			Hostname: hostname, MachineID: payload, OS: proto.OSRelease{PrettyName: payload}, Kernel: payload, AgentVersion: payload,
			Interfaces:    []proto.Interface{{Name: payload, MAC: payload, Addrs: []string{ip + "/24"}}},
			DefaultRoutes: []proto.Route{{Family: "inet", Gateway: payload}},
			Labels:        labels,
		}}
	}
	obs := []inventory.Observation{
		host("11111111000000000000000000000001", "198.18.0.1", "localhost", expr, map[string]string{
			"role": "all", "a": "_meta", "b": "ungrouped", "c": "ifl_all", "ifl": "all", expr: "k", "d": expr, "e": stmt,
		}),
		host("22222222000000000000000000000002", "198.18.0.2", "web", stmt, map[string]string{"role": "web", stmt: "x"}),
		host("33333333000000000000000000000003", "198.18.0.3", "web", expr, map[string]string{"role": "web"}),
		host("44444444000000000000000000000004", "198.18.0.4", "web-3333333300000000", stmt, map[string]string{"env": "123"}),
		host("55555555000000000000000000000005", "198.18.0.5", ctl, ctl, map[string]string{"f": ctl}),
		host("66666666000000000000000000000006", "198.18.0.6", long, long, many),
		host("77777777000000000000000000000007", "198.18.0.7", "127.0.0.1", stmt, nil),
		host("88888888000000000000000000000008", "198.18.0.8", expr, expr, map[string]string{"role": "ifl_stale"}),
	}
	now := time.Now().UTC()
	err := inventory.Update(path, func(s *inventory.State) error {
		s.Apply(now.Add(-time.Minute), obs[1:2], func(netip.Addr) bool { return true }, true) // web is 2222's
		s.Apply(now, obs, func(netip.Addr) bool { return true }, true)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return payloads, pwned
}

type ansibleRun struct {
	t   *testing.T
	env []string
}

func (a *ansibleRun) run(args ...string) (stdout, stderr string) {
	a.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Env = a.env
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		a.t.Fatalf("%s: %v\n%s\n%s", strings.Join(args, " "), err, errb.String(), out.String())
	}
	if strings.Contains(errb.String(), "WARNING") || strings.Contains(errb.String(), "ERROR") {
		a.t.Errorf("%s warned:\n%s", strings.Join(args, " "), errb.String())
	}
	return out.String(), errb.String()
}

// adhocResults are ansible's json callback output: per host, the task's
// result.
func adhocResults(t *testing.T, out string) map[string]map[string]any {
	t.Helper()
	var r struct {
		Plays []struct {
			Tasks []struct {
				Hosts map[string]map[string]any `json:"hosts"`
			} `json:"tasks"`
		} `json:"plays"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil || len(r.Plays) != 1 || len(r.Plays[0].Tasks) != 1 {
		t.Fatalf("ansible output: %v\n%.2000s", err, out)
	}
	return r.Plays[0].Tasks[0].Hosts
}

// TestRealAnsible renders hostile agents' facts through the real ifl
// binary (scripts/ifl-inventory) and through ifl inventory -o yaml, and
// has the real ansible and ansible-inventory read both.
func TestRealAnsible(t *testing.T) {
	requireAnsible(t)
	ifl := testnet.BuildIFL(t)
	state := filepath.Join(t.TempDir(), "inventory.json")
	payloads, pwned := hostileState(t, state)
	s, err := inventory.Load(state)
	if err != nil {
		t.Fatal(err)
	}
	names := s.Names()
	script, err := filepath.Abs("../../../scripts/ifl-inventory")
	if err != nil {
		t.Fatal(err)
	}
	yml, err := exec.Command(ifl, "inventory", "--state", state, "-o", "yaml").Output()
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "hosts.yaml")
	if err := os.WriteFile(file, yml, 0o600); err != nil {
		t.Fatal(err)
	}
	a := &ansibleRun{t: t, env: append(os.Environ(), "IFL="+ifl, "IFL_STATE="+state, "HOME="+t.TempDir(), "ANSIBLE_LOCAL_TEMP="+t.TempDir(),
		"ANSIBLE_INVENTORY_UNPARSED_FAILED=true", "ANSIBLE_NOCOLOR=1", "ANSIBLE_LOAD_CALLBACK_PLUGINS=true",
		"ANSIBLE_STDOUT_CALLBACK=json", "ANSIBLE_HOST_KEY_CHECKING=false")}

	for _, inv := range []string{script, file} {
		t.Run(filepath.Base(inv), func(t *testing.T) {
			a.t = t
			// ansible-inventory lists every host, under ifl's names.
			out, _ := a.run("ansible-inventory", "-i", inv, "--list")
			var list struct {
				Meta struct {
					HostVars map[string]map[string]any `json:"hostvars"`
				} `json:"_meta"`
			}
			if err := json.Unmarshal([]byte(out), &list); err != nil {
				t.Fatalf("%v\n%.2000s", err, out)
			}
			if len(list.Meta.HostVars) != len(names) {
				t.Errorf("ansible-inventory lists %d hosts, want %d", len(list.Meta.HostVars), len(names))
			}
			for name := range names {
				if list.Meta.HostVars[name] == nil {
					t.Errorf("host %q missing", name)
				}
			}
			for _, bad := range []string{"localhost", "127.0.0.1", "all", "web-3333333300000000"} {
				if v := list.Meta.HostVars[bad]; bad != "web-3333333300000000" && v != nil {
					t.Errorf("a host is named %q", bad)
				} else if bad == "web-3333333300000000" && (v == nil || v["ifl_identity"] != "33333333000000000000000000000003") {
					t.Errorf("web-3333333300000000 is not 3333's: %v", v["ifl_identity"])
				}
			}

			// ansible templates every host's variables, as a playbook
			// does, and the msg= of the report that once ran id.
			out, _ = a.run("ansible", "-i", inv, "all", "-c", "local", "-m", "debug", "-a", "var=hostvars[inventory_hostname]")
			res := adhocResults(t, out)
			if len(res) != len(names) {
				t.Errorf("debug ran on %d hosts, want %d", len(res), len(names))
			}
			seen := map[string]bool{}
			for name, r := range res {
				vars, _ := r["hostvars[inventory_hostname]"].(map[string]any)
				h := names[name]
				if vars == nil || h == nil {
					t.Fatalf("%s: %v", name, r)
				}
				for k, want := range map[string]string{"ifl_hostname": h.Hostname, "ifl_os": h.OS, "ifl_kernel": h.Kernel, "ifl_agent_version": h.AgentVersion, "ifl_gateway": h.Gateway} {
					if vars[k] != want {
						t.Errorf("%s: %s = %q, want it literally: %q", name, k, vars[k], want)
					}
					// The long one comes back as the state keeps it: cut
					// short, ending in inventory.Truncated.
					for _, p := range payloads {
						if cut, ok := strings.CutSuffix(want, inventory.Truncated); want == p || ok && strings.HasPrefix(p, cut) {
							seen[p] = true
						}
					}
				}
				if vars["ansible_host"] != h.IP {
					t.Errorf("%s: ansible_host %v", name, vars["ansible_host"])
				}
			}
			if len(seen) != len(payloads) {
				t.Errorf("only %d of %d payloads came back literally", len(seen), len(payloads))
			}
			out, _ = a.run("ansible", "-i", inv, "ifl_all", "-c", "local", "-m", "debug", "-a", `msg="{{ ifl_os }} {{ ifl_labels }} {{ ifl_macs }}"`)
			for name, r := range adhocResults(t, out) {
				if msg, _ := r["msg"].(string); !strings.HasPrefix(msg, strings.Split(names[name].OS, "\x00")[0]) {
					t.Errorf("%s: msg %.200q", name, msg)
				}
			}
			for _, p := range pwned {
				if _, err := os.Stat(p); err == nil {
					t.Fatalf("Ansible templated an agent's string: %s exists", p)
				}
			}

			// localhost is still the control node, not an agent.
			out, _ = a.run("ansible", "-i", inv, "localhost", "-c", "local", "-m", "debug", "-a", `msg="{{ inventory_hostname }} {{ ifl_identity | default('none') }} {{ groups['all'] | length }}"`)
			res = adhocResults(t, out)
			if got := fmt.Sprint(res["localhost"]["msg"]); got != fmt.Sprintf("localhost none %d", len(names)) {
				t.Errorf("localhost: %q (%v)", got, res)
			}
		})
	}
}

// TestRealAnsibleMissingState: with no state where it looks (a typo in
// IFL_STATE, a user who cannot see the controller's), the inventory script
// fails and says why, where Ansible shows it; it never answers with an
// empty fleet.
func TestRealAnsibleMissingState(t *testing.T) {
	requireAnsible(t)
	ifl := testnet.BuildIFL(t)
	script, err := filepath.Abs("../../../scripts/ifl-inventory")
	if err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(t.TempDir(), "typo.json")
	env := append(os.Environ(), "IFL="+ifl, "IFL_STATE="+missing, "HOME="+t.TempDir(), "ANSIBLE_LOCAL_TEMP="+t.TempDir(), "ANSIBLE_NOCOLOR=1")
	want := "no inventory state at " + missing

	cmd := exec.Command(script, "--list")
	cmd.Env = env
	out, err := cmd.Output()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 || len(out) != 0 || !strings.Contains(string(ee.Stderr), want) {
		t.Fatalf("the script: %v, stdout %q, stderr %q; want exit 2, nothing, and %q", err, out, ee, want)
	}
	for _, strict := range []bool{false, true} {
		cmd := exec.Command("ansible-inventory", "-i", script, "--list")
		cmd.Env = append(env, fmt.Sprintf("ANSIBLE_INVENTORY_UNPARSED_FAILED=%v", strict))
		var errb strings.Builder
		cmd.Stderr = &errb
		err := cmd.Run()
		// Ansible's own message wraps lines: compare without them.
		stderr := strings.Join(strings.Fields(errb.String()), " ")
		if !strings.Contains(stderr, strings.Join(strings.Fields(want), " ")) {
			t.Errorf("ansible-inventory (unparsed failed %v) does not say why: %s", strict, errb.String())
		}
		if strict && err == nil {
			t.Errorf("ansible-inventory with ANSIBLE_INVENTORY_UNPARSED_FAILED=true succeeded on a missing state")
		}
	}
}

// TestRealAnsibleFromEtcd: the real ansible-inventory, through the
// script, reads the inventory that two sites' controllers share in
// etcd.
func TestRealAnsibleFromEtcd(t *testing.T) {
	requireAnsible(t)
	c := etcdtest.Start(t, 1)
	ifl := testnet.BuildIFL(t)
	script, err := filepath.Abs("../../../scripts/ifl-inventory")
	if err != nil {
		t.Fatal(err)
	}
	spec := c.Spec("/fleet", "")
	st, err := inventory.Open(spec, "")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now := time.Now().UTC()
	for _, r := range []struct {
		site string
		obs  inventory.Observation
	}{{"lyon", siteObs(1, "10.1.2.3")}, {"oslo", siteObs(2, "10.9.8.7")}} {
		if err := st.Update(context.Background(), func(s *inventory.State) error {
			s.ApplySite(r.site, now, []inventory.Observation{r.obs}, everywhere, true)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("ansible-inventory", "-i", script, "--list")
	cmd.Env = append(os.Environ(), "IFL="+ifl, "IFL_STORE="+spec, "IFL_STATE=/nonexistent", "HOME="+t.TempDir(), "ANSIBLE_LOCAL_TEMP="+t.TempDir(),
		"ANSIBLE_NOCOLOR=1", "ANSIBLE_INVENTORY_UNPARSED_FAILED=true")
	var errb strings.Builder
	cmd.Stderr = &errb
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("ansible-inventory: %v\n%s", err, errb.String())
	}
	var inv struct {
		Meta struct {
			HostVars map[string]map[string]any `json:"hostvars"`
		} `json:"_meta"`
	}
	if err := json.Unmarshal(out, &inv); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	got := map[string]any{}
	for name, vars := range inv.Meta.HostVars {
		got[name] = vars["ansible_host"]
	}
	if diff := cmp.Diff(map[string]any{"web1": "10.1.2.3", "web2": "10.9.8.7"}, got); diff != "" {
		t.Fatalf("hosts and their ansible_host (-want +got):\n%s", diff)
	}
}
