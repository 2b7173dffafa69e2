package pace

import (
	"context"
	"runtime"
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
	w := NewWindow(10000, 500)
	if w.Rate() != 10000 {
		t.Fatalf("starts at %d, want the ceiling 10000", w.Rate())
	}
	t0 := time.Now().Add(-time.Second)
	if !w.Loss(t0) || w.Rate() != 5000 {
		t.Fatalf("after a loss: %d, want 5000", w.Rate())
	}
	// A loss of what went out before the cut is the same episode.
	if w.Loss(t0) || w.Rate() != 5000 {
		t.Errorf("a second loss of the same episode cut again: %d", w.Rate())
	}
	for range 64 {
		w.Loss(time.Now())
	}
	if w.Rate() != 500 || w.Cuts() < 5 {
		t.Errorf("after many losses: %d (%d cuts), want the floor 500", w.Rate(), w.Cuts())
	}
	for range 200 {
		w.Ack()
	}
	if w.Rate() != 10000 {
		t.Errorf("after 200 answers: %d, want back at the ceiling 10000", w.Rate())
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
