//go:build !linux

package caps

func has(int) (bool, error) { return false, nil }
