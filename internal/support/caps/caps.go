// Package caps answers whether this process holds a Linux capability in
// its effective set, by asking the kernel (capget), never by looking at
// the user id: root without CAP_NET_RAW cannot open a raw socket, and an
// unprivileged binary with file capabilities can.
package caps

// NetRaw is CAP_NET_RAW: raw and packet sockets.
const NetRaw = 13

// Has reports whether the effective set holds capability c.
func Has(c int) (bool, error) { return has(c) }

// KeepOnly drops every capability but those given from all of the
// process's threads: from the bounding set (where the process may), the
// ambient set, and the permitted, effective and inheritable sets. A
// process with no capabilities has nothing to do. It fails with
// ErrUnsupported where the runtime cannot change every thread (a binary
// built with cgo).
func KeepOnly(keep ...int) error { return keepOnly(keep) }

// Capabilities that Become needs while it changes the process's user.
const (
	SetGID  = 6
	SetUID  = 7
	SetPCap = 8
)

// Become makes every thread of the process the user uid, with the group
// gid and no supplementary groups, and keeps of its capabilities only
// those given, in its bounding set too. It needs CAP_SETGID and
// CAP_SETUID, and CAP_SETPCAP to shrink the bounding set. It fails with
// ErrUnsupported in a binary built with cgo, as KeepOnly does.
func Become(uid, gid int, keep ...int) error { return become(uid, gid, keep) }
