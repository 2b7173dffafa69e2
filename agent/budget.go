package agent

import (
	"net/netip"
	"sync"
	"time"
)

// maxSources bounds the memory of a failureBudget under a flood of sources.
const maxSources = 4096

// failureBudget is a token bucket per source address: each failed hello
// spends a token, tokens come back at n per period, and a source with none
// left is refused until one comes back.
type failureBudget struct {
	mu      sync.Mutex
	n       float64
	per     time.Duration
	sources map[netip.Addr]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newFailureBudget(n int, per time.Duration) *failureBudget {
	return &failureBudget{n: float64(n), per: per, sources: make(map[netip.Addr]*bucket)}
}

func (f *failureBudget) refill(b *bucket, now time.Time) {
	b.tokens = min(f.n, b.tokens+f.n*now.Sub(b.last).Seconds()/f.per.Seconds())
	b.last = now
}

// allowed reports whether src may open a connection.
func (f *failureBudget) allowed(src netip.Addr, now time.Time) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, ok := f.sources[src]
	if !ok {
		return true
	}
	f.refill(b, now)
	return b.tokens >= 1
}

// fail spends one of src's tokens.
func (f *failureBudget) fail(src netip.Addr, now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, ok := f.sources[src]
	if !ok {
		if len(f.sources) >= maxSources {
			f.forgetRecovered(now)
		}
		b = &bucket{tokens: f.n, last: now}
		f.sources[src] = b
	}
	f.refill(b, now)
	b.tokens = max(0, b.tokens-1)
}

// forgetRecovered drops sources whose bucket is full again, and if that is
// not enough, drops arbitrary ones: forgetting a source only gives it its
// budget back early.
func (f *failureBudget) forgetRecovered(now time.Time) {
	for src, b := range f.sources {
		f.refill(b, now)
		if b.tokens >= f.n {
			delete(f.sources, src)
		}
	}
	for src := range f.sources {
		if len(f.sources) < maxSources {
			break
		}
		delete(f.sources, src)
	}
}

// tokenBucket is one budget for a whole agent, whoever the sender: burst
// tokens, coming back at rate a second. Unlike failureBudget it is keyed
// on nothing a sender chooses, so no sender can spend another's share by
// forging its address: each spends the common one.
type tokenBucket struct {
	mu     sync.Mutex
	burst  float64
	rate   float64
	tokens float64
	last   time.Time
}

func newTokenBucket(burst int, rate float64) *tokenBucket {
	return &tokenBucket{burst: float64(burst), rate: rate, tokens: float64(burst)}
}

// take spends a token if there is one, and reports whether it did.
func (b *tokenBucket) take(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.last.IsZero() && now.After(b.last) {
		b.tokens = min(b.burst, b.tokens+b.rate*now.Sub(b.last).Seconds())
	}
	if now.After(b.last) {
		b.last = now
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// refund gives back a token taken for something that was not done after
// all.
func (b *tokenBucket) refund() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.tokens = min(b.burst, b.tokens+1)
}
