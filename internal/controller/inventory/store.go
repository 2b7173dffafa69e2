package inventory

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// SystemPath is the controller's state: root's, and ifl-probe.service's.
const SystemPath = "/var/lib/ifl/inventory.json"

// DefaultPath is where a probe keeps the state: SystemPath for root, else
// $XDG_STATE_HOME/ifl (~/.local/state/ifl).
func DefaultPath() string {
	if os.Geteuid() == 0 {
		return SystemPath
	}
	return userPath()
}

// ReadPath is the state a reader (ifl inventory, Ansible) looks at by
// default: a user's own state where one exists, else the controller's,
// SystemPath, which a user may be allowed to read.
func ReadPath() string {
	if os.Geteuid() == 0 {
		return SystemPath
	}
	own := userPath()
	if _, err := os.Lstat(own); err != nil {
		if _, err := os.Lstat(SystemPath); err == nil {
			return SystemPath
		}
	}
	return own
}

func userPath() string {
	dir := os.Getenv("XDG_STATE_HOME")
	if dir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			home = "."
		}
		dir = filepath.Join(home, ".local", "state")
	}
	return filepath.Join(dir, "ifl", "inventory.json")
}

// ErrForeign is returned for a file that exists but is not an ifl
// inventory, or is damaged.
var ErrForeign = errors.New("not an ifl inventory")

// ErrNoState is returned by LoadExisting for a state file that does not
// exist: for a reader that is no fleet to show, not an empty fleet.
var ErrNoState = errors.New("no inventory state")

// LoadExisting reads the state at path, which must exist.
func LoadExisting(path string) (*State, error) {
	if _, err := os.Lstat(path); errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("inventory: %w at %s", ErrNoState, path)
	}
	return Load(path)
}

// Load reads the state at path; a missing file is an empty state. A
// symbolic link is refused: the state is replaced by rename on every
// write, which would turn the link into a file, and a link planted in a
// shared directory must not make ifl read, or lock, another file.
func Load(path string) (*State, error) {
	f, err := openNoFollow(path, os.O_RDONLY, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return New(), nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil {
		return nil, fmt.Errorf("inventory: %w", err)
	} else if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("inventory %s: %w: not a regular file", path, ErrForeign)
	}
	return readState(path, f)
}

// readState reads the state in f, at path: by the fast decoder, or when
// it gives up (a document ifl did not write), by encoding/json from the
// start, which then says what is wrong.
func readState(path string, f io.ReadSeeker) (*State, error) {
	if s, err := decodeState(f); err == nil {
		return finish(path, s)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("inventory: %w", err)
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("inventory: %w", err)
	}
	return parse(path, b)
}

// openNoFollow opens path unless its last component is a symbolic link.
func openNoFollow(path string, flag int, perm os.FileMode) (*os.File, error) {
	// O_NONBLOCK: opening a FIFO for reading would wait for a writer,
	// before the caller could see that it is no regular file; on a
	// regular file it changes nothing.
	f, err := os.OpenFile(path, flag|unix.O_NOFOLLOW|unix.O_NONBLOCK, perm)
	if errors.Is(err, unix.ELOOP) {
		return nil, fmt.Errorf("inventory: %s is a symbolic link: refused (point --state at the file itself)", path)
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("inventory: %w", err)
	}
	return f, err
}

func parse(path string, b []byte) (*State, error) {
	if len(bytes.TrimSpace(b)) == 0 {
		return nil, fmt.Errorf("inventory %s: %w: the file is empty (move it away to start afresh)", path, ErrForeign)
	}
	var s State
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("inventory %s: %w: %v (the file is left as it is; move it away to start afresh)", path, ErrForeign, err)
	}
	return finish(path, &s)
}

// finish checks a decoded state and gives names to its hosts.
func finish(path string, s *State) (*State, error) {
	if s.Format != Format {
		return nil, fmt.Errorf("inventory %s: %w: format %q (the file is left as it is; use another --state)", path, ErrForeign, s.Format)
	}
	if s.Version != Version {
		return nil, fmt.Errorf("inventory %s: version %d, this ifl reads version %d", path, s.Version, Version)
	}
	if s.Hosts == nil {
		s.Hosts = map[string]*Host{}
	}
	if err := s.validate(); err != nil {
		return nil, fmt.Errorf("inventory %s: %w: %v (the file is left as it is: ifl writes no such record; fix or remove it)", path, ErrForeign, err)
	}
	// A state written before names were kept gets them here, the
	// ones it had: suffixes of 8 hex digits, as they were then.
	legacy := len(s.Hosts) > 0
	for _, h := range s.Hosts {
		if h.Name != "" {
			legacy = false
		}
	}
	if legacy {
		s.assign(legacySuffix)
	}
	s.assignNames()
	return s, nil
}

// Update runs fn on the state at path under an exclusive lock and, if fn
// succeeds, writes the state back atomically. Two processes updating one
// file take turns; neither loses the other's changes.
func Update(path string, fn func(*State) error) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("inventory: %w", err)
	}
	mode := fileMode(dir)
	// The lock is a file of its own: the state file is replaced by
	// rename, and a lock on a replaced inode would lock nothing. Read
	// only: flock needs no more, and in a group's directory a lock that
	// root made must still open for the group's service.
	lock, err := openNoFollow(path+".lock", os.O_CREATE|os.O_RDONLY, mode)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			err = fmt.Errorf("inventory: %w", err)
		}
		return err
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("inventory: locking %s: %w", path, err)
	}
	defer unix.Flock(int(lock.Fd()), unix.LOCK_UN)

	s, err := Load(path)
	if err != nil {
		return err
	}
	if err := fn(s); err != nil {
		return err
	}
	if err := write(path, s, mode); err != nil {
		return err
	}
	s.committed(nil)
	return nil
}

// fileMode is the mode of the files Update writes in dir: readable by
// dir's group when dir is (the controller's /var/lib/ifl is 2750 ifl:ifl,
// so that the group's Ansible users read the inventory), else private.
// A set-group-ID dir gives the files its group.
func fileMode(dir string) os.FileMode {
	if fi, err := os.Stat(dir); err == nil && fi.Mode().Perm()&0o040 != 0 {
		return 0o640
	}
	return 0o600
}

// write replaces path with s: a temporary file in the same directory,
// synced, renamed over path, and the directory synced, so that a crash
// leaves the old file or the new one, whole.
func write(path string, s *State, mode os.FileMode) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".inventory-*.tmp")
	if err != nil {
		return fmt.Errorf("inventory: %w", err)
	}
	defer os.Remove(tmp.Name()) // after a successful rename, a no-op
	// By descriptor, before a byte is written: a name can be swapped
	// between a close and a chmod.
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fmt.Errorf("inventory: writing %s: %w", path, err)
	}
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("inventory: writing %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("inventory: writing %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("inventory: writing %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("inventory: %w", err)
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
