package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ifl-project/ifl/internal/controller/inventory"
	"github.com/ifl-project/ifl/internal/testbed/annload/report"
	"github.com/ifl-project/ifl/internal/testbed/testnet"
)

// dhcpRestart is a LAN where one host plays n agents (annload), the
// addresses they have before and after the move, and the prefix length.
type dhcpRestart struct {
	spec               testnet.Spec
	n, bits            int
	oldFirst, newFirst netip.Addr
	// after is how long after the controller's first sweep the moves
	// start (3 s at least: its idle memory is measured meanwhile).
	after time.Duration
}

// dhcpResult is what a DHCP restart measured.
type dhcpResult struct {
	n        int
	recorded int // moves recorded via an announcement, to the agent's new address
	bySweep  int // moves recorded by a sweep (none is due)
	acked    int // agents whose announcement a verified ping acknowledged
	lost     int // of which the move is not recorded
	inState  int // hosts at their new address in the state file
	// moving is from the first address change to the last; span from the
	// first to the last move recorded; each, from an agent's own change
	// to its move recorded (sorted).
	moving, span time.Duration
	each         []time.Duration
	// rounds, accepted and merged: the announcement rounds, the
	// announcements that made an address wait for one, and those that
	// joined an address waiting or under verification.
	rounds, accepted, merged float64
	roundList                []string // each round's addresses and duration
	sent, gaveUp             int64
	// The controller's memory (kB): settled after its first sweep, and
	// the peak while the moves were recorded; the peak of the sweep.
	idleKB, peakKB, sweepKB int
	tableFulls              int64 // the kernel's neighbour table overflows meanwhile
	refused                 map[string]float64
}

// buildAnnload builds internal/testbed/annload into dir.
func buildAnnload(t testing.TB) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "annload")
	cmd := exec.Command("go", "build", "-o", out, "github.com/ifl-project/ifl/internal/testbed/annload")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building annload: %v\n%s", err, b)
	}
	return out
}

// procStatus reads the kB of the fields of /proc/PID/status.
func procStatus(t testing.TB, pid int, fields ...string) []int {
	t.Helper()
	out, err := readStatus(pid, fields...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func readStatus(pid int, fields ...string) ([]int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil, err
	}
	out := make([]int, len(fields))
	for l := range strings.SplitSeq(string(b), "\n") {
		k, v, _ := strings.Cut(l, ":")
		if i := slices.Index(fields, k); i >= 0 {
			out[i], _ = strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
		}
	}
	return out, nil
}

// tableFulls sums the column table_fulls of /proc/net/stat/arp_cache:
// the kernel's neighbour table is one for every namespace.
func tableFulls(t testing.TB) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/net/stat/arp_cache")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	col := slices.Index(strings.Fields(lines[0]), "table_fulls")
	if col < 0 {
		t.Fatalf("no table_fulls in /proc/net/stat/arp_cache:\n%s", b)
	}
	var n int64
	for _, l := range lines[1:] {
		if f := strings.Fields(l); col < len(f) {
			v, _ := strconv.ParseInt(f[col], 16, 64)
			n += v
		}
	}
	return n
}

// run brings the LAN up, lets a watching controller (a 10-minute
// interval, announcements on) record the n agents in its first sweep,
// then moves them all within a second and follows the controller's
// events until every move is recorded, or 100 s have passed.
func (d dhcpRestart) run(t testing.TB) dhcpResult {
	t.Helper()
	lan := testnet.Start(t, d.spec, testnet.BuildIFL(t))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	t.Cleanup(cancel)
	tool := d.startAnnload(ctx, t, lan)
	ready := tool.next(t, "ready")
	newAddr := map[string]netip.Addr{}
	for _, a := range ready.Agents {
		newAddr[a.Identity] = a.New
	}
	state := filepath.Join(t.TempDir(), "inventory.json")
	recordFleet(ctx, t, lan, state, d.n)
	w := startLANWatch(t, lan, "--watch", "10m", "--broadcast-every", "0", "--state", state,
		"--announcements", ":7441", "--metrics", "127.0.0.1:9174")
	w.next(t, "probed", "host_moved")
	res := dhcpResult{n: d.n}
	res.sweepKB = procStatus(t, w.pid, "VmHWM")[0]
	res.idleKB = idleRSS(t, w.pid, d.after)
	// The peak from now on: VmHWM starts again from VmRSS.
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", w.pid), []byte("5"), 0); err != nil {
		t.Fatal(err)
	}
	fulls := tableFulls(t)
	peak := samplePeak(w.pid)

	if _, err := io.WriteString(tool.stdin, "move\n"); err != nil {
		t.Fatal(err)
	}
	recordedAt, moved, done := follow(t, w, tool, newAddr, &res)
	res.peakKB = max(peak(), procStatus(t, w.pid, "VmHWM")[0])
	res.tableFulls = tableFulls(t) - fulls
	res.tally(recordedAt, moved, done)

	st, err := inventory.Load(state)
	if err != nil {
		t.Fatal(err)
	}
	for id, a := range newAddr {
		if h := st.Hosts[id]; h != nil && h.IP == a.String() {
			res.inState++
		}
	}
	res.scrape(t, lan)
	return res
}

