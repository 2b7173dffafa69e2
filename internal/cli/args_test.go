package cli

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ifl-project/ifl/arpscan"
	"github.com/ifl-project/ifl/internal/controller/verify"
	"github.com/ifl-project/ifl/proto"
)

// parse parses args as ifl does, and returns the parsed command line.
func parse(t *testing.T, args ...string) (*CLI, error) {
	t.Helper()
	var cli CLI
	p, err := New(&cli, &Env{Stdout: &bytes.Buffer{}, Stderr: &bytes.Buffer{}}, func(int) {})
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.Parse(joinDashValues(p.Model, nmapFlags(args)))
	return &cli, err
}

// TestPortFlags: -p is --port everywhere, --ports its alias everywhere;
// a port list takes what nmap's -p does: open ranges, "-" for every
// port, service names.
func TestPortFlags(t *testing.T) {
	for _, args := range [][]string{
		{"probe", "--ports", "7441"}, {"probe", "--port", "7441"}, {"probe", "-p", "7441"},
		{"scan", "--ports", "7441", "x"}, {"scan", "--port", "7441", "x"},
		{"ping", "--ports", "7441", "x"}, {"ping", "--port", "7441", "x"},
		{"agent", "--ports", "7441"}, {"agent", "--port", "7441"},
	} {
		cli, err := parse(t, args...)
		if err != nil {
			t.Errorf("%v: %v", args, err)
			continue
		}
		var got string
		switch args[0] {
		case "probe":
			got = strconv.Itoa(cli.Probe.Port)
		case "scan":
			got = cli.Scan.Ports
		case "ping":
			got = strconv.Itoa(*cli.Ping.Port)
		case "agent":
			got = strconv.Itoa(*cli.Agent.Port)
		}
		if got != "7441" {
			t.Errorf("%v: port %s", args, got)
		}
	}
	// Service names where one port is asked for.
	if cli, err := parse(t, "probe", "-p", "ssh"); err != nil || cli.Probe.Port != 22 {
		t.Errorf("probe -p ssh: %v", err)
	}
	every := make([]uint16, 0, 65535)
	for p := 1; p <= 65535; p++ {
		every = append(every, uint16(p))
	}
	for _, tt := range []struct {
		spec string
		want []uint16
	}{
		{"-", every},
		{"1-", every},
		{"65530-", every[65529:]},
		{"-3", []uint16{1, 2, 3}},
		{"ssh,http,22", []uint16{22, 80}},
		{"80, 22-23 ,https", []uint16{22, 23, 80, 443}},
		{"ssh-telnet", []uint16{22, 23}},
	} {
		got, err := parsePorts(tt.spec)
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("parsePorts(%q) = %d ports, %v", tt.spec, len(got), err)
		}
	}
	// nmap's -p- and -p-1024, as one word and as two.
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"scan", "-p-", "x"}, "-"},
		{[]string{"scan", "-p", "-", "x"}, "-"},
		{[]string{"scan", "-p", "-1024", "x"}, "-1024"},
		{[]string{"scan", "-p1-", "x"}, "1-"},
	} {
		cli, err := parse(t, tt.args...)
		if err != nil || cli.Scan.Ports != tt.want {
			t.Errorf("%v: %q, %v; want %q", tt.args, cli.Scan.Ports, err, tt.want)
		}
	}
}

