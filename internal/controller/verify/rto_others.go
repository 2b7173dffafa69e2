//go:build !linux

package verify

import "syscall"

// fastRetransmit does nothing: the least retransmission timeout is set
// per socket on Linux only.
func fastRetransmit(network, address string, c syscall.RawConn) error { return nil }
