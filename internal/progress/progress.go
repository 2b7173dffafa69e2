// Package progress draws a one-line progress bar on a terminal, redrawn at
// most ten times a second. When disabled every method does nothing, so
// callers need not check whether they run on a terminal.
package progress

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// Bar is a progress bar. It is not safe for concurrent use.
type Bar struct {
	w       io.Writer
	total   int
	unit    string
	enabled bool
	last    time.Time
	start   time.Time
}

// New returns a bar for total items of the named unit, drawn on w when
// enabled.
func New(w io.Writer, total int, unit string, enabled bool) *Bar {
	return &Bar{w: w, total: total, unit: unit, enabled: enabled && total > 0, start: time.Now()}
}

const width = 30

// Set records that n items are done and redraws if enough time has passed.
func (b *Bar) Set(n int, note string) {
	if !b.enabled {
		return
	}
	now := time.Now()
	if now.Sub(b.last) < 100*time.Millisecond && n < b.total {
		return
	}
	b.last = now
	filled := n * width / b.total
	fmt.Fprintf(b.w, "\r\033[K[%s%s] %d/%d %s, %s, %.1fs", strings.Repeat("=", filled), strings.Repeat(" ", width-filled), n, b.total, b.unit, note, now.Sub(b.start).Seconds())
}

// Done erases the bar.
func (b *Bar) Done() {
	if b.enabled {
		fmt.Fprint(b.w, "\r\033[K")
	}
}
