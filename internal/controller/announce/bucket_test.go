package announce

import (
	"net/netip"
	"testing"
	"time"
)

// TestDialBudgetAcrossRounds: dials are paced by one bucket, whatever
// the rounds: Burst at once, then one every 1/Rate, the debt of a round
// carried into the next, and a quiet spell refilling Burst at most.
func TestDialBudgetAcrossRounds(t *testing.T) {
	l := New(Config{Accept: func(netip.Addr) bool { return true }, Burst: 3, Rate: 2})
	t0 := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
	var got []time.Duration
	// A first round of 5, a second of 2 right after it.
	for range 7 {
		got = append(got, l.dials.reserve(t0))
	}
	// 10 s later, a round of 5: 3 tokens at most were put back.
	for range 5 {
		got = append(got, l.dials.reserve(t0.Add(10*time.Second)))
	}
	ms := time.Millisecond
	want := []time.Duration{0, 0, 0, 500 * ms, 1000 * ms, 1500 * ms, 2000 * ms, 0, 0, 0, 500 * ms, 1000 * ms}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("waits %v, want %v", got, want)
		}
	}
}
