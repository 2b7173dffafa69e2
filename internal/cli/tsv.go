package cli

import (
	"bufio"
	"io"
	"strconv"
	"strings"

	"github.com/ifl-project/ifl/internal/support/untrusted"
)

// tsvWriter writes -o tsv: one header line (unless --no-header), then one
// line per row, fields separated by one tab. Every field is one token:
// never empty ("-" stands for nothing), no tab, no line break and no
// space inside, so that cut -f, awk -F'\t', plain awk and a shell's read
// all see the same fields.
type tsvWriter struct {
	w   *bufio.Writer
	err error
}

func newTSV(w io.Writer, noHeader bool, header ...string) *tsvWriter {
	t := &tsvWriter{w: bufio.NewWriter(w)}
	if !noHeader {
		t.row(header...)
	}
	return t
}

// row writes fields that are already TSV-safe: ifl's own words, numbers,
// addresses. Text that anything else chose goes through tsvText first.
func (t *tsvWriter) row(fields ...string) {
	if t.err != nil {
		return
	}
	for i, f := range fields {
		if i > 0 {
			t.w.WriteByte('\t')
		}
		if f == "" {
			f = "-"
		}
		t.w.WriteString(f)
	}
	_, t.err = t.w.WriteString("\n")
}

// Flush writes out what is buffered and returns the first error.
func (t *tsvWriter) Flush() error {
	if t.err != nil {
		return t.err
	}
	return t.w.Flush()
}

// tsvText makes text that an agent or a peer chose (a hostname, a label,
// an error message) one TSV field: untrusted.Text escapes tabs, line
// breaks and every other control character, and a space becomes \x20, in
// the same escape syntax. A lone "-" is escaped as \x2d so that it cannot
// pass for an empty field. Empty text is "-".
func tsvText(s string) string {
	if s == "" {
		return "-"
	}
	if s == "-" {
		return `\x2d`
	}
	return strings.ReplaceAll(untrusted.Text(s), " ", `\x20`)
}

// tsvList joins items, each made safe, with commas; an item's own comma
// is escaped as \x2c so that it cannot add one.
func tsvList(items []string) string {
	out := make([]string, 0, len(items))
	for _, it := range items {
		out = append(out, strings.ReplaceAll(tsvText(it), ",", `\x2c`))
	}
	return strings.Join(out, ",")
}

// tsvMS is a round trip in milliseconds, "-" when none was measured.
func tsvMS(v *float64) string {
	if v == nil {
		return "-"
	}
	return strconv.FormatFloat(*v, 'f', 3, 64)
}
