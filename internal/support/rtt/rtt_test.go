package rtt

import (
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
