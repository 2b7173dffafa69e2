package readmark

import (
	"testing"
	"time"
)

func TestUpTo(t *testing.T) {
	m := New()
	empty, full := func() bool { return true }, func() bool { return false }
	t0 := time.Now()
	m.Reading(true)
	m.Set(t0)
	if got := m.UpTo(empty); !got.Equal(t0) {
		t.Errorf("a reader at work: UpTo = %v, want its mark %v", got, t0)
	}
	select {
	case <-m.Advanced():
	default:
		t.Error("Set did not signal")
	}
	m.Set(t0.Add(-time.Second))
	if got := m.UpTo(empty); !got.Equal(t0) {
		t.Errorf("the mark went back to %v", got)
	}
	select {
	case <-m.Advanced():
		t.Error("a mark that did not move signalled")
	default:
	}
	m.Reading(false)
	if got := m.UpTo(full); !got.Equal(t0) {
		t.Errorf("a reader at rest with a packet waiting: UpTo = %v, want %v", got, t0)
	}
	before := time.Now()
	if got := m.UpTo(empty); got.Before(before) {
		t.Errorf("a reader at rest on an empty socket: UpTo = %v, want now", got)
	}
	// Asked again at once, the empty socket stands: no system call.
	asked := false
	if got := m.UpTo(func() bool { asked = true; return true }); asked || got.Before(before) {
		t.Errorf("asked again within %v: %v, UpTo = %v", Recheck, asked, got)
	}
	// The reader woke while the socket was asked.
	m = New()
	m.Set(t0)
	woke := func() bool { m.Reading(true); return true }
	if got := m.UpTo(woke); !got.Equal(t0) {
		t.Errorf("a reader that woke: UpTo = %v, want %v", got, t0)
	}
}
