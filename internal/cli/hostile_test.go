package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/netip"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"

	"github.com/ifl-project/ifl/internal/controller/verify"
	"github.com/ifl-project/ifl/internal/testbed/agenttest"
	"github.com/ifl-project/ifl/proto"
)

// Payloads a compromised agent puts in its facts: a screen clear, a window
// title, a carriage return that overwrites the line, a line feed that
// forges another line, NUL, a bidirectional override, invalid UTF-8.
const (
	clearScreen = "\x1b[2J\x1b[H"
	setTitle    = "\x1b]0;owned\a"
	forgedLine  = "\r\nidentity 00000000000000000000000000000000"
	hostileMix  = clearScreen + setTitle + "web" + forgedLine + "\x00\u202e\xff"
)

// hostileFacts are facts in which every string an agent chooses is hostile.
func hostileFacts() *proto.Facts {
	return &proto.Facts{
		Hostname:     "h" + hostileMix,
		MachineID:    hostileMix,
		OS:           proto.OSRelease{ID: hostileMix, VersionID: hostileMix, PrettyName: hostileMix},
		Kernel:       hostileMix,
		AgentVersion: hostileMix,
		Interfaces: []proto.Interface{{Name: "eth0" + hostileMix, MAC: hostileMix, MTU: 1500, Flags: []string{"up", hostileMix},
			Addrs: []string{"198.18.0.5/24", hostileMix}}},
		DefaultRoutes: []proto.Route{{Family: hostileMix, Gateway: hostileMix, Interface: hostileMix}},
		Labels:        map[string]string{"role" + hostileMix: hostileMix},
		Time:          time.Now(),
	}
}

// startHostileAgent serves a real agent that answers pings with facts.
func startHostileAgent(t *testing.T, facts *proto.Facts) (keyFile string, port int) {
	t.Helper()
	a := agenttest.StartWith(t, agenttest.Options{Facts: facts})
	keyFile = filepath.Join(t.TempDir(), "network.key")
	if err := proto.WriteKeyFile(keyFile, a.Key, false); err != nil {
		t.Fatal(err)
	}
	return keyFile, a.Port
}

// startErrorAgent completes the handshake and answers every request with
// an error message of its choosing.
func startErrorAgent(t *testing.T, e *proto.Error) (keyFile string, port int) {
	t.Helper()
	key, err := proto.NewNetworkKey()
	if err != nil {
		t.Fatal(err)
	}
	id, err := proto.NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				pc := proto.Server(c, &proto.ServerConfig{NetworkKeys: []proto.NetworkKey{key}, Identity: id})
				if _, err := pc.Receive(ctx); err != nil {
					return
				}
				pc.Send(ctx, e)
			}()
		}
	}()
	keyFile = filepath.Join(t.TempDir(), "network.key")
	if err := proto.WriteKeyFile(keyFile, key, false); err != nil {
		t.Fatal(err)
	}
	return keyFile, ln.Addr().(*net.TCPAddr).Port
}

// terminalSafe returns the first thing in s that a terminal would act on
// rather than show: a control character other than the line feeds that
// end lines, a non-printable rune, or invalid UTF-8.
func terminalSafe(s string) (bad string, ok bool) {
	for i, r := range s {
		if r == utf8.RuneError {
			if _, n := utf8.DecodeRuneInString(s[i:]); n <= 1 {
				return strconv.Quote(s[i : i+1]), false
			}
		}
		if r == '\n' || r == ' ' || unicode.IsPrint(r) {
			continue
		}
		return strconv.QuoteRune(r), false
	}
	return "", true
}

func checkTerminalSafe(t *testing.T, what, s string) {
	t.Helper()
	if bad, ok := terminalSafe(s); !ok {
		t.Errorf("%s shows %s raw:\n%q", what, bad, s)
	}
}

