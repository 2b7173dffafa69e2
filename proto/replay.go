package proto

import (
	"errors"
	"sync"
	"time"
)

// DefaultReplayCapacity bounds a ReplayFilter made with a zero capacity.
const DefaultReplayCapacity = 1 << 16

// replayMinSlots is the fewest slots a filter that holds anything keeps:
// below it, growing and shrinking would cost more than they save.
const replayMinSlots = 64

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
// bounded by its capacity, and follows what it holds: a filter that holds
// nothing costs a few hundred bytes, one that held many gives the memory
// back once they have expired, so an idle agent does not pay for a flood
// it once took. It is safe for concurrent use.
//
// Entries sit in a ring of one-second buckets by expiry, each a linked list
// through an array of slots, so that Check forgets expired entries by
// emptying the buckets whose second has passed: each entry is visited once
// when it is added and once when it is forgotten, and a full filter refuses
// a newcomer without looking at the others. The array doubles when it is
// full and below the capacity, and is rebuilt at twice the entries left
// when they fill a quarter of it or less; each rebuild visits the entries
// left, which the entries forgotten since the last resize pay for, so the
// cost per hello stays constant.
type ReplayFilter struct {
	mu       sync.Mutex
	capacity int
	seen     map[[32]byte]struct{}
	slots    []replaySlot
	free     int32   // first free slot, -1 if none
	ring     []int32 // ring[s%len(ring)]: first slot expiring within second s, -1 if none
	swept    int64   // buckets up to this second have been emptied
	// visited counts slots touched while adding, sweeping and rebuilding,
	// so tests can check that the cost per hello does not grow with the
	// entries held.
	visited int
}

type replaySlot struct {
	key  [32]byte
	next int32
}

// NewReplayFilter returns a filter holding at most capacity hellos (0 means
// DefaultReplayCapacity). It allocates room as hellos come, not up front.
func NewReplayFilter(capacity int) *ReplayFilter {
	if capacity <= 0 || capacity > 1<<30 {
		capacity = DefaultReplayCapacity
	}
	f := &ReplayFilter{
		capacity: capacity,
		seen:     make(map[[32]byte]struct{}),
		free:     -1,
		// One bucket per second of the horizon, one for the partial second
		// at each end, and one for the second being swept.
		ring: make([]int32, int(ReplayHorizon/time.Second)+3),
	}
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
		if len(f.slots) >= f.capacity {
			return ErrReplayFull
		}
		f.grow()
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

// grow doubles the slots, within the capacity, and frees the new ones.
func (f *ReplayFilter) grow() {
	n := min(f.capacity, max(replayMinSlots, 2*len(f.slots)))
	slots := make([]replaySlot, n)
	copy(slots, f.slots)
	for i := len(f.slots); i < n; i++ {
		slots[i].next = int32(i + 1)
	}
	slots[n-1].next = f.free
	f.free = int32(len(f.slots))
	f.slots = slots
}

// sweep forgets the entries of every second before now's, and gives
// memory back when few are left.
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
	if len(f.slots) > replayMinSlots && 4*len(f.seen) <= len(f.slots) {
		f.shrink()
	}
}

// shrink moves the entries left into new slots, twice as many as they
// are (or none at all), and a new map: a Go map never gives back the
// room it grew to.
func (f *ReplayFilter) shrink() {
	live := len(f.seen)
	var slots []replaySlot
	if live > 0 {
		slots = make([]replaySlot, max(replayMinSlots, 2*live))
	}
	seen := make(map[[32]byte]struct{}, live)
	n := int32(0)
	for r := range f.ring {
		head := int32(-1)
		for i := f.ring[r]; i >= 0; i = f.slots[i].next {
			slots[n] = replaySlot{key: f.slots[i].key, next: head}
			seen[f.slots[i].key] = struct{}{}
			head = n
			n++
			f.visited++
		}
		f.ring[r] = head
	}
	f.free = -1
	for i := len(slots) - 1; i >= int(n); i-- {
		slots[i].next = f.free
		f.free = int32(i)
	}
	f.slots, f.seen = slots, seen
}
