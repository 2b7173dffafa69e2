package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ifl-project/ifl/internal/cli/schema/schematest"
	"github.com/ifl-project/ifl/internal/testbed/testnet"
)

type arpReport struct {
	Hosts []struct {
		IP     string   `json:"address"`
		MAC    string   `json:"mac"`
		Vendor string   `json:"vendor"`
		Others []string `json:"conflicting_macs"`
	} `json:"hosts"`
	Summary struct {
		Hosts, Addresses, Conflicts int
		Complete                    bool
	} `json:"summary"`
}

// arpTruth is what a sweep from the controller must find: every host
// with a namespace, and the router; the controller does not answer itself.
func arpTruth(lan *testnet.LAN) map[string]string {
	want := map[string]string{lan.Router.Addr.String(): lan.Router.MAC}
	for _, h := range lan.Hosts {
		if h.Namespace != "" && !h.Duplicate {
			want[h.Addr.String()] = h.MAC
		}
	}
	return want
}

func arpSpec(name string) testnet.Spec {
	hosts := testnet.Mix(map[testnet.Role]int{testnet.Agent: 4, testnet.Closed: 26, testnet.Empty: 20}, 3)
	// An address conflict: a second host claims the first host's address.
	hosts[0] = testnet.HostSpec{Role: testnet.Agent, Name: "owner", Addr: netip.MustParseAddr("198.18.8.77")}
	hosts = append(hosts, testnet.HostSpec{Role: testnet.Closed, Name: "squatter", Addr: netip.MustParseAddr("198.18.8.77"), Duplicate: true})
	lossy := 0
	for i := range hosts {
		if hosts[i].Role == testnet.Closed && !hosts[i].Duplicate && lossy < 2 {
			hosts[i].Loss = 20 // of ARP requests (and TCP)
			lossy++
		}
	}
	return testnet.Spec{Name: name, Prefix: netip.MustParsePrefix("198.18.8.0/24"), Port: 7440, Hosts: hosts}
}

func TestArpScan(t *testing.T) {
	testnet.Require(t, true)
	spec := arpSpec("e2earp")
	if n := len(slices.DeleteFunc(slices.Clone(spec.Hosts), func(h testnet.HostSpec) bool { return h.Loss == 0 })); n != 2 {
		t.Fatalf("%d lossy hosts in the spec, want 2", n)
	}
	lan := testnet.Start(t, spec, testnet.BuildIFL(t))
	for _, flags := range [][]string{nil, {"--arp-probes"}} {
		name := "requests"
		if len(flags) > 0 {
			name = "probes"
		}
		t.Run(name, func(t *testing.T) {
			countRequests(t, lan)
			checkArpScan(t, lan, flags...)
			// What the router read: every broadcast of the sweep, as
			// ARP probes from 0.0.0.0 or as requests from the
			// controller's address; with probes, the controller's
			// address comes only to the router itself, unicast.
			zero, own := countRequests(t, lan)
			// (its introduction and its confirmations: a few dozen).
			if probes := len(flags) > 0; probes && (zero < 253 || own > 40) || !probes && (zero != 0 || own < 253) {
				t.Errorf("the router read %d requests from 0.0.0.0 and %d from the controller", zero, own)
			}
		})
	}

	// The table flags the conflict for people.
	stdout, _, _ := ifl(t, lan, "arp-scan", "eth0", "198.18.8.77")
	if !strings.Contains(stdout, "CONFLICT: also answered by") {
		t.Errorf("table without the conflict:\n%s", stdout)
	}
}

