package inventory

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSymlinksAreRefused: a link planted at the lock or at the state is
// neither followed nor replaced, and the file it points at is untouched.
func TestSymlinksAreRefused(t *testing.T) {
	for _, at := range []string{".lock", ""} {
		t.Run("link at inventory.json"+at, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "inventory.json")
			victim := filepath.Join(dir, "victim")
			if err := os.WriteFile(victim, []byte("precious"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(victim, path+at); err != nil {
				t.Fatal(err)
			}
			err := Update(path, func(s *State) error {
				s.Apply(time.Now(), []Observation{obs("aaaa", "198.18.0.5", "web", "m")}, all, true)
				return nil
			})
			if err == nil || !strings.Contains(err.Error(), "symbolic link") {
				t.Errorf("Update through a link: %v, want a refusal", err)
			}
			if b, _ := os.ReadFile(victim); string(b) != "precious" {
				t.Errorf("the link's target was changed: %q", b)
			}
			if fi, err := os.Lstat(path + at); err != nil || fi.Mode()&os.ModeSymlink == 0 {
				t.Errorf("the link was replaced: %v %v", fi, err)
			}
		})
	}
	// A dangling link at the lock must not create its target either.
	dir := t.TempDir()
	path := filepath.Join(dir, "inventory.json")
	target := filepath.Join(dir, "created-by-ifl")
	os.Symlink(target, path+".lock")
	if err := Update(path, func(*State) error { return nil }); err == nil {
		t.Error("Update with a dangling link at the lock succeeded")
	}
	if _, err := os.Lstat(target); err == nil {
		t.Error("the lock link's target was created")
	}
	if _, err := Load(filepath.Join(dir, "missing.json")); err != nil {
		t.Errorf("a missing state is an empty one: %v", err)
	}
}

// TestGroupReadableState: in a directory its group may read (the
// controller's /var/lib/ifl, 2750 ifl:ifl), the state and its lock are
// readable by the group too; elsewhere they are private.
func TestGroupReadableState(t *testing.T) {
	for _, tc := range []struct {
		dirMode, want os.FileMode
	}{
		{0o700, 0o600},
		{0o750, 0o640},
		{0o2750, 0o640},
	} {
		dir := filepath.Join(t.TempDir(), "ifl")
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(dir, tc.dirMode); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, "inventory.json")
		for range 2 { // created, then replaced
			if err := Update(path, func(*State) error { return nil }); err != nil {
				t.Fatal(err)
			}
			for _, f := range []string{path, path + ".lock"} {
				fi, err := os.Stat(f)
				if err != nil {
					t.Fatal(err)
				}
				if got := fi.Mode().Perm(); got != tc.want {
					t.Errorf("directory %04o: %s has mode %04o, want %04o", tc.dirMode, filepath.Base(f), got, tc.want)
				}
			}
		}
	}
}

// TestFIFOStateIsRefused: a FIFO at the state's path is refused at once,
// not waited on.
func TestFIFOStateIsRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "inventory.json")
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	if _, err := Load(path); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("err = %v", err)
	}
}
