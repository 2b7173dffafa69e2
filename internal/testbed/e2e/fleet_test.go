package e2e

import (
	"encoding/json"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ifl-project/ifl/internal/testbed/testnet"
	"github.com/ifl-project/ifl/proto"
)

// TestClonedHostsOnAFleet: three hosts that all call themselves vm, as
// cloned VMs do, and a web server. The probe (ARP sweep, SYNs, handshakes)
// lists each agent under its inventory name, the one Ansible uses; ping
// and scan take and show those names; a controller with another key is
// told so and exits 1.
func TestClonedHostsOnAFleet(t *testing.T) {
	testnet.Require(t, true)
	vm := func(ns, mid string) testnet.HostSpec {
		return testnet.HostSpec{Role: testnet.Hostile, Name: ns, Facts: &proto.Facts{Hostname: "vm", MachineID: mid, Kernel: "6.1", OS: proto.OSRelease{ID: "debian"}}}
	}
	spec := testnet.Spec{Name: "e2efleet", Prefix: netip.MustParsePrefix("198.19.96.0/28"), Port: 7440, Hosts: []testnet.HostSpec{
		vm("vm1", "01010101010101010101010101010101"), vm("vm2", "02020202020202020202020202020202"), vm("vm3", "03030303030303030303030303030303"),
		{Role: testnet.Agent, Name: "web"}, {Role: testnet.Impostor}, {Role: testnet.Closed},
	}}
	lan := testnet.Start(t, spec, testnet.BuildIFL(t))
	addrOf := map[string]string{} // identity -> address
	for _, h := range lan.Hosts {
		if h.Identity != "" {
			addrOf[h.Identity] = h.Addr.String()
		}
	}

	stdout, stderr, code := ifl(t, lan, "probe", "-o", "json", lan.Prefix.String())
	if code != 0 {
		t.Fatalf("probe: exit %d: %s", code, stderr)
	}
	var rep probeReport
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatal(err)
	}
	names := map[string]string{} // identity -> name in the report
	for _, h := range rep.Hosts {
		if h.Status == "agent" {
			names[h.Identity] = h.Name
		}
	}
	// The inventory's names, by identity: the report's must be those.
	inv, stderr, code := ifl(t, lan, "inventory", "-o", "tsv", "--no-header")
	if code != 0 {
		t.Fatalf("inventory: exit %d: %s", code, stderr)
	}
	want := map[string]string{}
	var vmNames []string
	for _, l := range strings.Split(strings.TrimSpace(inv), "\n") {
		f := strings.Split(l, "\t")
		want[f[2]] = f[0]
		if f[0] != "web" {
			vmNames = append(vmNames, f[0])
		}
	}
	if diff := cmp.Diff(want, names); diff != "" || len(want) != 4 {
		t.Errorf("names in the probe's report (-inventory +report):\n%s", diff)
	}
	slices.Sort(vmNames)
	if len(vmNames) != 3 || vmNames[0] != "vm" || !strings.HasPrefix(vmNames[1], "vm-") || !strings.HasPrefix(vmNames[2], "vm-") {
		t.Errorf("the clones' names: %v", vmNames)
	}

	// The table: the same names, in the NAME column.
	stdout, _, code = ifl(t, lan, "probe", lan.Prefix.String())
	for id, name := range want {
		row := ""
		for _, l := range strings.Split(stdout, "\n") {
			if strings.HasPrefix(l, addrOf[id]+" ") {
				row = l
			}
		}
		if f := strings.Fields(row); code != 0 || len(f) < 4 || f[1] != "agent" || f[2] != name {
			t.Errorf("table row of %s: %q, want its name %s\n%s", addrOf[id], row, name, stdout)
		}
	}

	// ping by the inventory's names, in any case, and by identity.
	for id, name := range want {
		for _, host := range []string{name, strings.ToUpper(name), id[:10]} {
			stdout, stderr, code := ifl(t, lan, "ping", host)
			said := "ping: " + host + " is " + addrOf[id] + ":7440, identity " + id + ", in the inventory (last seen "
			if code != 0 || !strings.HasPrefix(stderr, said) || !strings.Contains(stdout, "\nname        "+name+"\n") {
				t.Errorf("ping %s: exit %d\n%s%s", host, code, stdout, stderr)
			}
		}
	}

	// scan: the name of each address's host.
	stdout, stderr, code = ifl(t, lan, "scan", "-p", "7440", "-o", "tsv", "--no-header", lan.Prefix.String())
	if code != 0 {
		t.Fatalf("scan: exit %d: %s", code, stderr)
	}
	scanned := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(stdout), "\n") {
		f := strings.Split(l, "\t")
		scanned[f[0]] = f[4]
	}
	for id, name := range want {
		if scanned[addrOf[id]] != name {
			t.Errorf("scan: %s named %q, want %s", addrOf[id], scanned[addrOf[id]], name)
		}
	}

	// Another key: every agent rejects it, and the probe says why.
	other := filepath.Join(lan.Dir, "other.key")
	k, err := proto.NewNetworkKey()
	if err != nil {
		t.Fatal(err)
	}
	if err := proto.WriteKeyFile(other, k, false); err != nil {
		t.Fatal(err)
	}
	_, stderr, code = ifl(t, lan, "probe", "--network-key", other, lan.Prefix.String())
	if code != 1 || !strings.Contains(stderr, "ifl: probe: 4 of the 5 addresses with port 7440 open rejected the handshake: the network key "+other) ||
		!strings.Contains(stderr, "is likely not the fleet's, or this host's clock is more than 1m0s off the agents'") {
		t.Errorf("another key: exit %d\n%s", code, stderr)
	}
}
