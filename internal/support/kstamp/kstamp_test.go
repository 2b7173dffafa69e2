package kstamp

import (
	"encoding/binary"
	"testing"
	"time"
)

func TestReceived(t *testing.T) {
	stamp := func(at time.Time) []byte {
		b := make([]byte, 16)
		binary.NativeEndian.PutUint64(b, uint64(at.Unix()))
		binary.NativeEndian.PutUint64(b[8:], uint64(at.Nanosecond()))
		return b
	}
	at := time.Now().Add(-3 * time.Millisecond)
	got := Received(stamp(at))
	if d := got.Sub(at); d < -time.Millisecond || d > time.Millisecond {
		t.Errorf("a stamp 3 ms old reads %v off", d)
	}
	// The monotonic reading is what a send time is compared with.
	if time.Until(got) >= 0 || got.String() == got.Round(0).String() {
		t.Errorf("%v: want a time on the monotonic clock, in the past", got)
	}
	for name, b := range map[string][]byte{
		"in the future": stamp(time.Now().Add(time.Minute)),
		"too old":       stamp(time.Now().Add(-time.Minute)),
		"short":         {1, 2, 3},
	} {
		if got := Received(b); !got.IsZero() {
			t.Errorf("%s: %v, want the zero time", name, got)
		}
	}
}
