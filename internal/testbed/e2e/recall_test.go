package e2e

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"

	"github.com/ifl-project/ifl/internal/testbed/testnet"
)

// bigSpec is a /21 shaped like a real LAN: 400 hosts spread over 2,046
// addresses, 80 of them agents, one in ten firewalled, impostors and
// agents with the wrong key. A sweep at the full default rate floods
// every broadcast to 400 ports of the bridge, more than the receivers'
// backlogs take: the sweep must see that and slow down.
func bigSpec(name string) testnet.Spec {
	hosts := testnet.Mix(map[testnet.Role]int{
		testnet.Agent: 80, testnet.WrongKey: 4, testnet.Impostor: 6,
		testnet.Dropped: 40, testnet.Closed: 270,
	}, 21)
	return testnet.Spec{Name: name, Prefix: netip.MustParsePrefix("198.18.32.0/21"), Port: 7440, Hosts: hosts}
}

// TestRecallOnA21: every host and every agent, in every one of ten runs
// of each command, with default flags and with the sweep's broadcasts
// as ARP probes.
func TestRecallOnA21(t *testing.T) {
	testnet.Require(t, true)
	if testing.Short() {
		t.Skip("-short")
	}
	lan := testnet.Start(t, bigSpec("e2e21"), testnet.BuildIFL(t))
	want := arpTruth(lan)
	const runs = 10
	for _, flags := range [][]string{nil, {"--arp-probes"}} {
		name := "defaults"
		if len(flags) > 0 {
			name = strings.Join(flags, " ")
		}
		t.Run(name, func(t *testing.T) {
			for run := range runs {
				stdout, stderr, code := ifl(t, lan, append([]string{"arp-scan", "eth0", "--json"}, flags...)...)
				if code != 0 {
					t.Fatalf("arp-scan run %d: exit %d: %s", run, code, stderr)
				}
				var rep arpReport
				if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
					t.Fatalf("%v\n%s", err, stdout)
				}
				t.Logf("arp-scan run %d: %s", run, stderr)
				got := map[string]bool{}
				for _, h := range rep.Hosts {
					got[h.IP] = true
				}
				missed := 0
				for a := range want {
					if !got[a] {
						missed++
					}
				}
				if missed > 0 || len(got) != len(want) {
					t.Errorf("arp-scan run %d: %d of %d hosts found, %d missed: %s", run, len(got), len(want), missed, stderr)
				}
			}
			for run := range runs {
				stdout, stderr, code := ifl(t, lan, append([]string{"probe", "--no-state", "-o", "json"}, flags...)...)
				if code != 0 {
					t.Fatalf("probe run %d: exit %d: %s", run, code, stderr)
				}
				t.Logf("probe run %d: %s", run, stderr)
				if rep := checkProbe(t, lan, stdout); rep.Summary.Agents != 80 {
					t.Errorf("probe run %d: %d agents of 80: %s", run, rep.Summary.Agents, stderr)
				}
			}
		})
	}
}
