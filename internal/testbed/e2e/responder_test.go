package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ifl-project/ifl/internal/testbed/responder"
	"github.com/ifl-project/ifl/internal/testbed/testnet"
)

// TestResponderLAN: a LAN whose hosts are mostly one responder's, with
// agents in namespaces beside it. ifl's ARP sweep and port scan find
// each as a host of its own (its MAC, its ports), and the resets the
// controller's kernel sends to the responder's hosts never take a
// neighbour entry.
func TestResponderLAN(t *testing.T) {
	testnet.Require(t, true)
	open, filtered, slow := responder.Group{Open: []uint16{7440}}, responder.Group{Filtered: []uint16{7440}}, responder.Group{Open: []uint16{7440}, Delay: 30 * time.Millisecond}
	spec := testnet.Spec{Name: "e2ersp", Prefix: netip.MustParsePrefix("198.19.128.0/21"), Port: 7440,
		Hosts: testnet.Mix(map[testnet.Role]int{testnet.Agent: 2, testnet.Closed: 1}, 1),
		Responder: &testnet.ResponderSpec{Groups: []testnet.ResponderGroup{
			{Hosts: 100, Group: open}, {Hosts: 50, Group: filtered}, {Hosts: 130}, {Hosts: 20, Group: slow},
		}}}
	lan := testnet.Start(t, spec, testnet.BuildIFL(t))
	rsp := lan.ResponderNode
	if rsp == nil || len(rsp.Hosts) != 300 {
		t.Fatalf("responder %+v: want one of 300 hosts", rsp)
	}

	arpWant, portWant := arpTruth(lan), scanTruth(lan)
	for _, a := range []netip.Addr{lan.Router.Addr, lan.Controller.Addr} {
		portWant[a.String()+":22"] = "closed"
		portWant[fmt.Sprintf("%s:%d", a, lan.Port)] = "closed"
	}
	for _, h := range rsp.Hosts {
		mac := responder.MAC(h.Addr)
		arpWant[h.Addr.String()] = net.HardwareAddr(mac[:]).String()
		g := rsp.Groups[h.Group]
		portWant[h.Addr.String()+":22"] = "closed"
		portWant[fmt.Sprintf("%s:%d", h.Addr, lan.Port)] = map[responder.State]string{responder.Open: "open", responder.Closed: "closed", responder.Filtered: "filtered"}[g.Port(uint16(lan.Port))]
	}

	stdout, stderr, code := ifl(t, lan, "arp-scan", "--json", "eth0")
	if code != 0 {
		t.Fatalf("arp-scan: exit %d: %s", code, stderr)
	}
	var arp arpReport
	if err := json.Unmarshal([]byte(stdout), &arp); err != nil {
		t.Fatalf("%v\n%s", err, stdout)
	}
	got := map[string]string{}
	for _, h := range arp.Hosts {
		got[h.IP] = h.MAC
	}
	if diff := cmp.Diff(arpWant, got); diff != "" {
		t.Errorf("arp-scan (-want +got):\n%s", diff)
	}

	stdout, stderr, code = ifl(t, lan, "scan", "-p", fmt.Sprintf("22,%d", lan.Port), "--all", "--json", lan.Prefix.String())
	if code != 0 {
		t.Fatalf("scan: exit %d: %s", code, stderr)
	}
	var rep scanReport
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("%v\n%s", err, stdout)
	}
	got = map[string]string{}
	for _, p := range rep.Ports {
		if p.Status != "down" {
			got[fmt.Sprintf("%s:%d", p.Address, p.Port)] = p.Status
		}
	}
	if diff := cmp.Diff(portWant, got); diff != "" {
		t.Errorf("scan (-want +got):\n%s", diff)
	}
	// Every address but the router's, the controller's and the hosts'.
	if want := 2046 - 2 - len(lan.Hosts) + countEmpty(lan) - len(rsp.Hosts); rep.Summary.Down != want {
		t.Errorf("%d addresses down, want %d", rep.Summary.Down, want)
	}

	out, err := exec.Command("ip", "-n", lan.Controller.Namespace, "neigh", "show").CombinedOutput()
	if err != nil {
		t.Fatalf("ip neigh: %v\n%s", err, out)
	}
	ours := map[string]bool{}
	for _, h := range rsp.Hosts {
		ours[h.Addr.String()] = true
	}
	var taken []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if f := strings.Fields(line); len(f) > 0 && ours[f[0]] {
			taken = append(taken, line)
		}
	}
	if len(taken) != 0 {
		t.Errorf("the controller's kernel has %d neighbour entries for the responder's hosts, want none:\n%s", len(taken), strings.Join(taken, "\n"))
	}
}
