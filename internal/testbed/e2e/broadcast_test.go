package e2e

import (
	"context"
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ifl-project/ifl/internal/testbed/testnet"
)

// TestProbeBroadcast: without CAP_NET_RAW, probe --broadcast finds every
// agent whose UDP port is open, by identity, and nothing else (wrong-key
// agents and impostors do not answer); an agent whose firewall drops the
// UDP port is found by a sweep only.
func TestProbeBroadcast(t *testing.T) {
	testnet.Require(t, true)
	hosts := testnet.Mix(map[testnet.Role]int{
		testnet.Agent: 8, testnet.WrongKey: 2, testnet.Impostor: 2,
		testnet.Closed: 2, testnet.Dropped: 2, testnet.Empty: 2,
	}, 16)
	var mute testnet.HostSpec
	for i := range hosts {
		if hosts[i].Role == testnet.Agent {
			hosts[i].DropUDP = true
			hosts[i].Name = "mute"
			break
		}
	}
	spec := testnet.Spec{Name: "e2ebcast", Prefix: netip.MustParsePrefix("198.18.16.0/24"), Port: 7440, Hosts: hosts}
	lan := testnet.Start(t, spec, testnet.BuildIFL(t))

	want := map[string]string{} // address: identity
	for _, h := range lan.Hosts {
		if h.Role == testnet.Agent {
			if h.DropUDP {
				mute.Addr = h.Addr
				continue
			}
			want[h.Addr.String()] = h.Identity
		}
	}

	for _, args := range [][]string{{"probe", "--broadcast", "-o", "json"}, {"probe", "--broadcast", "-o", "json", lan.Prefix.String()}} {
		stdout, stderr, code := iflWithoutNetRaw(t, lan, args...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, stderr)
		}
		if strings.Contains(stderr, "CAP_NET_RAW") {
			t.Errorf("%v: broadcast needs no capability, but it said: %s", args, stderr)
		}
		var rep struct {
			Hosts []struct {
				Address  string   `json:"address"`
				Status   string   `json:"status"`
				Identity string   `json:"identity"`
				AlsoAt   []string `json:"also_at"`
			} `json:"hosts"`
			Summary struct {
				Agents, Answers, Queries, Probed int
				Method                           string
				Complete                         bool
			} `json:"summary"`
		}
		if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, stdout)
		}
		got := map[string]string{}
		for _, h := range rep.Hosts {
			if h.Status != "agent" {
				t.Errorf("%v: %s answered the broadcast and is %s: only agents with the key may answer", args, h.Address, h.Status)
				continue
			}
			got[h.Address] = h.Identity
			for _, a := range h.AlsoAt {
				if !netip.MustParseAddr(strings.Split(a, "%")[0]).Is6() {
					t.Errorf("%v: %s also at %s: one host, two IPv4 addresses", args, h.Address, a)
				}
			}
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%v: agents found (-want +got):\n%s", args, diff)
		}
		if rep.Summary.Method != "broadcast" || rep.Summary.Agents != len(want) || !rep.Summary.Complete || rep.Summary.Queries == 0 {
			t.Errorf("%v: summary %+v", args, rep.Summary)
		}
		t.Logf("%v: %+v", args, rep.Summary)
	}

	// Once IPv6 link-local addresses are usable (duplicate address
	// detection takes a second or two after the links come up), each
	// agent answers on IPv6 too, is verified there by a handshake to its
	// link-local address and zone, and is still one host.
	for _, n := range append([]testnet.Node{lan.Controller}, agentNodes(lan)...) {
		waitLinkLocal(t, n)
	}
	stdout, stderr, code := iflWithoutNetRaw(t, lan, "probe", "--broadcast", "-o", "json")
	if code != 0 {
		t.Fatalf("IPv6: exit %d: %s", code, stderr)
	}
	var rep6 struct {
		Hosts []struct {
			Address string   `json:"address"`
			Status  string   `json:"status"`
			AlsoAt  []string `json:"also_at"`
		} `json:"hosts"`
	}
	if err := json.Unmarshal([]byte(stdout), &rep6); err != nil {
		t.Fatal(err)
	}
	if len(rep6.Hosts) != len(want) {
		t.Errorf("IPv6: %d hosts, want %d (one per agent):\n%s", len(rep6.Hosts), len(want), stdout)
	}
	for _, h := range rep6.Hosts {
		if _, ok := want[h.Address]; !ok || h.Status != "agent" || len(h.AlsoAt) != 1 || !strings.HasPrefix(h.AlsoAt[0], "fe80::") || !strings.HasSuffix(h.AlsoAt[0], "%eth0") {
			t.Errorf("IPv6: %s %s also at %v; want an agent's IPv4 address, also at its fe80::…%%eth0", h.Address, h.Status, h.AlsoAt)
		}
	}

	// The sweep finds the agent whose firewall drops UDP, and the rest.
	stdout, stderr, code = iflWithoutNetRaw(t, lan, "probe", "--connect", "-o", "json", lan.Prefix.String())
	if code != 0 {
		t.Fatalf("connect: exit %d: %s", code, stderr)
	}
	rep := checkProbe(t, lan, stdout)
	found := false
	for _, h := range rep.Hosts {
		found = found || (h.Address == mute.Addr.String() && h.Status == "agent")
	}
	if !found {
		t.Errorf("the agent dropping UDP (%v) was not found by the sweep", mute.Addr)
	}
}

