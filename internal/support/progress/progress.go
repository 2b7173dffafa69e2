// Package progress draws a one-line progress bar on a terminal, redrawn at
// most ten times a second, with the time so far and an estimate of the time
// left, never wider than the terminal. When disabled every method does
// nothing, so callers need not check whether they run on a terminal.
package progress

import (
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"
)

// Bar is a progress bar. It is not safe for concurrent use.
type Bar struct {
	// Width is the terminal's width in columns; 0 means 80. The line is
	// kept one column short of it, so that it never wraps.
	Width int

	w       io.Writer
	total   int
	unit    string
	enabled bool
	last    time.Time
	start   time.Time
	now     func() time.Time
}

// New returns a bar for total items of the named unit, drawn on w when
// enabled.
func New(w io.Writer, total int, unit string, enabled bool) *Bar {
	return &Bar{w: w, total: total, unit: unit, enabled: enabled && total > 0, start: time.Now(), now: time.Now}
}

// barCols is the width of the bar itself, when the terminal has room.
const barCols = 30

// Set records that n items are done and redraws if enough time has passed.
func (b *Bar) Set(n int, note string) {
	if !b.enabled {
		return
	}
	now := b.now()
	if now.Sub(b.last) < 100*time.Millisecond && n < b.total {
		return
	}
	b.last = now
	fmt.Fprint(b.w, "\r\033[K"+b.line(n, note, now))
}

// line is what Set draws: the bar if there is room for it, the count,
// the note, the time so far and, once something is done, the time left at
// the rate so far.
func (b *Bar) line(n int, note string, now time.Time) string {
	n = max(0, min(n, b.total))
	elapsed := now.Sub(b.start)
	text := fmt.Sprintf("%d/%d %s", n, b.total, b.unit)
	if note != "" {
		text += ", " + note
	}
	text += ", " + fmtDur(elapsed)
	if n > 0 && n < b.total {
		left := time.Duration(float64(elapsed) * float64(b.total-n) / float64(n))
		text += ", ETA " + fmtDur(left)
	}
	cols := b.Width
	if cols <= 0 {
		cols = 80
	}
	room := cols - 1
	if w := barCols + 3 + utf8.RuneCountInString(text); w <= room {
		filled := n * barCols / b.total
		return "[" + strings.Repeat("=", filled) + strings.Repeat(" ", barCols-filled) + "] " + text
	}
	if utf8.RuneCountInString(text) > room {
		r := []rune(text)
		text = string(r[:max(0, room)])
	}
	return text
}

func fmtDur(d time.Duration) string {
	if d >= time.Minute {
		return d.Round(time.Second).String()
	}
	return fmt.Sprintf("%.1fs", d.Seconds())
}

// Done erases the bar.
func (b *Bar) Done() {
	if b.enabled {
		fmt.Fprint(b.w, "\r\033[K")
	}
}
