package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/ifl-project/ifl/agent"
	"github.com/ifl-project/ifl/internal/controller/announce"
	"github.com/ifl-project/ifl/internal/controller/verify"
	"github.com/ifl-project/ifl/proto"
)

// watching is an ifl probe --watch run in this process.
type watching struct {
	events chan map[string]any
	cancel context.CancelFunc
	code   chan int
}

// startWatch runs ifl with args until the test ends, its log events
// decoded as they come.
func startWatch(t *testing.T, args ...string) *watching {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	w := &watching{events: make(chan map[string]any, 1000), cancel: cancel, code: make(chan int, 1)}
	go func() {
		code := Main(ctx, args, io.Discard, pw)
		pw.Close()
		w.code <- code
	}()
	go func() {
		defer close(w.events)
		// Warnings before the watch starts are plain lines.
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			var ev map[string]any
			if json.Unmarshal(sc.Bytes(), &ev) != nil {
				continue
			}
			w.events <- ev
		}
		io.Copy(io.Discard, pr)
	}()
	t.Cleanup(func() {
		cancel()
		// A watch whose context ends is interrupted, as by Ctrl-C.
		if code := <-w.code; code != 130 {
			t.Errorf("watch exited %d, want 130 (interrupted)", code)
		}
	})
	return w
}

// next returns the next event called name, failing on one of the names
// in not before it, and after a minute.
func (w *watching) next(t *testing.T, name string, not ...string) map[string]any {
	t.Helper()
	timeout := time.After(time.Minute)
	for {
		select {
		case ev, ok := <-w.events:
			if !ok {
				t.Fatalf("watch ended before a %s event", name)
			}
			for _, n := range not {
				if ev["event"] == n {
					t.Fatalf("a %s event before the %s event: %v", n, name, ev)
				}
			}
			if ev["event"] == name {
				return ev
			}
		case <-timeout:
			t.Fatalf("no %s event within a minute", name)
		}
	}
}

