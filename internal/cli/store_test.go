package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ifl-project/ifl/internal/controller/inventory"
	"github.com/ifl-project/ifl/internal/testbed/etcdtest"
	"github.com/ifl-project/ifl/proto"
)

// TestProbeIntoEtcd: probe and inventory with --store etcd, a site each;
// export and import move the inventory between etcd and a file whole.
func TestProbeIntoEtcd(t *testing.T) {
	c := etcdtest.Start(t, 1)
	keyFile, port, id := startAgent(t)
	spec := c.Spec("/fleet", "timeout=5s")
	t.Setenv("IFL_STATE", filepath.Join(t.TempDir(), "never.json"))
	code, stdout, stderr := run(t, "probe", "--store", spec, "--site", "lyon", "--network-key", keyFile, "--connect", "-p", strconv.Itoa(port), "127.0.0.1", "-o", "json")
	var rep probeReport
	if err := json.Unmarshal([]byte(stdout), &rep); code != 0 || err != nil {
		t.Fatalf("probe: exit %d, %v\n%s", code, err, stderr)
	}
	if rep.Changes == nil || len(rep.Changes.New) != 1 || rep.Changes.New[0].Identity != id.Fingerprint() {
		t.Fatalf("changes: %+v", rep.Changes)
	}
	// Another site sees it too: the same host, moved.
	code, _, stderr = run(t, "probe", "--store", spec, "--site", "oslo", "--network-key", keyFile, "--connect", "-p", strconv.Itoa(port), "127.0.0.1")
	if code != 0 || !strings.Contains(stderr, "moved:     ") || !strings.Contains(stderr, "lyon 127.0.0.1 -> 127.0.0.1") {
		t.Fatalf("second site: exit %d\n%s", code, stderr)
	}
	t.Setenv("IFL_STORE", spec)
	code, list, stderr := run(t, "inventory", "--list")
	if code != 0 || !strings.Contains(list, id.Fingerprint()) {
		t.Fatalf("inventory --list from etcd: exit %d\n%s\n%s", code, list, stderr)
	}
	st, err := inventory.Open(spec, "")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	s, err := st.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	h := s.Hosts[id.Fingerprint()]
	if h == nil || h.Site != "oslo" || len(h.Sites) != 2 || len(h.History) != 1 || h.History[0].FromSite != "lyon" {
		t.Fatalf("the host in etcd: %+v", h)
	}

	// ping and scan name the host from the store.
	target := "127.0.0.1:" + strconv.Itoa(port)
	if code, out, stderr := run(t, "ping", "--network-key", keyFile, "-o", "tsv", "--no-header", target); code != 0 || !strings.Contains(out, "name\t"+h.Name+"\n") {
		t.Fatalf("ping from the store: exit %d, %s\n%s", code, stderr, out)
	}
	if code, out, stderr := run(t, "scan", "--connect", "-p", strconv.Itoa(port), "-o", "tsv", "--no-header", "127.0.0.1"); code != 0 || !strings.HasSuffix(out, "\t"+h.Name+"\n") {
		t.Fatalf("scan from the store: exit %d, %s\n%s", code, stderr, out)
	}

	file := filepath.Join(t.TempDir(), "exported.json")
	if code, _, stderr := run(t, "inventory", "export", file); code != 0 || stderr != "exported 1 host from etcd http://"+c.Endpoints()[0]+"/fleet to "+file+"\n" {
		t.Fatalf("export: exit %d, %q", code, stderr)
	}
	code, fromFile, stderr := run(t, "inventory", "--store", "file", "--state", file, "--list")
	if code != 0 || fromFile != list {
		t.Fatalf("--list of the exported file: exit %d, %s\n%s\nwant\n%s", code, stderr, fromFile, list)
	}
	// Into a store that holds hosts only with --force.
	code, _, stderr = run(t, "inventory", "import", file)
	if want := "ifl: inventory: etcd http://" + c.Endpoints()[0] + "/fleet holds 1 host already: --force replaces them with the 1 host of " + file + "\n"; code != 1 || stderr != want {
		t.Fatalf("import over hosts: exit %d, %q, want 1, %q", code, stderr, want)
	}
	other := c.Spec("/copy", "")
	if code, _, stderr := run(t, "inventory", "--store", other, "import", file); code != 0 || !strings.HasPrefix(stderr, "imported 1 host from ") {
		t.Fatalf("import: exit %d, %q", code, stderr)
	}
	if code, copied, stderr := run(t, "inventory", "--store", other, "--list"); code != 0 || copied != list {
		t.Fatalf("--list after import: exit %d, %s\n%s\nwant\n%s", code, stderr, copied, list)
	}
}

