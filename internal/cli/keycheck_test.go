package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestKeycheck(t *testing.T) {
	dir := t.TempDir()
	nk, nk2, ak := filepath.Join(dir, "network.key"), filepath.Join(dir, "other.key"), filepath.Join(dir, "agent.key")
	for _, args := range [][]string{{"keygen", nk}, {"keygen", nk2}, {"keygen", "--agent", ak}} {
		if code, _, stderr := run(t, args...); code != 0 {
			t.Fatalf("%v: %d %s", args, code, stderr)
		}
	}
	code, out, stderr := run(t, "keycheck", nk, nk2)
	if code != 0 {
		t.Fatalf("keycheck: %d %s", code, stderr)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], nk+"\t") || !strings.HasPrefix(lines[1], nk2+"\t") {
		t.Fatalf("keycheck printed %q", out)
	}
	id := strings.TrimPrefix(lines[0], nk+"\t")
	if len(id) != 32 || id == strings.TrimPrefix(lines[1], nk2+"\t") {
		t.Fatalf("ids %q: want 32 hex digits, different for different keys", lines)
	}
	key, _ := os.ReadFile(nk)
	if strings.Contains(string(key), id) {
		t.Fatal("the id is part of the key file")
	}

	// The same key with other white space has the same id.
	same := filepath.Join(dir, "same.key")
	if err := os.WriteFile(same, append([]byte("  "), key...), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, out2, _ := run(t, "keycheck", same); out2 != same+"\t"+id+"\n" {
		t.Fatalf("keycheck %s = %q, want id %s", same, out2, id)
	}

	code, out, _ = run(t, "keycheck", "--agent", ak)
	if code != 0 || len(strings.TrimPrefix(strings.TrimSpace(out), ak+"\t")) != 32 {
		t.Fatalf("keycheck --agent: %d %q", code, out)
	}

	garbage := filepath.Join(dir, "garbage")
	if err := os.WriteFile(garbage, []byte("hello\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	exposed := filepath.Join(dir, "exposed.key")
	if err := os.WriteFile(exposed, key, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"keycheck", garbage}, "not a network key"},
		{[]string{"keycheck", ak}, "this is an agent key file, not a network key"},
		{[]string{"keycheck", "--agent", nk}, "this is a network key file, not an agent key"},
		{[]string{"keycheck", exposed}, "chmod 600"},
		{[]string{"keycheck", filepath.Join(dir, "missing")}, "does not exist"},
		{[]string{"keycheck", nk, garbage}, "not a network key"},
	} {
		code, _, stderr := run(t, tc.args...)
		if code != 2 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", tc.args, code, stderr, tc.want)
		}
	}
}
