package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ifl-project/ifl/arpscan"
	"github.com/ifl-project/ifl/internal/controller/inventory"
	"github.com/ifl-project/ifl/proto"
)

// TestContradictionsAndBadValues: flags that contradict each other, and
// values that are not allowed, are usage errors that say what to do.
func TestContradictionsAndBadValues(t *testing.T) {
	dir := t.TempDir()
	agentKey := filepath.Join(dir, "agent.key")
	emptyConfig := filepath.Join(dir, "agent.yaml")
	if err := os.WriteFile(emptyConfig, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := run(t, "keygen", "--agent", agentKey); code != 0 {
		t.Fatalf("keygen --agent: %s", stderr)
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"probe", "--json", "-o", "yaml", "198.18.0.1"}, "ifl: --json and -o yaml ask for two formats: give one\n"},
		{[]string{"scan", "--json", "-o", "table", "198.18.0.1"}, ""}, // -o table is the default: nothing to contradict
		{[]string{"probe", "--no-state", "--state", "/tmp/x.json", "198.18.0.1"}, "ifl: --state /tmp/x.json and --no-state ask for opposite things: give one\n"},
		{[]string{"probe", "--watch", "1m", "-o", "yaml", "198.18.0.1"}, "ifl: --watch with -o yaml: a watch prints events as they come; -o json prints each round as one line of JSON\n"},
		{[]string{"ping", "--timeout", "0s", "127.0.0.1"}, "ifl: --timeout 0s: want a positive duration such as 3s\n"},
		{[]string{"ping", "127.0.0.1/32"}, "ifl: \"127.0.0.1/32\": ping takes one host, not a prefix or a range (for many hosts: ifl probe 127.0.0.1/32)\n"},
		{[]string{"ping", "198.18.0.1-5"}, "ifl: \"198.18.0.1-5\": ping takes one host, not a prefix or a range (for many hosts: ifl probe 198.18.0.1-5)\n"},
		{[]string{"ping", "127.0.0.256"}, "ifl: \"127.0.0.256\": not an IP address\n"},
		{[]string{"ping", "fe80::zz"}, "ifl: \"fe80::zz\": not an IP address (an IPv6 address with a port goes in brackets: [2001:db8::5]:7440)\n"},
		{[]string{"agent", "--config", emptyConfig, "--port", "0"}, "ifl: --port 0: want a port from 1024 to 65535 (the agent runs without privileges)\n"},
		{[]string{"agent", "--config", emptyConfig, "--listen", "127.0.0.1:17442"}, "ifl: --listen \"127.0.0.1:17442\": want an IP address such as 0.0.0.0, :: or 198.18.0.5 (the port is --port)\n"},
		{[]string{"keygen", "/nonexistent/dir/network.key"}, "ifl: keygen: writing key /nonexistent/dir/network.key: no directory /nonexistent/dir (create it first: mkdir -p -m 0700 /nonexistent/dir)\n"},
		{[]string{"keygen", "--agent", agentKey}, "ifl: keygen: " + agentKey + " already exists (use --force to replace it: the agent then has a new identity, which controllers see as a new host)\n"},
		{[]string{"arp-scan", "eth0", "--network-key", "x"}, "ifl: unknown flag --network-key\nrun 'ifl arp-scan --help' for usage\n"},
		{[]string{"probe", "--arp-probes", "--watch", "1m", "198.18.0.1"}, "ifl: probe: --arp-probes with --watch: a host checking an address before it takes it (DHCP conflict detection) gives the address up when probed for it, and a watch probes every address again and again; watch with requests (leave out --arp-probes)\n"},
		{[]string{"probe", "--arp-probes", "--connect", "198.18.0.1"}, "ifl: probe: --arp-probes with --connect: no ARP sweep to send probes\n"},
		{[]string{"probe", "--arp-probes", "--broadcast", "198.18.0.0/24"}, "ifl: probe: --arp-probes with --broadcast: no ARP sweep to send probes\n"},
		{[]string{"scan", "--arp-probes", "--connect", "198.18.0.1"}, "ifl: scan: --arp-probes with --connect: no ARP sweep to send probes\n"},
		{[]string{"inventory", "--network-key", "x"}, "ifl: unknown flag --network-key\nrun 'ifl inventory --help' for usage\n"},
	} {
		if tt.want == "" {
			continue
		}
		code, _, stderr := run(t, tt.args...)
		if code != 2 || stderr != tt.want {
			t.Errorf("%v: exit %d, stderr %q; want exit 2, %q", tt.args, code, stderr, tt.want)
		}
	}
}

