//go:build !linux

package synscan

import (
	"context"
	"errors"
	"fmt"
	"runtime"
)

// ErrPermission is returned by NewRaw when the process may not open raw
// sockets.
var ErrPermission = errors.New("no permission to open a raw socket")

// Raw is the raw-socket SYN scanner, implemented on Linux only.
type Raw struct{}

// NewRaw fails: raw scans are implemented on Linux only.
func NewRaw(*Config) (*Raw, error) {
	return nil, fmt.Errorf("synscan: raw scans are not implemented on %s", runtime.GOOS)
}

// Stream implements Scanner.
func (*Raw) Stream(context.Context, <-chan Target, chan<- Result) (Stats, error) {
	return Stats{}, errors.New("synscan: not implemented")
}

// Close implements Scanner.
func (*Raw) Close() error { return nil }
