package arpscan

import (
	"time"

	"github.com/ifl-project/ifl/internal/support/readmark"
)

// Replies the reading socket dropped for want of room (its reader fell
// behind) were lost here, not on the segment: the rate falls, the silent
// addresses tried in the span the lost replies were due in are owed a
// try, and an address still silent whose last try went out before the
// last replies were dropped is counted unsure: it may be there.

// dropLookEvery is how many turns of the sender go between two looks at
// the reader's drops: a look is a system call.
const dropLookEvery = 32

// dropCounter is a net.PacketConn that counts what it dropped itself
// (a test's fake): a socket is asked through its file descriptor.
type dropCounter interface {
	Drops() uint64
}

// drops returns what the reading socket has dropped so far; 0 where it
// gives no count.
func (s *Scanner) drops() uint64 {
	if s.stamped == nil {
		if c, ok := s.pc.(dropCounter); ok {
			return c.Drops()
		}
		return 0
	}
	var n uint64
	s.stamped.Control(func(fd uintptr) { n, _ = readmark.Drops(int(fd)) })
	return n
}

// lookForDrops looks at the reader's drops, at now; if some came since
// the last look, it owes the silent addresses tried since a round before
// that look a try, cuts the rate, and reports true. Call it with the
// sweep locked.
func (sn *sender) lookForDrops(now time.Time) bool {
	n := sn.s.drops()
	prev := sn.lookedAt
	sn.lookedAt = now
	if n <= sn.dropsSeen {
		return false
	}
	sn.st.Dropped += int(n - sn.dropsSeen)
	sn.dropsSeen = n
	sn.droppedAt = now
	from := prev.Add(-sn.checkWait(0))
	for _, t := range sn.order[:sn.next] {
		if t.mac == nil && !t.lastSent.Before(from) && t.extra < sn.maxExtra() {
			t.extra++
		}
	}
	sn.cut(now, now)
	sn.respend()
	return true
}

// unsure counts the silent addresses whose last try went out before the
// last replies were dropped. Call it with the sweep locked.
func (sn *sender) unsure() int {
	if sn.droppedAt.IsZero() {
		return 0
	}
	n := 0
	for _, t := range sn.order {
		if t.mac == nil && t.tries > 0 && t.lastSent.Before(sn.droppedAt) {
			n++
		}
	}
	return n
}
