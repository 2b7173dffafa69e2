package pace

import (
	"context"
	"runtime"
	"slices"
	"sync"
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

func TestEachCallsForEveryValueWithinTheLimit(t *testing.T) {
	in := make(chan int)
	go func() {
		defer close(in)
		for i := range 50 {
			in <- i
		}
	}()
	var mu sync.Mutex
	seen := map[int]bool{}
	running, most := 0, 0
	release := make(chan struct{})
	go func() {
		// Let calls pile up against the limit before any returns.
		for {
			mu.Lock()
			r := running
			mu.Unlock()
			if r >= 3 {
				close(release)
				return
			}
			runtime.Gosched()
		}
	}()
	Each(context.Background(), in, 0, 3, func(_ context.Context, v int) {
		mu.Lock()
		seen[v] = true
		running++
		most = max(most, running)
		mu.Unlock()
		<-release
		mu.Lock()
		running--
		mu.Unlock()
	})
	if len(seen) != 50 || most != 3 {
		t.Errorf("%d values seen, at most %d at once; want 50, 3", len(seen), most)
	}
}

func TestEachStopsWhenCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	in := make(chan int) // never closed
	calls := 0
	go func() { in <- 1 }()
	Each(ctx, in, 0, 1, func(context.Context, int) {
		calls++
		cancel()
	})
	if calls != 1 {
		t.Errorf("%d calls, want 1", calls)
	}
}

func TestWindow(t *testing.T) {
	w := NewWindow(10000, 10000, 500)
	w.SetRound(10 * time.Millisecond)
	if w.Rate() != 10000 {
		t.Fatalf("starts at %d, want 10000", w.Rate())
	}
	t0 := time.Unix(1000, 0)
	// The sender reaches only 4,000/s: a cut halves that, not the rate
	// it never reached, but falls no lower than a quarter of the rate.
	for i := range 41 {
		w.Sent(t0.Add(time.Duration(i) * 250 * time.Microsecond))
	}
	if m := w.Measured(); m < 3900 || m > 4100 {
		t.Fatalf("measured %d/s, want 4000", m)
	}
	now := t0.Add(10 * time.Millisecond)
	if !w.Loss(now.Add(-time.Millisecond), now) || w.Rate() != 2500 {
		t.Fatalf("after a loss: %d, want 2500, a quarter of the rate", w.Rate())
	}
	// Losses of what went out before the cut, or within a round after
	// it, are the same episode.
	if w.Loss(now.Add(-time.Millisecond), now.Add(time.Millisecond)) || w.Loss(now.Add(9*time.Millisecond), now.Add(12*time.Millisecond)) || w.Rate() != 2500 {
		t.Errorf("a second loss of the same episode cut again: %d", w.Rate())
	}
	// A loss a round after the cut is a new episode.
	later := now.Add(30 * time.Millisecond)
	if !w.Loss(now.Add(11*time.Millisecond), later) || w.Rate() != 1250 {
		t.Errorf("a loss a round after the cut: %d, want 1250", w.Rate())
	}
	for i := range 64 {
		at := later.Add(time.Duration(i+1) * 20 * time.Millisecond)
		w.Loss(at, at)
	}
	if w.Rate() != 500 || w.Cuts() < 3 {
		t.Errorf("after many losses: %d (%d cuts), want the floor 500", w.Rate(), w.Cuts())
	}
	// After loss the rate grows by a 32nd of the ceiling a round, not
	// more however many answers come in a round.
	at := later.Add(2 * time.Second)
	for i := range 100 {
		w.Ack(at.Add(time.Duration(i) * time.Microsecond))
	}
	w.Ack(at.Add(10 * time.Millisecond))
	if w.Rate() != 500+2*10000/growthDivisor && w.Rate() != 500+10000/growthDivisor {
		t.Errorf("after a round of answers: %d, want 812 or 1125", w.Rate())
	}
	for i := range 2000 {
		w.Ack(at.Add(time.Duration(i+2) * 10 * time.Millisecond))
	}
	// The last rate measured was 4,000/s: a window the sender does not
	// fill does not grow far past it.
	if w.Rate() > 4000*4/3+10000/growthDivisor {
		t.Errorf("grew to %d, unused, past 4/3 of the 4000/s sent", w.Rate())
	}
	at = at.Add(time.Minute)
	for r := range 300 {
		start := at.Add(time.Duration(r) * 10 * time.Millisecond)
		for i := range 100 {
			w.Sent(start.Add(time.Duration(i) * 100 * time.Microsecond))
		}
		w.Ack(start.Add(10 * time.Millisecond))
	}
	if w.Rate() != 10000 {
		t.Errorf("after 300 rounds of answers at 10000/s: %d, want back at the ceiling", w.Rate())
	}
}

// Until the first loss, the window doubles a round.
func TestWindowSlowStart(t *testing.T) {
	w := NewWindow(1000, 10000, 100)
	w.SetRound(5 * time.Millisecond)
	t0 := time.Unix(1000, 0)
	w.Ack(t0)
	for i := 1; i <= 3; i++ {
		w.Ack(t0.Add(time.Duration(i) * 5 * time.Millisecond))
		w.Ack(t0.Add(time.Duration(i)*5*time.Millisecond + time.Millisecond))
	}
	if w.Rate() != 8000 {
		t.Errorf("after three rounds: %d, want 8000", w.Rate())
	}
}

func TestPacerSetRate(t *testing.T) {
	p := New(1000)
	p.Congested()
	p.SetRate(500)
	if p.Interval() != 2*time.Millisecond {
		t.Errorf("interval %v, want 2ms", p.Interval())
	}
}

// TestSmooth: a smooth pacer late on its schedule lets the next event go
// half an interval after the last, not at once, and catches up at twice
// its rate until it is back on schedule.
func TestSmooth(t *testing.T) {
	p := New(1000) // 1 ms apart
	p.Smooth()
	t0 := time.Unix(100, 0)
	p.Sent(t0)
	// The one due at +1 ms, late by 2 ms: the next may go half a
	// millisecond after it.
	now := t0.Add(3 * time.Millisecond)
	p.Sent(now)
	if got := p.Next().Sub(now); got != time.Millisecond/2 {
		t.Fatalf("next after a late event: +%v, want +500µs", got)
	}
	// Each event sent as soon as allowed: half a millisecond apart while
	// behind, then back on the schedule of one a millisecond.
	var gaps []time.Duration
	for range 8 {
		next := p.Next()
		gaps = append(gaps, next.Sub(now))
		now = next
		p.Sent(now)
	}
	// The events due at +1 to +4 ms go at +3.5 to +5, and then the
	// schedule is kept.
	half := time.Millisecond / 2
	want := []time.Duration{half, half, half, half, time.Millisecond, time.Millisecond, time.Millisecond, time.Millisecond}
	if !slices.Equal(gaps, want) {
		t.Errorf("gaps %v, want %v", gaps, want)
	}
}
