package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ifl-project/ifl/proto"
)

// bigFacts returns facts with n labels and m interfaces: eth0 carries the
// default route, every third one has a global address, the rest only
// link-local ones.
func bigFacts(labels, ifcs int) *proto.Facts {
	f := &proto.Facts{
		Hostname:      "big",
		DefaultRoutes: []proto.Route{{Family: "inet", Gateway: "198.18.0.1", Interface: "eth0"}},
		Labels:        make(map[string]string),
	}
	for i := range labels {
		f.Labels[fmt.Sprintf("label%05d", i)] = strings.Repeat("v", 40)
	}
	for i := range ifcs {
		ifc := proto.Interface{
			Name: fmt.Sprintf("veth%04d", i), MAC: "02:00:00:00:00:01", MTU: 1500,
			Flags: []string{"up", "broadcast", "multicast"}, Addrs: []string{"fe80::1/64"},
		}
		if i%3 == 0 {
			ifc.Addrs = append(ifc.Addrs, fmt.Sprintf("198.18.%d.%d/16", i/250, i%250+1))
		}
		f.Interfaces = append(f.Interfaces, ifc)
	}
	// The routed interface comes last, where a cut from the end would
	// take it first.
	f.Interfaces = append(f.Interfaces, proto.Interface{Name: "eth0", MTU: 1500, Addrs: []string{"198.18.255.2/16"}})
	return f
}

// allAddressedKept checks that the 100 interfaces with a global address
// and eth0 are all there.
func allAddressedKept(t *testing.T, ifcs []proto.Interface) {
	n := 0
	for _, ifc := range ifcs {
		if hasUsefulAddr(ifc) {
			n++
		}
	}
	if n != 101 {
		t.Errorf("%d addressed interfaces kept, want all 101", n)
	}
}

// onlyEth0Len is the size of bigFacts cut down to eth0, as fitFacts
// measures it.
func onlyEth0Len(labels, ifcs int) int {
	f := bigFacts(labels, ifcs)
	f.Interfaces = f.Interfaces[ifcs:]
	f.Labels = nil
	f.Truncated = &proto.Truncated{Interfaces: ifcs, Labels: labels}
	f.Time = widestTime
	b, _ := json.Marshal(f)
	return len(b)
}

func TestFitFacts(t *testing.T) {
	small := bigFacts(3, 3)
	if got, err := fitFacts(small, maxFactsJSON); err != nil || got != small {
		t.Fatalf("facts that fit: got %p, %v; want them unchanged", got, err)
	}

	for _, tc := range []struct {
		name          string
		labels, ifcs  int
		maxLen        int
		wantIfcsLeft  func(*testing.T, []proto.Interface)
		wantAllLabels bool
	}{
		{"drops unaddressed interfaces first", 10, 300, 20000, allAddressedKept, true},
		{"labels before addressed interfaces", 2000, 300, 20000, allAddressedKept, false},
		{"keeps the routed interface last", 5000, 1000, onlyEth0Len(5000, 1000) + 10, func(t *testing.T, ifcs []proto.Interface) {
			if len(ifcs) != 1 || ifcs[0].Name != "eth0" {
				t.Errorf("interfaces %v, want eth0 alone", ifcs)
			}
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := bigFacts(tc.labels, tc.ifcs)
			got, err := fitFacts(in, tc.maxLen)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := json.Marshal(got)
			if len(b) > tc.maxLen {
				t.Fatalf("%d bytes, over %d", len(b), tc.maxLen)
			}
			tr := got.Truncated
			if tr == nil {
				t.Fatal("no truncation marker")
			}
			if tr.Interfaces != len(in.Interfaces)-len(got.Interfaces) || tr.Labels != len(in.Labels)-len(got.Labels) {
				t.Errorf("marker %+v; %d of %d interfaces and %d of %d labels kept", *tr, len(got.Interfaces), len(in.Interfaces), len(got.Labels), len(in.Labels))
			}
			if tc.wantAllLabels && tr.Labels != 0 {
				t.Errorf("%d labels dropped while unaddressed interfaces were left", tr.Labels)
			}
			// Labels go last key first: what is left is a prefix.
			for i := range len(got.Labels) {
				if _, ok := got.Labels[fmt.Sprintf("label%05d", i)]; !ok {
					t.Errorf("label%05d dropped, yet %d labels kept", i, len(got.Labels))
					break
				}
			}
			// Order is kept.
			pos := make(map[string]int)
			for i, ifc := range in.Interfaces {
				pos[ifc.Name] = i
			}
			for i := 1; i < len(got.Interfaces); i++ {
				if pos[got.Interfaces[i-1].Name] > pos[got.Interfaces[i].Name] {
					t.Errorf("interfaces reordered at %d", i)
				}
			}
			tc.wantIfcsLeft(t, got.Interfaces)
			// The input is not changed.
			if diff := cmp.Diff(bigFacts(tc.labels, tc.ifcs), in); diff != "" {
				t.Errorf("input changed (-want +got):\n%s", diff)
			}
		})
	}

	huge := &proto.Facts{Hostname: strings.Repeat("h", maxFactsJSON)}
	if _, err := fitFacts(huge, maxFactsJSON); !errors.Is(err, errFactsTooLarge) {
		t.Error("facts that cannot fit were accepted")
	}
}

// TestPingWithHugeFacts: 5000 labels and 1000 interfaces are far over a
// frame; the answer comes, cut, says so, and the agent logs it.
func TestPingWithHugeFacts(t *testing.T) {
	big := bigFacts(5000, 1000)
	ta := startAgent(t, func(o *Options) {
		o.Facts = func(string, map[string]string) (*proto.Facts, error) { return big, nil }
	})
	got, err := ta.ping(t, ta.key)
	if err != nil {
		t.Fatalf("ping: %v", err)
	}
	tr := got.Truncated
	if tr == nil || tr.Labels+len(got.Labels) != 5000 || tr.Interfaces+len(got.Interfaces) != 1001 {
		t.Fatalf("marker %+v with %d labels and %d interfaces", tr, len(got.Labels), len(got.Interfaces))
	}
	if b, _ := proto.MarshalMessage(&proto.PingReply{Facts: *got}); len(b) < proto.MaxMessage*9/10 {
		t.Errorf("reply of %d bytes: more was cut than needed (room %d)", len(b), proto.MaxMessage)
	}
	routed := false
	for _, ifc := range got.Interfaces {
		routed = routed || ifc.Name == "eth0"
	}
	if !routed {
		t.Error("the interface with the default route was cut")
	}
	ta.stop()
	ev := ta.logs.events("facts_truncated")
	if len(ev) != 1 || ev[0]["labels_left_out"] != float64(tr.Labels) || ev[0]["interfaces_left_out"] != float64(tr.Interfaces) {
		t.Errorf("facts_truncated events %v, want one with %+v", ev, *tr)
	}
}

// TestPingWithFactsThatCannotFit: the agent answers with an error, not by
// hanging up.
func TestPingWithFactsThatCannotFit(t *testing.T) {
	ta := startAgent(t, func(o *Options) {
		o.Facts = func(string, map[string]string) (*proto.Facts, error) {
			return &proto.Facts{Hostname: strings.Repeat("h", proto.MaxPayload)}, nil
		}
	})
	_, err := ta.ping(t, ta.key)
	var perr *proto.Error
	if !errors.As(err, &perr) || perr.Code != proto.CodeInternal || !strings.Contains(perr.Message, "do not fit") {
		t.Fatalf("got %v, want an agent error of code %q", err, proto.CodeInternal)
	}
}
