package inventory

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"

	"github.com/ifl-project/ifl/proto"
)

// hostFacts are the facts of a host with the given addresses on eth0 and
// its link-local address.
func hostFacts(host, mid string, addrs ...string) *proto.Facts {
	ifc := proto.Interface{Name: "eth0", MAC: "02:18:c6:12:30:05", MTU: 1500, Flags: []string{"up"}}
	for _, a := range addrs {
		bits := "/24"
		if strings.Contains(a, ":") {
			bits = "/64"
		}
		ifc.Addrs = append(ifc.Addrs, a+bits)
	}
	return &proto.Facts{Hostname: host, MachineID: mid, Kernel: "6.1.0", Interfaces: []proto.Interface{ifc}}
}

func at(id, addr string, f *proto.Facts) Observation {
	return Observation{Identity: id, Addr: netip.MustParseAddr(addr), Port: 7440, Facts: f}
}

// dualStackState is one probe of both families on a LAN of a dual-stack
// host, an IPv4-only one and an IPv6-only one, each verified at every
// address it has there.
func dualStackState(t *testing.T) *State {
	t.Helper()
	dual := hostFacts("dual", "m1", "198.18.48.5", "2001:db8:48::5", "fe80::18:c6ff:fe12:3005")
	v4 := hostFacts("v4", "m2", "198.18.48.6")
	// The IPv6-only host also claims an IPv4 address it does not answer
	// at: a claim, never its ansible_host.
	v6 := hostFacts("v6", "m3", "2001:db8:48::7", "198.18.48.77")
	s := New()
	ch := s.Apply(t0, []Observation{
		at("dddd", "2001:db8:48::5", dual), at("dddd", "198.18.48.5", dual),
		at("4444", "198.18.48.6", v4),
		at("6666", "2001:db8:48::7", v6),
	}, all, true)
	if len(ch.Warnings) != 0 || len(ch.New) != 3 {
		t.Fatalf("changes %+v", ch)
	}
	return s
}