// annloadRun is annload running in the LAN's host called fleet: its
// input, and the lines it prints.
type annloadRun struct {
	stdin io.WriteCloser
	lines chan report.Line
}

// startAnnload starts annload in the LAN's host called fleet, stopped
// when the test ends.
func (d dhcpRestart) startAnnload(ctx context.Context, t testing.TB, lan *testnet.LAN) *annloadRun {
	t.Helper()
	var fleet testnet.Host
	for _, h := range lan.Hosts {
		if h.Name == "fleet" {
			fleet = h
		}
	}
	if fleet.Addr != d.spec.Hosts[0].Addr {
		t.Fatalf("no host fleet at %v on the LAN", d.spec.Hosts[0].Addr)
	}
	tool := exec.CommandContext(ctx, "ip", "netns", "exec", fleet.Namespace, buildAnnload(t), "-k", lan.NetworkKey, "-port", strconv.Itoa(lan.Port), "-n", strconv.Itoa(d.n),
		"-bits", strconv.Itoa(d.bits), "-old", d.oldFirst.String(), "-new", d.newFirst.String(), "-over", "1s", "-wait", "100s")
	tool.Stderr = os.Stderr
	stdin, err := tool.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := tool.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := tool.Start(); err != nil {
		t.Fatal(err)
	}
	r := &annloadRun{stdin: stdin, lines: make(chan report.Line, 4)}
	go func() {
		defer close(r.lines)
		dec := json.NewDecoder(bufio.NewReader(stdout))
		for {
			var l report.Line
			if err := dec.Decode(&l); err != nil {
				if err != io.EOF {
					t.Errorf("annload's output: %v", err)
				}
				return
			}
			r.lines <- l
		}
	}()
	t.Cleanup(func() {
		stdin.Close()
		for range r.lines {
		}
		if err := tool.Wait(); err != nil {
			t.Errorf("annload: %v", err)
		}
	})
	return r
}

// next returns annload's next line, which must be an event's.
func (r *annloadRun) next(t testing.TB, event string) report.Line {
	t.Helper()
	select {
	case l, ok := <-r.lines:
		if !ok || l.Event != event {
			t.Fatalf("annload: %+v, want a %s line", l, event)
		}
		return l
	case <-time.After(2 * time.Minute):
		t.Fatalf("annload: no %s line within 2 minutes", event)
	}
	return report.Line{}
}

// recordFleet probes the LAN until the state holds its n agents: a
// sweep of the fleet's 1,000 handshakes at once on this machine's two
// shared cores may leave some out.
func recordFleet(ctx context.Context, t testing.TB, lan *testnet.LAN, state string, n int) {
	t.Helper()
	for try := 1; ; try++ {
		// Exit status 1 says the probe found what is not an agent (the
		// fleet's own address): the state tells what it recorded.
		out, probeErr := lan.Controller.Command(ctx, lan.IFL, "probe", "--network-key", lan.NetworkKey, "--state", state).CombinedOutput()
		st, err := inventory.Load(state)
		if err != nil {
			t.Fatalf("%v (ifl probe: %v)\n%s", err, probeErr, out[max(0, len(out)-2000):])
		}
		if len(st.Hosts) == n {
			return
		}
		if try == 5 {
			t.Fatalf("%d hosts in the state after %d probes, want %d (ifl probe: %v)\n%s", len(st.Hosts), try, n, probeErr, out[max(0, len(out)-2000):])
		}
	}
}

// idleRSS is the median of pid's memory (kB) for after, 3 s at least.
// A minute after the sweep, the kernel has let the sweep's neighbour
// entries go stale (15 to 45 s after their last use) and may evict them
// for new ones (5 s after that); sooner, the 1,000 new addresses find no
// room in its table (1,024 entries, here one for every namespace).
func idleRSS(t testing.TB, pid int, after time.Duration) int {
	t.Helper()
	var idle []int
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for start := time.Now(); len(idle) < 30 || time.Since(start) < after; {
		<-tick.C
		idle = append(idle, procStatus(t, pid, "VmRSS")[0])
	}
	slices.Sort(idle)
	return idle[len(idle)/2]
}

