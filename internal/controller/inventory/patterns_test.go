package inventory

import (
	"regexp"
	"strings"
	"testing"
)

// The names and labels were checked with regular expressions; the
// functions that check them now must agree with them.
var (
	hexSuffixRE = regexp.MustCompile(`(?i)-([0-9a-f]{8,})$`)
	labelKeyRE  = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)
)

func checkPatterns(t *testing.T, s string) {
	t.Helper()
	m := hexSuffixRE.FindStringSubmatch(s)
	got, ok := hexSuffix(s)
	if (m != nil) != ok || (ok && got != m[1]) {
		t.Fatalf("hexSuffix(%q) = %q, %v; the pattern: %q", s, got, ok, m)
	}
	if validLabelKey(s) != labelKeyRE.MatchString(s) {
		t.Fatalf("validLabelKey(%q) = %v", s, validLabelKey(s))
	}
	g := strings.ToLower(groupUnsafe.ReplaceAllString(s, "_"))
	if want := g == "ifl" || strings.HasPrefix(g, "ifl_"); reservedKey(s) != want {
		t.Fatalf("reservedKey(%q) = %v", s, !want)
	}
	if s != "" {
		want := groupUnsafe.ReplaceAllString(s, "_") + "_" + groupUnsafe.ReplaceAllString(s, "_")
		if want[0] >= '0' && want[0] <= '9' {
			want = "_" + want
		}
		if g := GroupName(s, s); g != want {
			t.Fatalf("GroupName(%q) = %q, want %q", s, g, want)
		}
	}
}

var patternSeeds = []string{"", "web", "web-a878722f", "web-a878722", "x-A878722F5D0C1E22", "a-b-12345678", "-12345678", "1abc", "é\xffx.y-z", strings.Repeat("k", 64), strings.Repeat("k", 65), "ifl_x", "a\u202eb", "IFL", "iFl-", "ifl", "iflx", "ifl\u00e9", "\u00e9fl"}

func TestPatterns(t *testing.T) {
	for _, s := range patternSeeds {
		checkPatterns(t, s)
	}
}

func FuzzPatterns(f *testing.F) {
	for _, s := range patternSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) { checkPatterns(t, s) })
}
