package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ifl-project/ifl/internal/controller/inventory"
	"github.com/ifl-project/ifl/internal/testbed/etcdtest"
	"github.com/ifl-project/ifl/internal/testbed/testnet"
)

// sites is a fleet of two sites, a and b: a LAN each with its
// controller, both routed to a core where a 3-member etcd cluster keeps
// their shared inventory.
type sites struct {
	a, b  *testnet.LAN
	etcd  *etcdtest.Cluster
	store string // the --store URL
}

// startSites brings the fleet up for the test. Both LANs have a host
// called web, so that the fleet-wide names are put to the test. election
// is the etcd members' election timeout (0: etcdtest's default).
func startSites(t *testing.T, election time.Duration) *sites {
	t.Helper()
	testnet.Require(t, true)
	if why := etcdtest.Available(); why != "" {
		if os.Getenv(testnet.EnvRequired) == "1" {
			t.Fatalf("%s (%s=1 requires it)", why, testnet.EnvRequired)
		}
		t.Skip(why)
	}
	bin := testnet.BuildIFL(t)
	agents := func(names ...string) []testnet.HostSpec {
		var hosts []testnet.HostSpec
		for _, n := range names {
			hosts = append(hosts, testnet.HostSpec{Role: testnet.Agent, Name: n})
		}
		return append(hosts, testnet.HostSpec{Role: testnet.Closed, Name: "printer"})
	}
	a := testnet.Start(t, testnet.Spec{Name: "e2esitea", Prefix: netip.MustParsePrefix("198.19.160.0/26"), Port: 7440,
		Hosts: agents("a1", "a2", "web")}, bin)
	b, err := testnet.Up(context.Background(), testnet.Spec{Name: "e2esiteb", Prefix: netip.MustParsePrefix("198.19.160.64/26"), Port: 7440,
		Hosts: agents("b1", "b2", "web")}, testnet.Options{IFL: bin, NetworkKey: a.NetworkKey})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := b.Down(); err != nil {
			t.Errorf("tearing down %s: %v", b.Name, err)
		}
	})
	core := testnet.StartCore(t, "e2esitec", netip.MustParsePrefix("198.19.160.192/26"), 3, a, b)
	c := etcdtest.StartIn(t, etcdtest.Net{Namespace: core.Namespace, Addrs: core.Services, ElectionTimeout: election})
	return &sites{a: a, b: b, etcd: c, store: c.Spec("/fleet", "timeout=5s")}
}

// site is the site name of a LAN's controller.
func (s *sites) site(lan *testnet.LAN) string {
	if lan == s.a {
		return "a"
	}
	return "b"
}

// command is ifl with args in lan's controller, on the shared store as
// its site.
func (s *sites) command(ctx context.Context, lan *testnet.LAN, args ...string) *exec.Cmd {
	cmd := lan.Controller.Command(ctx, lan.IFL, args...)
	cmd.Env = append(os.Environ(), "IFL_NETWORK_KEY="+lan.NetworkKey, "IFL_STATE="+filepath.Join(lan.Dir, "never.json"),
		"IFL_STORE="+s.store, "IFL_SITE="+s.site(lan))
	return cmd
}

// result is how a command ended.
type result struct {
	stdout, stderr string
	code           int
	err            error // not an exit status
}

func (r result) String() string {
	return fmt.Sprintf("exit %d (%v)\nstdout:\n%s\nstderr:\n%s", r.code, r.err, r.stdout, r.stderr)
}

func runCmd(cmd *exec.Cmd) result {
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		r.code = ee.ExitCode()
	} else {
		r.err = err
	}
	return r
}

// siteProbe mirrors what the tests read of ifl probe -o json.
type siteProbe struct {
	Changes *inventory.Changes `json:"changes"`
}

// probeAll probes both LANs at once, each controller as its site, and
// returns their reports.
func (s *sites) probeAll(t *testing.T) (a, b siteProbe) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	lans := []*testnet.LAN{s.a, s.b}
	results := make([]result, 2)
	done := make(chan int)
	for i, lan := range lans {
		go func() {
			results[i] = runCmd(s.command(ctx, lan, "probe", "-o", "json", lan.Prefix.String()))
			done <- i
		}()
	}
	<-done
	<-done
	reps := make([]siteProbe, 2)
	for i, r := range results {
		if r.code != 0 || r.err != nil {
			t.Fatalf("probe of site %s: %v", s.site(lans[i]), r)
		}
		if err := json.Unmarshal([]byte(r.stdout), &reps[i]); err != nil || reps[i].Changes == nil {
			t.Fatalf("probe of site %s: %v\n%s", s.site(lans[i]), err, r.stdout)
		}
	}
	return reps[0], reps[1]
}

