package cli

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ifl-project/ifl/internal/controller/inventory"
	"github.com/ifl-project/ifl/internal/support/untrusted"
	"github.com/ifl-project/ifl/proto"
)

// TestInventoryName: a re-imaged db1 (a new identity) is given its old
// name once the old identity is pruned, at the operator's word; what
// name refuses, it refuses with what to do.
func TestInventoryName(t *testing.T) {
	const (
		oldID = "aaaaaaaa00000000000000000000000a"
		newID = "bbbbbbbb00000000000000000000000b"
		webID = "cccccccc00000000000000000000000c"
	)
	state := filepath.Join(t.TempDir(), "inventory.json")
	now := time.Now().UTC()
	seen := func(at time.Time, hosts ...[3]string) {
		t.Helper()
		err := inventory.Update(state, func(s *inventory.State) error {
			var obs []inventory.Observation
			for _, h := range hosts {
				obs = append(obs, inventory.Observation{Identity: h[0], Addr: netip.MustParseAddr(h[1]), Port: 7440, Facts: &proto.Facts{Hostname: h[2]}})
			}
			s.Apply(at, obs, func(netip.Addr) bool { return false }, true)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for i := range 2 {
		seen(now.Add(time.Duration(i-72)*time.Hour), [3]string{oldID, "198.18.0.5", "db1"})
	}
	for i := range 2 {
		seen(now.Add(time.Duration(i-1)*time.Hour), [3]string{newID, "198.18.0.5", "db1"}, [3]string{webID, "198.18.0.6", "web"})
	}
	code, _, stderr := run(t, "inventory", "--state", state, "--prune", "2d")
	if code != 0 || !strings.Contains(stderr, "pruned: db1 ("+oldID+")") {
		t.Fatalf("prune: exit %d: %s", code, stderr)
	}

	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"name", "db1", "bbbbbbbb"}, 2, `ifl: inventory: name "db1" is reserved until `},
		{[]string{"name", "web", "bbbbbbbb"}, 2, `ifl: inventory: name "web" is held by web (identity ` + webID + `, last seen `},
		{[]string{"name", "localhost", "bbbbbbbb"}, 2, `ifl: inventory: name "localhost" means something else to Ansible`},
		{[]string{"name", "db\x1b[2J", "bbbbbbbb"}, 2, `ifl: inventory: name "db\\x1b[2J" is not a host name`},
		{[]string{"name", "db1", "bbbb"}, 2, `ifl: identity "bbbb": want an identity, or its first 8 to 32 hex digits`},
		{[]string{"name", "db1", "dddddddd"}, 2, `ifl: inventory: no host's identity starts with dddddddd (ifl inventory lists them)`},
		{[]string{"name", "db1"}, 2, `ifl: name takes a name and an identity: ifl inventory name db1 5d0c1e22 gives db1 to the host whose identity starts with 5d0c1e22`},
		{[]string{"--force"}, 2, `ifl: <name>, <identity> and --force go with the action name: ifl inventory name NAME IDENTITY`},
		{[]string{"name", "db1", "bbbbbbbb", "--list"}, 2, `ifl: name changes the inventory and shows nothing; --list is for showing it: run it on its own`},
	} {
		before, _ := os.ReadFile(state)
		code, stdout, stderr := run(t, append([]string{"inventory", "--state", state}, c.args...)...)
		if code != c.code || stdout != "" || !strings.HasPrefix(stderr, c.want) || strings.ContainsAny(stderr, "\x1b") {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want exit %d and %q", c.args, code, stdout, stderr, c.code, c.want)
		}
		if after, _ := os.ReadFile(state); string(after) != string(before) {
			t.Errorf("%q: a refusal changed the state", c.args)
		}
	}
	code, _, stderr = run(t, "inventory", "--state", state, "name", "db1", "bbbbbbbb")
	if code != 2 || !strings.Contains(stderr, "which held it until it was pruned on ") || !strings.HasSuffix(stderr, ": --force gives it to "+newID+" anyway\n") {
		t.Errorf("reserved: %q", stderr)
	}
	code, _, stderr = run(t, "inventory", "--state", state, "name", "web", "bbbbbbbb")
	if code != 2 || !strings.HasSuffix(stderr, ": name held by another host: --force takes it from that host, which gets another name by the rules\n") {
		t.Errorf("held: %q", stderr)
	}

	code, _, stderr = run(t, "inventory", "--state", state, "name", "db1", "BBBBBBBB", "--force")
	want := "named:     db1 (" + newID + ", was db1-bbbbbbbb00000000)\nwarning:   db1 was reserved for identity " + oldID + " (pruned on "
	if code != 0 || !strings.HasPrefix(stderr, want) {
		t.Fatalf("name: exit %d, %q, want %q", code, stderr, want)
	}
	code, stdout, _ := run(t, "inventory", "--state", state, "--host", "db1")
	if code != 0 || !strings.Contains(stdout, `"ifl_identity": "`+newID+`"`) {
		t.Errorf("--host db1: exit %d\n%s", code, stdout)
	}
	// A probe keeps it.
	seen(now, [3]string{newID, "198.18.0.5", "db1"})
	if s, err := inventory.Load(state); err != nil || s.Hosts[newID].Name != "db1" {
		t.Fatalf("after a probe: %v %v", s, err)
	}

	code, _, stderr = run(t, "inventory", "--state", state, "name", "web", "bbbbbbbb", "--force")
	want = "named:     web (" + newID + ", was db1)\nrenamed:   web-cccccccc00000000 (" + webID + "), was web\n"
	if code != 0 || stderr != want {
		t.Errorf("forced: exit %d, %q, want %q", code, stderr, want)
	}
}

