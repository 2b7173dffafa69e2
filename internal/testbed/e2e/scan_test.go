package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ifl-project/ifl/internal/cli/schema/schematest"
	"github.com/ifl-project/ifl/internal/testbed/testnet"
)

type scanReport struct {
	Ports []struct {
		Address string `json:"address"`
		Port    int    `json:"port"`
		Status  string `json:"status"`
	} `json:"ports"`
	Summary struct {
		Method string `json:"method"`
		Down   int    `json:"down"`
	} `json:"summary"`
}

// scanTruth is the state of the agent port and of port 22 on every live
// host.
func scanTruth(lan *testnet.LAN) map[string]string {
	want := map[string]string{}
	for _, h := range lan.Hosts {
		if h.Namespace == "" {
			continue
		}
		agent := "closed"
		switch h.Role {
		case testnet.Agent, testnet.WrongKey, testnet.Impostor:
			agent = "open"
		case testnet.Dropped:
			agent = "filtered"
		}
		want[fmt.Sprintf("%s:%d", h.Addr, lan.Port)] = agent
		want[fmt.Sprintf("%s:22", h.Addr)] = "closed"
	}
	return want
}

func TestScan(t *testing.T) {
	testnet.Require(t, true)
	lan := testnet.Start(t, mixedSpec("e2escan"), testnet.BuildIFL(t))
	want := scanTruth(lan)
	// The router has nothing listening either.
	want[lan.Router.Addr.String()+":22"] = "closed"
	want[fmt.Sprintf("%s:%d", lan.Router.Addr, lan.Port)] = "closed"

	for _, mode := range []struct {
		name string
		args []string
	}{{"arp+syn", nil}, {"connect", []string{"--connect"}}} {
		t.Run(mode.name, func(t *testing.T) {
			targets := []string{lan.Prefix.String()}
			if mode.name == "connect" {
				// connect() has no host discovery: the live hosts only.
				targets = []string{lan.Router.Addr.String()}
				for _, h := range lan.Hosts {
					if h.Namespace != "" {
						targets = append(targets, h.Addr.String())
					}
				}
			}
			args := append([]string{"scan", "-p", fmt.Sprintf("22,%d", lan.Port), "--all", "--json"}, mode.args...)
			args = append(args, targets...)
			stdout, stderr, code := ifl(t, lan, args...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			schematest.ValidateJSON(t, "scan", []byte(stdout))
			var rep scanReport
			if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
				t.Fatalf("%v\n%s", err, stdout)
			}
			want := want
			if mode.name == "arp+syn" {
				// The controller's own address is a target too: it
				// answers no ARP of its own, but is not down.
				want = maps.Clone(want)
				want[lan.Controller.Addr.String()+":22"] = "closed"
				want[fmt.Sprintf("%s:%d", lan.Controller.Addr, lan.Port)] = "closed"
			}
			got := map[string]string{}
			down := 0
			for _, p := range rep.Ports {
				if p.Status == "down" {
					// --all lists the ports of down addresses too,
					// as the connect() path would.
					down++
					continue
				}
				got[fmt.Sprintf("%s:%d", p.Address, p.Port)] = p.Status
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("port states (-want +got):\n%s", diff)
			}
			if rep.Summary.Method != mode.name {
				t.Errorf("method %q, want %q", rep.Summary.Method, mode.name)
			}
			if mode.name == "arp+syn" && (rep.Summary.Down != 254-2-len(lan.Hosts)+countEmpty(lan) || down != 2*rep.Summary.Down) {
				t.Errorf("%d addresses down, %d rows of down ports", rep.Summary.Down, down)
			}
		})
	}
}

func countEmpty(lan *testnet.LAN) int {
	n := 0
	for _, h := range lan.Hosts {
		if h.Namespace == "" {
			n++
		}
	}
	return n
}

// Capability lines of /proc/PID/status (capLines) that the tests expect.
const (
	// capsNone: nothing left, not even in the bounding set.
	capsNone = "CapInh:0000000000000000 CapPrm:0000000000000000 CapEff:0000000000000000 CapBnd:0000000000000000 CapAmb:0000000000000000"
	// capsRawSockets: nothing left but CAP_NET_RAW (bit 13) in the
	// bounding set, once the raw sockets are open.
	capsRawSockets = "CapInh:0000000000000000 CapPrm:0000000000000000 CapEff:0000000000000000 CapBnd:0000000000002000 CapAmb:0000000000000000"
)