// TestProbeEtcdDown: a one-shot probe whose etcd is out of reach prints
// its findings, then fails with exit 1 naming the endpoints.
func TestProbeEtcdDown(t *testing.T) {
	c := etcdtest.Start(t, 1)
	keyFile, port, id := startAgent(t)
	spec := c.Spec("/fleet", "timeout=1s&dial-timeout=1s")
	c.Stop(0)
	code, stdout, stderr := run(t, "probe", "--store", spec, "--site", "lyon", "--network-key", keyFile, "--connect", "-p", strconv.Itoa(port), "127.0.0.1", "-o", "json")
	var rep probeReport
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil || len(rep.Hosts) != 1 || rep.Hosts[0].Identity != id.Fingerprint() {
		t.Fatalf("no findings printed: %v\n%s", err, stdout)
	}
	want := "ifl: inventory: etcd at http://" + c.Endpoints()[0] + ": "
	if code != 1 || !strings.Contains(stderr, want) || !strings.Contains(stderr, "(is a quorum of its members up and reachable?)") {
		t.Fatalf("exit %d, stderr %q; want 1 and %q", code, stderr, want)
	}
	// A ping goes on without names, saying why; with --store named on
	// its command line, it fails.
	target := "127.0.0.1:" + strconv.Itoa(port)
	t.Setenv("IFL_STORE", spec)
	if code, _, stderr := run(t, "ping", "--network-key", keyFile, target); code != 0 || !strings.Contains(stderr, "ping: warning: no inventory names: inventory: etcd at http://"+c.Endpoints()[0]) {
		t.Fatalf("ping, IFL_STORE out of reach: exit %d, %q", code, stderr)
	}
	if code, _, stderr := run(t, "ping", "--store", spec, "--network-key", keyFile, target); code != 1 || !strings.HasPrefix(stderr, "ifl: ping: inventory: etcd at http://"+c.Endpoints()[0]) {
		t.Fatalf("ping --store out of reach: exit %d, %q", code, stderr)
	}
}

// lines sends each line written to it.
type lines struct {
	w  *io.PipeWriter
	ch chan string
}

func newLines() *lines {
	r, w := io.Pipe()
	l := &lines{w: w, ch: make(chan string, 1000)}
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			l.ch <- sc.Text()
		}
		close(l.ch)
	}()
	return l
}

func (l *lines) Write(b []byte) (int, error) { return l.w.Write(b) }

// waitEvent reads log lines until one of the event, for at most two
// minutes; it returns the lines read.
func waitEvent(t *testing.T, l *lines, event string) []string {
	t.Helper()
	var read []string
	deadline := time.After(2 * time.Minute)
	for {
		select {
		case line, ok := <-l.ch:
			if !ok {
				t.Fatalf("the watch ended before %s:\n%s", event, strings.Join(read, "\n"))
			}
			read = append(read, line)
			if strings.Contains(line, `"event":"`+event+`"`) {
				return read
			}
		case <-deadline:
			t.Fatalf("no %s in two minutes:\n%s", event, strings.Join(read, "\n"))
		}
	}
}

