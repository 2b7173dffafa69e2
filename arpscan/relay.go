package arpscan

import (
	"context"
	"sync"
)

// relay hands a sweep's first answers on to its caller's channel, in the
// order they came, for the reader: a reader that waited for the caller
// (a port scan busy with the hosts found first) would leave replies in
// the socket while the sender took the silence for absence. It queues at
// most one result per target.
type relay struct {
	mu     sync.Mutex
	queue  []Result
	closed bool
	more   chan struct{}
	done   chan struct{}
}

// startRelay relays to out until finish, or until ctx is done; out may be
// nil, and then nothing is relayed.
func startRelay(ctx context.Context, out chan<- Result) *relay {
	r := &relay{more: make(chan struct{}, 1), done: make(chan struct{})}
	if out == nil {
		close(r.done)
		return r
	}
	go func() {
		defer close(r.done)
		for {
			r.mu.Lock()
			q, closed := r.queue, r.closed
			r.queue = nil
			r.mu.Unlock()
			for _, res := range q {
				select {
				case out <- res:
				case <-ctx.Done():
					return
				}
			}
			if len(q) > 0 {
				continue
			}
			if closed {
				return
			}
			select {
			case <-r.more:
			case <-ctx.Done():
				return
			}
		}
	}()
	return r
}

// push queues res without waiting.
func (r *relay) push(res Result) {
	r.mu.Lock()
	r.queue = append(r.queue, res)
	r.mu.Unlock()
	select {
	case r.more <- struct{}{}:
	default:
	}
}

// finish waits until every result pushed is on out, or ctx is done.
func (r *relay) finish() {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	select {
	case r.more <- struct{}{}:
	default:
	}
	<-r.done
}