func TestHostileFactsReachNoTerminalRaw(t *testing.T) {
	keyFile, port := startHostileAgent(t, hostileFacts())
	target := "127.0.0.1:" + strconv.Itoa(port)

	code, stdout, stderr := run(t, "ping", "--network-key", keyFile, target)
	if code != 0 {
		t.Fatalf("ping: exit %d: %s", code, stderr)
	}
	checkTerminalSafe(t, "ping", stdout+stderr)
	// Shown, escaped: the operator sees what the agent sent.
	if want := `hostname    h\x1b[2J\x1b[H\x1b]0;owned\aweb\r\nidentity 00000000000000000000000000000000\x00\u202e` + "\uFFFD\n"; !strings.Contains(stdout, want) {
		t.Errorf("ping does not show the hostname escaped, as %q:\n%s", want, stdout)
	}
	if n := strings.Count(stdout, "\nidentity "); n != 1 {
		t.Errorf("ping shows %d identity lines, want 1:\n%s", n, stdout)
	}

	// Machine formats stay exact.
	code, stdout, _ = run(t, "ping", "--network-key", keyFile, "--json", target)
	var rep hostReport
	if err := json.Unmarshal([]byte(stdout), &rep); code != 0 || err != nil {
		t.Fatalf("ping --json: exit %d, %v", code, err)
	}
	if rep.Facts == nil || rep.Facts.Kernel != strings.ToValidUTF8(hostileMix, "\uFFFD") {
		t.Errorf("ping --json changed the facts: %+v", rep.Facts)
	}

	t.Setenv("IFL_STATE", filepath.Join(t.TempDir(), "inventory.json"))
	code, stdout, stderr = run(t, "probe", "--network-key", keyFile, "--connect", "-p", strconv.Itoa(port), "127.0.0.1")
	if code != 0 {
		t.Fatalf("probe: exit %d: %s", code, stderr)
	}
	checkTerminalSafe(t, "probe", stdout+stderr)
	if lines := strings.Split(strings.TrimSpace(stdout), "\n"); len(lines) != 2 {
		t.Errorf("probe table has %d lines, want a header and one row:\n%s", len(lines), stdout)
	}
	code, stdout, stderr = run(t, "inventory")
	if code != 0 {
		t.Fatalf("inventory: exit %d: %s", code, stderr)
	}
	checkTerminalSafe(t, "inventory", stdout+stderr)
}

func TestHostileErrorMessageIsOneSafeLine(t *testing.T) {
	keyFile, port := startErrorAgent(t, &proto.Error{Code: "internal" + setTitle, Message: clearScreen + "sorry" + forgedLine})
	code, stdout, stderr := run(t, "ping", "--network-key", keyFile, "127.0.0.1:"+strconv.Itoa(port))
	if code != 1 {
		t.Fatalf("ping: exit %d, want 1: %s", code, stderr)
	}
	checkTerminalSafe(t, "ping's error", stdout+stderr)
	if strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, `sorry\r\nidentity 0000`) {
		t.Errorf("ping's error is not one line with the message escaped:\n%q", stderr)
	}
}

func TestConsoleLogShowsMessagesEscaped(t *testing.T) {
	var buf bytes.Buffer
	log := newLogger(&Env{Stderr: &buf}, "console")
	log.Warn().Str("hostname", hostileMix).Msg("conflict: " + hostileMix)
	// The writer's own colours are the only escapes allowed.
	checkTerminalSafe(t, "the console log", regexp.MustCompile("\x1b\\[[0-9;]*m").ReplaceAllString(buf.String(), ""))
	if strings.Count(buf.String(), "\n") != 1 {
		t.Errorf("one event is not one line:\n%q", buf.String())
	}
}

