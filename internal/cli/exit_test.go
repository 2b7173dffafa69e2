package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ifl-project/ifl/internal/controller/inventory"
	"github.com/ifl-project/ifl/proto"
)

// TestProbeWithAnotherKey: when the agents refuse the handshake, every
// one of them or most, the probe says that the key is likely not the
// fleet's (or the clocks are off), how to check, and exits 1; a watch
// logs it at every round and goes on.
func TestProbeWithAnotherKey(t *testing.T) {
	_, port, _ := startAgent(t)
	other := filepath.Join(t.TempDir(), "other.key")
	if code, _, stderr := run(t, "keygen", other); code != 0 {
		t.Fatal(stderr)
	}
	k, err := proto.LoadNetworkKey(other)
	if err != nil {
		t.Fatal(err)
	}
	p := strconv.Itoa(port)
	t.Setenv("IFL_STATE", filepath.Join(t.TempDir(), "inventory.json"))
	code, stdout, stderr := run(t, "probe", "--network-key", other, "--connect", "-p", p, "127.0.0.1")
	want := "ifl: probe: the one address with port " + p + " open rejected the handshake: the network key " + other + " (id " + networkKeyID(k) +
		") is likely not the fleet's, or this host's clock is more than 1m0s off the agents'; compare 'ifl keycheck " + other +
		"' here with the same on an agent (the ids must match), and check both clocks (timedatectl)\n"
	if code != 1 || !strings.HasSuffix(stderr, want) || !strings.Contains(stdout, "127.0.0.1  rejected") {
		t.Errorf("exit %d\nstdout %s\nstderr %q\nwant ...%q", code, stdout, stderr, want)
	}

	// Most, not all: half is not most.
	s := summary{Agents: 1, Rejected: 1}
	if err := rejectedMost(s, other, (&ProbeCmd{Port: port}).verifier(k)); err != nil {
		t.Errorf("1 agent, 1 rejected: %v", err)
	}
	s = summary{Agents: 1, Rejected: 2, NotAgents: 1}
	if err := rejectedMost(s, other, (&ProbeCmd{Port: port}).verifier(k)); err != nil {
		t.Errorf("1 agent, 2 rejected, 1 other service: %v", err)
	}
	s = summary{Agents: 1, Rejected: 3, NotAgents: 1}
	if err := rejectedMost(s, other, (&ProbeCmd{Port: port}).verifier(k)); err == nil || !strings.HasPrefix(err.Error(), "3 of the 5 addresses with port ") {
		t.Errorf("1 agent, 3 rejected, 1 other service: %v", err)
	}

	// A watch: one warning event per round, and it goes on.
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	var out bytes.Buffer
	errw := &lineWriter{done: func() {}}
	errw.done = func() {
		if strings.Contains(errw.buf.String(), `"event":"key_rejected"`) {
			cancel(&Signalled{syscall.SIGTERM})
		}
	}
	code = runEnv(ctx, []string{"probe", "--network-key", other, "--connect", "--watch", "1h", "-p", p, "127.0.0.1"}, &Env{Stdout: &out, Stderr: errw})
	var ev struct {
		Event    string `json:"event"`
		Rejected int    `json:"rejected"`
		Open     int    `json:"open"`
		Message  string `json:"message"`
	}
	for _, l := range strings.Split(errw.buf.String(), "\n") {
		if strings.Contains(l, `"event":"key_rejected"`) {
			if err := json.Unmarshal([]byte(l), &ev); err != nil {
				t.Fatal(err)
			}
		}
	}
	if code != 0 || ev.Rejected != 1 || ev.Open != 1 || !strings.HasPrefix(ev.Message, "the one address with port "+p+" open rejected the handshake") {
		t.Errorf("watch: exit %d, event %+v\n%s", code, ev, errw.buf.String())
	}
}

