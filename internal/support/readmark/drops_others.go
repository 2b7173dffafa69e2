//go:build !linux

package readmark

import "errors"

// Drops is not known on this system.
func Drops(fd int) (uint64, error) { return 0, errors.ErrUnsupported }
