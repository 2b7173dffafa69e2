package untrusted

import (
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestText(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"plain", "web-1.example", "web-1.example"},
		{"empty", "", ""},
		{"letters", "Debian GNU/Linux 12 (bookworm) é 東京", "Debian GNU/Linux 12 (bookworm) é 東京"},
		{"ESC clear screen", "\x1b[2Jhost", `\x1b[2Jhost`},
		{"OSC title with BEL", "\x1b]0;pwned\a", `\x1b]0;pwned\a`},
		{"CR overwrites the line", "h1\rh2", `h1\rh2`},
		{"LF forges a line", "h1\nidentity 0000", `h1\nidentity 0000`},
		{"NUL", "a\x00b", `a\x00b`},
		{"tab", "a\tb", `a\tb`},
		{"DEL", "a\x7fb", `a\x7fb`},
		{"C1 CSI", "a\u009bb", `a\u009bb`},
		{"invalid UTF-8", "a\xff\xfeb", `a\xff\xfeb`},
		{"truncated rune", "a\xe6\x9d", `a\xe6\x9d`},
		{"a backslash cannot fake an escape", `a\x1b`, `a\\x1b`},
		{"bidi override", "abc\u202edef", `abc\u202edef`},
		{"non-breaking space", "a\u00a0b", `a\u00a0b`},
		{"line separator", "a\u2028b", `a\u2028b`},
		{"private use plane", "a\U000F0000b", `a\U000f0000b`},
		{"replacement character itself", "a\uFFFDb", "a\uFFFDb"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Text(tc.in); got != tc.want {
				t.Errorf("Text(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestCell(t *testing.T) {
	for _, tc := range []struct {
		in   string
		max  int
		want string
	}{
		{"web", 10, "web"},
		{"0123456789", 10, "0123456789"},
		{"0123456789a", 10, "012345678…"},
		{"東京東京東京", 4, "東京東…"},
		{"\x1b[2J", 4, `\x1…`},
		{"anything", 0, "anything"},
		{"ab", 1, "…"},
	} {
		if got := Cell(tc.in, tc.max); got != tc.want {
			t.Errorf("Cell(%q, %d) = %q, want %q", tc.in, tc.max, got, tc.want)
		}
	}
}

// safe reports whether a person's terminal would show s exactly as the
// bytes it holds: valid UTF-8, printable runes and ASCII space only.
func safe(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r != ' ' && !strconv.IsPrint(r) {
			return false
		}
	}
	return true
}

func FuzzText(f *testing.F) {
	for _, s := range []string{"", "web", "\x1b[2J", "a\rb\nc", "\xff", `\x1b`, "\u202e", strings.Repeat("é", 50)} {
		f.Add(s, 12)
	}
	f.Fuzz(func(t *testing.T, s string, max int) {
		got := Text(s)
		if !safe(got) {
			t.Fatalf("Text(%q) = %q holds a byte a terminal would act on", s, got)
		}
		if got == s != (safe(s) && !strings.Contains(s, `\`)) {
			t.Fatalf("Text(%q) = %q: changed a safe string, or kept an unsafe one", s, got)
		}
		c := Cell(s, max%64)
		if !safe(c) {
			t.Fatalf("Cell(%q) = %q is not safe", s, c)
		}
		if m := max % 64; m >= 1 && utf8.RuneCountInString(c) > m {
			t.Fatalf("Cell(%q, %d) = %q is longer than %d runes", s, m, c, m)
		}
	})
}
