package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ifl-project/ifl/internal/controller/inventory"
	"github.com/ifl-project/ifl/internal/testbed/etcdtest"
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
	if code := <-done; code != 0 {
		t.Fatalf("watch: exit %d", code)
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
