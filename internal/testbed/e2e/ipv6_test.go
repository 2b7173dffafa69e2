package e2e

import (
	"encoding/json"
	"net/netip"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ifl-project/ifl/internal/testbed/testnet"
)

// dualStackSpec is a LAN of dual-stack hosts, IPv4-only and IPv6-only
// ones, agents whose firewall drops the UDP port, and the other roles, on
// 198.18.48.0/24 and 2001:db8:48::/64.
func dualStackSpec() testnet.Spec {
	a := netip.MustParseAddr
	return testnet.Spec{
		Name: "e2ev6", Prefix: netip.MustParsePrefix("198.18.48.0/24"), Prefix6: netip.MustParsePrefix("2001:db8:48::/64"), Port: 7440,
		Hosts: []testnet.HostSpec{
			{Role: testnet.Agent, Name: "dual1", Addr: a("198.18.48.5"), IPv6: true},
			{Role: testnet.Agent, Name: "dual2", IPv6: true},
			{Role: testnet.Agent, Name: "dual3", IPv6: true},
			{Role: testnet.Agent, Name: "four1"},
			{Role: testnet.Agent, Name: "four2"},
			{Role: testnet.Agent, Name: "six1", NoIPv4: true},
			{Role: testnet.Agent, Name: "six2", NoIPv4: true},
			{Role: testnet.Agent, Name: "mute", IPv6: true, DropUDP: true},
			{Role: testnet.Agent, Name: "mute6", NoIPv4: true, DropUDP: true},
			{Role: testnet.WrongKey, Name: "wrongkey", IPv6: true},
			{Role: testnet.WrongKey, Name: "wrong6", NoIPv4: true},
			{Role: testnet.Impostor, Name: "http", IPv6: true},
			{Role: testnet.Closed, Name: "closed", IPv6: true},
			{Role: testnet.Dropped, Name: "dropped", IPv6: true},
			{Role: testnet.Dropped, Name: "dropped6", NoIPv4: true},
			{Role: testnet.Empty, Name: "empty", IPv6: true},
		},
	}
}

// v6Report mirrors what these tests read of ifl probe's JSON.
type v6Report struct {
	Hosts []struct {
		Address  string   `json:"address"`
		Status   string   `json:"status"`
		Identity string   `json:"identity"`
		Hostname string   `json:"hostname"`
		AlsoAt   []string `json:"also_at"`
	} `json:"hosts"`
	Summary struct {
		Agents   int    `json:"agents"`
		Method   string `json:"method"`
		Complete bool   `json:"complete"`
	} `json:"summary"`
	Changes *struct {
		Warnings []struct {
			Message string `json:"message"`
		} `json:"warnings"`
	} `json:"changes"`
}

func probeJSON(t *testing.T, lan *testnet.LAN, args ...string) v6Report {
	t.Helper()
	stdout, stderr, code := iflWithoutNetRaw(t, lan, args...)
	if code != 0 {
		t.Fatalf("%v: exit %d: %s", args, code, stderr)
	}
	var rep v6Report
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("%v: %v\n%s", args, err, stdout)
	}
	if !rep.Summary.Complete {
		t.Errorf("%v: incomplete: %+v", args, rep.Summary)
	}
	return rep
}

