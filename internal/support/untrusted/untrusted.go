// Package untrusted is the one place where text that an agent chose
// (hostnames, OS strings, labels, interface names, error messages) is made
// fit for a person's terminal. Any managed host may be compromised, so such
// text may hold escape sequences that clear a screen or retitle a window,
// carriage returns and line feeds that forge output lines, or bidirectional
// controls that reorder what is shown.
//
// Text escapes everything that is not printable, visibly and reversibly
// (as Go's strconv.Quote does, without the quotes); Cell also bounds the
// length for a table column. Machine formats (JSON, YAML) carry the exact
// value, with what a terminal would act on or hide written as the
// format's own escapes (JSON, YAML); Ansible gets the exact value marked
// unsafe (see internal/controller/inventory).
package untrusted

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Text returns s with every byte or rune that is not printable escaped:
// \a \b \f \n \r \t \v by name, other bytes below 0x80 and invalid UTF-8
// as \xNN, and non-printable runes (format, control, separator and
// unassigned code points, spaces other than ASCII space) as \uNNNN or
// \UNNNNNNNN. A backslash becomes \\, so the escapes cannot be faked.
// Printable text, non-ASCII letters included, is left as it is.
func Text(s string) string {
	if clean(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n <= 1 {
			fmt.Fprintf(&b, `\x%02x`, s[i])
			i++
			continue
		}
		i += n
		switch {
		case r == '\\':
			b.WriteString(`\\`)
		case r == ' ' || strconv.IsPrint(r):
			b.WriteRune(r)
		case r == '\a':
			b.WriteString(`\a`)
		case r == '\b':
			b.WriteString(`\b`)
		case r == '\f':
			b.WriteString(`\f`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\v':
			b.WriteString(`\v`)
		case r < 0x80:
			fmt.Fprintf(&b, `\x%02x`, r)
		case r < 0x10000:
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			fmt.Fprintf(&b, `\U%08x`, r)
		}
	}
	return b.String()
}

// clean reports whether s is printable ASCII without a backslash, the
// common case, which Text returns as it is.
func clean(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' || c > '~' || c == '\\' {
			return false
		}
	}
	return true
}

// Ellipsis ends a value that Cell cut short.
const Ellipsis = "…"

// Cell returns Text(s) cut to at most max runes, the last of them an
// ellipsis when it was cut, for a table column. A max below 1 means no
// bound.
func Cell(s string, max int) string {
	t := Text(s)
	if max < 1 || utf8.RuneCountInString(t) <= max {
		return t
	}
	n := 0
	for i := range t {
		if n == max-1 {
			return t[:i] + Ellipsis
		}
		n++
	}
	return t
}