// checkArpScan sweeps the arpSpec LAN with flags, and checks that it finds
// every host, and the conflict.
func checkArpScan(t *testing.T, lan *testnet.LAN, flags ...string) {
	t.Helper()
	stdout, stderr, code := ifl(t, lan, append([]string{"arp-scan", "eth0", "--json"}, flags...)...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	schematest.ValidateJSON(t, "arp-scan", []byte(stdout))
	var rep arpReport
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("%v\n%s", err, stdout)
	}
	got := map[string]string{}
	var conflicts []string
	for _, h := range rep.Hosts {
		got[h.IP] = h.MAC
		if len(h.Others) > 0 {
			conflicts = append(conflicts, h.IP+" "+strings.Join(append([]string{h.MAC}, h.Others...), ","))
		}
		if h.Vendor != "(locally administered)" {
			t.Errorf("%s: vendor %q, want (locally administered) for %s", h.IP, h.Vendor, h.MAC)
		}
	}
	want := arpTruth(lan)
	// The conflict's first answer may come from either host.
	var squatter testnet.Host
	for _, h := range lan.Hosts {
		if h.Duplicate {
			squatter = h
		}
	}
	if got[squatter.Addr.String()] == squatter.MAC {
		want[squatter.Addr.String()] = squatter.MAC
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(IP, MAC) pairs (-want +got):\n%s", diff)
	}
	if len(conflicts) != 1 || !strings.HasPrefix(conflicts[0], "198.18.8.77 ") ||
		!strings.Contains(conflicts[0], squatter.MAC) || !strings.Contains(conflicts[0], "02:18:c6:12:08:4d") {
		t.Errorf("conflicts %q, want 198.18.8.77 answered by 02:18:c6:12:08:4d and %s", conflicts, squatter.MAC)
	}
	if rep.Summary.Addresses != 254 || rep.Summary.Conflicts != 1 || !rep.Summary.Complete {
		t.Errorf("summary %+v", rep.Summary)
	}
}

// countRequests returns the ARP requests the router has read since the
// last call, from 0.0.0.0 (probes) and from the controller's address:
// nftables counters in the router's namespace, in a table made anew each
// call.
func countRequests(t *testing.T, lan *testnet.LAN) (zero, own int) {
	t.Helper()
	ctx := context.Background()
	if out, err := lan.Router.Command(ctx, "nft", "-j", "list", "table", "arp", "iflcount").Output(); err == nil {
		// The counters in rule order.
		var listing struct {
			Nftables []struct {
				Rule *struct {
					Expr []struct {
						Counter *struct {
							Packets int `json:"packets"`
						} `json:"counter"`
					} `json:"expr"`
				} `json:"rule"`
			} `json:"nftables"`
		}
		if err := json.Unmarshal(out, &listing); err != nil {
			t.Fatalf("nft list: %v: %s", err, out)
		}
		var counts []int
		for _, o := range listing.Nftables {
			if o.Rule == nil {
				continue
			}
			for _, e := range o.Rule.Expr {
				if e.Counter != nil {
					counts = append(counts, e.Counter.Packets)
				}
			}
		}
		if len(counts) != 2 {
			t.Fatalf("nft list: %d counters, want 2: %s", len(counts), out)
		}
		zero, own = counts[0], counts[1]
	}
	rules := fmt.Sprintf("add table arp iflcount\ndelete table arp iflcount\ntable arp iflcount {\n chain input {\n  type filter hook input priority 0; policy accept;\n  arp operation request arp saddr ip 0.0.0.0 counter\n  arp operation request arp saddr ip %s counter\n }\n}\n", lan.Controller.Addr)
	cmd := lan.Router.Command(ctx, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft: %v: %s", err, out)
	}
	return zero, own
}

