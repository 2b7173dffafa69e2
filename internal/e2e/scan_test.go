package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ifl-project/ifl/internal/cli/schema/schematest"
	"github.com/ifl-project/ifl/internal/testnet"
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

// TestScanDropsCapabilities checks, while a scan waits on a firewalled
// port and while an ARP sweep waits on an empty address, that the process
// holds no capability left in its effective and permitted sets, and only
// CAP_NET_RAW in its bounding set.
func TestScanDropsCapabilities(t *testing.T) {
	testnet.Require(t, true)
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
	for _, args := range [][]string{
		{"scan", dropped.Addr.String(), "--timeout", "3s", "--retries", "1"},
		{"arp-scan", "eth0", empty.Addr.String(), "--timeout", "3s", "--retries", "1", "--min-retries", "1"},
	} {
		t.Run(args[0], func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			cmd := lan.Controller.Command(ctx, lan.IFL, args...)
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer cmd.Wait()
			defer cancel() // first: the command is killed once checked
			// ip netns exec execs ifl in place: the PID is ifl's.
			status := fmt.Sprintf("/proc/%d/status", cmd.Process.Pid)
			deadline := time.Now().Add(10 * time.Second)
			var last string
			for time.Now().Before(deadline) {
				b, err := os.ReadFile(status)
				if err != nil {
					break // exited
				}
				last = capLines(string(b))
				if last == "CapInh:0000000000000000 CapPrm:0000000000000000 CapEff:0000000000000000 CapBnd:0000000000002000 CapAmb:0000000000000000" {
					return
				}
				time.Sleep(5 * time.Millisecond)
			}
			t.Fatalf("capabilities while running %s: %s; want none, and only CAP_NET_RAW (bit 13) in the bounding set", args[0], last)
		})
	}
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
