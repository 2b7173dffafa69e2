package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ifl-project/ifl/internal/controller/inventory"
	"github.com/ifl-project/ifl/internal/testbed/agenttest"
	"github.com/ifl-project/ifl/proto"
)

// vmAgents starts two agents that both call themselves vm, as cloned VMs
// do, each on a port of its own on 127.0.0.1, with one network key; it
// returns the key file and the agents, the first one first.
func vmAgents(t *testing.T) (keyFile string, a, b *agenttest.Agent) {
	t.Helper()
	key, err := proto.NewNetworkKey()
	if err != nil {
		t.Fatal(err)
	}
	facts := func(mid string) *proto.Facts {
		return &proto.Facts{Hostname: "vm", MachineID: mid, Kernel: "6.1", OS: proto.OSRelease{ID: "debian"}}
	}
	a = agenttest.StartWith(t, agenttest.Options{Key: key, Facts: facts("0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a")})
	b = agenttest.StartWith(t, agenttest.Options{Key: key, Facts: facts("0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b")})
	keyFile = filepath.Join(t.TempDir(), "network.key")
	if err := proto.WriteKeyFile(keyFile, key, false); err != nil {
		t.Fatal(err)
	}
	return keyFile, a, b
}

// TestProbeShowsInventoryNames: two agents called vm are vm and
// vm-<identity> in the inventory, and the probe's table, TSV and JSON
// call them so; a probe of the second's port does not report the first,
// known on its own port at the same address, as not seen.
func TestProbeShowsInventoryNames(t *testing.T) {
	keyFile, a, b := vmAgents(t)
	state := filepath.Join(t.TempDir(), "inventory.json")
	probe := func(port int, args ...string) (int, string, string) {
		t.Helper()
		return run(t, append([]string{"probe", "--network-key", keyFile, "--connect", "--state", state, "-p", strconv.Itoa(port), "127.0.0.1"}, args...)...)
	}
	// Twice: an identity seen in one probe only gives way to a new one
	// at its address (inventory.State.Apply), and a second agent of a
	// machine is not that.
	probe(a.Port)
	code, stdout, stderr := probe(a.Port, "-o", "json")
	var rep probeReport
	if err := json.Unmarshal([]byte(stdout), &rep); code != 0 || err != nil {
		t.Fatalf("exit %d, %v: %s%s", code, err, stdout, stderr)
	}
	if len(rep.Hosts) != 1 || rep.Hosts[0].Name != "vm" {
		t.Fatalf("first agent: %+v", rep.Hosts)
	}
	bName := "vm-" + b.Identity.Fingerprint()[:16]
	code, stdout, stderr = probe(b.Port)
	want := "ADDRESS    STATUS  NAME                 HOSTNAME  IDENTITY      OTHER ADDRESSES  RTT\n" +
		"127.0.0.1  agent   " + bName + "  vm        " + b.Identity.Fingerprint()[:12] + "  -                "
	if code != 0 || !strings.HasPrefix(stdout, want) {
		t.Errorf("table: exit %d\n%s\nwant\n%s...", code, stdout, want)
	}
	if strings.Contains(stderr, "not seen") {
		t.Errorf("a probe of port %d reported the agent known on port %d as not seen:\n%s", b.Port, a.Port, stderr)
	}
	code, stdout, _ = probe(b.Port, "-o", "tsv", "--no-header")
	if rows := tsvRows(t, stdout, 9); code != 0 || len(rows) != 1 || rows[0][8] != bName {
		t.Errorf("tsv: exit %d\n%s", code, stdout)
	}
	code, stdout, _ = probe(b.Port, "-o", "yaml")
	if code != 0 || !strings.Contains(stdout, "\n    name: "+bName+"\n") {
		t.Errorf("yaml: exit %d\n%s", code, stdout)
	}
	// The names are the inventory's.
	code, stdout, _ = run(t, "inventory", "--state", state, "-o", "tsv", "--no-header")
	var names []string
	for _, r := range tsvRows(t, stdout, 6) {
		names = append(names, r[0])
	}
	slices.Sort(names)
	if diff := cmp.Diff([]string{"vm", bName}, names); code != 0 || diff != "" {
		t.Errorf("inventory names (-want +got):\n%s", diff)
	}
	// Without a state there are no names: the NAME column says so.
	code, stdout, _ = run(t, "probe", "--network-key", keyFile, "--connect", "--no-state", "-p", strconv.Itoa(b.Port), "127.0.0.1")
	if code != 0 || !strings.Contains(stdout, "\n127.0.0.1  agent   -     vm  ") {
		t.Errorf("--no-state: exit %d\n%s", code, stdout)
	}
}

