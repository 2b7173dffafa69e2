package cli

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/rs/zerolog"

	"github.com/ifl-project/ifl/agent"
	"github.com/ifl-project/ifl/internal/controller/engine"
	"github.com/ifl-project/ifl/internal/controller/inventory"
	"github.com/ifl-project/ifl/internal/controller/verify"
	"github.com/ifl-project/ifl/proto"
)

// serveDualStack runs an agent answering the handshake and the discovery
// query on [::] (IPv4 too, through mapped addresses), on one port for
// both, reporting facts that list 127.0.0.1 and ::1 as its own. It skips
// the test where the machine has no dual-stack loopback.
func serveDualStack(t *testing.T, key proto.NetworkKey) (port int, id string) {
	t.Helper()
	ident, err := proto.NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	facts := &proto.Facts{Hostname: "dual", MachineID: "0123456789abcdef0123456789abcdef",
		Interfaces: []proto.Interface{{Name: "lo", MTU: 65536, Flags: []string{"up", "loopback"}, Addrs: []string{"127.0.0.1/8", "::1/128"}}}}
	a, err := agent.New(agent.Options{NetworkKeys: []proto.NetworkKey{key}, Identity: ident, Version: "test",
		Facts: func(string, map[string]string) (*proto.Facts, error) { f := *facts; return &f, nil }})
	if err != nil {
		t.Fatal(err)
	}
	var ln net.Listener
	var pc net.PacketConn
	// The UDP port of the same number may be taken: a few tries, then
	// give up.
	for try := 0; pc == nil; try++ {
		if ln, err = net.Listen("tcp", "[::]:0"); err != nil {
			t.Skipf("no IPv6 here: %v", err)
		}
		pc, err = agent.ListenDiscovery(ln.Addr().String())
		if err != nil {
			ln.Close()
			if !errors.Is(err, syscall.EADDRINUSE) || try == 10 {
				t.Fatal(err)
			}
		}
	}
	port = ln.Addr().(*net.TCPAddr).Port
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 2)
	go func() { done <- a.Serve(ctx, ln) }()
	go func() { done <- a.ServeDiscovery(ctx, pc, port) }()
	t.Cleanup(func() {
		cancel()
		for range 2 {
			if err := <-done; err != nil {
				t.Errorf("agent: %v", err)
			}
		}
	})
	return port, ident.Fingerprint()
}

// TestOnceBroadcastRecordsEveryAddress: an agent that answers a round on
// IPv4 and on IPv6 is listed once, and the inventory keeps both
// addresses as verified, from that one round.
func TestOnceBroadcastRecordsEveryAddress(t *testing.T) {
	key, err := proto.NewNetworkKey()
	if err != nil {
		t.Fatal(err)
	}
	port, id := serveDualStack(t, key)
	v4, v6 := netip.MustParseAddr("127.0.0.1"), netip.IPv6Loopback()
	state := filepath.Join(t.TempDir(), "inventory.json")
	var stderr bytes.Buffer
	r := &rounds{
		cmd:   &ProbeCmd{Port: port},
		v:     &verify.Verifier{Key: key, Port: port, Timeout: 5 * time.Second},
		env:   &Env{Stdout: &bytes.Buffer{}, Stderr: &stderr},
		store: &inventory.File{Path: state},
		bcast: &engine.BroadcastPlan{
			Dests:  []netip.AddrPort{netip.AddrPortFrom(v4, uint16(port)), netip.AddrPortFrom(v6, uint16(port))},
			Accept: func(a netip.Addr) bool { return a == v4 || a == v6 },
		},
	}
	run, err := r.run(context.Background(), true, false)
	if err != nil {
		t.Fatal(err)
	}
	if run.stateErr != nil {
		t.Fatal(run.stateErr)
	}
	found := run.round.Results
	if len(found) != 1 || found[0].Identity != id || found[0].Addr != v4 || !slices.Equal(found[0].Also, []netip.Addr{v6}) {
		t.Fatalf("found %+v, want %s at %v also at %v", found, id, v4, v6)
	}
	if run.summary.Agents != 1 || run.summary.Answers != 2 {
		t.Errorf("summary %+v, want 1 agent, 2 answers", run.summary)
	}
	if run.changes == nil || len(run.changes.New) != 1 || len(run.changes.Warnings) != 0 {
		t.Errorf("changes %+v, want one new host and no warning", run.changes)
	}
	st, err := inventory.Load(state)
	if err != nil {
		t.Fatal(err)
	}
	h := st.Hosts[id]
	if h == nil {
		t.Fatalf("%s is not in the inventory: %+v", id, st.Hosts)
	}
	var got []string
	for _, v := range h.Verified {
		got = append(got, v.Addr)
	}
	if diff := cmp.Diff([]string{"127.0.0.1", "::1"}, got); diff != "" {
		t.Errorf("verified addresses (-want +got):\n%s", diff)
	}
	if h.IP != "127.0.0.1" {
		t.Errorf("IP %s, want 127.0.0.1", h.IP)
	}
}

// TestBroadcastTargetsUnlisted: with --broadcast, targets of any size are
// kept as a set to test answers against, never listed.
func TestBroadcastTargetsUnlisted(t *testing.T) {
	tf := &TargetFlags{Exclude: []string{"2001:db8:48::/65"}, unlisted: true}
	addrs, err := expandTargets(context.Background(), "probe", []string{"2001:db8:48::/64", "198.18.0.0/15"}, tf)
	if err != nil || addrs != nil {
		t.Fatalf("got %d addresses, %v; want none listed, no error", len(addrs), err)
	}
	for a, want := range map[string]bool{"2001:db8:48:0:8000::5": true, "2001:db8:48::5": false, "2001:db8:49::5": false, "198.19.255.254": true, "198.20.0.1": false} {
		if got := tf.set.Contains(netip.MustParseAddr(a)); got != want {
			t.Errorf("%s in the targets: %v, want %v", a, got, want)
		}
	}
}