// TestRejectedIsNotUnseen: a known agent whose port rejects the
// handshake (the controller's key is not the fleet's, or a clock is
// off) may well be there: the probe says why it could not tell, and does
// not report the agent not seen.
func TestRejectedIsNotUnseen(t *testing.T) {
	keyFile, port, _ := startAgent(t)
	dir := t.TempDir()
	state, other := filepath.Join(dir, "inventory.json"), filepath.Join(dir, "other.key")
	if code, _, stderr := run(t, "keygen", other); code != 0 {
		t.Fatal(stderr)
	}
	p := strconv.Itoa(port)
	if code, _, stderr := run(t, "probe", "--network-key", keyFile, "--connect", "--state", state, "-p", p, "127.0.0.1"); code != 0 {
		t.Fatalf("probe: exit %d: %s", code, stderr)
	}
	code, stdout, stderr := run(t, "probe", "--network-key", other, "--connect", "--state", state, "-p", p, "127.0.0.1", "-o", "json")
	var rep struct {
		Changes struct {
			Unseen []json.RawMessage `json:"unseen"`
		} `json:"changes"`
	}
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("exit %d, %v: %s%s", code, err, stdout, stderr)
	}
	if code != 1 || len(rep.Changes.Unseen) != 0 || strings.Contains(stderr, "not seen") {
		t.Errorf("exit %d, unseen %s\n%s", code, rep.Changes.Unseen, stderr)
	}
}

// TestExitCodes runs each command into each exit status it documents:
// 0 done, 1 problems found, 2 usage or environment error, 130
// interrupted (Ctrl-C); a --watch ends with 130 on Ctrl-C (SIGINT) and
// 0 when a service manager stops it (SIGTERM).
func TestExitCodes(t *testing.T) {
	keyFile, port, id := startAgent(t)
	p := strconv.Itoa(port)
	dir := t.TempDir()
	state := filepath.Join(dir, "inventory.json")
	other := filepath.Join(dir, "other.key")
	if code, _, stderr := run(t, "keygen", other); code != 0 {
		t.Fatal(stderr)
	}
	closed := strconv.Itoa(closedPort(t))
	for _, tt := range []struct {
		args []string
		code int
	}{
		{[]string{"probe", "--network-key", keyFile, "--connect", "--state", state, "-p", p, "127.0.0.1"}, 0},
		{[]string{"probe", "--network-key", other, "--connect", "--state", state, "-p", p, "127.0.0.1"}, 1},
		{[]string{"probe", "--network-key", keyFile, "--connect", "--state", state, "-p", "0", "127.0.0.1"}, 2},
		{[]string{"ping", "--network-key", keyFile, "--state", state, "127.0.0.1:" + p}, 0},
		{[]string{"ping", "--network-key", keyFile, "--state", state, id.Fingerprint()[:8]}, 0},
		{[]string{"ping", "--network-key", keyFile, "--no-state", "127.0.0.1:" + closed}, 1},
		{[]string{"ping", "--network-key", keyFile, "--no-state", "127.0.0.1/24"}, 2},
		{[]string{"scan", "--connect", "--no-state", "-p", p, "127.0.0.1"}, 0},
		{[]string{"scan", "--connect", "--no-state", "-p", "0", "127.0.0.1"}, 2},
		{[]string{"inventory", "--state", state}, 0},
		{[]string{"inventory", "--state", state, "--host", "nosuch"}, 1},
		{[]string{"inventory", "--state", filepath.Join(dir, "missing.json")}, 2},
		{[]string{"keycheck", keyFile}, 0},
		{[]string{"keycheck", filepath.Join(dir, "missing.key")}, 2},
		{[]string{"keygen", keyFile}, 2},
		{[]string{"arp-scan", "nosuch0"}, 2},
		{[]string{"agent", "--port", "80"}, 2},
	} {
		if code, _, stderr := run(t, tt.args...); code != tt.code {
			t.Errorf("%v: exit %d, want %d: %s", tt.args, code, tt.code, stderr)
		}
	}

	// Interrupted: a cancelled context, as Ctrl-C leaves it.
	for _, args := range [][]string{
		{"probe", "--network-key", keyFile, "--connect", "--no-state", "-p", p, "127.0.0.1"},
		{"scan", "--connect", "--no-state", "-p", p, "127.0.0.1"},
		{"ping", "--network-key", keyFile, "--no-state", "127.0.0.1:" + p},
	} {
		ctx, cancel := context.WithCancelCause(context.Background())
		cancel(&Signalled{syscall.SIGINT})
		if code := runEnv(ctx, args, &Env{Stdout: &bytes.Buffer{}, Stderr: &bytes.Buffer{}}); code != 130 {
			t.Errorf("%v interrupted: exit %d, want 130", args, code)
		}
	}

	// A watch: SIGINT is an interruption, SIGTERM the end of a service.
	for _, tt := range []struct {
		sig  syscall.Signal
		code int
	}{{syscall.SIGINT, 130}, {syscall.SIGTERM, 0}} {
		ctx, cancel := context.WithCancelCause(context.Background())
		out := &lineWriter{done: func() { cancel(&Signalled{tt.sig}) }}
		var errb bytes.Buffer
		code := runEnv(ctx, []string{"probe", "--network-key", keyFile, "--connect", "--watch", "1h", "-o", "json", "--state", state, "-p", p, "127.0.0.1"},
			&Env{Stdout: out, Stderr: &errb})
		cancel(nil)
		if code != tt.code || !strings.Contains(errb.String(), `"event":"stopped"`) {
			t.Errorf("watch stopped by %v: exit %d, want %d\n%s", tt.sig, code, tt.code, errb.String())
		}
	}
}

