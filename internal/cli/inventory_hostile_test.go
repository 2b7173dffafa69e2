package cli

import (
	"encoding/json"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/ifl-project/ifl/internal/controller/inventory"
	"github.com/ifl-project/ifl/internal/testbed/agenttest"
	"github.com/ifl-project/ifl/proto"
)

// TestHostileAgentOnTerminal: a hostile agent's hostname and label keys
// reach people escaped, Ansible marked unsafe, and JSON reports exact;
// the host goes by the name ifl gave it.
func TestHostileAgentOnTerminal(t *testing.T) {
	const hostname = "localhost\x1b]0;owned\a\r\nnew:       fake at 10.0.0.1"
	a := agenttest.StartWith(t, agenttest.Options{Facts: &proto.Facts{
		Hostname: hostname, MachineID: "m", OS: proto.OSRelease{PrettyName: "{{ lookup('pipe', 'id') }}"},
		Labels: map[string]string{"role": "all", "bad\x1b[2Jkey": "x", "ifl": "all"},
	}})
	keyFile := filepath.Join(t.TempDir(), "network.key")
	if err := proto.WriteKeyFile(keyFile, a.Key, false); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(t.TempDir(), "inventory.json")
	id := a.Identity.Fingerprint()
	name := "ifl-" + id[:16]

	code, stdout, stderr := run(t, "probe", "--network-key", keyFile, "--connect", "--state", state, "-p", strconv.Itoa(a.Port), "127.0.0.1", "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if strings.ContainsAny(stderr, "\x1b\a\r") || strings.Count(stderr, "\n") != 3 {
		t.Errorf("control characters or forged lines reached the terminal:\n%q", stderr)
	}
	for _, want := range []string{
		"new:       " + name + " at 127.0.0.1 (" + id + "), hostname localhost\\x1b]0;owned\\a\\r\\nnew:       fake at 10.0.0.1\n",
		"warning:   " + name + " (" + id + "): 2 labels dropped: bad\\x1b[2Jkey (bad key: want 1 to 64 of A-Z a-z 0-9 _ . -), ifl (reserved key: groups ifl_* are ifl's)\n",
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	var rep struct {
		Changes inventory.Changes `json:"changes"`
	}
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Changes.New) != 1 || rep.Changes.New[0].Hostname != hostname || rep.Changes.New[0].Name != name ||
		len(rep.Changes.Warnings) != 1 || rep.Changes.Warnings[0].Dropped[0].Key != "bad\x1b[2Jkey" {
		t.Errorf("JSON changes are not exact: %+v", rep.Changes)
	}

	code, stdout, stderr = run(t, "inventory", "--state", state)
	if code != 0 || strings.ContainsAny(stdout+stderr, "\x1b\a\r") || !strings.HasPrefix(strings.Split(stdout, "\n")[1], name+"  127.0.0.1") ||
		!strings.Contains(stdout, " role_all\n") {
		t.Errorf("table: exit %d\n%q", code, stdout)
	}
	code, stdout, _ = run(t, "inventory", "--state", state, "--host", name)
	if code != 0 || !strings.Contains(stdout, `"ifl_os": {`+"\n"+`    "__ansible_unsafe": "{{ lookup('pipe', 'id') }}"`) {
		t.Errorf("--host: exit %d\n%s", code, stdout)
	}
	if code, _, _ := run(t, "inventory", "--state", state, "--host", "localhost"); code != 1 {
		t.Errorf("an agent answers to localhost: exit %d", code)
	}
}

// TestChangeLinesAreEscaped: every agent string in a change line is
// escaped, and lines name hosts by their inventory names.
func TestChangeLinesAreEscaped(t *testing.T) {
	ch := &inventory.Changes{
		Renamed: []inventory.HostChange{{Identity: "aaaa", Name: "vm-aaaa", Hostname: "x\x1b[2J", OldName: "vm", From: "vm\r", To: "x\x1b[2J"}},
		Unseen:  []inventory.HostChange{{Identity: "bbbb", Name: "vm", Hostname: "vm", From: "198.18.0.1"}},
		Warnings: []inventory.Warning{{Kind: inventory.KindMachineID, Identity: "cccc", Addr: "198.18.0.3",
			OtherIdentity: "dddd", OtherHostname: "evil\n\x07"}},
	}
	var out, errb strings.Builder
	printChanges(&Env{Stdout: &out, Stderr: &errb}, ch)
	want := "renamed:   vm-aaaa: hostname vm\\r -> x\\x1b[2J (aaaa, was vm)\n" +
		"not seen:  vm at 198.18.0.1, for 0s\n" +
		"warning:   machine-id of hostname evil\\n\\a (dddd) now answers with identity cccc from 198.18.0.3: a re-imaged host, or a cloned VM\n"
	if errb.String() != want {
		t.Errorf("got\n%s\nwant\n%s", errb.String(), want)
	}
}