// samplePeak samples pid's memory every 20 ms until the function it
// returns is called, which returns the peak (kB).
func samplePeak(pid int) func() int {
	stop := make(chan struct{})
	var sampled sync.WaitGroup
	peak := 0
	sampled.Go(func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			if v, err := readStatus(pid, "VmRSS"); err == nil {
				peak = max(peak, v[0])
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	})
	return func() int {
		close(stop)
		sampled.Wait()
		return peak
	}
}

// follow reads the controller's events and annload's lines until every
// agent's move to its new address is recorded and annload has moved
// them, or 100 s have passed: when each move was recorded, by identity,
// and annload's moved and done lines. Moves by a sweep and the
// announcement rounds go in res.
func follow(t testing.TB, w *lanWatch, tool *annloadRun, newAddr map[string]netip.Addr, res *dhcpResult) (recordedAt map[string]time.Time, moved, done report.Line) {
	t.Helper()
	recordedAt = map[string]time.Time{}
	// The agents' last announcements go out 64 s after their change.
	timeout := time.After(100 * time.Second)
follow:
	for len(recordedAt) < len(newAddr) || moved.Event == "" {
		select {
		case l, ok := <-tool.lines:
			switch {
			case ok && l.Event == "moved" && moved.Event == "":
				moved = l
			case ok && l.Event == "done" && moved.Event != "":
				// Every announcement acknowledged, some moves still
				// to be recorded.
				done = l
			default:
				t.Fatalf("annload: %+v, want a moved line, then a done line", l)
			}
		case ev, ok := <-w.events:
			if !ok {
				t.Fatal("the controller's events ended")
			}
			switch ev["event"] {
			case "host_moved":
				id, _ := ev["identity"].(string)
				switch {
				case ev["via"] != "announcement":
					res.bySweep++
				case ev["to"] == newAddr[id].String() && recordedAt[id].IsZero():
					recordedAt[id] = time.Now()
				default:
					t.Errorf("a move not asked for: %v", ev)
				}
			case "announced":
				res.roundList = append(res.roundList, fmt.Sprintf("%v in %.2fs", ev["addresses"], ev["seconds"]))
			case "probed":
				t.Errorf("a sweep during the moves: %v", ev)
			}
		case <-timeout:
			t.Logf("%d moves recorded within 100 s, of %d", len(recordedAt), len(newAddr))
			break follow
		}
	}
	// The last round's line follows its moves.
	if len(recordedAt) == len(newAddr) {
		for ev := range w.events {
			if ev["event"] == "announced" {
				res.roundList = append(res.roundList, fmt.Sprintf("%v in %.2fs", ev["addresses"], ev["seconds"]))
				break
			}
		}
	}
	if done.Event == "" {
		done = tool.next(t, "done")
	}
	return recordedAt, moved, done
}

// tally counts what annload's lines and the moves recorded say.
func (res *dhcpResult) tally(recordedAt map[string]time.Time, moved, done report.Line) {
	res.recorded = len(recordedAt)
	first := time.Unix(0, moved.First)
	res.moving = time.Unix(0, moved.Last).Sub(first)
	for _, a := range done.Agents {
		res.sent += a.Sent
		res.gaveUp += a.GaveUp
		at, ok := recordedAt[a.Identity]
		if a.Acked > 0 {
			res.acked++
			if !ok {
				res.lost++
			}
		}
		if ok {
			res.span = max(res.span, at.Sub(first))
			res.each = append(res.each, at.Sub(time.Unix(0, a.MovedAt)))
		}
	}
	slices.Sort(res.each)
}

// scrape reads the announcement rounds and counts from the controller's
// metrics.
func (res *dhcpResult) scrape(t testing.TB, lan *testnet.LAN) {
	t.Helper()
	fams := scrape(t, lan, 9174)
	res.rounds = metric(t, fams, "ifl_rounds_total", "kind", "announcement", "outcome", "complete") +
		metric(t, fams, "ifl_rounds_total", "kind", "announcement", "outcome", "incomplete")
	res.accepted = metric(t, fams, "ifl_announcements_accepted_total")
	res.merged = metric(t, fams, "ifl_announcements_merged_total")
	res.refused = map[string]float64{}
	for _, m := range fams["ifl_announcements_refused_total"].GetMetric() {
		if v := m.GetCounter().GetValue(); v > 0 {
			res.refused[m.GetLabel()[0].GetValue()] = v
		}
	}
}