// TestValueMessages: a value that is not allowed is named, with what is
// allowed and what to do; a dash before a number is the number's, not a
// short flag.
func TestValueMessages(t *testing.T) {
	usage := func(cmd string) string { return "run 'ifl " + cmd + " --help' for usage\n" }
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"probe", "-p", "-1", "198.18.0.1"}, "ifl: --port -1: want 1-65535\n"},
		{[]string{"probe", "--rate", "-5", "198.18.0.1"}, "ifl: --rate -5: want 1 to 1000000 new addresses per second, or 0 for the default (2000)\n"},
		{[]string{"scan", "--rate", "-5", "198.18.0.1"}, "ifl: --rate -5: want 1 to 1000000 probes per second, or 0 for the default (250000 raw SYNs, 2000 dials with connect())\n"},
		{[]string{"arp-scan", "eth0", "--rate", "-5"}, "ifl: --rate -5: want 1 to 1000000 requests per second, or 0 for the default\n"},
		{[]string{"probe", "-p", "abc", "198.18.0.1"}, "ifl: --port: \"abc\" is neither a port number nor a TCP service in /etc/services (want 1-65535, or a name such as ssh)\n" + usage("probe")},
		{[]string{"probe", "-p", "22,80", "198.18.0.1"}, "ifl: --port: \"22,80\": want one port: a number from 1 to 65535 or a service name such as ssh\n" + usage("probe")},
		{[]string{"probe", "--rate", "fast", "198.18.0.1"}, "ifl: --rate: \"fast\" is not a whole number (the default is 2000)\n" + usage("probe")},
		{[]string{"probe", "--timeout", "5", "198.18.0.1"}, "ifl: --timeout: \"5\" is not a duration: want a number with its unit, such as 1.1s, the default\n" + usage("probe")},
		{[]string{"probe", "--watch", "5", "198.18.0.1"}, "ifl: --watch: \"5\" is not a duration: want a number with its unit, such as 5m, 30s or 500ms\n" + usage("probe")},
		{[]string{"scan", "-p", "ssh2x", "198.18.0.1"}, "ifl: --port ssh2x: \"ssh2x\" is neither a port number nor a TCP service in /etc/services (want 1-65535, or a name such as ssh); " + portsHelp + "\n"},
		{[]string{"scan", "-p", "100-1", "198.18.0.1"}, "ifl: --port 100-1: range 100-1 ends before it starts (100 > 1); " + portsHelp + "\n"},
		{[]string{"scan", "-p", "70000", "198.18.0.1"}, "ifl: --port 70000: port 70000: want 1-65535; " + portsHelp + "\n"},
		{[]string{"probe", "--watch", "0s", "198.18.0.1"}, "ifl: --watch 0s: want an interval of a second or more, such as 5m (without --watch, ifl probes once)\n"},
		{[]string{"probe", "--watch", "500ms", "198.18.0.1"}, "ifl: --watch 500ms: want an interval of a second or more, such as 5m (without --watch, ifl probes once)\n"},
		{[]string{"inventory", "--json", "-o", "yaml"}, "ifl: --json and -o yaml ask for two formats: give one\n"},
	} {
		code, _, stderr := run(t, tt.args...)
		if code != 2 || stderr != tt.want {
			t.Errorf("%v: exit %d, stderr\n%q\nwant exit 2,\n%q", tt.args, code, stderr, tt.want)
		}
	}
	// --state beside --no-state contradicts it, whatever IFL_STATE says.
	state := filepath.Join(t.TempDir(), "x.json")
	t.Setenv("IFL_STATE", state)
	for _, cmd := range [][]string{{"probe", "198.18.0.1"}, {"scan", "198.18.0.1"}, {"ping", "198.18.0.1"}} {
		code, _, stderr := run(t, append(cmd, "--state", state, "--no-state")...)
		if want := "ifl: --state " + state + " and --no-state ask for opposite things: give one\n"; code != 2 || stderr != want {
			t.Errorf("%v: exit %d, %q; want %q", cmd, code, stderr, want)
		}
	}
}

// TestRateZeroIsTheDefault: --rate 0 is the command's default rate in
// every command, never "no limit" in one and the default in another.
func TestRateZeroIsTheDefault(t *testing.T) {
	cli, err := parse(t, "probe", "--rate", "0")
	if err != nil {
		t.Fatal(err)
	}
	if v := cli.Probe.verifier(proto.NetworkKey{}); v.Rate != 0 {
		t.Errorf("probe --rate 0: verifier rate %d, want 0 (verify.DefaultRate, %d)", v.Rate, verify.DefaultRate)
	}
	a := &ArpScanCmd{Rate: 0, Retries: 1, Timeout: time.Second, OutputFlags: OutputFlags{Output: formatTable}}
	if err := a.check(); err != nil || a.sweepConfig().Rate != arpscan.DefaultRate {
		t.Errorf("arp-scan --rate 0: %v, rate %d; want the default, %d", err, a.sweepConfig().Rate, arpscan.DefaultRate)
	}
	s := &ScanCmd{Ports: "22", Retries: 1, Timeout: time.Second, OutputFlags: OutputFlags{Output: formatTable}}
	if _, err := s.check(); err != nil || s.engineConfig().SYN.Rate != 0 {
		t.Errorf("scan --rate 0: %v", err)
	}
}