// probe probes lan alone, as its site.
func (s *sites) probe(t *testing.T, lan *testnet.LAN) siteProbe {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r := runCmd(s.command(ctx, lan, "probe", "-o", "json", lan.Prefix.String()))
	var rep siteProbe
	if r.code != 0 || r.err != nil {
		t.Fatalf("probe of site %s: %v", s.site(lan), r)
	}
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil || rep.Changes == nil {
		t.Fatalf("probe of site %s: %v\n%s", s.site(lan), err, r.stdout)
	}
	return rep
}

// inventory reads the shared store from lan's controller: the Ansible
// inventory (ifl inventory -o json) and the whole state (export).
func (s *sites) inventory(t *testing.T, lan *testnet.LAN) (*ansibleList, *inventory.State) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r := runCmd(s.command(ctx, lan, "inventory", "-o", "json"))
	if r.code != 0 || r.err != nil {
		t.Fatalf("inventory -o json: %v", r)
	}
	var inv ansibleList
	if err := json.Unmarshal([]byte(r.stdout), &inv); err != nil {
		t.Fatalf("inventory -o json: %v\n%s", err, r.stdout)
	}
	file := filepath.Join(t.TempDir(), "export.json")
	if r := runCmd(s.command(ctx, lan, "inventory", "export", file)); r.code != 0 || r.err != nil {
		t.Fatalf("inventory export: %v", r)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var st inventory.State
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatalf("exported state: %v\n%s", err, b)
	}
	return &inv, &st
}

// agents are the identities of the agents of lans, and the site of
// each as the fleet is laid out now.
func (s *sites) agents() map[string]string {
	out := map[string]string{}
	for _, lan := range []*testnet.LAN{s.a, s.b} {
		for _, h := range lan.Hosts {
			if h.Role != testnet.Agent {
				continue
			}
			site := s.site(lan)
			if !lan.Prefix.Contains(h.Addr) {
				site = map[string]string{"a": "b", "b": "a"}[site] // carried to the other site
			}
			out[h.Identity] = site
		}
	}
	return out
}

// host is the agent of lan called name.
func host(t *testing.T, lan *testnet.LAN, name string) testnet.Host {
	t.Helper()
	for _, h := range lan.Hosts {
		if h.Name == name {
			return h
		}
	}
	t.Fatalf("no host %s in %s", name, lan.Name)
	return testnet.Host{}
}

// checkFleet checks that the store holds every agent of the fleet once,
// under a name of its own, at the site and address it is at now, as both
// the Ansible inventory and the state say, read from either site.
func (s *sites) checkFleet(t *testing.T) *inventory.State {
	t.Helper()
	want := s.agents()
	addr := map[string]string{}
	for _, lan := range []*testnet.LAN{s.a, s.b} {
		for _, h := range lan.Hosts {
			if h.Identity != "" {
				addr[h.Identity] = h.Addr.String()
			}
		}
	}
	var first *inventory.State
	for _, lan := range []*testnet.LAN{s.a, s.b} {
		inv, st := s.inventory(t, lan)
		got := map[string]string{} // identity -> name, from Ansible's view
		for name, vars := range inv.Meta.HostVars {
			id, _ := vars["ifl_identity"].(string)
			if prev, dup := got[id]; dup {
				t.Errorf("read from %s: identity %s listed twice, as %s and %s", s.site(lan), id, prev, name)
			}
			got[id] = name
			if vars["ansible_host"] != addr[id] {
				t.Errorf("read from %s: %s (%s) at %v, want %s", s.site(lan), name, id, vars["ansible_host"], addr[id])
			}
		}
		if diff := cmp.Diff(slices.Sorted(maps.Keys(want)), slices.Sorted(maps.Keys(got))); diff != "" {
			t.Errorf("read from %s: identities in the inventory (-want +got):\n%s", s.site(lan), diff)
		}
		siteOf := map[string]string{}
		for id, h := range st.Hosts {
			siteOf[id] = h.Site
		}
		if diff := cmp.Diff(want, siteOf); diff != "" {
			t.Errorf("read from %s: site of each host (-want +got):\n%s", s.site(lan), diff)
		}
		if first == nil {
			first = st
		}
	}
	return first
}

