package e2e

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ifl-project/ifl/internal/testnet"
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

	// The sweep finds the agent whose firewall drops UDP, and the rest.
	stdout, stderr, code := iflWithoutNetRaw(t, lan, "probe", "--connect", "-o", "json", lan.Prefix.String())
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
