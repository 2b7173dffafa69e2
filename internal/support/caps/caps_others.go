//go:build !linux

package caps

import "errors"

// ErrUnsupported is returned by KeepOnly where capabilities do not exist.
var ErrUnsupported = errors.New("caps: not supported on this system")

func has(int) (bool, error) { return false, nil }

func keepOnly([]int) error { return ErrUnsupported }

func become(int, int, []int) error { return ErrUnsupported }
