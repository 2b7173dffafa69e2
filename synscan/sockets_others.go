//go:build !linux

package synscan

import (
	"fmt"
	"runtime"
)

// NewRaw fails: raw sockets are opened on Linux only. New runs a raw
// scan over any other PacketIO.
func NewRaw(*Config) (*Raw, error) {
	return nil, fmt.Errorf("synscan: raw scans are not implemented on %s", runtime.GOOS)
}
