package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/alecthomas/kong"

	"github.com/ifl-project/ifl/arpscan"
	"github.com/ifl-project/ifl/internal/controller/engine"
	"github.com/ifl-project/ifl/internal/support/caps"
	"github.com/ifl-project/ifl/synscan"
)

// grantHint is how an operator gives ifl the fast path.
const grantHint = "run ifl with sudo, or grant it once: sudo setcap cap_net_raw+ep $(command -v ifl)"

// rawHint adds to a raw socket's permission error how to grant the
// capability: the libraries say what failed, the command says what to do.
func rawHint(err error) error {
	if errors.Is(err, synscan.ErrPermission) || errors.Is(err, arpscan.ErrPermission) {
		return fmt.Errorf("%w: %s", err, grantHint)
	}
	return err
}

// rawAllowed reports whether the fast path may run: the process holds
// CAP_NET_RAW and the user did not ask for connect(). Without the
// capability it says so once, with how to grant it, unless the user chose
// connect() anyway.
func rawAllowed(env *Env, cmd string, forceConnect bool) bool {
	if forceConnect {
		return false
	}
	if ok, _ := caps.Has(caps.NetRaw); ok {
		return true
	}
	fmt.Fprintf(env.Stderr, "%s: no CAP_NET_RAW, so no raw ARP and SYN probes: using connect() to every address instead (slower). Grant it with sudo, or once with: sudo setcap cap_net_raw+ep $(command -v ifl); --connect silences this.\n", cmd)
	return false
}

// openEngine opens the engine of a probe or a scan: the fast path's
// sockets where the process may open them, and then CAP_NET_RAW is
// dropped (nothing that follows needs it, every round of --watch
// included); else the connect() path, which needs no capability.
func openEngine(env *Env, cmd string, addrs []netip.Addr, cfg engine.Config, forceConnect bool) (*engine.Engine, error) {
	if !rawAllowed(env, cmd, forceConnect) {
		return engine.NewConnect(addrs, cfg), nil
	}
	links, err := engine.Links()
	if err != nil {
		return nil, fmt.Errorf("%s: listing interfaces: %w", cmd, err)
	}
	e, err := engine.OpenRaw(addrs, links, cfg)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cmd, rawHint(err))
	}
	if err := dropAllCaps(env, cmd); err != nil {
		e.Close()
		return nil, err
	}
	for _, n := range e.Notes() {
		fmt.Fprintf(env.Stderr, "%s: %v\n", cmd, n)
	}
	return e, nil
}

// rawUser is a command that may open raw sockets, as its flags decide.
// Every other command needs no capability at all.
type rawUser interface {
	wantsRaw() bool
}

// keepCaps changes the process's capabilities: a variable so that the
// tests, which run in one process (and as root in CI), can see what each
// command asks for without losing their own.
var keepCaps = caps.KeepOnly

// dropAtStart is called once the command line is parsed, before the
// command reads a file or opens a socket: a command that may open raw
// sockets keeps CAP_NET_RAW alone (until they are open, see
// dropAllCaps), every other command and every other mode (connect(),
// broadcast) keeps nothing. Run with sudo, or as a binary given
// cap_net_raw+ep, the process holds no more than it uses. It returns
// whether anything is kept.
func dropAtStart(env *Env, kctx *kong.Context) (bool, error) {
	cmd := "ifl"
	if p := commandPath(kctx); len(p) > 0 {
		cmd = p[0]
	}
	var keep []int
	what := "its capabilities"
	if node := kctx.Selected(); node != nil && node.Target.CanAddr() {
		target := node.Target.Addr().Interface()
		if r, ok := target.(rawUser); ok && r.wantsRaw() {
			keep, what = append(keep, caps.NetRaw), "every capability but CAP_NET_RAW"
		}
		if s, ok := target.(stateUser); ok {
			if _, _, ok := stateOwner(s.stateFile()); ok {
				// Until becomeStateOwner is done with them.
				keep = append(keep, caps.SetGID, caps.SetUID, caps.SetPCap)
			}
		}
	}
	return len(keep) > 0, dropCaps(env, cmd, what, keep...)
}

