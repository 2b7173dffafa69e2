package cli

import (
	"errors"
	"fmt"

	"github.com/ifl-project/ifl/arpscan"
	"github.com/ifl-project/ifl/internal/caps"
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

// keepOnlyNetRaw drops every capability but CAP_NET_RAW: a controller run
// with sudo keeps only what raw sockets need. It is called before any
// socket is opened. A failure is an error: the user was promised a
// process that holds nothing more.
func keepOnlyNetRaw(env *Env, cmd string) error {
	return dropCaps(env, cmd, "every capability but CAP_NET_RAW", caps.NetRaw)
}

// dropAllCaps is called once the raw sockets are open: they keep working,
// and the process holds no capability for the rest of its run.
func dropAllCaps(env *Env, cmd string) error {
	return dropCaps(env, cmd, "CAP_NET_RAW once the sockets are open")
}

func dropCaps(env *Env, cmd, what string, keep ...int) error {
	err := caps.KeepOnly(keep...)
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
