package proto

import (
	"encoding/binary"
	"errors"
	"runtime"
	"testing"
	"time"
)

func replayKey(i int) [32]byte {
	var k [32]byte
	binary.BigEndian.PutUint64(k[:], uint64(i)+1)
	return k
}

func TestReplayFilter(t *testing.T) {
	f := NewReplayFilter(2)
	now := time.Unix(1_000_000, 300_000_000)
	if err := f.Check(replayKey(1), now.Add(time.Minute), now); err != nil {
		t.Fatal(err)
	}
	if err := f.Check(replayKey(1), now.Add(time.Minute), now); !errors.Is(err, ErrReplay) {
		t.Fatalf("replay within the window: got %v, want ErrReplay", err)
	}
	if err := f.Check(replayKey(2), now.Add(time.Second), now); err != nil {
		t.Fatal(err)
	}
	if err := f.Check(replayKey(3), now.Add(time.Minute), now); !errors.Is(err, ErrReplayFull) {
		t.Fatalf("full filter: got %v, want ErrReplayFull", err)
	}
	// Key 2 is forgotten within two seconds of its expiry, and its slot
	// serves a newcomer.
	later := now.Add(3 * time.Second)
	if err := f.Check(replayKey(3), later.Add(time.Minute), later); err != nil {
		t.Fatalf("after an entry expired: %v", err)
	}
	if err := f.Check(replayKey(1), later.Add(time.Minute), later); !errors.Is(err, ErrReplay) {
		t.Fatalf("unexpired entry forgotten: got %v, want ErrReplay", err)
	}
	late := now.Add(59 * time.Second)
	if err := f.Check(replayKey(1), late.Add(time.Minute), late); !errors.Is(err, ErrReplay) {
		t.Fatalf("replay just before expiry: got %v, want ErrReplay", err)
	}
	// Past every expiry, the clock jumping far ahead, all are forgotten.
	much := now.Add(time.Hour)
	for _, i := range []int{1, 2, 3} {
		if err := f.Check(replayKey(i), much, much); err != nil && !(i == 3 && errors.Is(err, ErrReplayFull)) {
			t.Fatalf("key %d an hour later: %v", i, err)
		}
	}
	if err := f.Check(replayKey(9), now.Add(ReplayHorizon+time.Second), now); err == nil {
		t.Fatal("accepted an expiry beyond the horizon")
	}
}

// TestReplayFilterNeverForgetsEarly checks every entry against a clock
// moving in uneven steps: until its expiry it is a replay.
func TestReplayFilterNeverForgetsEarly(t *testing.T) {
	f := NewReplayFilter(1 << 12)
	start := time.Unix(2_000_000, 0)
	type entry struct {
		key     [32]byte
		expires time.Time
	}
	var live []entry
	for i := range 3000 {
		now := start.Add(time.Duration(i) * 77 * time.Millisecond)
		exp := now.Add(time.Duration(i%240-120) * time.Second / 2).Add(MaxSkew)
		k := replayKey(i)
		if err := f.Check(k, exp, now); err != nil {
			t.Fatalf("entry %d: %v", i, err)
		}
		live = append(live, entry{k, exp})
		kept := live[:0]
		for _, e := range live {
			if !now.After(e.expires) {
				if err := f.Check(e.key, e.expires, now); !errors.Is(err, ErrReplay) {
					t.Fatalf("at %v, an entry expiring at %v: got %v, want ErrReplay", now, e.expires, err)
				}
				kept = append(kept, e)
			}
		}
		live = kept
	}
}

// TestReplayFilterFullCostsNothing counts the entries a full filter looks
// at: a refused hello costs none of them, and each entry is visited once
// when added and once when forgotten.
func TestReplayFilterFullCostsNothing(t *testing.T) {
	const n = 1 << 12
	f := NewReplayFilter(n)
	now := time.Unix(3_000_000, 0)
	for i := range n {
		if err := f.Check(replayKey(i), now.Add(MaxSkew), now); err != nil {
			t.Fatal(err)
		}
	}
	before := f.visited
	for i := range 10 * n {
		at := now.Add(time.Duration(i) * time.Millisecond) // within the skew window
		if err := f.Check(replayKey(n+i), at.Add(MaxSkew), at); !errors.Is(err, ErrReplayFull) {
			t.Fatalf("hello %d: got %v, want ErrReplayFull", i, err)
		}
	}
	if got := f.visited - before; got != 0 {
		t.Errorf("refusing %d hellos visited %d entries, want 0", 10*n, got)
	}
	later := now.Add(MaxSkew + 2*time.Second)
	if err := f.Check(replayKey(-1), later.Add(MaxSkew), later); err != nil {
		t.Fatalf("after expiry: %v", err)
	}
	if got := f.visited; got != 2*n+1 {
		t.Errorf("visited %d entries in all, want %d (each added and forgotten once, plus one)", got, 2*n+1)
	}
}

