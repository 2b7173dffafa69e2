package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/ifl-project/ifl/internal/controller/verify"
	"github.com/ifl-project/ifl/proto"
)

// loadNetworkKey reads a network key file; a key this user may not read
// is an error that says whose it is and what to do.
func loadNetworkKey(path string) (proto.NetworkKey, error) {
	k, err := proto.LoadNetworkKey(path)
	return k, keyPermission(path, err, os.Geteuid())
}

// keyPermission explains a key file that user euid, not root, may not
// read: key files are private to their owner (mode 0600), as they must
// be. Root's own case is permissionHint's.
func keyPermission(path string, err error, euid int) error {
	if err == nil || euid == 0 || !errors.Is(err, fs.ErrPermission) {
		return err
	}
	owner := "its owner"
	if fi, serr := os.Stat(path); serr == nil {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			owner = "its owner, " + userName(st.Uid) + ","
		}
	}
	return fmt.Errorf("key file %s: permission denied: a key file is readable by %s only (mode 0600): run ifl as that user (sudo), or give --network-key a copy of your own (mode 0600)", path, owner)
}

// userName is the name of uid, or #uid.
func userName(uid uint32) string {
	id := strconv.FormatUint(uint64(uid), 10)
	if u, err := user.LookupId(id); err == nil {
		return u.Username
	}
	return "#" + id
}

// rejectedMost is the problem of a round in which every open agent port,
// or most of them, refused the handshake: the same refusal from most of
// a fleet is this controller's key or clock, not theirs. nil otherwise.
func rejectedMost(s summary, keyFile string, v *verify.Verifier) error {
	open := s.Agents + s.Busy + s.Rejected + s.NotAgents
	if s.Rejected == 0 || 2*s.Rejected <= open {
		return nil
	}
	what := fmt.Sprintf("all %d addresses", open)
	if s.Rejected < open {
		what = fmt.Sprintf("%d of the %d addresses", s.Rejected, open)
	}
	if open == 1 {
		what = "the one address"
	}
	return fmt.Errorf("%s with port %d open rejected the handshake: the network key %s (id %s) is likely not the fleet's, or this host's clock is more than %v off the agents'; compare 'ifl keycheck %s' here with the same on an agent (the ids must match), and check both clocks (timedatectl)",
		what, v.Port, keyFile, networkKeyID(v.Key), proto.MaxSkew, keyFile)
}

// keyDir makes sure the folder of a key file about to be created is
// there, as ssh-keygen makes ~/.ssh: the folder itself, mode 0700, when
// its parent exists; never a tree of folders, which a mistyped path
// would create. It returns the folder it created, "" if none. keygen and
// the agent, which creates its key on first start, share it: both make
// /etc/ifl alike, and refuse alike.
func keyDir(path string) (string, error) {
	dir := filepath.Dir(path)
	fi, err := os.Stat(dir)
	switch {
	case err == nil && fi.IsDir():
		return "", nil
	case err == nil:
		return "", fmt.Errorf("writing key %s: %s is not a directory", path, dir)
	case !errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("writing key %s: %w", path, err)
	}
	if pi, err := os.Stat(filepath.Dir(dir)); err != nil || !pi.IsDir() {
		return "", fmt.Errorf("writing key %s: no directory %s (create it first: mkdir -p -m 0700 %s)", path, dir, dir)
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		return "", fmt.Errorf("writing key %s: %w", path, err)
	}
	return dir, nil
}