// TestCommandsDropCapabilities checks, while each command waits (on a
// firewalled port, an empty address, or for its next round), what the
// process holds: as root, nothing at all where it opens no raw socket,
// and CAP_NET_RAW in the bounding set alone once a raw one is open; as a
// user running a copy of ifl given cap_net_raw+ep, nothing in its
// effective and permitted sets.
func TestCommandsDropCapabilities(t *testing.T) {
	testnet.Require(t, true)
	testnet.RequireCommands(t, "libcap2-bin", "setcap")
	spec := mixedSpec("e2ecaps")
	lan := testnet.Start(t, spec, testnet.BuildIFL(t))
	var dropped, empty testnet.Host
	for _, h := range lan.Hosts {
		switch h.Role {
		case testnet.Dropped:
			dropped = h
		case testnet.Empty:
			empty = h
		}
	}
	// A copy with the file capability, where user nobody may run it.
	dir, err := os.MkdirTemp("", "ifl-caps-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	setcapped := filepath.Join(dir, "ifl")
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", lan.IFL, setcapped).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	if out, err := exec.Command("setcap", "cap_net_raw+ep", setcapped).CombinedOutput(); err != nil {
		t.Fatalf("setcap: %v %s", err, out)
	}
	asNobody := []string{"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", setcapped}
	// The user's copy of the key: root's is not nobody's to read.
	userKey := filepath.Join(dir, "network.key")
	if out, err := exec.Command("install", "-m", "0400", "-o", "65534", lan.NetworkKey, userKey).CombinedOutput(); err != nil {
		t.Fatalf("install: %v %s", err, out)
	}
	port := fmt.Sprint(spec.Port)
	wait := []string{"--timeout", "3s", "--retries", "1"}
	for _, tc := range []struct {
		name string
		argv []string
		want string // all five lines, or "user": no effective or permitted capability
	}{
		{"scan", append([]string{lan.IFL, "scan", dropped.Addr.String()}, wait...), capsRawSockets},
		{"arp-scan", []string{lan.IFL, "arp-scan", "eth0", empty.Addr.String(), "--timeout", "3s", "--retries", "1", "--min-retries", "1"}, capsRawSockets},
		{"probe", []string{lan.IFL, "probe", "--no-state", "--watch", "1h", dropped.Addr.String()}, capsRawSockets},
		{"scan --connect", append([]string{lan.IFL, "scan", "--connect", dropped.Addr.String()}, wait...), capsNone},
		{"probe --connect", []string{lan.IFL, "probe", "--connect", "--no-state", "--watch", "1h", dropped.Addr.String()}, capsNone},
		{"probe --broadcast", []string{lan.IFL, "probe", "--broadcast", "--no-state", "--watch", "1h", lan.Prefix.String()}, capsNone},
		{"ping", []string{lan.IFL, "ping", "--timeout", "3s", dropped.Addr.String()}, capsNone},
		{"agent", []string{lan.IFL, "agent", "--port", "7999", "--identity-key", filepath.Join(lan.Dir, "caps-agent.key")}, capsNone},
		{"scan as a user", append(append(asNobody, "scan", dropped.Addr.String(), "-p", port), wait...), "user"},
		{"probe as a user", append(asNobody, "probe", "--network-key", userKey, "--no-state", "--watch", "1h", dropped.Addr.String()), "user"},
		{"probe --connect as a user", append(asNobody, "probe", "--network-key", userKey, "--connect", "--no-state", "--watch", "1h", dropped.Addr.String()), "user"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			cmd := lan.Controller.Command(ctx, tc.argv[0], tc.argv[1:]...)
			cmd.Env = append(os.Environ(), "IFL_NETWORK_KEY="+lan.NetworkKey)
			var stderr strings.Builder
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer cmd.Wait()
			defer cancel() // first: the command is killed once checked
			// ip netns exec and setpriv exec in place: the PID is ifl's.
			status := fmt.Sprintf("/proc/%d/status", cmd.Process.Pid)
			deadline := time.Now().Add(10 * time.Second)
			var last string
			for time.Now().Before(deadline) {
				b, err := os.ReadFile(status)
				if err != nil {
					break // exited
				}
				if !strings.HasPrefix(string(b), "Name:\tifl\n") {
					time.Sleep(5 * time.Millisecond)
					continue // not ifl yet
				}
				last = capLines(string(b))
				if last == tc.want || tc.want == "user" && strings.Contains(last, "CapPrm:0000000000000000 CapEff:0000000000000000") {
					return
				}
				time.Sleep(5 * time.Millisecond)
			}
			cancel()
			cmd.Wait()
			t.Fatalf("capabilities while running %s: %s; want %s\nstderr: %s", tc.name, last, tc.want, stderr.String())
		})
	}

	// Root's probe of a state in the folder of another user (the
	// ifl-probe unit's /var/lib/ifl) writes it as that user, with no
	// capability to override the folder's permissions.
	t.Run("root and the state of another user", func(t *testing.T) {
		owned := filepath.Join(dir, "state")
		if err := os.Mkdir(owned, 0o2750); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(owned, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		state := filepath.Join(owned, "inventory.json")
		for _, args := range [][]string{
			{"probe", "--state", state, lan.Prefix.String()},
			{"probe", "--connect", "--state", state, lan.Prefix.String()},
			{"inventory", "--state", state},
			{"inventory", "--state", state, "--prune", "30d"},
		} {
			stdout, stderr, code := ifl(t, lan, args...)
			if code != 0 {
				t.Fatalf("ifl %v: exit %d: %s", args, code, stderr)
			}
			if args[0] == "inventory" && len(args) == 3 && strings.Count(stdout, "\n") != 1+8 {
				t.Errorf("ifl %v: want a header and the 8 agents:\n%s", args, stdout)
			}
		}
		fi, err := os.Stat(state)
		if err != nil {
			t.Fatal(err)
		}
		if st := fi.Sys().(*syscall.Stat_t); st.Uid != 65534 || st.Gid != 65534 || fi.Mode().Perm() != 0o640 {
			t.Errorf("state: uid %d gid %d mode %v; want the folder owner's (65534), readable by its group", st.Uid, st.Gid, fi.Mode().Perm())
		}
	})
}

func capLines(status string) string {
	var out []string
	for _, l := range strings.Split(status, "\n") {
		if strings.HasPrefix(l, "Cap") {
			out = append(out, strings.Join(strings.Fields(l), ""))
		}
	}
	return strings.Join(out, " ")
}