// TestJSONEverywhere: every command that prints a report takes -o json
// and --json alike.
func TestJSONEverywhere(t *testing.T) {
	var cli CLI
	p, err := New(&cli, &Env{Stdout: &bytes.Buffer{}, Stderr: &bytes.Buffer{}}, func(int) {})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range p.Model.Children {
		var o, j bool
		for _, f := range c.Flags {
			switch f.Name {
			case "output":
				o = f.Short == 'o' && strings.Contains(f.Enum, "json")
			case "json":
				j = true
			}
		}
		if o != j {
			t.Errorf("ifl %s: -o json %v, --json %v", c.Name, o, j)
		}
	}
	state := filepath.Join(t.TempDir(), "inventory.json")
	os.WriteFile(state, []byte(`{"format": "ifl-inventory", "version": 1, "hosts": {}}`), 0o600)
	_, a, _ := run(t, "inventory", "--state", state, "-o", "json")
	_, b, _ := run(t, "inventory", "--state", state, "--json")
	if a != b || !strings.Contains(a, `"ifl_all"`) {
		t.Errorf("inventory -o json %q, --json %q", a, b)
	}
}

// flagRE finds flags mentioned in help texts.
var flagRE = regexp.MustCompile(`(?:^|[\s(,'"])(--[a-z][a-z0-9-]+)`)

// TestHelpNamesOwnFlags: a command's help mentions only flags it has,
// or another command's flags in a sentence that names that command:
// arp-scan's help once offered --connect and --watch, which it lacks.
func TestHelpNamesOwnFlags(t *testing.T) {
	var cli CLI
	p, err := New(&cli, &Env{Stdout: &bytes.Buffer{}, Stderr: &bytes.Buffer{}}, func(int) {})
	if err != nil {
		t.Fatal(err)
	}
	flagsOf := map[string]map[string]bool{}
	for _, c := range p.Model.Children {
		flagsOf[c.Name] = map[string]bool{"--help": true}
		for _, f := range append(c.Flags, p.Model.Flags...) {
			flagsOf[c.Name]["--"+f.Name] = true
			for _, a := range f.Aliases {
				flagsOf[c.Name]["--"+a] = true
			}
		}
	}
	for _, c := range p.Model.Children {
		texts := []string{c.Help, c.Detail}
		for _, f := range c.Flags {
			texts = append(texts, f.Help)
		}
		for _, a := range c.Positional {
			texts = append(texts, a.Help)
		}
		for _, text := range texts {
			for _, sentence := range sentences(otherPrograms(text)) {
				for _, m := range flagRE.FindAllStringSubmatch(sentence, -1) {
					flag := m[1]
					if flagsOf[c.Name][flag] || namesOwner(sentence, flag, flagsOf) {
						continue
					}
					t.Errorf("ifl %s --help mentions %s, which it does not have: %q", c.Name, flag, sentence)
				}
			}
		}
	}
}

// otherPrograms leaves out the example lines of programs other than ifl
// (ansible-inventory --graph).
func otherPrograms(text string) string {
	lines := strings.Split(text, "\n")
	for i, l := range lines {
		w := strings.Fields(l)
		if len(w) > 1 && w[0] == "sudo" {
			w = w[1:]
		}
		if strings.HasPrefix(l, " ") && len(w) > 0 && w[0] != "ifl" {
			lines[i] = ""
		}
	}
	return strings.Join(lines, "\n")
}

// sentences splits a help text at full stops and blank lines.
func sentences(text string) []string {
	return regexp.MustCompile(`\.\s|\n\n|:\n`).Split(text, -1)
}

// namesOwner reports whether sentence names a command that has flag.
func namesOwner(sentence, flag string, flagsOf map[string]map[string]bool) bool {
	for cmd, fl := range flagsOf {
		if fl[flag] && strings.Contains(sentence, "ifl "+cmd) {
			return true
		}
	}
	return false
}

// TestSharedHelpShownOnce: help shared by commands (the sweep's flags,
// the targets', the outputs') is short; a paragraph is written for one
// command and shown once, not repeated under every flag that shares it.
func TestSharedHelpShownOnce(t *testing.T) {
	var cli CLI
	p, err := New(&cli, &Env{Stdout: &bytes.Buffer{}, Stderr: &bytes.Buffer{}}, func(int) {})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string][]string{}
	for _, c := range p.Model.Children {
		for _, f := range c.Flags {
			seen[f.Help] = append(seen[f.Help], c.Name+" --"+f.Name)
		}
	}
	for help, where := range seen {
		// Three lines of a terminal.
		if len(where) > 1 && len(help) > 240 {
			t.Errorf("%d characters of help shown under %v: keep shared help short, and the paragraph in one command's help", len(help), where)
		}
	}
}

