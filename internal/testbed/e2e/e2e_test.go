// Package e2e runs ifl for real on virtual LANs of network namespaces
// (package testnet). The tests need root; without it they skip, unless
// IFL_NETNS_TESTS=1 (as in CI) makes that a failure.
package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ifl-project/ifl/internal/cli/schema/schematest"
	"github.com/ifl-project/ifl/internal/controller/inventory"
	"github.com/ifl-project/ifl/internal/testbed/testnet"
)

func TestMain(m *testing.M) {
	testnet.RunHelper()
	if spec := os.Getenv(envForge); spec != "" {
		if err := forge(spec); err != nil {
			fmt.Fprintln(os.Stderr, "forge:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	if spec := os.Getenv(envAnnounce); spec != "" {
		if err := annHelper(spec); err != nil {
			fmt.Fprintln(os.Stderr, "announce helper:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	if spec := os.Getenv(envFlood); spec != "" {
		if err := flood(spec); err != nil {
			fmt.Fprintln(os.Stderr, "flood:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	code := m.Run()
	testnet.RemoveBuild()
	os.Exit(code)
}

// probeReport mirrors the JSON of ifl probe.
type probeReport struct {
	Hosts []struct {
		Address       string `json:"address"`
		Status        string `json:"status"`
		Error         string `json:"error"`
		Identity      string `json:"identity"`
		Name          string `json:"name"`
		Hostname      string `json:"hostname"`
		MachineIDHash string `json:"machine_id_hash"`
		Facts         *struct {
			Hostname   string            `json:"hostname"`
			MachineID  string            `json:"machine_id"`
			Labels     map[string]string `json:"labels"`
			Interfaces []struct {
				Name  string   `json:"name"`
				MAC   string   `json:"mac"`
				Addrs []string `json:"addrs"`
			} `json:"interfaces"`
			DefaultRoutes []struct {
				Gateway string `json:"gateway"`
			} `json:"default_routes"`
		} `json:"facts"`
	} `json:"hosts"`
	Summary struct {
		Agents    int  `json:"agents"`
		Addresses int  `json:"addresses"`
		Probed    int  `json:"probed"`
		Complete  bool `json:"complete"`
	} `json:"summary"`
}

// ifl runs the ifl binary in the controller's namespace.
func ifl(t *testing.T, lan *testnet.LAN, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return runIFL(t, lan, nil, args)
}

// iflWithoutNetRaw runs ifl as root but with CAP_NET_RAW taken out of its
// bounding set, so that it has every capability but that one.
func iflWithoutNetRaw(t *testing.T, lan *testnet.LAN, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return runIFL(t, lan, []string{"setpriv", "--bounding-set=-net_raw", "--inh-caps=-net_raw"}, args)
}

func runIFL(t *testing.T, lan *testnet.LAN, wrapper, args []string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	argv := append(append(wrapper, lan.IFL), args...)
	cmd := lan.Controller.Command(ctx, argv[0], argv[1:]...)
	// The LAN's own key and inventory, gone with it: never the machine's.
	cmd.Env = append(os.Environ(), "IFL_NETWORK_KEY="+lan.NetworkKey, "IFL_STATE="+filepath.Join(lan.Dir, "inventory.json"))
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatalf("ifl %v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

// want is the expected outcome per address: a status for the open ports,
// nothing for closed, dropped and empty addresses.
type outcome struct {
	Status, Identity, Hostname string
}

func expected(lan *testnet.LAN) map[string]outcome {
	want := map[string]outcome{}
	for _, h := range lan.Hosts {
		switch h.Role {
		case testnet.Agent:
			want[h.Addr.String()] = outcome{"agent", h.Identity, h.Name}
		case testnet.WrongKey:
			want[h.Addr.String()] = outcome{"rejected", "", ""}
		case testnet.Impostor:
			want[h.Addr.String()] = outcome{"not-agent", "", ""}
		}
	}
	return want
}

func checkProbe(t *testing.T, lan *testnet.LAN, stdout string) probeReport {
	t.Helper()
	schematest.ValidateJSON(t, "probe", []byte(stdout))
	var rep probeReport
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("probe output: %v\n%s", err, stdout)
	}
	got := map[string]outcome{}
	why := map[string]string{}
	var order []netip.Addr
	for _, h := range rep.Hosts {
		order = append(order, netip.MustParseAddr(h.Address))
		why[h.Address] = h.Status + ": " + h.Error
		switch h.Status {
		case "closed", "filtered", "down":
			continue // listed with --all only
		}
		got[h.Address] = outcome{h.Status, h.Identity, h.Hostname}
	}
	want := expected(lan)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("hosts found (-want +got):\n%s", diff)
		for a, w := range want {
			if g, ok := got[a]; !ok || g != w {
				neigh, _ := lan.Controller.Command(context.Background(), "ip", "neigh", "show", a).CombinedOutput()
				t.Errorf("%s: %s (neighbour: %s)", a, why[a], strings.TrimSpace(string(neigh)))
			}
		}
	}
	if !slices.IsSortedFunc(order, func(a, b netip.Addr) int { return a.Compare(b) }) {
		t.Errorf("hosts not sorted by address: %v", order)
	}
	return rep
}

func mixedSpec(name string) testnet.Spec {
	hosts := testnet.Mix(map[testnet.Role]int{
		testnet.Agent: 8, testnet.WrongKey: 2, testnet.Impostor: 2,
		testnet.Closed: 2, testnet.Dropped: 2, testnet.Empty: 2,
	}, 7)
	for i := range hosts {
		if hosts[i].Role == testnet.Agent {
			hosts[i].Labels = map[string]string{"role": "web", "rack": fmt.Sprint(i)}
		}
	}
	return testnet.Spec{Name: name, Prefix: netip.MustParsePrefix("198.18.4.0/24"), Port: 7440, Hosts: hosts}
}

// TestProbeConnectFillsTheNeighbourTable: a connect() sweep of a /22
// makes the kernel add an ARP entry for every address, about as many as
// its table holds by default; every agent must still be found, on the
// first sweep of a fresh LAN.
func TestProbeConnectFillsTheNeighbourTable(t *testing.T) {
	testnet.Require(t, true)
	spec := testnet.Spec{Name: "e2ebig", Prefix: netip.MustParsePrefix("198.18.24.0/22"), Port: 7440,
		Hosts: testnet.Mix(map[testnet.Role]int{testnet.Agent: 40, testnet.Closed: 160}, 11)}
	lan := testnet.Start(t, spec, testnet.BuildIFL(t))
	stdout, stderr, code := ifl(t, lan, "probe", "--connect", "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	rep := checkProbe(t, lan, stdout)
	if rep.Summary.Agents != 40 || rep.Summary.Probed != 1022 {
		t.Errorf("summary %+v", rep.Summary)
	}
}

func TestProbeConnect(t *testing.T) {
	testnet.Require(t, true)
	lan := testnet.Start(t, mixedSpec("e2econ"), testnet.BuildIFL(t))

	stdout, stderr, code := ifl(t, lan, "probe", "--connect", "-o", "json", lan.Prefix.String())
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	rep := checkProbe(t, lan, stdout)
	if rep.Summary.Agents != 8 || rep.Summary.Addresses != 254 || rep.Summary.Probed != 254 || !rep.Summary.Complete {
		t.Errorf("summary %+v", rep.Summary)
	}
	// The facts are the host's own: its name, its address and MAC on eth0,
	// the LAN's router as gateway, its labels.
	byAddr := map[string]testnet.Host{}
	for _, h := range lan.Hosts {
		byAddr[h.Addr.String()] = h
	}
	for _, h := range rep.Hosts {
		if h.Status != "agent" {
			continue
		}
		truth := byAddr[h.Address]
		f := h.Facts
		if f == nil {
			t.Fatalf("%s: no facts", h.Address)
		}
		var eth0 string
		for _, ifc := range f.Interfaces {
			if ifc.Name == "eth0" && slices.Contains(ifc.Addrs, fmt.Sprintf("%s/24", h.Address)) {
				eth0 = ifc.MAC
			}
		}
		if eth0 != truth.MAC {
			t.Errorf("%s: eth0 with %s/24 has MAC %q, want %s (%+v)", h.Address, h.Address, eth0, truth.MAC, f.Interfaces)
		}
		if len(f.DefaultRoutes) == 0 || f.DefaultRoutes[0].Gateway != lan.Router.Addr.String() {
			t.Errorf("%s: default routes %+v, want via %v", h.Address, f.DefaultRoutes, lan.Router.Addr)
		}
		// A probe's report carries the hash the inventory keeps, not
		// the machine-id.
		if want := (&inventory.Host{MachineID: truth.MachineID}).MachineIDHash(); h.MachineIDHash != want || f.MachineID != "" {
			t.Errorf("%s: machine_id_hash %q, facts.machine_id %q; want %q and none", h.Address, h.MachineIDHash, f.MachineID, want)
		}
		if diff := cmp.Diff(truth.Labels, f.Labels); diff != "" {
			t.Errorf("%s: labels (-want +got):\n%s", h.Address, diff)
		}
	}

	// The table says the same, one line per open port.
	stdout, _, code = ifl(t, lan, "probe", "--connect", lan.Prefix.String())
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if code != 0 || len(lines) != 1+len(expected(lan)) {
		t.Errorf("table: exit %d, %d lines:\n%s", code, len(lines), stdout)
	}
}

func TestPingAcrossNamespaces(t *testing.T) {
	testnet.Require(t, true)
	lan := testnet.Start(t, mixedSpec("e2eping"), testnet.BuildIFL(t))
	first := map[testnet.Role]testnet.Host{}
	for _, h := range lan.Hosts {
		if _, ok := first[h.Role]; !ok {
			first[h.Role] = h
		}
	}
	agent := first[testnet.Agent]
	stdout, stderr, code := ifl(t, lan, "ping", agent.Addr.String())
	if code != 0 || !strings.Contains(stdout, "hostname    "+agent.Name+"\n") || !strings.Contains(stdout, "identity    "+agent.Identity+"\n") {
		t.Errorf("ping agent: exit %d\n%s%s", code, stdout, stderr)
	}
	tests := []struct {
		role testnet.Role
		args []string
		want string
	}{
		{testnet.WrongKey, nil, "rejected: handshake rejected"},
		{testnet.Impostor, nil, "not-agent: proto: not an ifl peer (it answered \"HTTP/1.1 400"},
		{testnet.Closed, nil, "closed: connection refused"},
		{testnet.Dropped, []string{"--timeout", "300ms"}, "filtered: no answer within 300ms"},
		{testnet.Agent, []string{"--identity", strings.Repeat("0", 32)}, "identity-mismatch: unknown agent identity"},
	}
	for _, tt := range tests {
		h := first[tt.role]
		_, stderr, code := ifl(t, lan, append([]string{"ping", h.Addr.String()}, tt.args...)...)
		if code != 1 || !strings.Contains(stderr, tt.want) {
			t.Errorf("ping %s (%s): exit %d, %q; want exit 1 and %q", h.Addr, tt.role, code, stderr, tt.want)
		}
	}
}

func TestProbeWithLoss(t *testing.T) {
	testnet.Require(t, true)
	spec := mixedSpec("e2eloss")
	lossy := 0
	for i := range spec.Hosts {
		if spec.Hosts[i].Role == testnet.Agent && lossy < 3 {
			spec.Hosts[i].Loss = 10
			lossy++
		}
	}
	lan := testnet.Start(t, spec, testnet.BuildIFL(t))
	for run := range 3 {
		stdout, stderr, code := ifl(t, lan, "probe", "--connect", "--all", "-o", "json", lan.Prefix.String())
		if code != 0 {
			t.Fatalf("run %d: exit %d: %s", run, code, stderr)
		}
		checkProbe(t, lan, stdout)
	}
}

// TestProbeAllAgrees: --all lists every target address, on the ARP+SYN
// path as on the connect() path, with the same status where both can
// know it.
func TestProbeAllAgrees(t *testing.T) {
	testnet.Require(t, true)
	lan := testnet.Start(t, mixedSpec("e2eall"), testnet.BuildIFL(t))
	listed := func(stdout string) map[string]string {
		rep := checkProbe(t, lan, stdout)
		out := map[string]string{}
		for _, h := range rep.Hosts {
			out[h.Address] = h.Status
		}
		return out
	}
	stdout, stderr, code := ifl(t, lan, "probe", "--all", "-o", "json", lan.Prefix.String())
	if code != 0 {
		t.Fatalf("arp+syn: exit %d: %s", code, stderr)
	}
	raw := listed(stdout)
	stdout, stderr, code = ifl(t, lan, "probe", "--connect", "--all", "-o", "json", lan.Prefix.String())
	if code != 0 {
		t.Fatalf("connect: exit %d: %s", code, stderr)
	}
	conn := listed(stdout)
	if len(raw) != 254 || len(conn) != 254 {
		t.Errorf("listed %d addresses on the arp+syn path, %d on the connect() path; want all 254 on both", len(raw), len(conn))
	}
	for a, st := range raw {
		c, ok := conn[a]
		switch {
		case !ok:
			t.Errorf("%s: %s on the arp+syn path, not listed on the connect() path", a, st)
		case st == "down" && (c == "filtered" || c == "down"):
			// connect() cannot tell a silent host from a filtered
			// port before the kernel gives up on ARP.
		case st != c:
			t.Errorf("%s: %s on the arp+syn path, %s on the connect() path", a, st, c)
		}
	}
}

// TestLANLeavesNoTrace brings a LAN up twice without tearing the first one
// down (as after a crash), then down, and checks that the caller's network
// namespace never changed and that nothing is left.
func TestLANLeavesNoTrace(t *testing.T) {
	testnet.Require(t, false)
	before := rootNetState(t)
	spec := testnet.Spec{Name: "e2etrace", Prefix: netip.MustParsePrefix("198.19.8.0/26"), Port: 7440,
		Hosts: testnet.Mix(map[testnet.Role]int{testnet.Agent: 3, testnet.Impostor: 1, testnet.Closed: 1}, 1)}
	ifl := testnet.BuildIFL(t)
	first, err := testnet.Up(context.Background(), spec, testnet.Options{IFL: ifl})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(before, rootNetState(t)); diff != "" {
		t.Errorf("Up changed the caller's namespace (-before +after):\n%s", diff)
	}
	second, err := testnet.Up(context.Background(), spec, testnet.Options{IFL: ifl})
	if err != nil {
		t.Fatalf("second Up over leftovers: %v", err)
	}
	for _, h := range first.Hosts {
		if h.PID != 0 && processExists(h.PID) && !slices.ContainsFunc(second.Hosts, func(s testnet.Host) bool { return s.PID == h.PID }) {
			t.Errorf("process %d of the first LAN survived the second Up", h.PID)
		}
	}
	if err := second.Down(); err != nil {
		t.Fatal(err)
	}
	first.Down() // reaps the first LAN's processes; nothing else is left
	for _, h := range second.Hosts {
		if h.PID != 0 && processExists(h.PID) {
			t.Errorf("process %d (%s) survived Down", h.PID, h.Name)
		}
	}
	out, _ := exec.Command("ip", "netns", "list").Output()
	if strings.Contains(string(out), "ifl-e2etrace-") {
		t.Errorf("namespaces left:\n%s", out)
	}
	if _, err := os.Stat(second.Dir); !os.IsNotExist(err) {
		t.Errorf("state directory %s left: %v", second.Dir, err)
	}
	if diff := cmp.Diff(before, rootNetState(t)); diff != "" {
		t.Errorf("the caller's namespace changed (-before +after):\n%s", diff)
	}
}

// rootNetState lists the links, addresses and routes of the caller's
// namespace, without counters.
func rootNetState(t *testing.T) []string {
	var out []string
	for _, args := range [][]string{{"-o", "link", "show"}, {"-o", "addr", "show"}, {"route", "show", "table", "all"}} {
		b, err := exec.Command("ip", args...).Output()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, strings.Split(strings.TrimSpace(string(b)), "\n")...)
	}
	return out
}

// processExists reports whether pid runs; a zombie (killed, not yet reaped
// by this test process) does not count.
func processExists(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	return i < 0 || i+2 >= len(b) || b[i+2] != 'Z'
}

// TestSandboxedAgentFacts runs agents as the hardened unit would (as
// nobody, with no capability in any set and no_new_privs, in their own
// network namespace) and checks that a ping still returns complete facts.
func TestSandboxedAgentFacts(t *testing.T) {
	testnet.Require(t, false)
	spec := testnet.Spec{Name: "e2esand", Prefix: netip.MustParsePrefix("198.18.7.0/24"), Port: 7440,
		Hosts: []testnet.HostSpec{{Role: testnet.Agent, Name: "boxed", Sandbox: true, Labels: map[string]string{"role": "web"}}}}
	lan := testnet.Start(t, spec, testnet.BuildIFL(t))
	h := lan.Hosts[0]

	// It really runs without privilege.
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", h.PID))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Uid:\t65534", "CapEff:\t0000000000000000", "CapPrm:\t0000000000000000", "CapBnd:\t0000000000000000", "NoNewPrivs:\t1"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("agent process: no %q in its status", want)
		}
	}

	stdout, stderr, code := ifl(t, lan, "ping", "--json", h.Addr.String())
	if code != 0 {
		t.Fatalf("ping: exit %d: %s", code, stderr)
	}
	schematest.ValidateJSON(t, "ping", []byte(stdout))
	var rep struct {
		Identity string `json:"identity"`
		Facts    struct {
			Hostname   string `json:"hostname"`
			MachineID  string `json:"machine_id"`
			Kernel     string `json:"kernel"`
			Uptime     int64  `json:"uptime_seconds"`
			OS         struct{ ID string }
			Interfaces []struct {
				Name  string   `json:"name"`
				MAC   string   `json:"mac"`
				Flags []string `json:"flags"`
				Addrs []string `json:"addrs"`
			} `json:"interfaces"`
			DefaultRoutes []struct {
				Family, Gateway, Interface string
			} `json:"default_routes"`
			Labels map[string]string `json:"labels"`
		} `json:"facts"`
	}
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("%v\n%s", err, stdout)
	}
	f := rep.Facts
	if rep.Identity != h.Identity || f.Hostname != "boxed" || f.MachineID != h.MachineID || f.Kernel == "" || f.Uptime <= 0 || f.OS.ID == "" {
		t.Errorf("identity %s, facts %+v", rep.Identity, f)
	}
	ifaces := map[string]string{}
	for _, i := range f.Interfaces {
		ifaces[i.Name] = i.MAC + " " + strings.Join(i.Addrs, ",")
	}
	if ifaces["eth0"] != h.MAC+" "+h.Addr.String()+"/24" && !strings.HasPrefix(ifaces["eth0"], h.MAC+" "+h.Addr.String()+"/24,") {
		t.Errorf("eth0: %q, want %s with %v/24", ifaces["eth0"], h.MAC, h.Addr)
	}
	if !strings.HasPrefix(ifaces["lo"], " 127.0.0.1/8") {
		t.Errorf("lo: %q", ifaces["lo"])
	}
	if len(f.DefaultRoutes) == 0 || f.DefaultRoutes[0].Gateway != lan.Router.Addr.String() || f.DefaultRoutes[0].Interface != "eth0" {
		t.Errorf("default routes %+v, want via %v on eth0", f.DefaultRoutes, lan.Router.Addr)
	}
	if f.Labels["role"] != "web" {
		t.Errorf("labels %v", f.Labels)
	}
}

// TestAgentReloadsOnSIGHUP edits an agent's config and sends it SIGHUP: the
// next ping carries the new labels; a broken config is refused and the
// running one kept.
func TestAgentReloadsOnSIGHUP(t *testing.T) {
	testnet.Require(t, false)
	spec := testnet.Spec{Name: "e2ehup", Prefix: netip.MustParsePrefix("198.18.10.0/28"), Port: 7440,
		Hosts: []testnet.HostSpec{{Role: testnet.Agent, Name: "hup", Labels: map[string]string{"role": "web"}}}}
	lan := testnet.Start(t, spec, testnet.BuildIFL(t))
	h := lan.Hosts[0]
	cfg := filepath.Join(lan.Dir, h.Name+".yaml")
	logFile := filepath.Join(lan.Dir, h.Name+".log")

	labels := func() map[string]string {
		t.Helper()
		stdout, stderr, code := ifl(t, lan, "ping", "--json", h.Addr.String())
		if code != 0 {
			t.Fatalf("ping: exit %d: %s", code, stderr)
		}
		var rep struct {
			Facts struct {
				Labels map[string]string `json:"labels"`
			} `json:"facts"`
		}
		if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
			t.Fatal(err)
		}
		return rep.Facts.Labels
	}
	// hup edits the config, signals the agent and waits (bounded) for the
	// reload event with the given outcome.
	hup := func(body, level string) {
		t.Helper()
		before, _ := os.ReadFile(logFile)
		if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Kill(h.PID, syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			b, _ := os.ReadFile(logFile)
			if fresh := string(b[len(before):]); strings.Contains(fresh, `"event":"reload"`) {
				if !strings.Contains(fresh, `"level":"`+level+`"`) {
					t.Fatalf("reload logged, but not at %s:\n%s", level, fresh)
				}
				return
			}
		}
		t.Fatal("no reload event within 10s of SIGHUP")
	}

	if diff := cmp.Diff(map[string]string{"role": "web"}, labels()); diff != "" {
		t.Fatalf("labels before (-want +got):\n%s", diff)
	}
	hup("labels: {role: db, site: paris}\n", "info")
	if diff := cmp.Diff(map[string]string{"role": "db", "site": "paris"}, labels()); diff != "" {
		t.Errorf("labels after SIGHUP (-want +got):\n%s", diff)
	}
	hup("lables: {role: broken}\n", "error")
	if diff := cmp.Diff(map[string]string{"role": "db", "site": "paris"}, labels()); diff != "" {
		t.Errorf("labels after a broken config (-want +got):\n%s", diff)
	}
}
