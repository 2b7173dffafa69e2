//go:build unix

package discover

import (
	"errors"
	"syscall"
)

// setBroadcast sets SO_BROADCAST, without which the kernel refuses to
// send to a broadcast address (EACCES).
func setBroadcast(_, _ string, rc syscall.RawConn) error {
	var serr error
	err := rc.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_BROADCAST, 1)
	})
	return errors.Join(err, serr)
}