// TestHostileStateIsRefused: a state that holds what ifl never writes (a
// template as an address, escapes in a key) is refused with its place,
// escaped, and nothing of it reaches Ansible or the terminal.
func TestHostileStateIsRefused(t *testing.T) {
	for _, c := range []struct{ body, want string }{
		{`{"format": "ifl-inventory", "version": 1, "hosts": {"aaaaaaaa00000000000000000000000a": {"identity": "aaaaaaaa00000000000000000000000a", "ip": "{{ lookup('pipe', 'id') }}", "port": 7440, "first_seen": "2026-11-01T12:00:00Z", "last_seen": "2026-11-01T12:00:00Z"}}}`,
			`: not an ifl inventory: host "aaaaaaaa00000000000000000000000a": field "ip": "{{ lookup('pipe', 'id') }}" is not an address as ifl writes one: want an IP address (the file is left as it is: ifl writes no such record; fix or remove it)`},
		{`{"format": "ifl-inventory", "version": 1, "hosts": {"\u001b]0;owned\u0007\r\n": {"identity": "x"}}}`,
			`: not an ifl inventory: host "\x1b]0;owned\a\r\n": the key is not an identity: want 32 hex digits in lower case (the file is left as it is: ifl writes no such record; fix or remove it)`},
	} {
		state := filepath.Join(t.TempDir(), "inventory.json")
		if err := os.WriteFile(state, []byte(c.body), 0o600); err != nil {
			t.Fatal(err)
		}
		for _, args := range [][]string{{"--list"}, {"--host", "x"}, {"-o", "yaml"}, {}, {"--prune", "1d"}, {"name", "db1", "aaaaaaaa"}} {
			code, stdout, stderr := run(t, append([]string{"inventory", "--state", state}, args...)...)
			// Errors reach the terminal through untrusted.Text, the
			// key quoted before: its backslashes are doubled.
			want := "ifl: " + untrusted.Text("inventory "+state+c.want) + "\n"
			if code != 2 || stdout != "" || stderr != want {
				t.Errorf("%q: exit %d, stdout %q, stderr\n%q\nwant\n%q", args, code, stdout, stderr, want)
			}
		}
	}
}