// TestWatchKeepsRoundsWhileEtcdIsDown: a watch whose etcd is down keeps
// probing, and writes every round it ran once a quorum is back.
func TestWatchKeepsRoundsWhileEtcdIsDown(t *testing.T) {
	c := etcdtest.Start(t, 3)
	keyFile, port, id := startAgent(t)
	spec := c.Spec("/fleet", "timeout=1s&dial-timeout=1s")
	for i := range c.Members {
		c.Stop(i)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	l := newLines()
	done := make(chan int)
	go func() {
		env := &Env{Stdout: io.Discard, Stderr: l}
		done <- runEnv(ctx, []string{"probe", "--store", spec, "--site", "lyon", "--network-key", keyFile, "--connect", "-p", strconv.Itoa(port), "--watch", "1s", "127.0.0.1"}, env)
		l.w.Close()
	}()
	// Two rounds that could not be written.
	read := waitEvent(t, l, "state_failed")
	read = append(read, waitEvent(t, l, "state_failed")...)
	c.RestartAll()
	read = append(read, waitEvent(t, l, "probed")...)
	cancel()
	if code := <-done; code != 130 {
		t.Fatalf("watch: exit %d, want 130 (interrupted)", code)
	}
	failed := 0
	for _, line := range read {
		if strings.Contains(line, `"event":"state_failed"`) {
			failed++
		}
	}
	st, err := inventory.Open(spec, "")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	s, err := st.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	h := s.Hosts[id.Fingerprint()]
	// Every round logs one event: those that failed, then the one that
	// wrote them all, and itself.
	if h == nil || h.Rounds != failed+1 || s.Rounds["lyon"].Rounds != failed+1 {
		t.Fatalf("after %d rounds kept and one that wrote them: host %+v, site rounds %+v\n%s", failed, h, s.Rounds, strings.Join(read, "\n"))
	}
}

// laptop is what a site's controller verified of one host at addr.
func laptop(hostname, addr string) []inventory.Observation {
	return []inventory.Observation{{Identity: "0123456789abcdef0123456789abcdef", Addr: netip.MustParseAddr(addr), Port: 7440,
		Facts: &proto.Facts{Hostname: hostname, Interfaces: []proto.Interface{{Name: "eth0", MAC: "52:54:00:00:00:01", Addrs: []string{addr + "/24"}}}}}}
}

// watchLines runs inventory --watch -o json with args until ctx is done.
func watchLines(ctx context.Context, t *testing.T, args ...string) (*lines, chan int) {
	l := newLines()
	done := make(chan int, 1)
	go func() {
		var errb bytes.Buffer
		done <- runEnv(ctx, append([]string{"inventory", "--watch", "-o", "json"}, args...), &Env{Stdout: l, Stderr: &errb})
		l.w.Close()
		if errb.Len() > 0 {
			t.Logf("watch stderr: %s", errb.String())
		}
	}()
	return l, done
}

// nextChanges reads n changes, for at most two minutes.
func nextChanges(t *testing.T, l *lines, n int) []inventory.StoreChange {
	t.Helper()
	var out []inventory.StoreChange
	deadline := time.After(2 * time.Minute)
	for len(out) < n {
		select {
		case line, ok := <-l.ch:
			if !ok {
				t.Fatalf("the watch ended after %d changes: %+v", len(out), out)
			}
			var c inventory.StoreChange
			if err := json.Unmarshal([]byte(line), &c); err != nil {
				t.Fatalf("%v: %q", err, line)
			}
			out = append(out, c)
		case <-deadline:
			t.Fatalf("%d changes in two minutes, want %d: %+v", len(out), n, out)
		}
	}
	return out
}

// TestInventoryWatch: every change lands as one line, from any site, and
// a watch resumed after a revision starts with the next change.
func TestInventoryWatch(t *testing.T) {
	c := etcdtest.Start(t, 1)
	spec := c.Spec("/fleet", "timeout=5s")
	t.Setenv("IFL_STORE", spec)
	st, err := inventory.Open(spec, "")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	bg := context.Background()
	resp, err := c.Client().Get(bg, "/")
	if err != nil {
		t.Fatal(err)
	}
	start := resp.Header.Revision
	ctx, cancel := context.WithCancel(bg)
	defer cancel()
	l, done := watchLines(ctx, t, "--since", strconv.FormatInt(start, 10))

	t0 := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	all := func(netip.Addr) bool { return true }
	for i, step := range []func(s *inventory.State){
		func(s *inventory.State) { s.ApplySite("lyon", t0, laptop("laptop", "10.1.2.3"), all, true) },
		func(s *inventory.State) {
			s.ApplySite("oslo", t0.Add(time.Hour), laptop("laptop", "10.9.8.7"), all, true)
		},
		func(s *inventory.State) {
			s.ApplySite("oslo", t0.Add(2*time.Hour), laptop("laptop2", "10.9.8.7"), all, true)
		},
		func(s *inventory.State) { s.ApplySite("oslo", t0.Add(3*time.Hour), nil, all, true) },
		func(s *inventory.State) { s.Prune(t0.Add(30*time.Hour), 24*time.Hour) },
	} {
		if err := st.Update(bg, func(s *inventory.State) error { step(s); return nil }); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	got := nextChanges(t, l, 5)
	id := "0123456789abcdef0123456789abcdef"
	want := []inventory.StoreChange{
		{Event: "new", Identity: id, Name: "laptop", Site: "lyon", To: "10.1.2.3"},
		{Event: "moved", Identity: id, Name: "laptop", Site: "oslo", From: "lyon 10.1.2.3", To: "oslo 10.9.8.7"},
		{Event: "renamed", Identity: id, Name: "laptop2", Site: "oslo", From: "laptop", To: "laptop2"},
		{Event: "unseen", Identity: id, Name: "laptop2", Site: "oslo", From: "10.9.8.7"},
		{Event: "removed", Identity: id, Name: "laptop2", Site: "oslo", From: "oslo 10.9.8.7"},
	}
	revs := make([]int64, len(got))
	for i := range got {
		revs[i] = got[i].Revision
		got[i].Revision = 0
		if i > 0 && revs[i] <= revs[i-1] {
			t.Errorf("revisions %v: not increasing", revs)
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("changes (-want +got):\n%s", diff)
	}

	// Resumed after the move: the rename first; then a new change.
	l2, done2 := watchLines(ctx, t, "--since", strconv.FormatInt(revs[1], 10))
	again := nextChanges(t, l2, 3)
	for i := range again {
		if again[i].Revision != revs[i+2] {
			t.Fatalf("resumed after %d: revision %d, want %d", revs[1], again[i].Revision, revs[i+2])
		}
		again[i].Revision = 0
	}
	if diff := cmp.Diff(want[2:], again); diff != "" {
		t.Fatalf("resumed (-want +got):\n%s", diff)
	}
	if err := st.Update(bg, func(s *inventory.State) error {
		s.ApplySite("lyon", t0.Add(31*time.Hour), laptop("laptop", "10.1.2.4"), all, true)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, w := range []*lines{l, l2} {
		if n := nextChanges(t, w, 1)[0]; n.Event != "new" || n.To != "10.1.2.4" {
			t.Fatalf("after the resumed changes: %+v, want the new host at 10.1.2.4", n)
		}
	}
	cancel()
	if code1, code2 := <-done, <-done2; code1 != 130 || code2 != 130 {
		t.Fatalf("watches exited %d and %d, want 130 (interrupted)", code1, code2)
	}
}

// TestInventoryWatchReconnects: a watch whose store went away and came
// back goes on from where it was: nothing lost, nothing repeated.
func TestInventoryWatchReconnects(t *testing.T) {
	c := etcdtest.Start(t, 1)
	spec := c.Spec("/fleet", "timeout=2s&dial-timeout=2s")
	t.Setenv("IFL_STORE", spec)
	st, err := inventory.Open(spec, "")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	bg := context.Background()
	resp, err := c.Client().Get(bg, "/")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(bg)
	defer cancel()
	l, done := watchLines(ctx, t, "--since", strconv.FormatInt(resp.Header.Revision, 10))
	t0 := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	all := func(netip.Addr) bool { return true }
	apply := func(site string, at time.Time, addr string) {
		t.Helper()
		if err := st.Update(bg, func(s *inventory.State) error {
			s.ApplySite(site, at, laptop("laptop", addr), all, true)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	apply("lyon", t0, "10.1.2.3")
	if got := nextChanges(t, l, 1)[0]; got.Event != "new" {
		t.Fatalf("first change: %+v", got)
	}
	c.Stop(0)
	c.Restart(0)
	apply("oslo", t0.Add(time.Hour), "10.9.8.7")
	apply("lyon", t0.Add(2*time.Hour), "10.1.2.5")
	got := nextChanges(t, l, 2)
	for i := range got {
		got[i].Revision = 0
	}
	id := "0123456789abcdef0123456789abcdef"
	want := []inventory.StoreChange{
		{Event: "moved", Identity: id, Name: "laptop", Site: "oslo", From: "lyon 10.1.2.3", To: "oslo 10.9.8.7"},
		{Event: "moved", Identity: id, Name: "laptop", Site: "lyon", From: "oslo 10.9.8.7", To: "lyon 10.1.2.5"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("after the store came back (-want +got):\n%s", diff)
	}
	cancel()
	if code := <-done; code != 130 {
		t.Fatalf("watch exited %d, want 130 (interrupted)", code)
	}
}
