package responder

import (
	"testing"
)

func TestDelayQueue(t *testing.T) {
	q := newDelayQueue(4)
	f := func(b byte) []byte { return []byte{b, b, b} }
	for _, p := range []struct {
		b   byte
		due int64
	}{{1, 30}, {2, 10}, {3, 20}, {4, 10}} {
		if !q.push(f(p.b), p.due) {
			t.Fatalf("push %d refused with %d queued", p.b, q.len())
		}
	}
	if q.push(f(5), 0) {
		t.Fatal("a fifth frame was queued in four slots")
	}
	out := make([]byte, MaxReply)
	if n, next, ok := q.pop(9, out); n != 0 || next != 10 || !ok {
		t.Fatalf("pop at 9: %d bytes, next %d, %v; want none, next at 10", n, next, ok)
	}
	var got []byte
	for _, now := range []int64{10, 10, 25, 100} {
		n, _, _ := q.pop(now, out)
		if n != 3 {
			t.Fatalf("pop at %d: %d bytes, want 3", now, n)
		}
		got = append(got, out[0])
	}
	// Due first first; of two due at once, the first pushed.
	if string(got) != "\x02\x04\x03\x01" {
		t.Errorf("popped %v, want [2 4 3 1]", got)
	}
	if n, _, ok := q.pop(1000, out); n != 0 || ok {
		t.Errorf("pop of an empty queue: %d bytes, %v", n, ok)
	}
	// Every slot is free again.
	for i := range 4 {
		if !q.push(f(byte(i)), int64(i)) {
			t.Fatalf("push %d refused after the queue emptied", i)
		}
	}
}

// TestDelayQueueOrder pushes many frames at pseudo-random times and pops
// them in time order.
func TestDelayQueueOrder(t *testing.T) {
	const n = 1000
	q := newDelayQueue(n)
	x := uint64(7)
	for i := range n {
		x = mix(x)
		due := int64(x % 5000)
		b := []byte{byte(due >> 8), byte(due), byte(i)}
		if !q.push(b, due) {
			t.Fatalf("push %d refused", i)
		}
	}
	out := make([]byte, MaxReply)
	last := int64(-1)
	for i := range n {
		nb, _, _ := q.pop(1<<62, out)
		if nb != 3 {
			t.Fatalf("pop %d: %d bytes", i, nb)
		}
		due := int64(out[0])<<8 | int64(out[1])
		if due < last {
			t.Fatalf("pop %d: due %d after %d", i, due, last)
		}
		last = due
	}
}