func TestVersionFlag(t *testing.T) {
	for _, arg := range []string{"--version", "-V", "version"} {
		code, stdout, _ := run(t, arg)
		if code != 0 || !strings.HasPrefix(stdout, "ifl "+Version+" (go") || !strings.HasSuffix(stdout, ", protocol ifl/1)\n") {
			t.Errorf("ifl %s: exit %d, %q", arg, code, stdout)
		}
	}
}

// TestNoStateBeatsTheEnvironment: IFL_STATE set for every command gives
// way to --no-state, which is no contradiction.
func TestNoStateBeatsTheEnvironment(t *testing.T) {
	keyFile, port, _ := startAgent(t)
	state := filepath.Join(t.TempDir(), "inventory.json")
	t.Setenv("IFL_STATE", state)
	code, _, stderr := run(t, "probe", "--network-key", keyFile, "--connect", "--no-state", "-p", strconv.Itoa(port), "127.0.0.1")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if _, err := os.Stat(state); !os.IsNotExist(err) {
		t.Errorf("--no-state wrote %s: %v", state, err)
	}
}

// TestAgentFlagsOverrideConfigKeys: --network-key replaces network_keys:
// of the config, as every flag overrides the file.
func TestAgentFlagsOverrideConfigKeys(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "agent.yaml")
	if err := os.WriteFile(cfg, []byte("network_keys: [/etc/ifl/old.key]\nport: 7441\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		flags []string
		want  []string
	}{
		{nil, []string{"/etc/ifl/old.key"}},
		{[]string{"/run/a.key"}, []string{"/run/a.key"}},
		{[]string{"/run/a.key", "/run/b.key"}, []string{"/run/a.key", "/run/b.key"}},
	} {
		c := &AgentCmd{Config: cfg, NetworkKey: tt.flags}
		s, err := c.settings(nil)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(tt.want, s.keyFiles); diff != "" {
			t.Errorf("--network-key %v (-want +got):\n%s", tt.flags, diff)
		}
	}
	// Repeated flags, and commas, as kong reads them.
	var cli CLI
	p, err := New(&cli, &Env{Stdout: &bytes.Buffer{}, Stderr: &bytes.Buffer{}}, func(int) {})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Parse([]string{"agent", "--network-key", "/run/a.key", "--network-key", "/run/b.key,/run/c.key"}); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"/run/a.key", "/run/b.key", "/run/c.key"}, cli.Agent.NetworkKey); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// lineWriter calls done at the first whole line written.
type lineWriter struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	done func()
}

func (w *lineWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(b)
	if bytes.Contains(w.buf.Bytes(), []byte("\n")) {
		w.done()
	}
	return len(b), nil
}

// TestWatchJSONLines: --watch -o json prints each round as one line of
// JSON.
func TestWatchJSONLines(t *testing.T) {
	keyFile, port, id := startAgent(t)
	t.Setenv("IFL_STATE", filepath.Join(t.TempDir(), "inventory.json"))
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	out := &lineWriter{done: func() { cancel(&Signalled{syscall.SIGTERM}) }}
	var errb bytes.Buffer
	code := runEnv(ctx, []string{"probe", "--network-key", keyFile, "--connect", "--watch", "1h", "-o", "json", "-p", strconv.Itoa(port), "127.0.0.1"},
		&Env{Stdout: out, Stderr: &errb})
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	line, _, _ := strings.Cut(out.buf.String(), "\n")
	var rep probeReport
	if err := json.Unmarshal([]byte(line), &rep); err != nil {
		t.Fatalf("%v: %q", err, out.buf.String())
	}
	if len(rep.Hosts) != 1 || rep.Hosts[0].Identity != id.Fingerprint() || rep.Changes == nil || len(rep.Changes.New) != 1 {
		t.Errorf("round: %+v", rep)
	}
}