// log says what r measured.
func (r dhcpResult) log(t testing.TB) {
	t.Helper()
	med, worst := time.Duration(0), time.Duration(0)
	if len(r.each) > 0 {
		med, worst = r.each[len(r.each)/2], r.each[len(r.each)-1]
	}
	t.Logf("%d agents moved in %v; %d moves recorded via announcements (%d by a sweep), the last %v after the first address change; "+
		"each from its own change: median %v, worst %v; %v announcement rounds, %v announcements accepted and %v merged",
		r.n, r.moving.Round(time.Millisecond), r.recorded, r.bySweep, r.span.Round(time.Millisecond), med.Round(time.Millisecond), worst.Round(time.Millisecond), r.rounds, r.accepted, r.merged)
	t.Logf("announcement rounds (addresses, duration): %s", strings.Join(r.roundList, ", "))
	t.Logf("%d announcements acknowledged, %d of them with no move recorded; %d hosts at their new address in the state; %d datagrams sent, %d announcements given up; refused %v",
		r.acked, r.lost, r.inState, r.sent, r.gaveUp, r.refused)
	t.Logf("controller RSS: idle %.1f MiB, peak during the moves %.1f MiB (x%.2f); peak of the first sweep %.1f MiB; neighbour table overflows %d",
		float64(r.idleKB)/1024, float64(r.peakKB)/1024, float64(r.peakKB)/float64(r.idleKB), float64(r.sweepKB)/1024, r.tableFulls)
}

// TestAnnouncedFleet: 20 agents played by annload in one namespace,
// recorded by a watching controller's sweep, move within a second; each
// announces its new address, every announcement is acknowledged and
// every move recorded, by the announcements alone.
func TestAnnouncedFleet(t *testing.T) {
	testnet.Require(t, true)
	d := dhcpRestart{
		spec: testnet.Spec{Name: "e2edhcp", Prefix: netip.MustParsePrefix("198.18.72.0/24"), Port: 7440,
			Hosts: []testnet.HostSpec{{Role: testnet.Closed, Name: "fleet", Addr: netip.MustParseAddr("198.18.72.3")}}},
		n: 20, bits: 24, oldFirst: netip.MustParseAddr("198.18.72.10"), newFirst: netip.MustParseAddr("198.18.72.110"),
	}
	r := d.run(t)
	r.log(t)
	if r.recorded != d.n || r.bySweep != 0 || r.acked != d.n || r.lost != 0 || r.inState != d.n {
		t.Errorf("%d moves recorded via announcements and %d by sweeps, %d acknowledged, %d acknowledged and lost, %d in the state; want %d, 0, %d, 0, %d",
			r.recorded, r.bySweep, r.acked, r.lost, r.inState, d.n, d.n, d.n)
	}
}

// fleetDHCP is the LAN of the benchmarks: 1,000 agents played by
// annload on a /21, their old addresses in its first four /24s, the new
// ones in the last four (the inventory takes at most 256 new hosts per
// /24 in a round).
func fleetDHCP(name string) dhcpRestart {
	return dhcpRestart{
		spec: testnet.Spec{Name: name, Prefix: netip.MustParsePrefix("198.18.64.0/21"), Port: 7440,
			Hosts: []testnet.HostSpec{{Role: testnet.Closed, Name: "fleet", Addr: netip.MustParseAddr("198.18.64.3")}}},
		n: 1000, bits: 21, oldFirst: netip.MustParseAddr("198.18.64.10"), newFirst: netip.MustParseAddr("198.18.68.10"),
	}
}

func benchDHCP(b *testing.B, d dhcpRestart) {
	for range b.N {
		r := d.run(b)
		r.log(b)
		b.ReportMetric(r.span.Seconds(), "s-all-recorded")
		b.ReportMetric(float64(r.recorded), "recorded")
		b.ReportMetric(float64(r.acked), "acked")
		b.ReportMetric(float64(r.lost), "acked-lost")
		b.ReportMetric(float64(r.idleKB)/1024, "MiB-idle")
		b.ReportMetric(float64(r.peakKB)/1024, "MiB-peak")
	}
}

// BenchmarkDHCPRestart: 1,000 agents (annload, in one namespace of a
// /21) change address within one second, as after a DHCP server's
// restart, under a controller watching with a 10-minute interval and
// announcements on. It reports how long until every move was recorded,
// how many were, whether every acknowledged announcement's move was,
// and the controller's memory idle and at its peak (run with
// -benchtime=1x). The restart comes a minute after the controller's
// sweep.
func BenchmarkDHCPRestart(b *testing.B) {
	testnet.Require(b, true)
	d := fleetDHCP("e2edhcpb")
	d.after = time.Minute
	benchDHCP(b, d)
}

// BenchmarkDHCPRestartAfterSweep is BenchmarkDHCPRestart 3 s after the
// sweep, its 1,000 neighbour entries in the controller's kernel still
// reachable, which the kernel does not evict for the new addresses.
func BenchmarkDHCPRestartAfterSweep(b *testing.B) {
	testnet.Require(b, true)
	benchDHCP(b, fleetDHCP("e2edhcpn"))
}
