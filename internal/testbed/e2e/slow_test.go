package e2e

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ifl-project/ifl/internal/testbed/testnet"
)

// slowSpec is a LAN of fast hosts with a few slow ones among them: 30 ms
// away (a loaded Wi-Fi), and 300 ms away (a host behind a satellite or a
// congested tunnel), of every role that answers.
func slowSpec(name string) testnet.Spec {
	hosts := testnet.Mix(map[testnet.Role]int{
		testnet.Agent: 6, testnet.WrongKey: 1, testnet.Impostor: 1,
		testnet.Closed: 6, testnet.Dropped: 2, testnet.Empty: 4,
	}, 5)
	slow := []struct {
		role  testnet.Role
		delay time.Duration
	}{
		{testnet.Agent, 30 * time.Millisecond}, {testnet.Agent, 300 * time.Millisecond},
		{testnet.Closed, 30 * time.Millisecond}, {testnet.Closed, 300 * time.Millisecond},
		{testnet.Dropped, 300 * time.Millisecond},
	}
	for _, s := range slow {
		for i := range hosts {
			if hosts[i].Role == s.role && hosts[i].Delay == 0 {
				hosts[i].Delay = s.delay
				break
			}
		}
	}
	return testnet.Spec{Name: name, Prefix: netip.MustParsePrefix("198.18.12.0/24"), Port: 7440, Hosts: hosts}
}

// TestSlowHosts: hosts 30 ms and 300 ms away on a LAN whose other hosts
// answer within a millisecond are found, exactly, with default flags, by
// every command: the waits follow each host's own round trip, not the
// segment's.
func TestSlowHosts(t *testing.T) {
	testnet.Require(t, true)
	lan := testnet.Start(t, slowSpec("e2eslow"), testnet.BuildIFL(t))
	slow := 0
	for _, h := range lan.Hosts {
		if h.Delay > 0 {
			slow++
		}
	}
	if slow != 5 {
		t.Fatalf("%d slow hosts, want 5", slow)
	}
	// The relay really delays: a ping to the 300 ms host takes that long.
	for _, h := range lan.Hosts {
		if h.Delay == 300*time.Millisecond && h.Role == testnet.Agent {
			start := time.Now()
			_, stderr, code := ifl(t, lan, "ping", h.Addr.String())
			if code != 0 {
				t.Fatalf("ping %s: exit %d: %s", h.Addr, code, stderr)
			}
			// Connect, then the handshake and the ping: two round trips
			// at least.
			if d := time.Since(start); d < 2*h.Delay {
				t.Fatalf("ping of a host %v away took %v", h.Delay, d)
			}
		}
	}

	// A host 300 ms away among hosts that answer within a millisecond
	// answers the sweep's requests long after the segment's round trips
	// say that a silent address is empty: nothing on the wire tells it
	// from one before its reply comes, and a default sweep that waited
	// 300 ms for every silent address would be a fixed wait, and slow.
	// --patience asks for that wait, and every command finds it then;
	// with --arp-probes too, although the hosts then learn the
	// controller's MAC only when they answer its SYNs.
	for _, flags := range [][]string{{"--patience=400ms"}, {"--patience=400ms", "--arp-probes"}} {
		t.Run("300ms with "+strings.Join(flags, " "), func(t *testing.T) {
			if diff := cmp.Diff(arpTruth(lan), sweptPairs(t, lan, flags...)); diff != "" {
				t.Errorf("arp-scan: (IP, MAC) pairs (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(slowScanTruth(lan), scannedStates(t, lan, append(flags, lan.Prefix.String())...)); diff != "" {
				t.Errorf("scan: port states (-want +got):\n%s", diff)
			}
			stdout, stderr, code := ifl(t, lan, append([]string{"probe", "-o", "json", lan.Prefix.String()}, flags...)...)
			if code != 0 {
				t.Fatalf("probe: exit %d: %s", code, stderr)
			}
			checkProbe(t, lan, stdout)
		})
	}
	full := lan
	lan = withoutSlowerThan(lan, 30*time.Millisecond)
	// The prefix without the 300 ms hosts, for scan and probe.
	var targets []string
	for a := lan.Prefix.Addr().Next(); lan.Prefix.Contains(a.Next()); a = a.Next() {
		if !slices.ContainsFunc(full.Hosts, func(h testnet.Host) bool { return h.Addr == a && h.Delay > 30*time.Millisecond }) {
			targets = append(targets, a.String())
		}
	}

	t.Run("arp-scan", func(t *testing.T) {
		got := sweptPairs(t, lan)
		// The sweep covers the 300 ms hosts too, and finds them in some
		// runs (a sweep whose rate was cut lasts long enough): such a
		// find must be right, but is not required without --patience.
		for _, h := range full.Hosts {
			if h.Delay > 30*time.Millisecond {
				if mac, ok := got[h.Addr.String()]; ok && mac != h.MAC {
					t.Errorf("%v, 300 ms away: MAC %s, want %s", h.Addr, mac, h.MAC)
				}
				delete(got, h.Addr.String())
			}
		}
		if diff := cmp.Diff(arpTruth(lan), got); diff != "" {
			t.Errorf("(IP, MAC) pairs (-want +got):\n%s", diff)
		}
	})
	t.Run("scan", func(t *testing.T) {
		if diff := cmp.Diff(slowScanTruth(lan), scannedStates(t, lan, targets...)); diff != "" {
			t.Errorf("port states (-want +got):\n%s", diff)
		}
	})
	t.Run("probe", func(t *testing.T) {
		stdout, stderr, code := ifl(t, lan, append([]string{"probe", "-o", "json"}, targets...)...)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		checkProbe(t, lan, stdout)
	})
}

// sweptPairs runs ifl arp-scan eth0 with args and returns the (IP, MAC)
// pairs it found.
func sweptPairs(t *testing.T, lan *testnet.LAN, args ...string) map[string]string {
	t.Helper()
	stdout, stderr, code := ifl(t, lan, append([]string{"arp-scan", "eth0", "--json"}, args...)...)
	if code != 0 {
		t.Fatalf("arp-scan: exit %d: %s", code, stderr)
	}
	t.Log(stderr)
	var rep arpReport
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("%v\n%s", err, stdout)
	}
	got := map[string]string{}
	for _, h := range rep.Hosts {
		got[h.IP] = h.MAC
	}
	return got
}