func TestArpScanErrors(t *testing.T) {
	testnet.Require(t, false)
	spec := testnet.Spec{Name: "e2earpx", Prefix: netip.MustParsePrefix("198.18.9.0/28"), Port: 7440,
		Hosts: []testnet.HostSpec{{Role: testnet.Closed}}}
	lan := testnet.Start(t, spec, testnet.BuildIFL(t))
	// A second link in the controller's namespace, down and without an
	// address.
	if out, err := lan.Controller.Command(context.Background(), "ip", "link", "add", "spare0", "type", "veth", "peer", "name", "spare1").CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	tests := []struct {
		name string
		args []string
		pre  []string // command run in the controller's namespace first
		want string
	}{
		{"no such interface", []string{"arp-scan", "eth9"}, nil, "ifl: arp-scan: eth9: no such interface (have: "},
		{"down", []string{"arp-scan", "spare0"}, nil, "ifl: arp-scan: spare0: interface is down (try: ip link set spare0 up)"},
		{"no IPv4", []string{"arp-scan", "spare0"}, []string{"ip", "link", "set", "spare0", "up"}, "ifl: arp-scan: spare0: no IPv4 address"},
		{"bad prefix", []string{"arp-scan", "eth0", "198.18.9.0/40"}, nil, `ifl: arp-scan: "198.18.9.0/40": bad CIDR prefix`},
		{"too large", []string{"arp-scan", "eth0", "198.18.0.0/15"}, nil, "ifl: arp-scan: too many addresses: 131070 addresses, more than the limit of 65536 (--force allows up to 16777216)"},
		{"no CAP_NET_RAW", []string{"arp-scan", "eth0"}, nil, "ifl: arp-scan: eth0: no permission to open a raw socket (needs CAP_NET_RAW): run ifl with sudo, or grant it once: sudo setcap cap_net_raw+ep $(command -v ifl)"},
		{"no CAP_NET_RAW for probe --fast", []string{"probe", "--fast"}, nil, "ifl: probe: --fast needs CAP_NET_RAW for its raw ARP and SYN probes: run ifl with sudo, or grant it once: sudo setcap cap_net_raw+ep $(command -v ifl) (plain 'ifl probe' uses connect() instead)\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.pre != nil {
				if out, err := lan.Controller.Command(context.Background(), tt.pre[0], tt.pre[1:]...).CombinedOutput(); err != nil {
					t.Fatalf("%v: %s", err, out)
				}
			}
			var code int
			var stderr string
			if strings.HasPrefix(tt.name, "no CAP_NET_RAW") {
				_, stderr, code = iflWithoutNetRaw(t, lan, tt.args...)
			} else {
				_, stderr, code = ifl(t, lan, tt.args...)
			}
			if code != 2 || !strings.HasPrefix(stderr, tt.want) {
				t.Errorf("exit %d, stderr %q; want exit 2 and %q", code, stderr, tt.want)
			}
		})
	}
}

func TestProbeFast(t *testing.T) {
	testnet.Require(t, true)
	lan := testnet.Start(t, mixedSpec("e2efast"), testnet.BuildIFL(t))

	stdout, stderr, code := ifl(t, lan, "probe", "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	rep := checkProbe(t, lan, stdout)
	// Only hosts with the agent port open were dialled: agents, agents
	// with the wrong key, impostors.
	if open := len(expected(lan)); rep.Summary.Probed != open || rep.Summary.Addresses != 254 {
		t.Errorf("dialled %d of %d addresses, want %d of 254", rep.Summary.Probed, rep.Summary.Addresses, open)
	}
	if strings.Contains(stderr, "CAP_NET_RAW") {
		t.Errorf("warned about a capability it has: %s", stderr)
	}

	// Without CAP_NET_RAW: the same agents through connect(), with one
	// warning that says why and how to grant it.
	stdout, stderr, code = iflWithoutNetRaw(t, lan, "probe", "-o", "json")
	if code != 0 {
		t.Fatalf("without CAP_NET_RAW: exit %d: %s", code, stderr)
	}
	rep = checkProbe(t, lan, stdout)
	if rep.Summary.Probed != 254 {
		t.Errorf("without CAP_NET_RAW: probed %d addresses, want all 254", rep.Summary.Probed)
	}
	if strings.Count(stderr, "no CAP_NET_RAW") != 1 || !strings.Contains(stderr, "setcap cap_net_raw+ep") {
		t.Errorf("without CAP_NET_RAW: stderr %q, want one warning with the setcap hint", stderr)
	}
}