func freePort(t *testing.T, network string) int {
	t.Helper()
	if network == "udp" {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.LocalAddr().(*net.UDPAddr).Port
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// movingAgent serves one agent identity at 127.0.0.1 or 127.0.0.2 on
// the same port: moving it stops the one and starts the other.
type movingAgent struct {
	key    proto.NetworkKey
	id     proto.Identity
	port   int
	agent  *agent.Agent
	cancel context.CancelFunc
	done   chan error
}

func (m *movingAgent) serve(t *testing.T, addr string) {
	t.Helper()
	if m.cancel != nil {
		m.cancel()
		if err := <-m.done; err != nil {
			t.Fatal(err)
		}
	}
	a, err := agent.New(agent.Options{NetworkKeys: []proto.NetworkKey{m.key}, Identity: m.id, Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(addr, strconv.Itoa(m.port)))
	if err != nil {
		t.Fatal(err)
	}
	m.port = ln.Addr().(*net.TCPAddr).Port
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	m.agent, m.cancel, m.done = a, cancel, done
	go func() { done <- a.Serve(ctx, ln) }()
	t.Cleanup(func() {
		if m.done == done { // not stopped by a move
			cancel()
			<-done
		}
	})
}

// TestWatchFollowsAnnouncement: a watch with a long interval learns of
// an agent's move from its announcement, from the new address: the move
// is recorded and logged as an announcement's, no sweep ran in between,
// and the metrics say so.
func TestWatchFollowsAnnouncement(t *testing.T) {
	key, _ := proto.NewNetworkKey()
	id, _ := proto.NewIdentity()
	keyFile := filepath.Join(t.TempDir(), "network.key")
	if err := proto.WriteKeyFile(keyFile, key, false); err != nil {
		t.Fatal(err)
	}
	m := &movingAgent{key: key, id: id}
	m.serve(t, "127.0.0.1")
	annPort, metricsPort := freePort(t, "udp"), freePort(t, "tcp")
	w := startWatch(t, "probe", "--connect", "--network-key", keyFile, "--port", strconv.Itoa(m.port), "--state", filepath.Join(t.TempDir(), "inventory.json"),
		"--watch", "1h", "--announcements", "127.0.0.1:"+strconv.Itoa(annPort), "--metrics", "127.0.0.1:"+strconv.Itoa(metricsPort), "127.0.0.1-2")
	w.next(t, "host_new")
	w.next(t, "probed")
	// The ping told the agent where to announce.
	if got := m.agent.Learned(); len(got) != 1 || got[0] != netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(annPort)) {
		t.Fatalf("agent learned %v, want 127.0.0.1:%d", got, annPort)
	}
	m.serve(t, "127.0.0.2")
	ak := key.AnnounceKey()
	ann, _ := proto.NewAnnouncement(&ak, uint16(m.port), proto.FingerprintBytes(id.Public[:]), time.Now())
	b, _ := ann.MarshalBinary()
	c, err := net.DialUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2)}, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: annPort})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write(b)
	ev := w.next(t, "host_moved", "probed")
	if ev["from"] != "127.0.0.1" || ev["to"] != "127.0.0.2" || ev["via"] != "announcement" || ev["identity"] != id.Fingerprint() {
		t.Errorf("move event %v, want 127.0.0.1 to 127.0.0.2 via announcement", ev)
	}
	w.next(t, "announced", "probed")

	resp, err := http.Get("http://127.0.0.1:" + strconv.Itoa(metricsPort) + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	value := func(name string, labels ...string) float64 {
		t.Helper()
		f := fams[name]
		if f == nil {
			t.Fatalf("no %s in the scrape", name)
		}
		for _, s := range f.Metric {
			if hasLabels(s, labels) {
				return s.GetCounter().GetValue() + s.GetGauge().GetValue()
			}
		}
		t.Fatalf("no %s%v in the scrape", name, labels)
		return 0
	}
	for _, tc := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"ifl_announcements_received_total", nil, 1},
		{"ifl_announcements_accepted_total", nil, 1},
		{"ifl_announcements_verified_total", nil, 1},
		{"ifl_changes_total", []string{"kind", "moved", "via", "announcement"}, 1},
		{"ifl_changes_total", []string{"kind", "new", "via", "sweep"}, 1},
		{"ifl_rounds_total", []string{"kind", "sweep", "outcome", "complete"}, 1},
		{"ifl_rounds_total", []string{"kind", "announcement", "outcome", "complete"}, 1},
		{"ifl_hosts", []string{"status", "agent"}, 1},
		{"ifl_inventory_hosts", nil, 1},
	} {
		if got := value(tc.name, tc.labels...); got != tc.want {
			t.Errorf("%s%v = %v, want %v", tc.name, tc.labels, got, tc.want)
		}
	}
}

