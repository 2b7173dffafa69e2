package untrusted

import (
	"fmt"
	"io"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// Machine formats carry the exact value of what an agent sent, but a
// person may read them on a terminal all the same (ifl probe -o json,
// ifl inventory --list, a journal of JSON logs). JSON and YAML both have
// escapes that keep the decoded value exact, so every rune that is not
// printable (C1 controls, among them U+009B, a CSI to some terminals;
// format runes such as U+202E RIGHT-TO-LEFT OVERRIDE and the zero-width
// ones; non-ASCII spaces, private use and unassigned code points, DEL)
// is written as one.

// needsEscape reports whether a rune of a JSON or YAML document must be
// escaped. Below DEL the encoders escape what needs it already, and the
// blanks there are the documents' own layout.
func needsEscape(r rune) bool {
	return r >= 0x7f && !strconv.IsPrint(r)
}

// JSON returns the JSON document b with every rune that needsEscape as a
// \uXXXX escape (a surrogate pair above U+FFFF), which decodes to the
// same string. Such runes can only stand inside strings, where the escape
// is valid.
func JSON(b []byte) []byte {
	return escape(b, func(out []byte, r rune) []byte {
		if r > 0xffff {
			r1, r2 := utf16.EncodeRune(r)
			return fmt.Appendf(out, `\u%04x\u%04x`, r1, r2)
		}
		return fmt.Appendf(out, `\u%04x`, r)
	})
}

// YAML returns the YAML document b with every rune that needsEscape as a
// \uXXXX or \UXXXXXXXX escape. Those escapes mean something only in
// double-quoted scalars: every scalar that holds such a rune must be
// double-quoted (DoubleQuoted does it for a node tree).
func YAML(b []byte) []byte {
	return escape(b, func(out []byte, r rune) []byte {
		if r > 0xffff {
			return fmt.Appendf(out, `\U%08x`, r)
		}
		return fmt.Appendf(out, `\u%04x`, r)
	})
}

// NeedsQuoting reports whether a YAML scalar holds a rune that YAML
// escapes, so that it must be double-quoted, or a control character: in
// a block scalar yaml.v3 writes a tab where YAML reads indentation.
func NeedsQuoting(s string) bool {
	for _, r := range s {
		if r < ' ' || needsEscape(r) {
			return true
		}
	}
	return false
}

func escape(b []byte, esc func([]byte, rune) []byte) []byte {
	i := 0
	for i < len(b) && b[i] < 0x7f {
		i++
	}
	if i == len(b) {
		return b
	}
	out := make([]byte, i, len(b)+16)
	copy(out, b[:i])
	for i < len(b) {
		if b[i] < 0x7f {
			out = append(out, b[i])
			i++
			continue
		}
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n <= 1 {
			// The encoders write valid UTF-8; a stray byte is kept as
			// it is rather than guessed at.
			out = append(out, b[i])
			i++
			continue
		}
		if needsEscape(r) {
			out = esc(out, r)
		} else {
			out = append(out, b[i:i+n]...)
		}
		i += n
	}
	return out
}

// JSONWriter returns a writer that passes each Write, a whole JSON
// document or line, through JSON to w: for encoders that write one
// document per call (encoding/json's Encoder, zerolog).
func JSONWriter(w io.Writer) io.Writer { return jsonWriter{w} }

type jsonWriter struct{ w io.Writer }

func (j jsonWriter) Write(p []byte) (int, error) {
	if _, err := j.w.Write(JSON(p)); err != nil {
		return 0, err
	}
	return len(p), nil
}