// heapInUse returns the bytes of live heap objects.
func heapInUse() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

// TestReplayFilterGrowsWithUse: a filter costs memory for what it holds,
// not for its capacity, and gives it back once its entries expire.
func TestReplayFilterGrowsWithUse(t *testing.T) {
	// What an empty filter may cost: the ring, a map header, slack for
	// the runtime's own allocations.
	const slack = 64 << 10
	before := heapInUse()
	f := NewReplayFilter(0)
	if got := heapInUse() - before; got > slack {
		t.Errorf("an empty filter of capacity %d takes %d bytes, want at most %d", DefaultReplayCapacity, got, slack)
	}
	now := time.Unix(6_000_000, 0)
	const n = 20_000
	for i := range n {
		if err := f.Check(replayKey(i), now.Add(MaxSkew), now); err != nil {
			t.Fatalf("hello %d: %v", i, err)
		}
	}
	full := heapInUse() - before
	if full < n*32 {
		t.Errorf("%d entries in %d bytes: the measurement does not see the filter", n, full)
	}
	later := now.Add(MaxSkew + 2*time.Second)
	if err := f.Check(replayKey(-1), later.Add(MaxSkew), later); err != nil {
		t.Fatal(err)
	}
	if got := heapInUse() - before; got > slack {
		t.Errorf("after %d entries expired, the filter still takes %d bytes (%d full), want at most %d", n, got, full, slack)
	}
	// Still a filter: the entry just added is a replay, the expired ones
	// are not.
	if err := f.Check(replayKey(-1), later.Add(MaxSkew), later); !errors.Is(err, ErrReplay) {
		t.Errorf("entry added after the shrink: got %v, want ErrReplay", err)
	}
	if err := f.Check(replayKey(0), later.Add(MaxSkew), later); err != nil {
		t.Errorf("expired entry: %v", err)
	}
	runtime.KeepAlive(f)
}

// TestReplayFilterShrinksKeepingEntries lets most entries expire while
// others stay: the filter gives memory back and still knows every
// unexpired entry, and fills up to its capacity again.
func TestReplayFilterShrinksKeepingEntries(t *testing.T) {
	const capacity = 1000
	f := NewReplayFilter(capacity)
	now := time.Unix(7_000_000, 0)
	for i := range capacity {
		// One in ten lives a minute longer.
		exp := now.Add(time.Second)
		if i%10 == 0 {
			exp = now.Add(MaxSkew)
		}
		if err := f.Check(replayKey(i), exp, now); err != nil {
			t.Fatalf("entry %d: %v", i, err)
		}
	}
	if err := f.Check(replayKey(capacity), now.Add(time.Second), now); !errors.Is(err, ErrReplayFull) {
		t.Fatalf("full filter: got %v, want ErrReplayFull", err)
	}
	later := now.Add(3 * time.Second)
	for i := range capacity {
		err := f.Check(replayKey(i), later.Add(MaxSkew), later)
		if i%10 == 0 && !errors.Is(err, ErrReplay) {
			t.Fatalf("unexpired entry %d after the shrink: got %v, want ErrReplay", i, err)
		}
		if i%10 != 0 && err != nil && !errors.Is(err, ErrReplayFull) {
			t.Fatalf("expired entry %d: %v", i, err)
		}
	}
	if len(f.slots) != capacity {
		t.Errorf("%d slots after refilling, want the capacity, %d", len(f.slots), capacity)
	}
	if err := f.Check(replayKey(-1), later.Add(MaxSkew), later); !errors.Is(err, ErrReplayFull) {
		t.Fatalf("refilled filter: got %v, want ErrReplayFull", err)
	}
}

// BenchmarkReplayFull measures Check on a filter full of unexpired hellos,
// the state a flood leaves it in. Its cost must not depend on the capacity.
func BenchmarkReplayFull(b *testing.B) {
	f := NewReplayFilter(0)
	now := time.Unix(4_000_000, 0)
	for i := range DefaultReplayCapacity {
		if err := f.Check(replayKey(i), now.Add(ReplayHorizon), now); err != nil {
			b.Fatal(err)
		}
	}
	i := DefaultReplayCapacity
	for b.Loop() {
		if err := f.Check(replayKey(i), now.Add(MaxSkew), now); !errors.Is(err, ErrReplayFull) {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkReplayChurn measures Check at a steady rate of fresh hellos
// that keeps the filter near full while old entries expire.
func BenchmarkReplayChurn(b *testing.B) {
	f := NewReplayFilter(0)
	now := time.Unix(5_000_000, 0)
	// 65536 entries per two minutes: about 546 hellos a second.
	step := ReplayHorizon / DefaultReplayCapacity
	i := 0
	for b.Loop() {
		at := now.Add(time.Duration(i) * step)
		f.Check(replayKey(i), at.Add(MaxSkew), at)
		i++
	}
}
