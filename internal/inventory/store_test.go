package inventory

import (
	"os"
	"path/filepath"
	"strings"
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