// stateUser is a command that reads or writes the inventory state: at
// stateFile, or nowhere if that is "".
type stateUser interface {
	stateFile() string
}

// stateOwner returns the owner of the folder that holds the state at
// path when ifl runs as root and that folder exists and is not root's
// (the ifl-probe unit's /var/lib/ifl, owned by user ifl).
func stateOwner(path string) (uid, gid int, ok bool) {
	if path == "" || os.Geteuid() != 0 {
		return 0, 0, false
	}
	fi, err := os.Stat(filepath.Dir(path))
	if err != nil || !fi.IsDir() {
		return 0, 0, false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || st.Uid == 0 {
		return 0, 0, false
	}
	return int(st.Uid), int(st.Gid), true
}

// becomeUser changes the process's user: a variable, as keepCaps is.
var becomeUser = caps.Become

// becomeStateOwner makes root the owner of the state's folder (see
// stateOwner), keeping only the capabilities keep: uid 0 without
// CAP_DAC_OVERRIDE may not write in another user's folder, and a state
// that root wrote there as root would be root's, not the owner's. It is
// called once the files only root may read (the network key) are read,
// before the state is.
func becomeStateOwner(env *Env, cmd, path string, keep ...int) error {
	uid, gid, ok := stateOwner(path)
	if !ok {
		return nil
	}
	err := becomeUser(uid, gid, keep...)
	if errors.Is(err, caps.ErrUnsupported) {
		fmt.Fprintf(env.Stderr, "%s: warning: this build of ifl uses cgo and cannot become the owner (uid %d) of %s; build it with CGO_ENABLED=0 (make build)\n", cmd, uid, filepath.Dir(path))
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s: becoming uid %d, the owner of %s: %w", cmd, uid, filepath.Dir(path), err)
	}
	return nil
}

// dropAllCaps is called once the raw sockets are open: they keep working,
// and the process holds no capability for the rest of its run.
func dropAllCaps(env *Env, cmd string) error {
	return dropCaps(env, cmd, "CAP_NET_RAW once the sockets are open")
}

func dropCaps(env *Env, cmd, what string, keep ...int) error {
	err := keepCaps(keep...)
	if errors.Is(err, caps.ErrUnsupported) {
		// Only a binary built with cgo (go test -race) cannot change
		// every thread; the released one is static. Say so, every time.
		fmt.Fprintf(env.Stderr, "%s: warning: this build of ifl uses cgo and cannot drop %s; build it with CGO_ENABLED=0 (make build)\n", cmd, what)
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s: dropping %s: %w", cmd, what, err)
	}
	return nil
}

// permissionHint explains a permission error met by root: ifl gave up
// root's capabilities at start, CAP_DAC_OVERRIDE with them, so uid 0
// opens only what its own permission bits allow, as any user would. It
// names the owner of the file, or of the folder it is in, to run as.
func permissionHint(err error) error {
	var pe *fs.PathError
	if os.Geteuid() != 0 || !errors.Is(err, fs.ErrPermission) || !errors.As(err, &pe) {
		return err
	}
	as := "as the file's owner"
	for _, p := range []string{pe.Path, filepath.Dir(pe.Path)} {
		fi, serr := os.Stat(p)
		if serr != nil {
			continue
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid != 0 {
			name := strconv.FormatUint(uint64(st.Uid), 10)
			if u, lerr := user.LookupId(name); lerr == nil {
				name = u.Username
			} else {
				name = "#" + name
			}
			as = fmt.Sprintf("as its owner (sudo -u %s ifl ...)", name)
		}
		break
	}
	return fmt.Errorf("%w (ifl gives up root's capabilities when it starts, so as root it opens only what user root itself may, as the file's permission bits say: run it %s, or use a file root owns)", err, as)
}
