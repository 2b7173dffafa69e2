//go:build !unix

package discover

import (
	"fmt"
	"runtime"
	"syscall"
)

func setBroadcast(_, _ string, _ syscall.RawConn) error {
	return fmt.Errorf("discover: broadcast is not implemented on %s", runtime.GOOS)
}