// TestDualStack: on a LAN of both families, IPv6 prefixes are swept only
// when small, a sweep of IPv6 finds exactly the agents reachable over
// IPv6, a broadcast finds every agent whose UDP port is open once, with
// all its addresses (IPv4, global IPv6, link-local), and the inventory
// keeps them all from that one round; a broadcast to a /64 sweeps none of
// it and finds the agents there; a sweep finds the others, ping takes an
// IPv6 address with its port, and the inventory gives each host a
// verified address of the family preferred.
func TestDualStack(t *testing.T) {
	testnet.Require(t, true)
	lan := testnet.Start(t, dualStackSpec(), testnet.BuildIFL(t))
	byName := map[string]testnet.Host{}
	for _, h := range lan.Hosts {
		byName[h.Name] = h
	}
	agents := []string{"dual1", "dual2", "dual3", "four1", "four2", "six1", "six2", "mute", "mute6"}
	ll := func(h testnet.Host) string { return h.LinkLocal.String() + "%eth0" }

	t.Run("a /64 is not swept", func(t *testing.T) {
		stdout, stderr, code := iflWithoutNetRaw(t, lan, "probe", "--connect", "2001:db8:48::/64")
		want := "ifl: probe: too many addresses: 18446744073709551616 addresses, more than the limit of 65536 (--broadcast finds the agents there without sweeping)\n"
		if code != 2 || stderr != want || stdout != "" {
			t.Errorf("exit %d, stdout %q, stderr %q; want exit 2 and %q", code, stdout, stderr, want)
		}
	})

	t.Run("sweep of IPv6", func(t *testing.T) {
		rep := probeJSON(t, lan, "probe", "--connect", "-o", "json", "--no-state", "2001:db8:48::/120")
		got := map[string]string{}
		for _, h := range rep.Hosts {
			got[h.Address] = h.Status + " " + h.Identity
		}
		want := map[string]string{}
		for _, h := range lan.Hosts {
			switch {
			case !h.Addr6.IsValid():
			case h.Role == testnet.Agent:
				want[h.Addr6.String()] = "agent " + h.Identity
			case h.Role == testnet.WrongKey:
				want[h.Addr6.String()] = "rejected "
			case h.Role == testnet.Impostor:
				want[h.Addr6.String()] = "not-agent "
			}
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("found (-want +got):\n%s", diff)
		}
	})

	// byIdentity reads a broadcast's report: each host's status, address
	// and other addresses, by identity, each listed once.
	byIdentity := func(t *testing.T, rep v6Report) map[string]string {
		t.Helper()
		got := map[string]string{}
		for _, h := range rep.Hosts {
			if _, dup := got[h.Identity]; dup {
				t.Errorf("identity %s listed twice", h.Identity)
			}
			got[h.Identity] = h.Status + " " + h.Address + " also " + strings.Join(h.AlsoAt, ",")
		}
		return got
	}

	broadcastState := filepath.Join(t.TempDir(), "inventory.json")
	t.Run("broadcast", func(t *testing.T) {
		rep := probeJSON(t, lan, "probe", "--broadcast", "-o", "json", "--state", broadcastState)
		got := byIdentity(t, rep)
		// Each agent at every address it has: the query to ff02::1 goes
		// from the controller's link-local address, answered from the
		// agent's, and from its global one, answered from the agent's
		// global address; listed at its IPv4 address, else its global
		// IPv6 one. Not the agents that drop UDP.
		want, wantVerified := map[string]string{}, map[string]string{}
		for _, name := range agents {
			h := byName[name]
			if h.DropUDP {
				continue
			}
			var addrs []string
			for _, a := range []netip.Addr{h.Addr, h.Addr6} {
				if a.IsValid() {
					addrs = append(addrs, a.String())
				}
			}
			addrs = append(addrs, ll(h))
			want[h.Identity] = "agent " + addrs[0] + " also " + strings.Join(addrs[1:], ",")
			wantVerified[name] = strings.Join(addrs, ",")
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("found by identity (-want +got):\n%s", diff)
		}
		if rep.Summary.Method != "broadcast" || rep.Summary.Agents != len(want) {
			t.Errorf("summary %+v, want %d agents by broadcast", rep.Summary, len(want))
		}
		// The inventory keeps every address verified in that one round,
		// of one host each, with no warning of a copied key.
		if rep.Changes == nil || len(rep.Changes.Warnings) != 0 {
			t.Errorf("changes: %+v", rep.Changes)
		}
		stdout, stderr, code := ifl(t, lan, "inventory", "--state", broadcastState, "--list")
		if code != 0 {
			t.Fatalf("inventory: exit %d: %s", code, stderr)
		}
		_, verified := hostVars(t, stdout)
		if diff := cmp.Diff(wantVerified, verified); diff != "" {
			t.Errorf("ifl_verified_addresses (-want +got):\n%s", diff)
		}
	})

	t.Run("broadcast to a /64", func(t *testing.T) {
		rep := probeJSON(t, lan, "probe", "--broadcast", "-o", "json", "--no-state", "--exclude", "2001:db8:48::5", "2001:db8:48::/64")
		// No sweep of the /64, no IPv4 broadcast: each agent with an
		// address in it, less the one excluded, at that address only.
		want := map[string]string{}
		for _, name := range agents {
			if h := byName[name]; !h.DropUDP && h.Addr6.IsValid() && name != "dual1" {
				want[h.Identity] = "agent " + h.Addr6.String() + " also "
			}
		}
		if diff := cmp.Diff(want, byIdentity(t, rep)); diff != "" {
			t.Errorf("found by identity (-want +got):\n%s", diff)
		}
		if rep.Summary.Method != "broadcast" || rep.Summary.Agents != len(want) {
			t.Errorf("summary %+v, want %d agents by broadcast", rep.Summary, len(want))
		}
	})

	t.Run("broadcast to IPv4 targets", func(t *testing.T) {
		rep := probeJSON(t, lan, "probe", "--broadcast", "-o", "json", "--no-state", lan.Prefix.String())
		got := byIdentity(t, rep)
		// IPv4 targets: the link's IPv4 broadcast address only, no
		// ff02::1, so each agent at its IPv4 address alone.
		want := map[string]string{}
		for _, name := range agents {
			if h := byName[name]; !h.DropUDP && h.Addr.IsValid() {
				want[h.Identity] = "agent " + h.Addr.String() + " also "
			}
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("found by identity (-want +got):\n%s", diff)
		}
	})

	state := filepath.Join(t.TempDir(), "inventory.json")
	t.Run("sweep of both", func(t *testing.T) {
		rep := probeJSON(t, lan, "probe", "--connect", "-o", "json", "--state", state, lan.Prefix.String(), "2001:db8:48::/120")
		got := map[string][]string{}
		for _, h := range rep.Hosts {
			if h.Status == "agent" {
				got[h.Hostname] = append(got[h.Hostname], h.Address)
			}
		}
		// Every agent, those that drop UDP too, at every address.
		want := map[string][]string{}
		for _, name := range agents {
			h := byName[name]
			for _, a := range []netip.Addr{h.Addr, h.Addr6} {
				if a.IsValid() {
					want[name] = append(want[name], a.String())
				}
			}
		}
		for _, as := range got {
			sort.Strings(as)
		}
		for _, as := range want {
			sort.Strings(as)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("agents by hostname (-want +got):\n%s", diff)
		}
		// One identity at both addresses of one host is that host, not
		// a copied key.
		if rep.Changes == nil || len(rep.Changes.Warnings) != 0 {
			t.Errorf("changes: %+v", rep.Changes)
		}
	})

	t.Run("ping", func(t *testing.T) {
		for _, name := range []string{"dual1", "six1"} {
			h := byName[name]
			target := "[" + h.Addr6.String() + "]:7440"
			stdout, stderr, code := iflWithoutNetRaw(t, lan, "ping", "-o", "json", target)
			var r struct {
				Address, Status, Identity string
				Port                      int
			}
			if err := json.Unmarshal([]byte(stdout), &r); err != nil || code != 0 {
				t.Fatalf("ping %s: exit %d, %v: %s%s", target, code, err, stdout, stderr)
			}
			if r.Address != h.Addr6.String() || r.Port != 7440 || r.Status != "agent" || r.Identity != h.Identity {
				t.Errorf("ping %s: %+v, want agent %s", target, r, h.Identity)
			}
		}
		if h := byName["dual1"]; h.Addr6 != netip.MustParseAddr("2001:db8:48::5") {
			t.Errorf("dual1 is at %v, not 2001:db8:48::5", h.Addr6)
		}
	})

	t.Run("inventory", func(t *testing.T) {
		hosts := func(args ...string) (ansibleHost, verified map[string]string) {
			t.Helper()
			stdout, stderr, code := ifl(t, lan, append([]string{"inventory", "--state", state, "--list"}, args...)...)
			if code != 0 {
				t.Fatalf("inventory %v: exit %d: %s", args, code, stderr)
			}
			return hostVars(t, stdout)
		}
		wantVerified := map[string]string{}
		want4, want6 := map[string]string{}, map[string]string{}
		for _, name := range agents {
			h := byName[name]
			var vs []string
			for _, a := range []netip.Addr{h.Addr, h.Addr6} {
				if a.IsValid() {
					vs = append(vs, a.String())
				}
			}
			wantVerified[name] = strings.Join(vs, ",")
			want4[name], want6[name] = vs[0], vs[len(vs)-1]
		}
		for _, tt := range []struct {
			args []string
			want map[string]string
		}{
			{nil, want4},
			{[]string{"--prefer", "ipv4"}, want4},
			{[]string{"--prefer", "ipv6"}, want6},
		} {
			got, verified := hosts(tt.args...)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("%v: ansible_host (-want +got):\n%s", tt.args, diff)
			}
			if diff := cmp.Diff(wantVerified, verified); diff != "" {
				t.Errorf("%v: ifl_verified_addresses (-want +got):\n%s", tt.args, diff)
			}
		}
		if want6["dual1"] != "2001:db8:48::5" || want4["dual1"] != "198.18.48.5" || want4["six1"] != want6["six1"] {
			t.Errorf("expectations: %v %v", want4, want6)
		}

		// Ansible through the inventory script: IFL_PREFER, as the
		// script passes the environment on.
		testnet.RequireCommands(t, "ansible-core", "ansible-inventory")
		for _, tt := range []struct {
			prefer string
			want   map[string]string
		}{{"ipv4", want4}, {"ipv6", want6}} {
			t.Setenv("IFL_PREFER", tt.prefer)
			stdout, _ := ansibleInventory(t, lan, state, "--list")
			got, _ := hostVars(t, stdout)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ansible-inventory, IFL_PREFER=%s: ansible_host (-want +got):\n%s", tt.prefer, diff)
			}
		}
	})
}

// hostVars reads each host's ansible_host and verified addresses
// (comma-separated) from an inventory list.
func hostVars(t *testing.T, list string) (ansibleHost, verified map[string]string) {
	t.Helper()
	var l ansibleList
	if err := json.Unmarshal([]byte(list), &l); err != nil {
		t.Fatalf("%v\n%s", err, list)
	}
	ansibleHost, verified = map[string]string{}, map[string]string{}
	for name, v := range l.Meta.HostVars {
		ansibleHost[name], _ = v["ansible_host"].(string)
		var vs []string
		if l, ok := v["ifl_verified_addresses"].([]any); ok {
			for _, a := range l {
				s, _ := a.(string)
				vs = append(vs, s)
			}
		}
		verified[name] = strings.Join(vs, ",")
	}
	return ansibleHost, verified
}
