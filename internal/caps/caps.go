// Package caps answers whether this process holds a Linux capability in
// its effective set, by asking the kernel (capget), never by looking at
// the user id: root without CAP_NET_RAW cannot open a raw socket, and an
// unprivileged binary with file capabilities can.
package caps

// NetRaw is CAP_NET_RAW: raw and packet sockets.
const NetRaw = 13

// Has reports whether the effective set holds capability c.
func Has(c int) (bool, error) { return has(c) }