// probeAll probes each agent's port of 127.0.0.1 in turn, recording in
// state.
func probeAll(t *testing.T, keyFile, state string, agents ...*agenttest.Agent) {
	t.Helper()
	for _, ag := range agents {
		if code, _, stderr := run(t, "probe", "--network-key", keyFile, "--connect", "--state", state, "-p", strconv.Itoa(ag.Port), "127.0.0.1"); code != 0 {
			t.Fatalf("probe: exit %d: %s", code, stderr)
		}
	}
}

// TestPingByInventoryName: ping takes an inventory name, in any case, or
// an identity prefix, resolves it through the inventory (saying so on
// stderr), dials the address and the port the inventory knows, and
// requires that identity there; a name the inventory does not know goes
// to DNS.
func TestPingByInventoryName(t *testing.T) {
	keyFile, a, b := vmAgents(t)
	state := filepath.Join(t.TempDir(), "inventory.json")
	probeAll(t, keyFile, state, a, a, b)
	aID, bID := a.Identity.Fingerprint(), b.Identity.Fingerprint()
	bName := "vm-" + bID[:16]
	ping := func(args ...string) (int, string, string) {
		t.Helper()
		return run(t, append([]string{"ping", "--network-key", keyFile, "--state", state}, args...)...)
	}
	for _, tt := range []struct {
		host, id, name string
		port           int
	}{
		{"vm", aID, "vm", a.Port},
		{"VM", aID, "vm", a.Port},
		{bName, bID, bName, b.Port},
		{strings.ToUpper(bName), bID, bName, b.Port},
		{bID[:8], bID, bName, b.Port},
	} {
		code, stdout, stderr := ping(tt.host)
		said := "ping: " + tt.host + " is 127.0.0.1:" + strconv.Itoa(tt.port) + ", identity " + tt.id + ", in the inventory (last seen "
		if code != 0 || !strings.HasPrefix(stderr, said) || strings.Count(stderr, "\n") != 1 {
			t.Errorf("ping %s: exit %d, stderr %q; want %q...", tt.host, code, stderr, said)
		}
		if !strings.Contains(stdout, "\nidentity    "+tt.id+"\nname        "+tt.name+"\nhostname    vm\n") {
			t.Errorf("ping %s: table\n%s", tt.host, stdout)
		}
	}
	// A name with a port given: that port, and still that identity.
	code, _, stderr := ping("vm", "-p", strconv.Itoa(b.Port))
	if want := "identity-mismatch: unknown agent identity: agent is " + bID + ", expected " + aID; code != 1 || !strings.Contains(stderr, want) ||
		!strings.HasSuffix(stderr, "(vm has left that address, or another agent took it: 'ifl probe' finds where it is now)\n") {
		t.Errorf("ping vm -p %d: exit %d, %q", b.Port, code, stderr)
	}
	code, _, stderr = ping("vm:"+strconv.Itoa(a.Port), "--ports", strconv.Itoa(b.Port))
	if want := "ifl: --port " + strconv.Itoa(b.Port) + " and \"vm:" + strconv.Itoa(a.Port) + "\" give two ports: give one\n"; code != 2 || stderr != want {
		t.Errorf("two ports: exit %d, %q, want %q", code, stderr, want)
	}
	// JSON and TSV carry the name.
	code, stdout, _ := ping(bName, "-o", "json")
	var rep pingReport
	if err := json.Unmarshal([]byte(stdout), &rep); code != 0 || err != nil || rep.Name != bName || rep.Identity != bID {
		t.Errorf("ping -o json: exit %d, %v, %+v", code, err, rep)
	}
	code, stdout, _ = ping("127.0.0.1:"+strconv.Itoa(a.Port), "-o", "tsv")
	if code != 0 || !strings.Contains(stdout, "\nname\tvm\n") {
		t.Errorf("ping an address -o tsv: exit %d\n%s", code, stdout)
	}
	// Unknown to the inventory: DNS, and the error says both.
	code, _, stderr = ping("nosuch.invalid")
	if want := "ifl: \"nosuch.invalid\": cannot resolve host name: not in the inventory, and DNS: "; code != 2 || !strings.HasPrefix(stderr, want) {
		t.Errorf("unknown name: exit %d, %q, want %q...", code, stderr, want)
	}
	// --no-state: no inventory, DNS only.
	code, _, stderr = run(t, "ping", "--network-key", keyFile, "--no-state", "nosuch.invalid")
	if want := "ifl: \"nosuch.invalid\": cannot resolve host name: DNS: "; code != 2 || !strings.HasPrefix(stderr, want) {
		t.Errorf("--no-state: exit %d, %q, want %q...", code, stderr, want)
	}
	// --state given and missing is a mistake, not an empty inventory.
	missing := filepath.Join(t.TempDir(), "typo.json")
	code, _, stderr = run(t, "ping", "--network-key", keyFile, "--state", missing, "vm")
	if want := "ifl: ping: inventory: no inventory state at " + missing + ": no probe has written one there; run 'ifl probe', or point --state or IFL_STATE at the controller's state file (--no-state leaves the inventory out)\n"; code != 2 || stderr != want {
		t.Errorf("missing --state: exit %d, %q, want %q", code, stderr, want)
	}
}