// scannedStates runs ifl scan -p 22,PORT --all with args (flags, then
// targets) and returns the state of each port of a host that is up.
func scannedStates(t *testing.T, lan *testnet.LAN, args ...string) map[string]string {
	t.Helper()
	stdout, stderr, code := ifl(t, lan, append([]string{"scan", "-p", fmt.Sprintf("22,%d", lan.Port), "--all", "--json"}, args...)...)
	if code != 0 {
		t.Fatalf("scan: exit %d: %s", code, stderr)
	}
	var rep scanReport
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("%v\n%s", err, stdout)
	}
	got := map[string]string{}
	for _, p := range rep.Ports {
		if p.Status != "down" {
			got[fmt.Sprintf("%s:%d", p.Address, p.Port)] = p.Status
		}
	}
	return got
}

// slowScanTruth is what a scan of ports 22 and the agent port of lan
// finds: the hosts', and the router's and the controller's, closed.
func slowScanTruth(lan *testnet.LAN) map[string]string {
	want := scanTruth(lan)
	for _, a := range []netip.Addr{lan.Router.Addr, lan.Controller.Addr} {
		want[fmt.Sprintf("%s:22", a)] = "closed"
		want[fmt.Sprintf("%s:%d", a, lan.Port)] = "closed"
	}
	return want
}

// withoutSlowerThan returns lan without the hosts more than d away: the
// truth for a sweep that finds the others.
func withoutSlowerThan(lan *testnet.LAN, d time.Duration) *testnet.LAN {
	out := *lan
	out.Hosts = nil
	for _, h := range lan.Hosts {
		if h.Delay <= d {
			out.Hosts = append(out.Hosts, h)
		}
	}
	return &out
}