// TestSitesProbeAtOnce: the controllers of two sites probe their LANs at
// once into one etcd inventory: every agent of both is in it once, under
// a name of its own (web at both sites: one keeps web), at its site.
func TestSitesProbeAtOnce(t *testing.T) {
	s := startSites(t, 0)
	start := time.Now()
	a, b := s.probeAll(t)
	t.Logf("both sites probed in %v", time.Since(start).Round(time.Millisecond))
	for site, rep := range map[string]siteProbe{"a": a, "b": b} {
		var ids []string
		for _, h := range rep.Changes.New {
			ids = append(ids, h.Identity)
		}
		sort.Strings(ids)
		var want []string
		for id, at := range s.agents() {
			if at == site {
				want = append(want, id)
			}
		}
		sort.Strings(want)
		if diff := cmp.Diff(want, ids); diff != "" || len(rep.Changes.Moved)+len(rep.Changes.Unseen) != 0 {
			t.Errorf("site %s's changes (-want +got new):\n%s\n%+v", site, diff, rep.Changes)
		}
	}
	st := s.checkFleet(t)
	var names []string
	for _, h := range st.Hosts {
		names = append(names, h.Name)
	}
	sort.Strings(names)
	webs := 0
	for _, n := range names {
		if n == "web" {
			webs++
		}
	}
	if len(names) != 6 || len(slices.Compact(slices.Clone(names))) != 6 || webs != 1 {
		t.Errorf("names %v: want 6 different ones, web one of them", names)
	}
}

// TestSitesHostMoves: an agent carried from site a's LAN to site b's, as
// a laptop taken to another office, is one host, moved from a to b, with
// both sites in its history and a sighting by each; site a, probing
// after b found it there, neither reports it unseen nor marks its own
// sighting missed.
func TestSitesHostMoves(t *testing.T) {
	s := startSites(t, 0)
	s.probeAll(t)
	laptop := host(t, s.a, "a1")
	to := netip.MustParseAddr("198.19.160.100")
	if err := s.a.MoveTo(context.Background(), laptop.Name, s.b, to); err != nil {
		t.Fatal(err)
	}
	b := s.probe(t, s.b)
	want := []inventory.HostChange{{Identity: laptop.Identity, Name: "a1", Hostname: "a1", From: "a " + laptop.Addr.String(), To: to.String()}}
	if diff := cmp.Diff(want, b.Changes.Moved); diff != "" || len(b.Changes.New)+len(b.Changes.Unseen)+len(b.Changes.Renamed) != 0 {
		t.Errorf("site b's changes (-want +got moved):\n%s\n%+v", diff, b.Changes)
	}
	a := s.probe(t, s.a)
	if !a.Changes.Empty() {
		t.Errorf("site a's changes after the laptop left: %+v, want none", a.Changes)
	}
	st := s.checkFleet(t)
	h := st.Hosts[laptop.Identity]
	if h == nil {
		t.Fatal("the laptop is not in the inventory")
	}
	if n := len(h.History); n != 1 || h.History[0].From != laptop.Addr.String() || h.History[0].To != to.String() || h.History[0].FromSite != "a" || h.History[0].ToSite != "b" {
		t.Errorf("history %+v, want one move: a %v -> b %v", h.History, laptop.Addr, to)
	}
	got := map[string]string{}
	for site, sg := range h.Sites {
		got[site] = fmt.Sprintf("%s missed=%v", sg.Addr, !sg.Missed.IsZero())
	}
	wantSites := map[string]string{"a": laptop.Addr.String() + " missed=false", "b": to.String() + " missed=false"}
	if diff := cmp.Diff(wantSites, got); diff != "" {
		t.Errorf("sightings (-want +got):\n%s", diff)
	}
	// Both again, at once: nothing changes.
	a, b = s.probeAll(t)
	if !a.Changes.Empty() || !b.Changes.Empty() {
		t.Errorf("changes of the next rounds: a %+v, b %+v; want none", a.Changes, b.Changes)
	}
}