// TestInventoryByIdentityPrefix: --host takes the start of an identity,
// 8 hex digits or more; an ambiguous one lists the candidates.
func TestInventoryByIdentityPrefix(t *testing.T) {
	state := filepath.Join(t.TempDir(), "inventory.json")
	now := time.Now().UTC()
	err := inventory.Update(state, func(s *inventory.State) error {
		s.Apply(now, []inventory.Observation{
			{Identity: "0123456789abcdef0123456789abcdef", Addr: netip.MustParseAddr("198.18.0.5"), Port: 7440, Facts: &proto.Facts{Hostname: "web-1"}},
			{Identity: "0123456789abffff0123456789abcdef", Addr: netip.MustParseAddr("198.18.0.6"), Port: 7440, Facts: &proto.Facts{Hostname: "web-2"}},
		}, func(netip.Addr) bool { return true }, true)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := run(t, "inventory", "--state", state, "--host", "0123456789abc")
	if code != 0 || !strings.Contains(stdout, `"ansible_host": "198.18.0.5"`) {
		t.Errorf("--host by prefix: exit %d, %s%s", code, stdout, stderr)
	}
	code, _, stderr = run(t, "inventory", "--state", state, "--host", "0123456789AB")
	if want := "ifl: inventory: identity prefix 0123456789ab is ambiguous: 0123456789abcdef0123456789abcdef (web-1), 0123456789abffff0123456789abcdef (web-2)\n"; code != 1 || stderr != want {
		t.Errorf("ambiguous: exit %d, %q; want 1, %q", code, stderr, want)
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--list", "--host", "web-1"}, "ifl: --list and --host ask for two answers: give one (Ansible asks for one at a time)\n"},
		{[]string{"--list", "-o", "yaml"}, "ifl: --list prints Ansible's JSON; -o yaml asks for another format: give one\n"},
	} {
		code, _, stderr := run(t, append([]string{"inventory", "--state", state}, tt.args...)...)
		if code != 2 || stderr != tt.want {
			t.Errorf("%v: exit %d, %q; want 2, %q", tt.args, code, stderr, tt.want)
		}
	}
}

// TestMissingStateIsNoFleet: a state that does not exist is an error that
// names the file and what to do, never an empty inventory; a probe still
// starts one.
func TestMissingStateIsNoFleet(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "typo.json")
	for _, args := range [][]string{{"--list"}, {}, {"--host", "web-1"}, {"-o", "yaml"}, {"--prune", "30d"}} {
		code, stdout, stderr := run(t, append([]string{"inventory", "--state", missing}, args...)...)
		want := "ifl: inventory: no inventory state at " + missing + ": no probe has written one there; run 'ifl probe', or point --state or IFL_STATE at the controller's state file\n"
		if code != 2 || stdout != "" || stderr != want {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want 2, nothing, %q", args, code, stdout, stderr, want)
		}
	}
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Errorf("reading made %s: %v", missing, err)
	}
}

// A probe gives the agent port five tries, not a port scan's three, and
// passes --patience and --arp-probes on to the sweep.
func TestProbeEngineConfig(t *testing.T) {
	c := &ProbeCmd{SweepFlags: SweepFlags{Patience: 400 * time.Millisecond, ARPProbes: true}}
	cfg := c.engineConfig()
	if cfg.SYN == nil || cfg.SYN.Retries != 4 || cfg.ARP == nil || cfg.ARP.Patience != 400*time.Millisecond || !cfg.ARP.FromZero {
		t.Errorf("engine config %+v %+v; want 4 SYN retries, a 400ms patience and probes", cfg.SYN, cfg.ARP)
	}
}

// arp-scan and scan pass their flags on to the sweep, the sweep flags
// included.
func TestSweepConfigs(t *testing.T) {
	sweep := SweepFlags{Patience: 400 * time.Millisecond, ARPProbes: true}
	a := &ArpScanCmd{Rate: 500, MinRate: 100, Retries: 0, MinRetries: 3, Timeout: time.Second, SweepFlags: sweep}
	want := arpscan.Config{Rate: 500, MinRate: 100, Retries: -1, MinRetries: 3, Timeout: time.Second, Patience: 400 * time.Millisecond, FromZero: true}
	if got := a.sweepConfig(); *got != want {
		t.Errorf("arp-scan: sweep config %+v, want %+v", *got, want)
	}
	s := &ScanCmd{Rate: 5000, Retries: 1, SweepFlags: sweep}
	cfg := s.engineConfig()
	if cfg.ARP == nil || *cfg.ARP != (arpscan.Config{Patience: 400 * time.Millisecond, FromZero: true}) || cfg.SYN == nil || cfg.SYN.Rate != 5000 || cfg.SYN.Retries != 1 {
		t.Errorf("scan: engine config %+v %+v", cfg.SYN, cfg.ARP)
	}
}
