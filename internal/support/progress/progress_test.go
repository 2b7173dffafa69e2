package progress

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestDisabledWritesNothing(t *testing.T) {
	var b strings.Builder
	bar := New(&b, 10, "addresses", false)
	bar.Set(5, "x")
	bar.Done()
	if b.Len() != 0 {
		t.Fatalf("wrote %q", b.String())
	}
}

func TestBar(t *testing.T) {
	var b strings.Builder
	bar := New(&b, 4, "addresses", true)
	bar.Set(4, "2 agents")
	if !strings.HasPrefix(b.String(), "\r\033[K["+strings.Repeat("=", barCols)+"] 4/4 addresses, 2 agents, ") {
		t.Fatalf("bar %q", b.String())
	}
	b.Reset()
	bar.Done()
	if b.String() != "\r\033[K" {
		t.Fatalf("done %q", b.String())
	}
}

func TestLine(t *testing.T) {
	start := time.Unix(1000, 0)
	for _, tc := range []struct {
		name  string
		width int
		n     int
		at    time.Duration
		want  string
	}{
		{"a quarter done after 2s: 6s left", 80, 25, 2 * time.Second, "[=======                       ] 25/100 addresses, 3 agents, 2.0s, ETA 6.0s"},
		{"nothing done: no estimate", 80, 0, time.Second, "[                              ] 0/100 addresses, 3 agents, 1.0s"},
		{"all done: no estimate", 80, 100, 90 * time.Second, "[==============================] 100/100 addresses, 3 agents, 1m30s"},
		{"narrow: no bar", 50, 50, time.Second, "50/100 addresses, 3 agents, 1.0s, ETA 1.0s"},
		{"very narrow: cut", 20, 50, time.Second, "50/100 addresses, 3"},
		{"zero width means 80", 0, 50, time.Second, "[===============               ] 50/100 addresses, 3 agents, 1.0s, ETA 1.0s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := New(nil, 100, "addresses", true)
			b.start, b.Width = start, tc.width
			got := b.line(tc.n, "3 agents", start.Add(tc.at))
			if got != tc.want {
				t.Errorf("got  %q\nwant %q", got, tc.want)
			}
			cols := tc.width
			if cols == 0 {
				cols = 80
			}
			if utf8.RuneCountInString(got) >= cols {
				t.Errorf("%d columns on a terminal of %d", utf8.RuneCountInString(got), cols)
			}
		})
	}
}