// watcher is an ifl probe --watch -o json running in a site's
// controller: its JSON log events as they come, its rounds' report
// lines once it ended.
type watcher struct {
	*eventLog
	site   string
	cmd    *exec.Cmd
	stdout strings.Builder
	exited chan struct{}
	err    error
}

// watch starts ifl probe --watch 1s on lan's controller, stopped by its
// PID when the test ends if it is still running.
func (s *sites) watch(t *testing.T, lan *testnet.LAN) *watcher {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	w := &watcher{site: s.site(lan), exited: make(chan struct{})}
	w.cmd = s.command(ctx, lan, "probe", "--watch", "1s", "-o", "json", lan.Prefix.String())
	w.cmd.Stdout = &w.stdout
	stderr, err := w.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := w.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Room for every event of a test's rounds.
	w.eventLog = readEvents(stderr, 10000, "site "+w.site)
	t.Cleanup(func() {
		select {
		case <-w.exited:
		default:
			w.cmd.Process.Kill()
			<-w.exited
		}
	})
	go func() {
		// After the log's end: Wait closes the pipe.
		w.err = w.cmd.Wait()
		close(w.exited)
	}()
	return w
}

// stop stops the watch with SIGTERM and returns how many rounds it
// reported.
func (w *watcher) stop(t *testing.T) int {
	t.Helper()
	w.cmd.Process.Signal(syscall.SIGTERM)
	w.next(t, "stopped")
	select {
	case <-w.exited:
	case <-time.After(time.Minute):
		t.Fatalf("site %s: the watch did not exit within a minute of SIGTERM", w.site)
	}
	if w.err != nil {
		t.Errorf("site %s: the watch did not stop cleanly on SIGTERM: %v", w.site, w.err)
	}
	return strings.Count(w.stdout.String(), "\n")
}

// checkRounds checks that the store holds each site's rounds once: rounds
// are what each site's watch reported (the round SIGTERM cut short is
// recorded but not reported), and every host, found by every round of its
// site, counts as many.
func checkRounds(t *testing.T, st *inventory.State, reported map[string]int) {
	t.Helper()
	for site, n := range reported {
		if r := st.Rounds[site].Rounds; r < n || r > n+1 {
			t.Errorf("site %s: %d rounds in the store, %d reported: want %d or one more", site, r, n, n)
		}
	}
	for id, h := range st.Hosts {
		if want := st.Rounds[h.Site].Rounds; h.Rounds != want {
			t.Errorf("host %s (%s) of site %s: in %d rounds, want its site's %d", h.Name, id, h.Site, h.Rounds, want)
		}
	}
}

// TestSitesLeaderKilled: the etcd leader is killed while both sites'
// controllers write their rounds; after the election every round of each
// is in the store once, and every agent once. The followers wait 4s
// before they elect another leader, and the controllers wait 1s for each
// request, so that the next round of each site (a second later) fails
// to write while there is no leader: it is kept, and written with a
// later round. (A request that waits out an election succeeds: the
// client tries it again on the new leader.)
func TestSitesLeaderKilled(t *testing.T) {
	s := startSites(t, 4*time.Second)
	s.store = s.etcd.Spec("/fleet", "timeout=1s")
	ws := []*watcher{s.watch(t, s.a), s.watch(t, s.b)}
	for _, w := range ws {
		w.next(t, "probed")
	}
	leader := s.etcd.Leader()
	start := time.Now()
	s.etcd.Stop(leader)
	for _, w := range ws {
		ev := w.next(t, "state_failed")
		t.Logf("site %s: %v", w.site, ev["error"])
		// Written with the kept ones, and then one more.
		w.next(t, "probed")
		w.next(t, "probed")
	}
	t.Logf("member %d, the leader, killed; both sites wrote again within %v", leader, time.Since(start).Round(time.Millisecond))
	reported := map[string]int{}
	for _, w := range ws {
		reported[w.site] = w.stop(t)
		t.Logf("site %s: %d rounds, events %v", w.site, reported[w.site], w.seen)
	}
	st := s.checkFleet(t)
	checkRounds(t, st, reported)
}

