package proto

import (
	"errors"
	"sync"
	"time"
)

// DefaultReplayCapacity bounds a ReplayFilter made with a zero capacity.
const DefaultReplayCapacity = 1 << 16

// ErrReplayFull is returned by ReplayFilter.Check when it holds its
// capacity of unexpired hellos: it refuses new ones rather than forget one
// that could still be replayed.
var ErrReplayFull = errors.New("replay filter full: too many handshakes within the skew window")

// ReplayFilter remembers the hellos an agent accepted until their
// timestamps leave the skew window, so each is accepted once. Memory is
// bounded by its capacity. It is safe for concurrent use.
type ReplayFilter struct {
	mu   sync.Mutex
	cap  int
	seen map[[32]byte]time.Time // hello key → time after which it is stale anyway
}

// NewReplayFilter returns a filter holding at most capacity hellos (0 means
// DefaultReplayCapacity).
func NewReplayFilter(capacity int) *ReplayFilter {
	if capacity <= 0 {
		capacity = DefaultReplayCapacity
	}
	return &ReplayFilter{cap: capacity, seen: make(map[[32]byte]time.Time)}
}

// Check records key, valid until expires, and fails with ErrReplay if it was
// recorded before.
func (f *ReplayFilter) Check(key [32]byte, expires, now time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.seen[key]; ok {
		return ErrReplay
	}
	if len(f.seen) >= f.cap {
		for k, exp := range f.seen {
			if now.After(exp) {
				delete(f.seen, k)
			}
		}
		if len(f.seen) >= f.cap {
			return ErrReplayFull
		}
	}
	f.seen[key] = expires
	return nil
}