func hasLabels(m *dto.Metric, kv []string) bool {
	for i := 0; i+1 < len(kv); i += 2 {
		found := false
		for _, l := range m.Label {
			if l.GetName() == kv[i] && l.GetValue() == kv[i+1] {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// TestWatchdog speaks systemd's side of sd_notify: READY once the first
// round is done, WATCHDOG while rounds keep completing, and none once
// they stop (a test hook hangs the third round), so that systemd would
// restart the controller.
func TestWatchdog(t *testing.T) {
	keyFile, port, _ := startAgent(t)
	sock := filepath.Join(t.TempDir(), "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	t.Setenv("NOTIFY_SOCKET", sock)
	const wd = 200 * time.Millisecond
	t.Setenv("WATCHDOG_USEC", strconv.Itoa(int(wd/time.Microsecond)))
	hung, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	rounds := 0
	roundHook = func() {
		if rounds++; rounds == 3 {
			close(hung)
			<-release
		}
	}
	t.Cleanup(func() { once.Do(func() { close(release) }); roundHook = nil })
	startWatch(t, "probe", "--connect", "--network-key", keyFile, "--port", strconv.Itoa(port), "--no-state", "--watch", "1s", "127.0.0.1")
	read := func(d time.Duration) (string, bool) {
		c.SetReadDeadline(time.Now().Add(d))
		buf := make([]byte, 64)
		n, err := c.Read(buf)
		if err != nil {
			return "", false
		}
		return string(buf[:n]), true
	}
	// WATCHDOG goes from the start; READY once the first round is done.
	var got []string
	for len(got) == 0 || got[len(got)-1] != "READY=1" {
		s, ok := read(time.Minute)
		if !ok {
			t.Fatalf("no READY=1 within a minute, got %q", got)
		}
		got = append(got, s)
	}
	for _, s := range got[:len(got)-1] {
		if s != "WATCHDOG=1" {
			t.Fatalf("received %q before READY=1", got)
		}
	}
	select {
	case <-hung:
	case <-time.After(time.Minute):
		t.Fatal("the third round did not start within a minute")
	}
	// Hung: WATCHDOG goes on for the interval and one watchdog interval
	// at most, then stops for good. Ten watchdog intervals of silence
	// stand for good; the whole is bounded.
	watchdogs := 0
	deadline := time.Now().Add(time.Minute)
	for {
		s, ok := read(10 * wd)
		if !ok {
			break
		}
		if s != "WATCHDOG=1" {
			t.Fatalf("received %q while hung", s)
		}
		watchdogs++
		if time.Now().After(deadline) {
			t.Fatalf("still %d WATCHDOG=1 a minute after the controller hung", watchdogs)
		}
	}
	t.Logf("%d WATCHDOG=1 after the hang", watchdogs)
	once.Do(func() { close(release) })
}

// TestProbeUnit: scripts/ifl-probe.service runs a watch that systemd
// watches (Type=notify, a watchdog), listening for announcements on the
// agents' default port, which is the one port the unit may bind, and its
// command line is one ifl accepts.
func TestProbeUnit(t *testing.T) {
	b, err := os.ReadFile("../../scripts/ifl-probe.service")
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string][]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			keys[k] = append(keys[k], v)
		}
	}
	for k, want := range map[string]string{
		"Type":            "notify",
		"NotifyAccess":    "main",
		"SocketBindAllow": "udp:" + strconv.Itoa(proto.DefaultAnnouncePort),
		"SocketBindDeny":  "any",
	} {
		if got := keys[k]; len(got) != 1 || got[0] != want {
			t.Errorf("%s=%q, want %s", k, got, want)
		}
	}
	if got := keys["WatchdogSec"]; len(got) != 1 {
		t.Errorf("WatchdogSec=%q, want one", got)
	}
	if got := keys["ExecStart"]; len(got) != 1 || !strings.HasPrefix(got[0], "/usr/bin/ifl ") {
		t.Fatalf("ExecStart=%q, want one running /usr/bin/ifl", got)
	}
	// $IFL_PROBE_ARGS, unset, is no word at all to systemd.
	args := strings.Fields(strings.TrimPrefix(strings.TrimSuffix(keys["ExecStart"][0], " $IFL_PROBE_ARGS"), "/usr/bin/ifl "))
	var c CLI
	env := &Env{Stdout: io.Discard, Stderr: io.Discard}
	k, err := New(&c, env, func(int) { t.Fatal("exit") })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.Parse(args); err != nil {
		t.Fatalf("ExecStart: %v", err)
	}
	if err := c.Probe.check(env); err != nil {
		t.Fatalf("ExecStart: %v", err)
	}
	if c.Probe.Watch == 0 || c.Probe.Announcements != ":"+strconv.Itoa(proto.DefaultAnnouncePort) || c.Probe.Metrics != "" {
		t.Errorf("ExecStart %q: want --watch, --announcements :%d and no --metrics", args, proto.DefaultAnnouncePort)
	}
}

// TestAnnounceVerifierConcurrency: an announcement round verifies at
// most announce.Burst addresses at once, whatever --concurrency gives
// sweeps, with the sweeps' verifier left as it was.
func TestAnnounceVerifierConcurrency(t *testing.T) {
	for _, tc := range []struct{ sweep, want int }{{0, announce.Burst}, {4096, announce.Burst}, {16, 16}} {
		v := &verify.Verifier{Port: 7440, Concurrency: tc.sweep, AnnouncePort: 7441}
		s := &service{r: &rounds{v: v}}
		got := s.announceVerifier()
		if got == v || got.Concurrency != tc.want || got.Port != 7440 || got.AnnouncePort != 7441 || v.Concurrency != tc.sweep {
			t.Errorf("--concurrency %d: announcement verifier %+v (the sweeps' %+v), want its own with concurrency %d", tc.sweep, got, v, tc.want)
		}
	}
}

// staller accepts connections on addr and never answers: a verification
// there lasts --timeout. open tells how many it holds that the other end
// has not closed.
type staller struct {
	mu   sync.Mutex
	open int
}

func stall(t *testing.T, ln net.Listener) *staller {
	t.Helper()
	s := &staller{}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.open++
			s.mu.Unlock()
			wg.Go(func() {
				defer c.Close()
				// Returns when the verifier gives up and closes, or the
				// test ends.
				go func() { <-t.Context().Done(); c.Close() }()
				io.Copy(io.Discard, c)
				s.mu.Lock()
				s.open--
				s.mu.Unlock()
			})
		}
	})
	return s
}

