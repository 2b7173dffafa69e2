package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/alecthomas/kong"

	"github.com/ifl-project/ifl/internal/controller/inventory"
	"github.com/ifl-project/ifl/internal/testbed/agenttest"
	"github.com/ifl-project/ifl/proto"
)

func run(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = Main(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

// TestHelp walks every command and checks that it and each of its flags
// and arguments has help.
func TestHelp(t *testing.T) {
	var cli CLI
	p, err := New(&cli, &Env{Stdout: &bytes.Buffer{}, Stderr: &bytes.Buffer{}}, func(int) {})
	if err != nil {
		t.Fatal(err)
	}
	var walk func(n *kong.Node)
	walk = func(n *kong.Node) {
		if n.Type == kong.CommandNode && n.Help == "" {
			t.Errorf("command %q has no help", n.Name)
		}
		for _, f := range n.Flags {
			if f.Help == "" {
				t.Errorf("%s --%s has no help", n.Name, f.Name)
			}
		}
		for _, a := range n.Positional {
			if a.Help == "" {
				t.Errorf("%s <%s> has no help", n.Name, a.Name)
			}
		}
		for _, c := range n.Children {
			walk(c)
		}
	}
	walk(p.Model.Node)
	for _, c := range p.Model.Children {
		code, out, _ := run(t, c.Name, "--help")
		if code != 0 || !strings.Contains(out, "Usage: ifl "+c.Name) {
			t.Errorf("ifl %s --help: exit %d, output %q", c.Name, code, out)
		}
	}
}

func TestUsageErrors(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"bogus"}, "ifl: unexpected argument bogus\nrun 'ifl --help' for usage\n"},
		{[]string{"probe", "--bogus"}, "ifl: unknown flag --bogus\nrun 'ifl probe --help' for usage\n"},
		{[]string{"probe", "-o", "xml", "127.0.0.1"}, "ifl: --output must be one of \"table\",\"tsv\",\"json\",\"yaml\" but got \"xml\"\nrun 'ifl probe --help' for usage\n"},
		{[]string{"ping", "--network-key", "/nonexistent/key", "127.0.0.1"}, "ifl: key file /nonexistent/key does not exist (create one with: ifl keygen /nonexistent/key)\n"},
		{[]string{"scan", "198.18.0.1", "--rate", "2000000"}, "ifl: --rate 2000000: want 1 to 1000000 probes per second, or 0 for the default (250000 raw SYNs, 2000 dials with connect())\n"},
		{[]string{"scan", "198.18.0.1", "--retries", "11"}, "ifl: --retries 11: want 0-10\n"},
		{[]string{"arp-scan", "eth0", "--timeout", "0s"}, "ifl: --timeout 0s: want a positive duration such as 20ms\n"},
		{[]string{"arp-scan", "eth0", "--min-retries", "21"}, "ifl: --min-retries 21: want 0-20\n"},
		{[]string{"arp-scan", "eth0", "--patience", "500us"}, "ifl: --patience 500µs: want 0 (the default, 40ms) or a duration from 1ms to 10s, such as 400ms\n"},
		{[]string{"scan", "198.18.0.1", "--patience", "11s"}, "ifl: --patience 11s: want 0 (the default, 40ms) or a duration from 1ms to 10s, such as 400ms\n"},
		{[]string{"probe", "--patience=-1s", "198.18.0.1"}, "ifl: --patience -1s: want 0 (the default, 40ms) or a duration from 1ms to 10s, such as 400ms\n"},
		{[]string{"probe", "--retries=-1", "198.18.0.1"}, "ifl: --retries -1: want 0-10\n"},
		{[]string{"probe", "198.18.0.0/33"}, "ifl: probe: \"198.18.0.0/33\": bad CIDR prefix (want an address, a CIDR prefix such as 198.18.0.0/24, a range such as 198.18.0.1-198.18.0.50 or 198.18.0.1-50, or a host name)\n"},
	} {
		code, _, stderr := run(t, tt.args...)
		if code != 2 || stderr != tt.want {
			t.Errorf("%v: exit %d, stderr %q; want exit 2, %q", tt.args, code, stderr, tt.want)
		}
	}
}