// TestScanShowsInventoryNames: a scan names each address by the host the
// inventory last verified there, the one known on the row's port first.
func TestScanShowsInventoryNames(t *testing.T) {
	keyFile, a, b := vmAgents(t)
	state := filepath.Join(t.TempDir(), "inventory.json")
	probeAll(t, keyFile, state, a, a, b)
	bName := "vm-" + b.Identity.Fingerprint()[:16]
	code, stdout, stderr := run(t, "scan", "--connect", "--state", state, "-p", strconv.Itoa(a.Port)+","+strconv.Itoa(b.Port), "127.0.0.1", "127.0.0.2", "--all", "-o", "tsv", "--no-header")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	got := map[string]string{}
	for _, r := range tsvRows(t, stdout, 5) {
		got[r[0]+":"+r[1]] = r[4]
	}
	want := map[string]string{"127.0.0.1:" + strconv.Itoa(a.Port): "vm", "127.0.0.1:" + strconv.Itoa(b.Port): bName,
		"127.0.0.2:" + strconv.Itoa(a.Port): "-", "127.0.0.2:" + strconv.Itoa(b.Port): "-"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("names (-want +got):\n%s", diff)
	}
	code, stdout, _ = run(t, "scan", "--connect", "--state", state, "-p", strconv.Itoa(a.Port), "127.0.0.1")
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if code != 0 || len(lines) != 2 || strings.Join(strings.Fields(lines[0]), " ") != "ADDRESS PORT STATUS RTT NAME" || !strings.HasSuffix(lines[1], "  vm") {
		t.Errorf("table: exit %d\n%s", code, stdout)
	}
	code, stdout, _ = run(t, "scan", "--connect", "--state", state, "-p", strconv.Itoa(a.Port), "127.0.0.1", "--json")
	var rep scanReport
	if err := json.Unmarshal([]byte(stdout), &rep); code != 0 || err != nil || len(rep.Ports) != 1 || rep.Ports[0].Name != "vm" {
		t.Errorf("json: exit %d, %v, %+v", code, err, rep)
	}
}

// TestProbeHashesMachineID: a probe's reports carry the hash of the
// machine-id that the inventory keeps, never the machine-id; ping, which
// a person asks for one host's facts, shows both.
func TestProbeHashesMachineID(t *testing.T) {
	keyFile, a, _ := vmAgents(t)
	const mid = "0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a"
	hash := (&inventory.Host{MachineID: mid}).MachineIDHash()
	state := filepath.Join(t.TempDir(), "inventory.json")
	code, stdout, stderr := run(t, "probe", "--network-key", keyFile, "--connect", "--state", state, "-p", strconv.Itoa(a.Port), "127.0.0.1", "-o", "json")
	var rep probeReport
	if err := json.Unmarshal([]byte(stdout), &rep); code != 0 || err != nil || len(rep.Hosts) != 1 {
		t.Fatalf("exit %d, %v: %s%s", code, err, stdout, stderr)
	}
	if h := rep.Hosts[0]; h.MachineIDHash != hash || h.Facts == nil || h.Facts.MachineID != "" || strings.Contains(stdout, mid) {
		t.Errorf("probe: machine_id_hash %q, facts.machine_id %q; want %q and none", h.MachineIDHash, h.Facts.MachineID, hash)
	}
	if b, _ := os.ReadFile(state); !strings.Contains(string(b), mid) {
		t.Errorf("the state lost the machine-id")
	}
	code, stdout, _ = run(t, "ping", "--network-key", keyFile, "--state", state, "127.0.0.1:"+strconv.Itoa(a.Port), "-o", "json")
	var p pingReport
	if err := json.Unmarshal([]byte(stdout), &p); code != 0 || err != nil || p.Facts == nil || p.Facts.MachineID != mid || p.MachineIDHash != hash {
		t.Errorf("ping: exit %d, %v, %+v", code, err, p)
	}
}

// A name that matches no host of a large fleet gets an error that shows
// what names look like, not every one of them.
func TestUnknownNameAmongMany(t *testing.T) {
	st := inventory.Synthetic(25)
	_, err := hostByName(st, "nope")
	if err == nil {
		t.Fatal("no error")
	}
	msg := err.Error()
	names := make([]string, 0, 25)
	for n := range st.Names() {
		names = append(names, n)
	}
	slices.Sort(names)
	want := `no host "nope" (known: ` + strings.Join(names[:10], ", ") + `, and 15 more (ifl inventory lists them); an identity's`
	if !strings.Contains(msg, want) {
		t.Errorf("error %q\nwant it to contain %q", msg, want)
	}
}
