package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/ifl-project/ifl/internal/support/caps"
)

// TestMain keeps the test process's own capabilities: every command asks
// keepCaps for what it keeps, and the tests record that instead (the
// end-to-end tests check the real binary's through /proc).
func TestMain(m *testing.M) {
	keepCaps = func(...int) error { return nil }
	os.Exit(m.Run())
}

// TestCommandsDropCapabilities checks what each command and mode keeps
// when it starts: CAP_NET_RAW (13) where it may open raw sockets, nothing
// anywhere else.
func TestCommandsDropCapabilities(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "network.key")
	if code, _, stderr := run(t, "keygen", key); code != 0 {
		t.Fatalf("keygen: %d %s", code, stderr)
	}
	state := filepath.Join(dir, "inventory.json")
	for _, tc := range []struct {
		args []string
		keep []int
	}{
		{[]string{"version"}, nil},
		{[]string{"keygen", filepath.Join(dir, "other.key")}, nil},
		{[]string{"keycheck", key}, nil},
		{[]string{"inventory", "--state", state}, nil},
		{[]string{"agent", "--network-key", key, "--port", "0"}, nil},
		{[]string{"ping", "--network-key", key, "--timeout", "1ms", "127.0.0.1:1"}, nil},
		{[]string{"scan", "--connect", "-p", "1", "--timeout", "1ms", "127.0.0.1"}, nil},
		{[]string{"probe", "--connect", "--network-key", key, "--no-state", "-p", "1", "--timeout", "1ms", "127.0.0.1"}, nil},
		{[]string{"probe", "--broadcast", "--network-key", key, "--no-state", "198.18.0.0/24"}, nil},
		{[]string{"scan", "-p", "1", "--timeout", "1ms", "127.0.0.1"}, []int{13}},
		{[]string{"probe", "--network-key", key, "--no-state", "-p", "1", "--timeout", "1ms", "127.0.0.1"}, []int{13}},
		{[]string{"arp-scan", "nosuch0"}, []int{13}},
	} {
		var asked [][]int
		keepCaps = func(keep ...int) error {
			asked = append(asked, slices.Clone(keep))
			return nil
		}
		run(t, tc.args...)
		if len(asked) == 0 || !slices.Equal(asked[0], tc.keep) {
			t.Errorf("ifl %v kept %v at start; want %v", tc.args, asked, tc.keep)
		}
		// Whatever a command keeps at start, it keeps no more later.
		for _, k := range asked[min(1, len(asked)):] {
			if len(k) != 0 {
				t.Errorf("ifl %v then kept %v; want nothing", tc.args, k)
			}
		}
	}
	keepCaps = func(...int) error { return nil }
}

// TestRootBecomesTheStateOwner: as root, a probe or an inventory whose
// state is in another user's folder keeps what changing user needs at
// start, then becomes that user keeping only what it uses.
func TestRootBecomesTheStateOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: only root changes user")
	}
	dir := t.TempDir()
	key := filepath.Join(dir, "network.key")
	if code, _, stderr := run(t, "keygen", key); code != 0 {
		t.Fatalf("keygen: %d %s", code, stderr)
	}
	owned := filepath.Join(dir, "owned")
	if err := os.Mkdir(owned, 0o2750); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(owned, 65534, 65533); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(owned, "inventory.json")
	defer func() {
		keepCaps = func(...int) error { return nil }
		becomeUser = caps.Become
	}()
	for _, tc := range []struct {
		args       []string
		start, end []int
	}{
		{[]string{"probe", "--network-key", key, "--state", state, "-p", "1", "--timeout", "1ms", "127.0.0.1"}, []int{13, 6, 7, 8}, []int{13}},
		{[]string{"probe", "--connect", "--network-key", key, "--state", state, "-p", "1", "--timeout", "1ms", "127.0.0.1"}, []int{6, 7, 8}, nil},
		{[]string{"inventory", "--state", state}, []int{6, 7, 8}, nil},
		{[]string{"probe", "--connect", "--network-key", key, "--state", filepath.Join(dir, "inventory.json"), "-p", "1", "--timeout", "1ms", "127.0.0.1"}, nil, nil},
	} {
		var start []int
		var became []string
		keepCaps = func(keep ...int) error {
			if start == nil {
				start = append([]int{}, keep...)
			}
			return nil
		}
		becomeUser = func(uid, gid int, keep ...int) error {
			became = append(became, fmt.Sprint(uid, gid, keep))
			return nil
		}
		run(t, tc.args...)
		if !slices.Equal(start, tc.start) && !(len(start) == 0 && len(tc.start) == 0) {
			t.Errorf("ifl %v kept %v at start; want %v", tc.args, start, tc.start)
		}
		var want []string
		if tc.start != nil {
			want = []string{fmt.Sprint(65534, 65533, tc.end)}
		}
		if !slices.Equal(became, want) {
			t.Errorf("ifl %v became %q; want %q", tc.args, became, want)
		}
	}
}
