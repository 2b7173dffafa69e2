package kstamp

import (
	"time"

	"golang.org/x/sys/unix"
)

// Enable asks the kernel to stamp what fd receives.
func Enable(fd int) error {
	return unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1)
}

// Parse returns the receive time in a read's control messages, or the
// zero time.
func Parse(oob []byte) time.Time {
	for len(oob) > 0 {
		h, data, rest, err := unix.ParseOneSocketControlMessage(oob)
		if err != nil {
			break
		}
		oob = rest
		if h.Level == unix.SOL_SOCKET && h.Type == unix.SCM_TIMESTAMPNS {
			return Received(data)
		}
	}
	return time.Time{}
}
