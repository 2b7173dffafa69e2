package proto

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestLoadKeyRefusesExposedFiles(t *testing.T) {
	k, err := NewNetworkKey()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		mode    os.FileMode
		refused bool
	}{
		{0o600, false},
		{0o400, false},
		{0o640, true},
		{0o604, true},
		{0o620, true},
		{0o644, true},
	} {
		dir := t.TempDir()
		path := filepath.Join(dir, "network.key")
		if err := WriteKeyFile(path, k, false); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, tc.mode); err != nil {
			t.Fatal(err)
		}
		got, err := LoadNetworkKey(path)
		if !tc.refused {
			if err != nil || got != k {
				t.Errorf("mode %04o: %v", tc.mode, err)
			}
			continue
		}
		if !errors.Is(err, ErrKeyExposed) {
			t.Errorf("mode %04o: err = %v, want ErrKeyExposed", tc.mode, err)
			continue
		}
		if want := "chmod 600 " + path; !strings.Contains(err.Error(), want) {
			t.Errorf("mode %04o: %q does not say %q", tc.mode, err, want)
		}
		// The same file handed over as a systemd credential is fine:
		// systemd sets the mode there.
		t.Setenv("CREDENTIALS_DIRECTORY", dir)
		if _, err := LoadNetworkKey(path); err != nil {
			t.Errorf("mode %04o as a credential: %v", tc.mode, err)
		}
		t.Setenv("CREDENTIALS_DIRECTORY", filepath.Join(dir, "other"))
		if _, err := LoadNetworkKey(path); !errors.Is(err, ErrKeyExposed) {
			t.Errorf("mode %04o outside the credentials directory: err = %v", tc.mode, err)
		}
		t.Setenv("CREDENTIALS_DIRECTORY", "")
	}
}

func TestLoadIdentityRefusesExposedFile(t *testing.T) {
	id, err := NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "agent.key")
	if err := WriteKeyFile(path, id, false); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadIdentity(path); !errors.Is(err, ErrKeyExposed) {
		t.Fatalf("err = %v, want ErrKeyExposed", err)
	}
	// An exposed key is refused, never replaced by a new one.
	if _, created, err := LoadOrCreateIdentity(path); created || !errors.Is(err, ErrKeyExposed) {
		t.Fatalf("LoadOrCreateIdentity: created %v, err %v", created, err)
	}
}

func TestLoadKeyRefusesADirectory(t *testing.T) {
	dir := t.TempDir()
	if _, err := LoadNetworkKey(dir); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("err = %v", err)
	}
}

// TestLoadKeyRefusesAFIFO: a FIFO is refused at once, not waited on.
func TestLoadKeyRefusesAFIFO(t *testing.T) {
	path := filepath.Join(t.TempDir(), "network.key")
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	if _, err := LoadNetworkKey(path); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("err = %v", err)
	}
}