// inventoryJSON is the JSON of the inventory as ifl inventory --list
// prints it.
func inventoryJSON(t *testing.T, s *State, prefer Prefer) string {
	t.Helper()
	b, err := json.MarshalIndent(s.BuildAnsible(t0.Add(time.Minute), time.Hour, prefer).List(), "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// hostJSON is the JSON of one host's variables, as the inventory has
// them, with ansible_host and the verified addresses given.
func hostJSON(id, name, host, addresses, mid string, ansibleHost string, verified ...string) string {
	q := make([]string, len(verified))
	for i, v := range verified {
		q[i] = `"` + v + `"`
	}
	h := &Host{MachineID: mid}
	return `"` + name + `": {
        "ansible_host": "` + ansibleHost + `",
        "ifl_addresses": [` + addresses + `],
        "ifl_agent_version": {"__ansible_unsafe": ""},
        "ifl_first_seen": "2026-11-01T12:00:00Z",
        "ifl_gateway": {"__ansible_unsafe": ""},
        "ifl_hostname": {"__ansible_unsafe": "` + host + `"},
        "ifl_identity": "` + id + `",
        "ifl_kernel": {"__ansible_unsafe": "6.1.0"},
        "ifl_labels": {},
        "ifl_last_seen": "2026-11-01T12:00:00Z",
        "ifl_machine_id_hash": "` + h.MachineIDHash() + `",
        "ifl_macs": [{"__ansible_unsafe": "02:18:c6:12:30:05"}],
        "ifl_os": {"__ansible_unsafe": ""},
        "ifl_port": 7440,
        "ifl_stale": false,
        "ifl_verified_addresses": [` + strings.Join(q, ", ") + `]
      }`
}

func unsafeJSON(s ...string) string {
	q := make([]string, len(s))
	for i, v := range s {
		q[i] = `{"__ansible_unsafe": "` + v + `"}`
	}
	return strings.Join(q, ", ")
}

// TestPreferDecidesAnsibleHost: the whole inventory of a dual-stack, an
// IPv4-only and an IPv6-only host, under each preference. Only the
// dual-stack host's ansible_host changes; each host keeps every verified
// address; the IPv4 address the IPv6-only host claims is never used.
func TestPreferDecidesAnsibleHost(t *testing.T) {
	s := dualStackState(t)
	dualAddrs := unsafeJSON("198.18.48.5", "2001:db8:48::5")
	want := func(dualHost string) string {
		return `{
  "_meta": {"hostvars": {
` + hostJSON("dddd", "dual", "dual", dualAddrs, "m1", dualHost, "198.18.48.5", "2001:db8:48::5") + `,
` + hostJSON("4444", "v4", "v4", unsafeJSON("198.18.48.6"), "m2", "198.18.48.6", "198.18.48.6") + `,
` + hostJSON("6666", "v6", "v6", unsafeJSON("2001:db8:48::7", "198.18.48.77"), "m3", "2001:db8:48::7", "2001:db8:48::7") + `
  }},
  "all": {"children": ["ifl_all", "ifl_stale"]},
  "ifl_all": {"hosts": ["dual", "v4", "v6"]},
  "ifl_stale": {"hosts": []}
}`
	}
	for _, tt := range []struct {
		prefer   Prefer
		dualHost string
	}{
		{"", "198.18.48.5"},
		{PreferIPv4, "198.18.48.5"},
		{PreferIPv6, "2001:db8:48::5"},
	} {
		got := inventoryJSON(t, s, tt.prefer)
		if diff := cmp.Diff(normJSON(t, want(tt.dualHost)), normJSON(t, got)); diff != "" {
			t.Errorf("prefer %q (-want +got):\n%s", tt.prefer, diff)
		}
		// The static YAML inventory says the same.
		y, err := s.BuildAnsible(t0.Add(time.Minute), time.Hour, tt.prefer).YAML()
		if err != nil {
			t.Fatal(err)
		}
		var back struct {
			All struct {
				Children struct {
					All struct {
						Hosts map[string]struct {
							AnsibleHost string   `yaml:"ansible_host"`
							Verified    []string `yaml:"ifl_verified_addresses"`
						} `yaml:"hosts"`
					} `yaml:"ifl_all"`
				} `yaml:"children"`
			} `yaml:"all"`
		}
		if err := yaml.Unmarshal(y, &back); err != nil {
			t.Fatal(err)
		}
		hosts := map[string]string{}
		for name, h := range back.All.Children.All.Hosts {
			hosts[name] = h.AnsibleHost + " of " + strings.Join(h.Verified, ",")
		}
		wantYAML := map[string]string{
			"dual": tt.dualHost + " of 198.18.48.5,2001:db8:48::5",
			"v4":   "198.18.48.6 of 198.18.48.6",
			"v6":   "2001:db8:48::7 of 2001:db8:48::7",
		}
		if diff := cmp.Diff(wantYAML, hosts); diff != "" {
			t.Errorf("prefer %q: YAML (-want +got):\n%s", tt.prefer, diff)
		}
	}
	if _, err := ParsePrefer("ipv5"); err == nil || err.Error() != `"ipv5": want ipv4 or ipv6` {
		t.Errorf("ParsePrefer(ipv5): %v", err)
	}
}

// normJSON re-encodes a JSON document so that layout does not count.
func normJSON(t *testing.T, s string) string {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("%v:\n%s", err, s)
	}
	b, _ := json.MarshalIndent(v, "", "  ")
	return string(b)
}

// TestVerifiedAddresses follows one dual-stack host through probes of
// one family, of the other, broadcast rounds and moves.
func TestVerifiedAddresses(t *testing.T) {
	f := hostFacts("web", "m1", "198.18.48.5", "2001:db8:48::5", "fe80::18:c6ff:fe12:3005")
	ll := "fe80::18:c6ff:fe12:3005%eth0"
	none := func(netip.Addr) bool { return false }
	in := func(p string) func(netip.Addr) bool {
		pfx := netip.MustParsePrefix(p)
		return func(a netip.Addr) bool { return pfx.Contains(a.WithZone("")) }
	}
	s := New()
	step := func(i int, obs []Observation, covered func(netip.Addr) bool, wantMoved string, wantVerified ...string) {
		t.Helper()
		now := t0.Add(time.Duration(i) * time.Minute)
		ch := s.Apply(now, obs, covered, true)
		moved := ""
		for _, m := range ch.Moved {
			moved = m.From + " -> " + m.To
		}
		if moved != wantMoved || len(ch.Warnings) != 0 || len(ch.Unseen) != 0 {
			t.Errorf("step %d: moved %q, want %q; warnings %v; unseen %v", i, moved, wantMoved, ch.Warnings, ch.Unseen)
		}
		var got []string
		for _, v := range s.Hosts["aaaa"].Verified {
			got = append(got, v.Addr)
		}
		if diff := cmp.Diff(wantVerified, got); diff != "" {
			t.Errorf("step %d: verified (-want +got):\n%s", i, diff)
		}
		if h := s.Hosts["aaaa"]; h.IP != wantVerified[0] {
			t.Errorf("step %d: IP %s, want %s", i, h.IP, wantVerified[0])
		}
	}
	// IPv4 first; then an IPv6 sweep adds the IPv6 address, and the
	// host has not moved; then a broadcast round adds its link-local
	// address and drops nothing.
	step(0, []Observation{at("aaaa", "198.18.48.5", f)}, in("198.18.48.0/24"), "", "198.18.48.5")
	step(1, []Observation{at("aaaa", "2001:db8:48::5", f)}, in("2001:db8:48::/120"), "", "198.18.48.5", "2001:db8:48::5")
	step(2, []Observation{at("aaaa", "198.18.48.5", f), at("aaaa", ll, f)}, none, "", "198.18.48.5", "2001:db8:48::5", ll)
	if got := s.Hosts["aaaa"].Address(PreferIPv6); got != "2001:db8:48::5" {
		t.Errorf("prefer ipv6: %s, want the global address before the link-local one", got)
	}

	// DHCP moves it to .9: a broadcast round finds it there, and the
	// IPv4 address it left goes, though the round did not look there.
	f9 := hostFacts("web", "m1", "198.18.48.9", "2001:db8:48::5", "fe80::18:c6ff:fe12:3005")
	step(3, []Observation{at("aaaa", "198.18.48.9", f9), at("aaaa", ll, f9)}, none, "198.18.48.5 -> 198.18.48.9", "198.18.48.9", "2001:db8:48::5", ll)

	// It loses IPv4: a sweep of both families finds it on IPv6 only,
	// and it moves there.
	f6 := hostFacts("web", "m1", "2001:db8:48::5", "fe80::18:c6ff:fe12:3005")
	step(4, []Observation{at("aaaa", "2001:db8:48::5", f6)}, func(a netip.Addr) bool { return in("198.18.48.0/24")(a) || in("2001:db8:48::/120")(a) },
		"198.18.48.9 -> 2001:db8:48::5", "2001:db8:48::5", ll)
	if got := s.Hosts["aaaa"].Address(PreferIPv4); got != "2001:db8:48::5" {
		t.Errorf("prefer ipv4 with no IPv4: %s", got)
	}

	// Not there on IPv6 either: unseen, by an address other than its
	// first.
	ch := s.Apply(t0.Add(time.Hour), nil, func(a netip.Addr) bool { return a == netip.MustParseAddr(ll) }, true)
	if len(ch.Unseen) != 1 || ch.Unseen[0].From != "2001:db8:48::5" {
		t.Errorf("unseen %+v", ch.Unseen)
	}
}

// TestCopiedKeyOrOneHost: one identity at two addresses in one probe is
// one host when both answers say so, and a copied key otherwise; an
// address another identity now answers at is no longer the first's.
func TestCopiedKeyOrOneHost(t *testing.T) {
	both := hostFacts("web", "m1", "198.18.48.5", "2001:db8:48::5")
	for _, tt := range []struct {
		name    string
		a, b    *proto.Facts
		copied  bool
		message string
	}{
		{"one host", both, both, false, ""},
		{"other machine-id", both, hostFacts("web", "m2", "198.18.48.5", "2001:db8:48::5"), true, "answered from both 198.18.48.5 and 2001:db8:48::5"},
		{"each its own address", hostFacts("web", "m1", "198.18.48.5"), hostFacts("web", "m1", "2001:db8:48::5"), true, "answered from both 198.18.48.5 and 2001:db8:48::5"},
		{"no facts", nil, nil, true, "answered from both"},
	} {
		s := New()
		ch := s.Apply(t0, []Observation{at("aaaa", "2001:db8:48::5", tt.b), at("aaaa", "198.18.48.5", tt.a)}, all, true)
		h := s.Hosts["aaaa"]
		switch {
		case tt.copied && (len(ch.Warnings) != 1 || ch.Warnings[0].Kind != KindCopiedKey || !strings.Contains(ch.Warnings[0].Message, tt.message) || len(h.Verified) != 1):
			t.Errorf("%s: warnings %+v, verified %v", tt.name, ch.Warnings, h.Verified)
		case !tt.copied && (len(ch.Warnings) != 0 || len(h.Verified) != 2):
			t.Errorf("%s: warnings %+v, verified %v", tt.name, ch.Warnings, h.Verified)
		}
		if h.IP != "198.18.48.5" {
			t.Errorf("%s: IP %s", tt.name, h.IP)
		}
	}

	// Another agent now answers at the first's IPv6 address (the first
	// went elsewhere, unseen): the address is the new one's only.
	s := New()
	s.Apply(t0, []Observation{at("aaaa", "198.18.48.5", both), at("aaaa", "2001:db8:48::5", both)}, all, true)
	other := hostFacts("db", "m2", "198.18.48.6", "2001:db8:48::5")
	s.Apply(t0.Add(time.Minute), []Observation{at("aaaa", "198.18.48.5", both), at("bbbb", "2001:db8:48::5", other)}, func(netip.Addr) bool { return false }, true)
	if got := s.Hosts["aaaa"].Address(PreferIPv6); got != "198.18.48.5" {
		t.Errorf("aaaa prefer ipv6: %s, want its IPv4 address: its IPv6 one is bbbb's now", got)
	}
}

// TestOldStateAddress: a host written before verified addresses were
// kept has its last answering address, whatever the preference.
func TestOldStateAddress(t *testing.T) {
	h := &Host{IP: "198.18.48.5", Addresses: []string{"198.18.48.5", "2001:db8:48::5"}}
	for _, p := range []Prefer{PreferIPv4, PreferIPv6} {
		if got := h.Address(p); got != "198.18.48.5" {
			t.Errorf("prefer %s: %s (a reported address is no verified one)", p, got)
		}
	}
}
