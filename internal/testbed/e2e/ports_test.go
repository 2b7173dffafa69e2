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

	"github.com/ifl-project/ifl/internal/testbed/testnet"
)

// manyPortsSpec is a /24 shaped like a real one, as the stages of a run
// see it: 50 hosts and a router, 17 of them open on the agent port
// (agents, a wrong key, decoys), 5 that drop it, the rest closed.
func manyPortsSpec() testnet.Spec {
	return testnet.Spec{Name: "e2eports", Prefix: netip.MustParsePrefix("198.18.96.0/24"), Port: 7445,
		Hosts: testnet.Mix(map[testnet.Role]int{
			testnet.Agent: 10, testnet.WrongKey: 2, testnet.Impostor: 5, testnet.Dropped: 5, testnet.Closed: 28,
		}, 22)}
}

// portSummary is what the many-ports tests read of a scan's summary.
type portSummary struct {
	ARPLive  int `json:"arp_live"`
	Down     int `json:"down"`
	Open     int `json:"open"`
	Closed   int `json:"closed"`
	Filtered int `json:"filtered"`
	Dropped  int `json:"dropped"`
	Unsure   int `json:"unsure"`
}

// scanPorts runs ifl scan with args and returns its open ports, the
// states of every port it listed, and its summary; it fails the test on
// a non-zero exit.
func scanPorts(t *testing.T, lan *testnet.LAN, args ...string) (open []string, states map[string]string, sum portSummary) {
	t.Helper()
	stdout, stderr, code := ifl(t, lan, append([]string{"scan", "-o", "json"}, args...)...)
	if code != 0 {
		t.Fatalf("ifl scan %s: exit %d: %s", strings.Join(args, " "), code, stderr)
	}
	var rep struct {
		Ports []struct {
			Address string `json:"address"`
			Port    int    `json:"port"`
			Status  string `json:"status"`
		} `json:"ports"`
		Summary portSummary `json:"summary"`
	}
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatal(err)
	}
	states = map[string]string{}
	for _, p := range rep.Ports {
		k := fmt.Sprintf("%s:%d", p.Address, p.Port)
		states[k] = p.Status
		if p.Status == "open" {
			open = append(open, k)
		}
	}
	slices.Sort(open)
	return open, states, rep.Summary
}

// TestManyPorts: many ports of every address of a /24, and every port of
// one host, are scanned exactly, run after run, on the raw path and with
// connect(): no host called down and no port filtered because the run's
// own stages flooded the scanner's receive path.
func TestManyPorts(t *testing.T) {
	testnet.Require(t, true)
	lan := testnet.Start(t, manyPortsSpec(), testnet.BuildIFL(t))
	const ports = 2001 // 1-2000 and the agent port
	var openWant []string
	live, filtered := 1, 0 // the router
	var agent testnet.Host
	var liveAddrs []string
	for _, h := range lan.Hosts {
		live++
		liveAddrs = append(liveAddrs, h.Addr.String())
		switch h.Role {
		case testnet.Agent, testnet.WrongKey, testnet.Impostor:
			openWant = append(openWant, fmt.Sprintf("%s:%d", h.Addr, lan.Port))
			if h.Role == testnet.Agent {
				agent = h
			}
		case testnet.Dropped:
			filtered++
		}
	}
	slices.Sort(openWant)
	// The controller's own address answers too, closed on every port.
	want := portSummary{ARPLive: live, Down: 254 - live - 1, Open: len(openWant), Filtered: filtered,
		Closed: (live+1)*ports - len(openWant) - filtered}
	portList := fmt.Sprintf("1-2000,%d", lan.Port)

	const runs = 10
	t.Run("a /24, 2001 ports", func(t *testing.T) {
		for run := range runs {
			open, _, sum := scanPorts(t, lan, "-p", portList, lan.Prefix.String())
			sum.Dropped = 0 // what the scanner dropped and made up for
			if diff := cmp.Diff(openWant, open); diff != "" || sum != want {
				t.Fatalf("run %d: open ports (-want +got):\n%s\nsummary %+v, want %+v", run, diff, sum, want)
			}
		}
	})
	t.Run("a /24's live hosts, 2001 ports, connect()", func(t *testing.T) {
		// connect() has no host discovery: the live hosts only.
		wantConnect := want
		wantConnect.ARPLive, wantConnect.Down = 0, 0
		wantConnect.Closed = (live-1)*ports - len(openWant) - filtered
		for run := range 3 {
			open, _, sum := scanPorts(t, lan, append([]string{"--connect", "-p", portList}, liveAddrs...)...)
			if diff := cmp.Diff(openWant, open); diff != "" || sum != wantConnect {
				t.Fatalf("run %d: open ports (-want +got):\n%s\nsummary %+v, want %+v", run, diff, sum, wantConnect)
			}
		}
	})
	for _, mode := range []string{"raw", "connect"} {
		t.Run("every port of an agent, "+mode, func(t *testing.T) {
			args := []string{"-p", "1-65535", "--all", agent.Addr.String()}
			if mode == "connect" {
				args = append([]string{"--connect"}, args...)
			} else {
				// On a busy machine: the reader must keep up, or know
				// that it did not.
				defer scanFlood(t, lan, liveAddrs)()
			}
			for run := range runs {
				_, states, _ := scanPorts(t, lan, args...)
				var wrong []string
				for p := 1; p <= 65535; p++ {
					k := fmt.Sprintf("%s:%d", agent.Addr, p)
					w := "closed"
					if p == lan.Port {
						w = "open"
					}
					if states[k] != w {
						wrong = append(wrong, fmt.Sprintf("%d %s", p, states[k]))
					}
				}
				if len(wrong) > 0 || len(states) != 65535 {
					t.Fatalf("run %d: %d rows, %d ports wrong: %s", run, len(states), len(wrong), strings.Join(wrong[:min(len(wrong), 20)], ", "))
				}
			}
		})
	}
	t.Run("probe while a scan floods the segment", func(t *testing.T) {
		defer scanFlood(t, lan, liveAddrs)()
		for run := range runs {
			stdout, stderr, code := ifl(t, lan, "probe", "--no-state", "-p", fmt.Sprint(lan.Port), "-o", "json", lan.Prefix.String())
			if code != 0 {
				t.Fatalf("run %d: exit %d: %s", run, code, stderr)
			}
			var rep struct {
				Hosts []struct {
					Address string `json:"address"`
					Status  string `json:"status"`
				} `json:"hosts"`
			}
			if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
				t.Fatal(err)
			}
			got := map[string]string{}
			for _, h := range rep.Hosts {
				got[h.Address] = h.Status
			}
			wantProbe := map[string]string{}
			for _, h := range lan.Hosts {
				switch h.Role {
				case testnet.Agent:
					wantProbe[h.Addr.String()] = "agent"
				case testnet.WrongKey:
					wantProbe[h.Addr.String()] = "rejected"
				case testnet.Impostor:
					wantProbe[h.Addr.String()] = "not-agent"
				}
			}
			if diff := cmp.Diff(wantProbe, got); diff != "" {
				t.Fatalf("run %d: hosts (-want +got):\n%s", run, diff)
			}
		}
	})
}

// scanFlood scans every port of addrs from the controller's namespace, again
// and again, until the function it returns is called: a second scan
// that fills the segment and the machine's CPUs.
func scanFlood(t *testing.T, lan *testnet.LAN, addrs []string) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			cmd := lan.Controller.Command(ctx, lan.IFL, append([]string{"scan", "-p", "1-65535", "-o", "json"}, addrs...)...)
			cmd.Run()
		}
	}()
	return func() {
		cancel()
		<-done
	}
}