func (s *staller) held() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.open
}

// TestAnnouncementDuringSweep: an announcement that comes while a sweep
// runs (stalled by an address that never answers the handshake) is
// recorded at once, not when the sweep ends; and the sweep's record,
// which may hold the agent at its old address, neither moves it back
// nor reports it unseen.
func TestAnnouncementDuringSweep(t *testing.T) {
	key, _ := proto.NewNetworkKey()
	id, _ := proto.NewIdentity()
	keyFile := filepath.Join(t.TempDir(), "network.key")
	if err := proto.WriteKeyFile(keyFile, key, false); err != nil {
		t.Fatal(err)
	}
	// One port free on 127.0.0.1, .2 and .3: the staller's, tried on the
	// others, a few times over.
	var ln net.Listener
	for try := 0; ln == nil; try++ {
		if try == 10 {
			t.Fatal("no port free on 127.0.0.1, 127.0.0.2 and 127.0.0.3 in 10 tries")
		}
		l, err := net.Listen("tcp", "127.0.0.3:0")
		if err != nil {
			t.Fatal(err)
		}
		port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
		ok := true
		for _, a := range []string{"127.0.0.1", "127.0.0.2"} {
			c, err := net.Listen("tcp", net.JoinHostPort(a, port))
			if err != nil {
				ok = false
				break
			}
			c.Close()
		}
		if ok {
			ln = l
		} else {
			l.Close()
		}
	}
	st := stall(t, ln)
	m := &movingAgent{key: key, id: id, port: ln.Addr().(*net.TCPAddr).Port}
	m.serve(t, "127.0.0.1")
	started := make(chan int, 16)
	var mu sync.Mutex
	sweeps := 0
	roundHook = func() {
		mu.Lock()
		sweeps++
		n := sweeps
		mu.Unlock()
		select {
		case started <- n:
		default:
		}
	}
	t.Cleanup(func() { roundHook = nil })
	annPort := freePort(t, "udp")
	w := startWatch(t, "probe", "--connect", "--network-key", keyFile, "--port", strconv.Itoa(m.port), "--state", filepath.Join(t.TempDir(), "inventory.json"),
		"--timeout", "5s", "--retries", "0", "--watch", "1s", "--announcements", "127.0.0.1:"+strconv.Itoa(annPort), "127.0.0.1-3")
	w.next(t, "host_new")
	w.next(t, "probed")
	timeout := time.After(time.Minute)
	for n := 0; n < 2; {
		select {
		case n = <-started:
		case <-timeout:
			t.Fatal("no second sweep within a minute")
		}
	}
	m.serve(t, "127.0.0.2")
	ak := key.AnnounceKey()
	ann, _ := proto.NewAnnouncement(&ak, uint16(m.port), proto.FingerprintBytes(id.Public[:]), time.Now())
	b, _ := ann.MarshalBinary()
	c, err := net.DialUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2)}, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: annPort})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write(b)
	ev := w.next(t, "host_moved", "probed")
	if ev["from"] != "127.0.0.1" || ev["to"] != "127.0.0.2" || ev["via"] != "announcement" {
		t.Errorf("move event %v, want 127.0.0.1 to 127.0.0.2 via announcement", ev)
	}
	if st.held() == 0 {
		t.Error("the move was recorded once the sweep under way had given up on 127.0.0.3, want while it still waited there")
	}
	w.next(t, "probed", "host_moved", "host_unseen")
}
