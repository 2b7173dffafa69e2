// Package defaults is the one rule for the zero values of ifl's library
// options: zero means the default, a negative value none (no retries,
// no rate limit). A command line, whose flags show their defaults and
// take 0 for none, turns its values with None.
//
//	retries := defaults.Count(cfg.Retries, DefaultRetries) // 0 → 2, -1 → 0, 3 → 3
package defaults

// Count is n, def for its zero value, or 0 for a negative one.
func Count(n, def int) int {
	switch {
	case n < 0:
		return 0
	case n == 0:
		return def
	}
	return n
}

// None turns a flag's 0, which says "none" there, into the libraries'
// "none", a negative value.
func None(n int) int {
	if n == 0 {
		return -1
	}
	return n
}
