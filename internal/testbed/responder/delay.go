package responder

// delayQueue holds replies until they are due: a fixed number of slots
// of MaxReply bytes, allocated once, and a heap of the slots in use
// ordered by when each is due. Times are nanoseconds on the caller's
// clock. It is not safe for concurrent use: the caller locks.
type delayQueue struct {
	buf  []byte
	lens []uint8
	due  []int64
	heap []int32 // slots in use, a min-heap on due
	free []int32
	seq  []uint64 // per slot: when pushed, so that equal times keep their order
	next uint64
}

func newDelayQueue(n int) *delayQueue {
	q := &delayQueue{buf: make([]byte, n*MaxReply), lens: make([]uint8, n), due: make([]int64, n),
		heap: make([]int32, 0, n), free: make([]int32, n), seq: make([]uint64, n)}
	for i := range q.free {
		q.free[i] = int32(n - 1 - i)
	}
	return q
}

// push queues frame, due at the given time; false when every slot is
// taken (the frame is dropped).
func (q *delayQueue) push(frame []byte, due int64) bool {
	if len(q.free) == 0 || len(frame) > MaxReply {
		return false
	}
	s := q.free[len(q.free)-1]
	q.free = q.free[:len(q.free)-1]
	q.lens[s] = uint8(copy(q.buf[int(s)*MaxReply:], frame))
	q.due[s] = due
	q.seq[s] = q.next
	q.next++
	q.heap = append(q.heap, s)
	q.up(len(q.heap) - 1)
	return true
}

// pop copies the earliest frame due at now or before into out and
// returns its length; n is 0 when none is due, and next then is when the
// earliest is due (ok false: the queue is empty).
func (q *delayQueue) pop(now int64, out []byte) (n int, next int64, ok bool) {
	if len(q.heap) == 0 {
		return 0, 0, false
	}
	s := q.heap[0]
	if q.due[s] > now {
		return 0, q.due[s], true
	}
	n = copy(out, q.buf[int(s)*MaxReply:int(s)*MaxReply+int(q.lens[s])])
	last := len(q.heap) - 1
	q.heap[0] = q.heap[last]
	q.heap = q.heap[:last]
	if last > 0 {
		q.down(0)
	}
	q.free = append(q.free, s)
	return n, now, true
}

func (q *delayQueue) len() int { return len(q.heap) }

func (q *delayQueue) less(i, j int) bool {
	a, b := q.heap[i], q.heap[j]
	if q.due[a] != q.due[b] {
		return q.due[a] < q.due[b]
	}
	return q.seq[a] < q.seq[b]
}

func (q *delayQueue) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !q.less(i, p) {
			return
		}
		q.heap[i], q.heap[p] = q.heap[p], q.heap[i]
		i = p
	}
}

func (q *delayQueue) down(i int) {
	n := len(q.heap)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		m := l
		if r := l + 1; r < n && q.less(r, l) {
			m = r
		}
		if !q.less(m, i) {
			return
		}
		q.heap[i], q.heap[m] = q.heap[m], q.heap[i]
		i = m
	}
}
