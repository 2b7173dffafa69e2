package proto

import (
	"errors"
	"sync"
	"time"
)

// DefaultReplayCapacity bounds a ReplayFilter made with a zero capacity.
const DefaultReplayCapacity = 1 << 16

// ReplayHorizon is how far past the current time a ReplayFilter accepts an
// expiry: a hello accepted within MaxSkew of the agent's clock stays
// replayable until its timestamp plus MaxSkew, at most 2*MaxSkew from now.
const ReplayHorizon = 2 * MaxSkew

// ErrReplayFull is returned by ReplayFilter.Check when it holds its
// capacity of unexpired hellos: it refuses new ones rather than forget one
// that could still be replayed. It says nothing about the peer, so an agent
// must not count it against the peer's source address.
var ErrReplayFull = errors.New("replay filter full: too many handshakes within the skew window")

// ReplayFilter remembers the hellos an agent accepted until their
// timestamps leave the skew window, so each is accepted once. Memory is
// bounded by its capacity, fixed when it is made. It is safe for concurrent
// use.
//
// Entries sit in a ring of one-second buckets by expiry, each a linked list
// through a fixed array of slots, so that Check forgets expired entries by
// emptying the buckets whose second has passed: each entry is visited once
// when it is added and once when it is forgotten, and a full filter refuses
// a newcomer without looking at the others.
type ReplayFilter struct {
	mu    sync.Mutex
	seen  map[[32]byte]struct{}
	slots []replaySlot
	free  int32   // first free slot, -1 if none
	ring  []int32 // ring[s%len(ring)]: first slot expiring within second s, -1 if none
	swept int64   // buckets up to this second have been emptied
	// visited counts slots touched while adding and sweeping, so tests can
	// check that the cost per hello does not grow with the entries held.
	visited int
}

type replaySlot struct {
	key  [32]byte
	next int32
}

// NewReplayFilter returns a filter holding at most capacity hellos (0 means
// DefaultReplayCapacity).
func NewReplayFilter(capacity int) *ReplayFilter {
	if capacity <= 0 || capacity > 1<<30 {
		capacity = DefaultReplayCapacity
	}
	f := &ReplayFilter{
		seen:  make(map[[32]byte]struct{}, capacity),
		slots: make([]replaySlot, capacity),
		// One bucket per second of the horizon, one for the partial second
		// at each end, and one for the second being swept.
		ring: make([]int32, int(ReplayHorizon/time.Second)+3),
	}
	for i := range f.slots {
		f.slots[i].next = int32(i + 1)
	}
	f.slots[capacity-1].next = -1
	for i := range f.ring {
		f.ring[i] = -1
	}
	f.swept = -1 << 62
	return f
}

// Check records key, valid until expires, and fails with ErrReplay if it
// was recorded before and has not expired. It fails with ErrReplayFull if
// the filter holds its capacity of unexpired keys, and with an error if
// expires is more than ReplayHorizon after now (the filter could not keep
// it long enough).
func (f *ReplayFilter) Check(key [32]byte, expires, now time.Time) error {
	if expires.Sub(now) > ReplayHorizon {
		return errors.New("proto: replay filter: expiry beyond the horizon")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sweep(now)
	if _, ok := f.seen[key]; ok {
		return ErrReplay
	}
	if f.free < 0 {
		return ErrReplayFull
	}
	// The bucket of the first whole second at or after expires, so that
	// an entry is never forgotten before it expires.
	sec := expires.Unix()
	if expires.Nanosecond() != 0 {
		sec++
	}
	sec = max(sec, f.swept+1)
	i := f.free
	f.free = f.slots[i].next
	b := &f.ring[sec%int64(len(f.ring))]
	f.slots[i] = replaySlot{key: key, next: *b}
	*b = i
	f.seen[key] = struct{}{}
	f.visited++
	return nil
}

// sweep forgets the entries of every second before now's.
func (f *ReplayFilter) sweep(now time.Time) {
	last := now.Unix() - 1
	if last <= f.swept {
		return // within the same second, or the clock went back
	}
	// A jump past the whole ring needs each bucket emptied once only.
	from := max(f.swept+1, last-int64(len(f.ring))+1)
	for s := from; s <= last; s++ {
		b := &f.ring[s%int64(len(f.ring))]
		for i := *b; i >= 0; {
			next := f.slots[i].next
			delete(f.seen, f.slots[i].key)
			f.slots[i].next = f.free
			f.free = i
			f.visited++
			i = next
		}
		*b = -1
	}
	f.swept = last
}
