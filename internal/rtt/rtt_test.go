package rtt

import (
	"net/netip"
	"testing"
	"time"
)

func TestEstimator(t *testing.T) {
	lim := Limits{Initial: 100 * time.Millisecond, Floor: time.Millisecond}
	tests := []struct {
		name    string
		samples []time.Duration
		want    time.Duration
	}{
		{"nothing measured: the initial value", nil, 100 * time.Millisecond},
		{"first sample: srtt + 4 * srtt/2", []time.Duration{10 * time.Millisecond}, 30 * time.Millisecond},
		{"a fast LAN: the floor", []time.Duration{100 * time.Microsecond, 120 * time.Microsecond}, time.Millisecond},
		{"a slow link: the ceiling", []time.Duration{300 * time.Millisecond}, 100 * time.Millisecond},
		// srtt 10 -> 10 + (20-10)/8 = 11.25; rttvar 5 -> 5 + (10-5)/4 = 6.25
		{"second sample, RFC 6298 gains", []time.Duration{10 * time.Millisecond, 20 * time.Millisecond}, 11250*time.Microsecond + 25*time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := New(lim)
			for _, s := range tt.samples {
				e.Observe(s)
			}
			if got := e.Timeout(); got != tt.want {
				t.Errorf("Timeout() = %v, want %v", got, tt.want)
			}
			if e.Known() != (len(tt.samples) > 0) {
				t.Errorf("Known() = %v after %d samples", e.Known(), len(tt.samples))
			}
		})
	}
}

func TestBackoff(t *testing.T) {
	e := New(Limits{Initial: 50 * time.Millisecond, Floor: time.Millisecond})
	e.Observe(2 * time.Millisecond) // timeout 6 ms
	for try, want := range []time.Duration{6, 12, 24, 48, 50, 50} {
		if got := e.Backoff(try); got != want*time.Millisecond {
			t.Errorf("Backoff(%d) = %v, want %v", try, got, want*time.Millisecond)
		}
	}
}

func TestTableFallsBackToTheSegment(t *testing.T) {
	tab := NewTable(Limits{Initial: time.Second, Floor: time.Millisecond})
	fast, slow, unknown := netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.0.2"), netip.MustParseAddr("198.18.0.3")
	if got := tab.Timeout(unknown); got != time.Second {
		t.Errorf("empty table: %v, want the initial 1s", got)
	}
	for range 8 {
		tab.Observe(fast, 200*time.Microsecond)
	}
	tab.Observe(slow, 300*time.Millisecond)
	// Its own round trip, not the segment's: 300 ms + 4 * 150 ms.
	if got := tab.Timeout(slow); got != 900*time.Millisecond {
		t.Errorf("slow host: %v, want 900ms", got)
	}
	if got := tab.Timeout(fast); got != time.Millisecond {
		t.Errorf("fast host: %v, want the 1ms floor", got)
	}
	if got, seg := tab.Timeout(unknown), tab.Segment(); got != seg || got >= time.Second {
		t.Errorf("unmeasured host: %v, want the segment's %v, below the initial value", got, seg)
	}
	if _, ok := tab.Known(unknown); ok {
		t.Error("Known(unmeasured) = true")
	}
	if d, ok := tab.Known(slow); !ok || d != 300*time.Millisecond {
		t.Errorf("Known(slow) = %v, %v", d, ok)
	}
}