func agentNodes(lan *testnet.LAN) []testnet.Node {
	var out []testnet.Node
	for _, h := range lan.Hosts {
		if h.Role == testnet.Agent {
			out = append(out, testnet.Node{Namespace: h.Namespace, Addr: h.Addr, MAC: h.MAC})
		}
	}
	return out
}

// waitLinkLocal waits, within a bound, until n's eth0 has a link-local
// IPv6 address that is no longer tentative.
func waitLinkLocal(t *testing.T, n testnet.Node) {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		out, err := n.Command(context.Background(), "ip", "-6", "addr", "show", "dev", "eth0", "scope", "link", "-tentative").Output()
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(out), "inet6 fe80::") {
			return
		}
	}
	t.Fatalf("%s: no usable link-local IPv6 address after 15s", n.Namespace)
}

// TestBroadcastTCPFiltered: an agent that answers the broadcast query
// but whose firewall drops its TCP port is given up after a few of its
// round trips, listed as filtered (tcp-filtered) without --all, and
// counted in the summary; the other agents are found as always.
func TestBroadcastTCPFiltered(t *testing.T) {
	testnet.Require(t, true)
	hosts := testnet.Mix(map[testnet.Role]int{testnet.Agent: 4, testnet.Closed: 2}, 28)
	var walled string
	for i := range hosts {
		if hosts[i].Role == testnet.Agent {
			hosts[i].DropTCP = true
			break
		}
	}
	spec := testnet.Spec{Name: "e2etcpf", Prefix: netip.MustParsePrefix("198.18.20.0/28"), Port: 7440, Hosts: hosts}
	lan := testnet.Start(t, spec, testnet.BuildIFL(t))
	want := map[string]string{}
	for _, h := range lan.Hosts {
		switch {
		case h.Role != testnet.Agent:
		case h.DropTCP:
			walled = h.Addr.String()
			want[walled] = "filtered/tcp-filtered"
		default:
			want[h.Addr.String()] = "agent/"
		}
	}
	stdout, stderr, code := iflWithoutNetRaw(t, lan, "probe", "--broadcast", "--no-state", "-o", "json", lan.Prefix.String())
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var rep struct {
		Hosts []struct {
			Address string `json:"address"`
			Status  string `json:"status"`
			Reason  string `json:"reason"`
		} `json:"hosts"`
		Summary struct {
			Agents      int `json:"agents"`
			TCPFiltered int `json:"tcp_filtered"`
		} `json:"summary"`
	}
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, h := range rep.Hosts {
		got[h.Address] = h.Status + "/" + h.Reason
	}
	if diff := cmp.Diff(want, got); diff != "" || rep.Summary.Agents != 3 || rep.Summary.TCPFiltered != 1 {
		t.Errorf("hosts (-want +got):\n%s\nsummary %+v", diff, rep.Summary)
	}
	if !strings.Contains(stderr, "1 answered discovery but not on TCP") {
		t.Errorf("the summary line does not say so:\n%s", stderr)
	}
}