func TestKeygen(t *testing.T) {
	dir := t.TempDir()
	nk := filepath.Join(dir, "network.key")
	if code, _, stderr := run(t, "keygen", nk); code != 0 {
		t.Fatalf("keygen: exit %d: %s", code, stderr)
	}
	if _, err := proto.LoadNetworkKey(nk); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := run(t, "keygen", nk)
	if code != 2 || !strings.Contains(stderr, "already exists (use --force") {
		t.Fatalf("keygen over an existing key: exit %d: %s", code, stderr)
	}
	ak := filepath.Join(dir, "agent.key")
	code, stdout, _ := run(t, "keygen", "--agent", ak)
	id, err := proto.LoadIdentity(ak)
	if code != 0 || err != nil || stdout != id.Fingerprint()+"\n" {
		t.Fatalf("keygen --agent: exit %d, stdout %q, %v", code, stdout, err)
	}
}

func TestAgentConfigErrors(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "agent.yaml")
	os.WriteFile(cfg, []byte("port: 7440\nlables: {a: b}\n"), 0o644)
	code, _, stderr := run(t, "agent", "--config", cfg)
	want := "ifl: " + cfg + ": line 2: unknown key \"lables\""
	if code != 2 || !strings.HasPrefix(stderr, want) {
		t.Fatalf("exit %d, stderr %q; want 2, %q...", code, stderr, want)
	}
	code, _, stderr = run(t, "agent", "--config", filepath.Join(dir, "missing.yaml"))
	if code != 2 || !strings.Contains(stderr, "missing.yaml: no such file") {
		t.Fatalf("missing explicit config: exit %d, %q", code, stderr)
	}
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	keyFile := filepath.Join(dir, "network.key")
	run(t, "keygen", keyFile)
	port := strconv.Itoa(busy.Addr().(*net.TCPAddr).Port)
	os.WriteFile(cfg, nil, 0o644)
	code, _, stderr = run(t, "agent", "--network-key", keyFile, "--config", cfg, "--identity-key", filepath.Join(dir, "agent.key"), "--listen", "127.0.0.1", "--port", port)
	if want := "ifl: agent: 127.0.0.1:" + port + " is in use (another agent running? choose another with --port or port: in " + cfg + ")\n"; code != 2 || !strings.HasSuffix(stderr, want) {
		t.Fatalf("busy port: exit %d, %q; want %q", code, stderr, want)
	}
	os.WriteFile(cfg, []byte("port: 7440\n"), 0o644)
	code, _, stderr = run(t, "agent", "--network-key", filepath.Join(dir, "nokey"), "--config", cfg)
	if code != 2 || !strings.Contains(stderr, "does not exist (create one with: ifl keygen") {
		t.Fatalf("missing key: exit %d, %q", code, stderr)
	}
}

// startAgent serves an agent on 127.0.0.1 and returns its key file, port
// and identity.
func startAgent(t *testing.T) (keyFile string, port int, id proto.Identity) {
	t.Helper()
	a := agenttest.Start(t)
	keyFile = filepath.Join(t.TempDir(), "network.key")
	if err := proto.WriteKeyFile(keyFile, a.Key, false); err != nil {
		t.Fatal(err)
	}
	return keyFile, a.Port, a.Identity
}