// TestStateNotWritable: a state that cannot be written stops the probe
// before its work, naming the file, the fault and what to do, where it
// once printed its results and then failed naming neither.
func TestStateNotWritable(t *testing.T) {
	keyFile, port, _ := startAgent(t)
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(file, "ifl", "inventory.json")
	code, stdout, stderr := run(t, "probe", "--network-key", keyFile, "--connect", "--state", state, "-p", strconv.Itoa(port), "127.0.0.1")
	want := "ifl: probe: cannot keep the inventory state " + state + ": mkdir " + file +
		": not a directory; give --state FILE in a folder you may write (IFL_STATE sets it for every command), or --no-state to leave the inventory alone\n"
	if code != 2 || stdout != "" || stderr != want {
		t.Errorf("exit %d, stdout %q, stderr %q; want 2, nothing, %q", code, stdout, stderr, want)
	}
	// A folder no one may make (as under a home that does not exist):
	// the probe ran, and printed, and failed only then.
	state = "/proc/ifl-test-nonexistent/inventory.json"
	code, stdout, stderr = run(t, "probe", "--network-key", keyFile, "--connect", "--state", state, "-p", strconv.Itoa(port), "127.0.0.1")
	if !strings.HasPrefix(stderr, "ifl: probe: cannot keep the inventory state "+state+": mkdir /proc/ifl-test-nonexistent: ") || code != 2 || stdout != "" {
		t.Errorf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}

// TestWatchLogUnits: a watch's log gives durations as the reports do, in
// seconds, and says so in the field's name.
func TestWatchLogUnits(t *testing.T) {
	var buf bytes.Buffer
	log := newLogger(&Env{Stderr: &buf}, "json")
	logChanges(log, &inventory.Changes{Unseen: []inventory.HostChange{{Identity: "0123", Name: "web", From: "198.18.0.5", Unseen: 90 * time.Minute}}})
	var ev map[string]any
	if err := json.Unmarshal(buf.Bytes(), &ev); err != nil {
		t.Fatal(err)
	}
	if ev["unseen_seconds"] != 5400.0 || ev["unseen"] != nil {
		t.Errorf("host_unseen: %v", ev)
	}

	keyFile, port, _ := startAgent(t)
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	errw := &lineWriter{done: func() { cancel(&Signalled{syscall.SIGTERM}) }}
	code := runEnv(ctx, []string{"probe", "--network-key", keyFile, "--connect", "--no-state", "--watch", "90s", "-p", strconv.Itoa(port), "127.0.0.1"}, &Env{Stdout: &bytes.Buffer{}, Stderr: errw})
	line := ""
	for _, l := range strings.Split(errw.buf.String(), "\n") {
		if strings.Contains(l, `"event":"watch"`) {
			line = l
		}
	}
	ev = nil
	if err := json.Unmarshal([]byte(line), &ev); err != nil {
		t.Fatal(err)
	}
	if code != 0 || ev["event"] != "watch" || ev["interval_seconds"] != 90.0 || ev["interval"] != nil {
		t.Errorf("exit %d, first event %v", code, ev)
	}
}