// FuzzHumanFormats decodes a ping reply as the controller does and renders
// it in every human format: nothing the agent sent may reach the terminal
// raw, and every host stays one row.
func FuzzHumanFormats(f *testing.F) {
	seed, _ := json.Marshal(hostileFacts())
	f.Add(seed)
	f.Add([]byte(`{"hostname":"web","interfaces":[{"name":"eth0","addrs":["198.18.0.5/24"]}]}`))
	f.Add([]byte(`{"hostname":"\u001b[2J","labels":{"a\r\n":"b\u0000"}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		m, err := proto.UnmarshalMessage(append([]byte{byte(proto.TypePingReply)}, body...))
		if err != nil {
			return
		}
		facts := &m.(*proto.PingReply).Facts
		r := verify.Result{Addr: mustAddr("198.18.0.5"), Port: 7440, Status: verify.Agent, Identity: "0123456789abcdef0123456789abcdef", Facts: facts}
		var out bytes.Buffer
		printFacts(&Env{Stdout: &out, Stderr: &out}, r, "")
		if bad, ok := terminalSafe(out.String()); !ok {
			t.Fatalf("ping shows %s raw: %q", bad, out.String())
		}
		out.Reset()
		if err := writeTable(&out, []verify.Result{r, {Addr: mustAddr("198.18.0.6"), Status: verify.Failed, Err: &proto.Error{Code: facts.Hostname, Message: facts.Kernel}}}, nil); err != nil {
			t.Fatal(err)
		}
		if bad, ok := terminalSafe(out.String()); !ok {
			t.Fatalf("the probe table shows %s raw: %q", bad, out.String())
		}
		if n := strings.Count(out.String(), "\n"); n != 3 {
			t.Fatalf("the probe table has %d lines for 2 hosts: %q", n, out.String())
		}
	})
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

// TestPingShowsTruncation: an agent whose facts exceed a frame leaves some
// out and says so; ping shows how many.
func TestPingShowsTruncation(t *testing.T) {
	f := &proto.Facts{Hostname: "big", Labels: map[string]string{}}
	for i := range 5000 {
		f.Labels["label"+strconv.Itoa(i)] = strings.Repeat("v", 20)
	}
	keyFile, port := startHostileAgent(t, f)
	code, stdout, stderr := run(t, "ping", "--network-key", keyFile, "127.0.0.1:"+strconv.Itoa(port))
	if code != 0 {
		t.Fatalf("ping: exit %d: %s", code, stderr)
	}
	if !regexp.MustCompile(`\ntruncated +the agent left out 0 interfaces and [0-9]+ labels: its facts do not fit in one frame\n`).MatchString(stdout) {
		t.Errorf("ping does not say what the agent left out:\n%s", stdout[max(0, len(stdout)-300):])
	}
}

// unprintable are runes that JSON and YAML encoders leave raw, and that a
// terminal acts on or hides: a C1 CSI, a bidirectional override, a
// zero-width space, a private-use rune beyond the BMP, and DEL.
const unprintable = "\u009b2J\u202egnp.exe\u200b\U0010fffd\x7f"

// TestMachineFormatsOnATerminal: JSON and YAML reports, inventories and
// logs carry an agent's strings exactly, with every rune a terminal would
// act on or hide escaped, so that reading them on a terminal is safe.
func TestMachineFormatsOnATerminal(t *testing.T) {
	facts := hostileFacts()
	facts.Hostname = "h" + unprintable
	facts.Kernel = hostileMix + unprintable
	facts.OS.PrettyName = unprintable
	keyFile, port := startHostileAgent(t, facts)
	target := "127.0.0.1:" + strconv.Itoa(port)
	state := filepath.Join(t.TempDir(), "inventory.json")
	kernel := strings.ToValidUTF8(facts.Kernel, "\uFFFD")

	for _, args := range [][]string{
		{"ping", "--network-key", keyFile, "-o", "json", target},
		{"ping", "--network-key", keyFile, "-o", "yaml", target},
		{"probe", "--network-key", keyFile, "--connect", "--state", state, "-p", strconv.Itoa(port), "-o", "json", "127.0.0.1"},
		{"probe", "--network-key", keyFile, "--connect", "--state", state, "-p", strconv.Itoa(port), "-o", "yaml", "127.0.0.1"},
		{"inventory", "--state", state, "--list"},
		{"inventory", "--state", state, "-o", "yaml"},
	} {
		code, stdout, stderr := run(t, args...)
		if code != 0 {
			t.Fatalf("ifl %v: exit %d: %s", args, code, stderr)
		}
		checkTerminalSafe(t, strings.Join(args[:1], " ")+" "+args[len(args)-2], stdout)
		// The exact value is there, however it is escaped.
		var doc any
		var err error
		if slices.Contains(args, "yaml") {
			err = yaml.Unmarshal([]byte(stdout), &doc)
		} else {
			err = json.Unmarshal([]byte(stdout), &doc)
		}
		if err != nil {
			t.Fatalf("ifl %v: %v\n%s", args, err, stdout)
		}
		if !holds(doc, kernel) || !holds(doc, unprintable) {
			t.Errorf("ifl %v lost the exact strings:\n%s", args, stdout)
		}
	}

	var buf bytes.Buffer
	log := newLogger(&Env{Stderr: &buf}, "json")
	log.Warn().Str("hostname", facts.Hostname).Msg("conflict")
	checkTerminalSafe(t, "the JSON log", buf.String())
	var line map[string]any
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil || line["hostname"] != facts.Hostname {
		t.Errorf("the JSON log lost the hostname: %v %q", err, buf.String())
	}
}

// holds reports whether a decoded document holds the string s anywhere,
// as a value or as an Ansible unsafe string's.
func holds(doc any, s string) bool {
	switch v := doc.(type) {
	case string:
		return v == s
	case []any:
		return slices.ContainsFunc(v, func(e any) bool { return holds(e, s) })
	case map[string]any:
		for _, e := range v {
			if holds(e, s) {
				return true
			}
		}
	}
	return false
}