func TestPing(t *testing.T) {
	keyFile, port, id := startAgent(t)
	host, _ := os.Hostname()
	target := "127.0.0.1:" + strconv.Itoa(port)

	code, stdout, stderr := run(t, "ping", "--network-key", keyFile, target)
	if code != 0 || !strings.Contains(stdout, "identity    "+id.Fingerprint()+"\n") || !strings.Contains(stdout, "hostname    "+host+"\n") {
		t.Fatalf("ping: exit %d\nstdout:\n%s\nstderr: %s", code, stdout, stderr)
	}

	code, stdout, _ = run(t, "ping", "--network-key", keyFile, "--json", target)
	var rep hostReport
	if err := json.Unmarshal([]byte(stdout), &rep); code != 0 || err != nil {
		t.Fatalf("ping --json: exit %d, %v\n%s", code, err, stdout)
	}
	if rep.Status != "agent" || rep.Identity != id.Fingerprint() || rep.Facts == nil || rep.Facts.Hostname != host {
		t.Errorf("ping --json: %+v", rep)
	}

	code, _, stderr = run(t, "ping", "--network-key", keyFile, "--identity", "0123456789ab", target)
	if code != 1 || !strings.Contains(stderr, "identity-mismatch: unknown agent identity: agent is "+id.Fingerprint()+", expected 0123456789ab") {
		t.Errorf("ping --identity: exit %d, %q", code, stderr)
	}
	// The 12 characters a table shows are enough, in either case.
	for _, prefix := range []string{id.Fingerprint()[:12], strings.ToUpper(id.Fingerprint()[:8]), id.Fingerprint()} {
		if code, _, stderr = run(t, "ping", "--network-key", keyFile, "--identity", prefix, target); code != 0 {
			t.Errorf("ping --identity %s: exit %d, %q", prefix, code, stderr)
		}
	}
	for _, bad := range []string{"0123", "0123456789abcdefg", strings.Repeat("0", 33)} {
		code, _, stderr = run(t, "ping", "--network-key", keyFile, "--identity", bad, target)
		if want := "ifl: --identity \"" + bad + "\": want an identity, or its first 8 to 32 hex digits\n"; code != 2 || stderr != want {
			t.Errorf("ping --identity %s: exit %d, %q; want 2, %q", bad, code, stderr, want)
		}
	}

	other := filepath.Join(t.TempDir(), "other.key")
	run(t, "keygen", other)
	code, _, stderr = run(t, "ping", "--network-key", other, target)
	if code != 1 || !strings.Contains(stderr, "rejected: handshake rejected: the agent closed the connection without answering (wrong network key") {
		t.Errorf("wrong key: exit %d, %q", code, stderr)
	}

	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := ln.Addr().String()
	ln.Close()
	code, _, stderr = run(t, "ping", "--network-key", keyFile, closed)
	if code != 1 || stderr != "ifl: ping "+closed+": closed: connection refused (no agent listening on that port)\n" {
		t.Errorf("closed port: exit %d, %q", code, stderr)
	}
}

func TestProbe(t *testing.T) {
	keyFile, port, id := startAgent(t)
	t.Setenv("IFL_STATE", filepath.Join(t.TempDir(), "inventory.json"))
	code, stdout, stderr := run(t, "probe", "--network-key", keyFile, "--connect", "-p", strconv.Itoa(port), "127.0.0.1-3", "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var rep probeReport
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("%v\n%s", err, stdout)
	}
	if len(rep.Hosts) != 1 || rep.Hosts[0].Address != "127.0.0.1" || rep.Hosts[0].Identity != id.Fingerprint() {
		t.Fatalf("hosts: %+v", rep.Hosts)
	}
	s := rep.Summary
	if s.Agents != 1 || s.Addresses != 3 || s.Probed != 3 || !s.Complete {
		t.Errorf("summary: %+v", s)
	}
	if !strings.HasPrefix(stderr, "1 agent; 3 of 3 addresses probed with connect() in ") || !strings.Contains(stderr, "new:       ") {
		t.Errorf("stderr %q", stderr)
	}

	code, stdout, _ = run(t, "probe", "--network-key", keyFile, "-p", strconv.Itoa(port), "127.0.0.1")
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if code != 0 || len(lines) != 2 || !strings.HasPrefix(lines[0], "ADDRESS") || !strings.HasPrefix(lines[1], "127.0.0.1  agent") {
		t.Errorf("table: exit %d\n%s", code, stdout)
	}
}

