//go:build !linux

package netinfo

import (
	"fmt"
	"runtime"
)

// DefaultRoutes is implemented on Linux only.
func DefaultRoutes() ([]Route, error) {
	return nil, fmt.Errorf("netinfo: reading routes is not implemented on %s", runtime.GOOS)
}
