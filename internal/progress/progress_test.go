package progress

import (
	"strings"
	"testing"
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
	if !strings.HasPrefix(b.String(), "\r\033[K["+strings.Repeat("=", width)+"] 4/4 addresses, 2 agents, ") {
		t.Fatalf("bar %q", b.String())
	}
	b.Reset()
	bar.Done()
	if b.String() != "\r\033[K" {
		t.Fatalf("done %q", b.String())
	}
}
