package cli

import (
	"fmt"

	"github.com/ifl-project/ifl/internal/caps"
)

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
// socket is opened.
func keepOnlyNetRaw() { _ = caps.KeepOnly(caps.NetRaw) }

// dropAllCaps is called once the raw sockets are open: they keep working,
// and the process holds no capability for the rest of its run.
func dropAllCaps() { _ = caps.KeepOnly() }