// TestSitesNoQuorum: with every etcd member stopped, a watching
// controller keeps probing and says at each round that it cannot write;
// a host that moved meanwhile is in the store, moved, once the members
// are back. (The host moves before the watch starts, so that no round
// sees it half moved.)
func TestSitesNoQuorum(t *testing.T) {
	s := startSites(t, 0)
	s.store = s.etcd.Spec("/fleet", "timeout=1s")
	s.probeAll(t)
	for i := range s.etcd.Members {
		s.etcd.Stop(i)
	}
	mover := host(t, s.a, "a2")
	to := netip.MustParseAddr("198.19.160.50")
	if err := s.a.Move(context.Background(), mover.Name, to); err != nil {
		t.Fatal(err)
	}
	w := s.watch(t, s.a)
	// Two rounds at least, each found out it cannot write.
	for range 2 {
		ev := w.next(t, "state_failed")
		if msg, _ := ev["error"].(string); !strings.Contains(msg, "(is a quorum of its members up and reachable?)") || !strings.Contains(msg, "kept to write when it is back") {
			t.Errorf("site a without etcd: %v", ev)
		}
	}
	start := time.Now()
	s.etcd.RestartAll()
	ev := w.next(t, "host_moved")
	if ev["identity"] != mover.Identity || ev["from"] != mover.Addr.String() || ev["to"] != to.String() {
		t.Errorf("move written after the members came back: %v, want %s from %v to %v", ev, mover.Identity, mover.Addr, to)
	}
	w.next(t, "probed")
	t.Logf("written %v after the members were back", time.Since(start).Round(time.Millisecond))
	reported := map[string]int{"a": 1 + w.stop(t), "b": 1}
	t.Logf("site a: %d rounds, events %v", reported["a"], w.seen)
	st := s.checkFleet(t)
	checkRounds(t, st, reported)
}

// TestSitesAnsible: the real ansible-inventory, over the inventory script
// with IFL_STORE, reads the shared store from either site: every agent
// of both, at its address, under its name in the store.
func TestSitesAnsible(t *testing.T) {
	testnet.RequireCommands(t, "ansible-core", "ansible-inventory")
	s := startSites(t, 0)
	s.probeAll(t)
	truth, _ := s.inventory(t, s.a)
	if len(truth.Meta.HostVars) != 6 {
		t.Fatalf("ifl inventory lists %d hosts, want the 6 agents", len(truth.Meta.HostVars))
	}
	script, err := filepath.Abs("../../../scripts/ifl-inventory")
	if err != nil {
		t.Fatal(err)
	}
	for _, lan := range []*testnet.LAN{s.a, s.b} {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		cmd := lan.Controller.Command(ctx, "ansible-inventory", "-i", script, "--list")
		var env []string
		for _, e := range os.Environ() {
			if k, _, _ := strings.Cut(e, "="); k != "IFL" && !strings.HasPrefix(k, "IFL_") && !strings.HasPrefix(k, "ANSIBLE_") {
				env = append(env, e)
			}
		}
		// No state file: what Ansible reads can only come from etcd.
		cmd.Env = append(env, "IFL="+lan.IFL, "IFL_STORE="+s.store, "IFL_STATE="+filepath.Join(lan.Dir, "never.json"),
			"ANSIBLE_INVENTORY_UNPARSED_FAILED=true", "ANSIBLE_LOCAL_TEMP="+t.TempDir(), "HOME="+t.TempDir(), "ANSIBLE_NOCOLOR=1")
		r := runCmd(cmd)
		cancel()
		if r.code != 0 || r.err != nil {
			t.Fatalf("ansible-inventory from site %s: %v", s.site(lan), r)
		}
		noWarnings(t, "ansible-inventory from site "+s.site(lan), r.stderr)
		got := parseList(t, r.stdout)
		if diff := cmp.Diff(slices.Sorted(maps.Keys(truth.Meta.HostVars)), slices.Sorted(maps.Keys(got.HostVars))); diff != "" {
			t.Errorf("ansible-inventory from site %s: hosts (-ifl inventory +ansible-inventory):\n%s", s.site(lan), diff)
		}
		for name, vars := range truth.Meta.HostVars {
			for _, k := range []string{"ansible_host", "ifl_identity"} {
				want, _ := json.Marshal(vars[k])
				if g := got.HostVars[name][k]; string(g) != string(want) {
					t.Errorf("ansible-inventory from site %s: %s's %s is %s, want %s", s.site(lan), name, k, g, want)
				}
			}
		}
		if all := got.Groups["ifl_all"]; len(all) != 6 {
			t.Errorf("ansible-inventory from site %s: ifl_all %v, want the 6 agents", s.site(lan), all)
		}
	}
}