// TestKeyFilePermission: a key file this user may not read is named, with
// whose it is and what to do.
func TestKeyFilePermission(t *testing.T) {
	path := filepath.Join(t.TempDir(), "network.key")
	if err := os.WriteFile(path, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	denied := &fs.PathError{Op: "open", Path: path, Err: fs.ErrPermission}
	err := keyPermission(path, errors.Join(errors.New("key file"), denied), 1000)
	want := "key file " + path + ": permission denied: a key file is readable by its owner, " + userName(uint32(os.Getuid())) +
		", only (mode 0600): run ifl as that user (sudo), or give --network-key a copy of your own (mode 0600)"
	if err == nil || err.Error() != want {
		t.Errorf("got %v\nwant %s", err, want)
	}
	if err := keyPermission(path, denied, 0); err != denied {
		t.Errorf("as root: %v; want the error as it is (permissionHint explains it)", err)
	}
}

// TestKeyDirectory: keygen and the agent, which makes its key on first
// start, both create the key's folder (mode 0700) where its parent
// exists, and both refuse a deeper path with one message.
func TestKeyDirectory(t *testing.T) {
	dir := t.TempDir()
	nk := filepath.Join(dir, "etc-ifl", "network.key")
	code, _, stderr := run(t, "keygen", nk)
	if want := "created directory " + filepath.Dir(nk) + " (mode 0700)\n"; code != 0 || !strings.HasPrefix(stderr, want) {
		t.Errorf("keygen: exit %d, %q; want %q...", code, stderr, want)
	}
	if fi, err := os.Stat(filepath.Dir(nk)); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("keygen's folder: %v %v", fi, err)
	}
	deep := filepath.Join(dir, "a", "b", "agent.key")
	refusal := "writing key " + deep + ": no directory " + filepath.Dir(deep) + " (create it first: mkdir -p -m 0700 " + filepath.Dir(deep) + ")\n"
	code, _, stderr = run(t, "keygen", "--agent", deep)
	if code != 2 || stderr != "ifl: keygen: "+refusal {
		t.Errorf("keygen deep: exit %d, %q", code, stderr)
	}
	cfg := filepath.Join(dir, "agent.yaml")
	os.WriteFile(cfg, nil, 0o600)
	code, _, stderr = run(t, "agent", "--config", cfg, "--network-key", nk, "--identity-key", deep, "--port", "1024", "--listen", "127.0.0.1")
	if code != 2 || !strings.HasSuffix(stderr, "ifl: agent key: "+refusal) {
		t.Errorf("agent deep: exit %d, %q", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "a")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the agent made a tree of folders: %v", err)
	}
	// The agent makes its key's folder as keygen does, and says so.
	ak := filepath.Join(dir, "agent-dir", "agent.key")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	// The agent logs from more than one goroutine: a writer with a lock.
	errw := &lineWriter{done: func() {}}
	code = runEnv(ctx, []string{"agent", "--config", cfg, "--network-key", nk, "--identity-key", ak, "--port", "1024", "--listen", "127.0.0.1", "--log-format", "json"}, &Env{Stdout: errw, Stderr: errw})
	if fi, err := os.Stat(filepath.Dir(ak)); err != nil || fi.Mode().Perm() != 0o700 || !strings.Contains(errw.buf.String(), `"event":"key_dir_created"`) {
		t.Errorf("agent's folder: exit %d, %v %v\n%s", code, fi, err, errw.buf.String())
	}
}

// TestArgsJoinDashValues: a flag's value that starts with a dash stays
// the flag's value; flags stay flags.
func TestArgsJoinDashValues(t *testing.T) {
	var cli CLI
	p, err := New(&cli, &Env{Stdout: &bytes.Buffer{}, Stderr: &bytes.Buffer{}}, func(int) {})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ in, want []string }{
		{[]string{"probe", "-p", "-1", "x"}, []string{"probe", "--port=-1", "x"}},
		{[]string{"scan", "--ports", "-", "x"}, []string{"scan", "--port=-", "x"}},
		{[]string{"probe", "--state", "--no-state"}, []string{"probe", "--state", "--no-state"}},
		{[]string{"probe", "--all", "-1"}, []string{"probe", "--all", "-1"}},
		{[]string{"ping", "--", "-p", "-1"}, []string{"ping", "--", "-p", "-1"}},
	} {
		if got := joinDashValues(p.Model, tt.in); !slices.Equal(got, tt.want) {
			t.Errorf("%q: %q, want %q", tt.in, got, tt.want)
		}
	}
}