// TestBroadcastNoLink: a /64 with --broadcast is not refused for its
// size; on no attached link, it is refused for that, without suggesting
// a sweep of it.
func TestBroadcastNoLink(t *testing.T) {
	keyFile, _, _ := startAgent(t)
	code, stdout, stderr := run(t, "probe", "--broadcast", "--no-state", "--network-key", keyFile, "2001:db8:ffff:fffd::/64")
	want := "ifl: probe --broadcast: no target is on a directly attached link with an IPv4 broadcast address or IPv6, and a query reaches no other (give a prefix of an attached link, or few enough addresses to probe each without --broadcast)\n"
	if code != 2 || stdout != "" || stderr != want {
		t.Errorf("exit %d, stdout %q, stderr %q; want exit 2 and %q", code, stdout, stderr, want)
	}
	code, _, stderr = run(t, "probe", "--broadcast", "--no-state", "--network-key", keyFile, "2001:db8:ffff:fffd::5")
	if want := "(probe without --broadcast to try every address)\n"; code != 2 || !strings.HasSuffix(stderr, want) {
		t.Errorf("one address: exit %d, stderr %q; want exit 2 and ...%q", code, stderr, want)
	}
}

// TestOnceBroadcastSilent: a round that hears no agent, while the
// inventory has one verified on the links it queried, says so, and the
// command exits 1; one whose known agents are all elsewhere does not.
func TestOnceBroadcastSilent(t *testing.T) {
	key, err := proto.NewNetworkKey()
	if err != nil {
		t.Fatal(err)
	}
	// A port where nothing answers.
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	quiet := pc.LocalAddr().(*net.UDPAddr).AddrPort()
	defer pc.Close()
	for _, tt := range []struct {
		at   string
		want string
	}{
		{"127.0.0.7", "probe --broadcast: no agent answered, though the inventory has 1 agent on these links: this controller's network key is not the fleet's (agents answer no other; compare the ids of ifl keycheck here and on an agent), the queries or the answers were lost, or drowned out (a holder of the network key flooding the link with queries can do that); a probe without --broadcast tries every address"},
		{"198.19.8.9", ""},
	} {
		state := filepath.Join(t.TempDir(), "inventory.json")
		if err := inventory.Update(state, func(st *inventory.State) error {
			st.Apply(time.Now(), []inventory.Observation{{Identity: "00112233445566778899aabbccddeeff", Addr: netip.MustParseAddr(tt.at), Port: 7440,
				Facts: &proto.Facts{Hostname: "web", MachineID: "0123456789abcdef0123456789abcdef"}}}, func(netip.Addr) bool { return false }, true)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		r := &rounds{
			cmd:   &ProbeCmd{Port: int(quiet.Port())},
			v:     &verify.Verifier{Key: key, Port: int(quiet.Port()), Timeout: time.Second},
			env:   &Env{Stdout: &bytes.Buffer{}, Stderr: &bytes.Buffer{}},
			store: &inventory.File{Path: state},
			bcast: &engine.BroadcastPlan{Dests: []netip.AddrPort{quiet}},
		}
		run, err := r.run(context.Background(), true, false)
		if err != nil || run.stateErr != nil {
			t.Fatalf("known at %s: %v, %v", tt.at, err, run.stateErr)
		}
		got := ""
		if run.silent() != nil {
			got = run.silent().Error()
		}
		if got != tt.want {
			t.Errorf("known at %s: silent %q, want %q", tt.at, got, tt.want)
		}
		if tt.want != "" {
			var ee *exitError
			if err := problem(run.silent()); !errors.As(err, &ee) || ee.ExitCode() != 1 {
				t.Errorf("a silent round's error %v: want exit status 1", err)
			}
		}
	}
}

// TestBroadcastWatchMetricsHosts: on a watch whose every round is a
// broadcast one, the metrics' hosts by status are the broadcast rounds':
// it runs no sweep to set them.
func TestBroadcastWatchMetricsHosts(t *testing.T) {
	key, err := proto.NewNetworkKey()
	if err != nil {
		t.Fatal(err)
	}
	port, _ := serveDualStack(t, key)
	v4 := netip.MustParseAddr("127.0.0.1")
	cmd := &ProbeCmd{Port: port, Watch: time.Hour}
	cmd.Broadcast = true
	cmd.Metrics = "127.0.0.1:" + strconv.Itoa(freePort(t, "tcp"))
	r := &rounds{
		cmd:   cmd,
		v:     &verify.Verifier{Key: key, Port: port, Timeout: 5 * time.Second},
		env:   &Env{Stdout: &bytes.Buffer{}, Stderr: &bytes.Buffer{}},
		store: &inventory.File{Path: filepath.Join(t.TempDir(), "inventory.json")},
		bcast: &engine.BroadcastPlan{
			Dests:  []netip.AddrPort{netip.AddrPortFrom(v4, uint16(port))},
			Accept: func(a netip.Addr) bool { return a == v4 },
		},
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	svc, err := r.startService(ctx, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer svc.stop()
	r.svc = svc
	if _, err := r.run(ctx, true, false); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + cmd.Metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, m := range fams["ifl_hosts"].GetMetric() {
		got[m.GetLabel()[0].GetValue()] = m.GetGauge().GetValue()
	}
	want := map[string]float64{"agent": 1, "busy": 0, "error": 0, "identity-mismatch": 0, "not-agent": 0, "rejected": 0}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ifl_hosts after a broadcast round (-want +got):\n%s", diff)
	}
}