// TestProbeInterrupted: Ctrl-C (a cancelled context) prints what was found
// so far, says the run was interrupted, and exits 130.
func TestProbeInterrupted(t *testing.T) {
	keyFile, port, _ := startAgent(t)
	t.Setenv("IFL_STATE", filepath.Join(t.TempDir(), "inventory.json"))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var out, errb bytes.Buffer
	code := Main(ctx, []string{"probe", "--network-key", keyFile, "--connect", "-p", strconv.Itoa(port), "-o", "json", "127.0.0.1"}, &out, &errb)
	var rep probeReport
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("no report after an interrupt: %v\n%s", err, out.String())
	}
	if code != 130 || rep.Summary.Complete || !strings.Contains(errb.String(), "(interrupted)") {
		t.Errorf("exit %d, summary %+v, stderr %q", code, rep.Summary, errb.String())
	}
}

func TestInventoryCommand(t *testing.T) {
	state := filepath.Join(t.TempDir(), "inventory.json")
	now := time.Now().UTC()
	err := inventory.Update(state, func(s *inventory.State) error {
		s.Apply(now, []inventory.Observation{{
			Identity: "0123456789abcdef0123456789abcdef", Addr: netip.MustParseAddr("198.18.0.5"), Port: 7440,
			Facts: &proto.Facts{Hostname: "web-1", MachineID: "m", Labels: map[string]string{"role": "web"}},
		}}, func(netip.Addr) bool { return true }, true)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := run(t, "inventory", "--state", state)
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if code != 0 || len(lines) != 2 || !strings.HasPrefix(lines[1], "web-1  198.18.0.5  0123456789ab") || !strings.HasSuffix(lines[1], " 0      role_web") {
		t.Errorf("table: exit %d\n%s%s", code, stdout, stderr)
	}
	code, stdout, _ = run(t, "inventory", "--state", state, "--host", "web-1")
	if code != 0 || !strings.Contains(stdout, `"ansible_host": "198.18.0.5"`) {
		t.Errorf("--host: exit %d\n%s", code, stdout)
	}
	code, _, stderr = run(t, "inventory", "--state", state, "--host", "nope")
	if code != 1 || !strings.Contains(stderr, `no host "nope" (known: web-1; an identity's first 8 hex digits or more also do)`) {
		t.Errorf("--host nope: exit %d, %q", code, stderr)
	}
	code, _, stderr = run(t, "inventory", "--state", state, "--stale-after", "soon")
	if code != 2 || !strings.Contains(stderr, `bad age "soon"`) {
		t.Errorf("--stale-after soon: exit %d, %q", code, stderr)
	}
	os.WriteFile(state, []byte("{not json"), 0o600)
	code, _, stderr = run(t, "inventory", "--state", state, "--list")
	if code != 2 || !strings.Contains(stderr, "not an ifl inventory") {
		t.Errorf("damaged state: exit %d, %q", code, stderr)
	}
}

func TestInventoryPrune(t *testing.T) {
	state := filepath.Join(t.TempDir(), "inventory.json")
	seen := func(id, ip, host string, at time.Time) {
		t.Helper()
		err := inventory.Update(state, func(s *inventory.State) error {
			s.Apply(at, []inventory.Observation{{Identity: id, Addr: netip.MustParseAddr(ip), Port: 7440,
				Facts: &proto.Facts{Hostname: host}}}, func(netip.Addr) bool { return false }, true)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now().UTC()
	seen("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "198.18.0.5", "old", now.Add(-72*time.Hour))
	seen("bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", "198.18.0.6", "new", now)
	code, stdout, stderr := run(t, "inventory", "--state", state, "--prune", "2d")
	if code != 0 || !strings.Contains(stderr, "pruned: old (aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa)") || strings.Contains(stdout, "old") || !strings.Contains(stdout, "new") {
		t.Fatalf("exit %d\n%s%s", code, stdout, stderr)
	}
	s, err := inventory.Load(state)
	if err != nil || len(s.Hosts) != 1 || s.Hosts["bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"] == nil {
		t.Fatalf("state after prune: %v, %v", s, err)
	}
}

// TestProbeIPv6Target: an IPv6 target next to an IPv4 one is probed and
// dialled where its port is open, on the raw path too.
func TestProbeIPv6Target(t *testing.T) {
	keyFile, port, id := startAgent(t)
	t.Setenv("IFL_STATE", filepath.Join(t.TempDir(), "inventory.json"))
	code, stdout, stderr := run(t, "probe", "--network-key", keyFile, "-p", strconv.Itoa(port), "--all", "127.0.0.1", "::1", "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var rep probeReport
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("%v\n%s", err, stdout)
	}
	got := map[string]string{}
	for _, h := range rep.Hosts {
		got[h.Address] = h.Status + " " + h.Identity
	}
	// The agent listens on 127.0.0.1 only: ::1 is refused.
	want := map[string]string{"127.0.0.1": "agent " + id.Fingerprint(), "::1": "closed "}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("hosts %v, want %v", got, want)
	}
	if strings.Contains(stderr, "IPv6") {
		t.Errorf("IPv6 targets need no notice:\n%s", stderr)
	}
}

// TestScanIPv6Target: an IPv6 target next to an IPv4 one is scanned, on
// the raw path with SYNs too; an IPv6 target alone is scanned too.
func TestScanIPv6Target(t *testing.T) {
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	defer ln.Close()
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	for _, targets := range [][]string{{"127.0.0.1", "::1"}, {"::1"}} {
		code, stdout, stderr := run(t, append([]string{"scan", "-p", port, "--all", "-o", "json"}, targets...)...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", targets, code, stderr)
		}
		var rep scanReport
		if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
			t.Fatalf("%v\n%s", err, stdout)
		}
		got := map[string]string{}
		for _, r := range rep.Ports {
			got[r.Address] = r.Status
		}
		want := map[string]string{"::1": "open"}
		if len(targets) == 2 {
			want["127.0.0.1"] = "closed"
		}
		if !reflect.DeepEqual(got, want) || rep.Summary.Addresses != len(targets) {
			t.Errorf("%v: ports %v, %d addresses; want %v", targets, got, rep.Summary.Addresses, want)
		}
		if strings.Contains(stderr, "IPv6") {
			t.Errorf("%v: IPv6 targets need no notice:\n%s", targets, stderr)
		}
	}
}

// TestAgentMemoryLimit: the agent runs under its own soft memory limit,
// 11 MiB or, where the runtime holds more once the whole binary has
// started, above what it holds; unless the environment set one.
func TestAgentMemoryLimit(t *testing.T) {
	old := debug.SetMemoryLimit(math.MaxInt64)
	defer debug.SetMemoryLimit(old)
	// What a binary's packages may hold once it has started, beyond 11
	// MiB: a limit under it would keep the collector running.
	ballast := make([]byte, 16<<20)
	for i := range ballast {
		ballast[i] = 1
	}
	limitMemory()
	runtime.KeepAlive(ballast)
	held := runtimeHeld()
	got := debug.SetMemoryLimit(-1)
	if got < agentMemoryLimit || got < held+agentMemoryHeadroom/2 {
		t.Errorf("limit %d with none set and %d held, want at least %d and %d more than held", got, held, agentMemoryLimit, agentMemoryHeadroom/2)
	}
	debug.SetMemoryLimit(64 << 20) // as GOMEMLIMIT=64MiB would
	limitMemory()
	if got := debug.SetMemoryLimit(-1); got != 64<<20 {
		t.Errorf("limit %d after GOMEMLIMIT's 64 MiB, want it kept", got)
	}
}
