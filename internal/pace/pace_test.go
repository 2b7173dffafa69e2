package pace

import (
	"context"
	"testing"
	"time"
)

func TestSchedule(t *testing.T) {
	p := New(1000) // 1 ms apart
	t0 := time.Unix(100, 0)
	p.Sent(t0)
	if got := p.Next().Sub(t0); got != time.Millisecond {
		t.Fatalf("next after one event: +%v, want +1ms", got)
	}
	// Late by 3 ms: the schedule is kept, so the next events may go at once.
	p.Sent(t0.Add(3 * time.Millisecond))
	if got := p.Next().Sub(t0); got != 2*time.Millisecond {
		t.Fatalf("next after a late event: +%v, want +2ms", got)
	}
	// Late by a second: only MaxCatchUp of it is caught up.
	late := t0.Add(time.Second)
	p.Sent(late)
	if got := late.Sub(p.Next()); got != MaxCatchUp {
		t.Fatalf("after a stall the schedule is %v behind, want %v", got, MaxCatchUp)
	}
}

func TestCongestion(t *testing.T) {
	p := New(1000)
	p.Congested()
	if p.Interval() <= time.Millisecond {
		t.Fatalf("interval %v after congestion", p.Interval())
	}
	for range 100 {
		p.Congested()
	}
	if p.Interval() != maxInterval {
		t.Fatalf("interval %v, want the %v bound", p.Interval(), maxInterval)
	}
	now := time.Unix(100, 0)
	for i := range 64 * 100 {
		p.Sent(now.Add(time.Duration(i) * time.Millisecond))
	}
	if p.Interval() != time.Millisecond {
		t.Fatalf("interval %v after many good sends, want back to 1ms", p.Interval())
	}
}

func TestUnlimited(t *testing.T) {
	for _, p := range []*Pacer{New(0), {}} {
		p.Sent(time.Now())
		if !p.Next().IsZero() {
			t.Fatalf("an unlimited pacer scheduled %v", p.Next())
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := p.Wait(ctx); err != context.Canceled {
			t.Fatalf("Wait on a cancelled context: %v", err)
		}
	}
}
