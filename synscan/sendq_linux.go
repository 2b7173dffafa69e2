package synscan

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Every probe goes out through a sendQueue: the raw sockets' IPv4
// packets and IPv6 segments, and the Ethernet frames to learned hosts.
// The scan's loop queues a probe only when its pacer lets it go, so a
// batch holds only probes already due; it is handed to the sender when
// it is full or when the loop is about to wait (Flush). The sender
// goroutine sends each batch with sendmmsg(2), one system call for the
// probes in a row to one socket: on a virtual link the send carries the
// whole round trip (the bridge, the host's answer, its way back) in the
// sender's system call, and the loop meanwhile gets on with the next
// probes on the other CPU.

// sendBatchLen is how many probes go to the sender at a time; batches
// in flight bound the probes queued.
const (
	sendBatchLen = 32
	sendBatches  = 4
)

// maxEINTR bounds the tries of one message interrupted before anything
// was sent.
const maxEINTR = 8

// sendQueue carries probes from the scan's loop (add, Flush) to the
// goroutine that sends them. Once quit is closed the loop's side hands
// over nothing more, and never blocks; the sender sends what was handed
// over and stops.
type sendQueue struct {
	full, empty chan *sendBatch
	cur         *sendBatch
	quit, done  chan struct{}
	stop        sync.Once
	refused     atomic.Int64
	mu          sync.Mutex
	err         error // a failure other than a refusal, until reported
	// failing is set with err or refused: add checks it alone.
	failing atomic.Bool
	// sendmmsg sends msgs on fd: it returns how many of them went, in
	// order, or an error for the first when none did (sendmmsg(2)).
	sendmmsg func(fd int, msgs []unix.Mmsghdr) (int, error)
}

// sendBatch is probes back to back in buf, each with its socket and
// address; hdrs and iovs are the sender's, rebuilt for every batch as
// buf may have moved.
type sendBatch struct {
	buf  []byte
	msgs []queuedMsg
	hdrs []unix.Mmsghdr
	iovs []unix.Iovec
}

// queuedMsg is one probe in a batch.
type queuedMsg struct {
	fd       int
	off, end int // the packet, in buf
	// Its control message, in buf; ctlEnd 0: none.
	ctlOff, ctlEnd int
	name           sockName
	dst            netip.Addr // for errors
}

// sockName is a socket address as the kernel reads it: a sockaddr_in,
// sockaddr_in6 or sockaddr_ll, in the room of the largest.
type sockName struct {
	raw unix.RawSockaddrInet6
	len uint32
}

func inet4Name(a netip.Addr) sockName {
	var n sockName
	sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(&n.raw))
	sa.Family, sa.Addr = unix.AF_INET, a.As4()
	n.len = unix.SizeofSockaddrInet4
	return n
}

func inet6Name(a netip.Addr, scope int) sockName {
	return sockName{raw: unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: a.As16(), Scope_id: uint32(scope)}, len: unix.SizeofSockaddrInet6}
}

// linkName is where a packet socket sends an IPv4 frame: to mac, out of
// the link with index ifindex.
func linkName(ifindex int, mac net.HardwareAddr) sockName {
	var n sockName
	sa := (*unix.RawSockaddrLinklayer)(unsafe.Pointer(&n.raw))
	sa.Family, sa.Ifindex, sa.Halen = unix.AF_PACKET, int32(ifindex), 6
	// In network order, as the EtherType in a frame.
	binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&sa.Protocol))[:], unix.ETH_P_IP)
	copy(sa.Addr[:], mac)
	n.len = unix.SizeofSockaddrLinklayer
	return n
}

func newSendQueue() *sendQueue {
	q := &sendQueue{full: make(chan *sendBatch, sendBatches), empty: make(chan *sendBatch, sendBatches),
		quit: make(chan struct{}), done: make(chan struct{}), sendmmsg: sendmmsg}
	for range sendBatches {
		q.empty <- &sendBatch{buf: make([]byte, 0, sendBatchLen*128), msgs: make([]queuedMsg, 0, sendBatchLen),
			hdrs: make([]unix.Mmsghdr, 0, sendBatchLen), iovs: make([]unix.Iovec, 0, sendBatchLen)}
	}
	go q.send()
	return q
}

// sendmmsg is sendmmsg(2) on a blocking socket.
func sendmmsg(fd int, msgs []unix.Mmsghdr) (int, error) {
	n, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&msgs[0])), uintptr(len(msgs)), 0, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// add queues a message to fd: head then pkt, with ctl as its control
// message, to name. It returns what failed since the last add (see
// failed) instead of queueing, and net.ErrClosed once the queue is
// closed.
func (q *sendQueue) add(fd int, head, pkt, ctl []byte, name sockName, dst netip.Addr) error {
	if err := q.failed(); err != nil {
		return err
	}
	b := q.batch()
	if b == nil {
		return net.ErrClosed
	}
	m := queuedMsg{fd: fd, off: len(b.buf), name: name, dst: dst}
	b.buf = append(append(b.buf, head...), pkt...)
	m.end = len(b.buf)
	if len(ctl) > 0 {
		// Aligned as the kernel lays control messages out.
		for len(b.buf)%unix.SizeofPtr != 0 {
			b.buf = append(b.buf, 0)
		}
		m.ctlOff = len(b.buf)
		b.buf = append(b.buf, ctl...)
		m.ctlEnd = len(b.buf)
	}
	b.msgs = append(b.msgs, m)
	if len(b.msgs) == sendBatchLen {
		q.flush()
	}
	return nil
}

// batch is the batch being filled; it waits for one to come back from
// the sender when all are queued, which paces the loop as a blocking
// send would. It is nil once the queue is closed.
func (q *sendQueue) batch() *sendBatch {
	select {
	case <-q.quit:
		q.cur = nil
		return nil
	default:
	}
	if q.cur == nil {
		select {
		case q.cur = <-q.empty:
		case <-q.quit:
		}
	}
	return q.cur
}

func (q *sendQueue) flush() {
	if q.cur != nil && len(q.cur.msgs) > 0 {
		select {
		case q.full <- q.cur:
		case <-q.quit:
		}
		q.cur = nil
	}
}

// failed is why the probes sent since the last call did not all go: what
// failed other than a refusal (once: a link that was down for a moment
// does not fail every scan after; it ends the scan, and the refusals
// counted with it are dropped), else an error wrapping ENOBUFS for the
// refusals.
func (q *sendQueue) failed() error {
	if !q.failing.Load() {
		return nil
	}
	q.failing.Store(false)
	q.mu.Lock()
	err := q.err
	q.err = nil
	q.mu.Unlock()
	k := q.refused.Swap(0)
	if err != nil {
		return err
	}
	if k > 0 {
		return fmt.Errorf("synscan: %d probes refused: %w", k, unix.ENOBUFS)
	}
	return nil
}

func (q *sendQueue) send() {
	defer close(q.done)
	for {
		select {
		case b := <-q.full:
			q.sendBatch(b)
		case <-q.quit:
			for {
				select {
				case b := <-q.full:
					q.sendBatch(b)
				default:
					return
				}
			}
		}
	}
}

// noteRefused counts a probe the kernel had no room for.
func (q *sendQueue) noteRefused() {
	q.refused.Add(1)
	q.failing.Store(true)
}

// noteFailed keeps the first error of a probe that did not go, until
// failed reports it.
func (q *sendQueue) noteFailed(m *queuedMsg, err error) {
	if errors.Is(err, unix.ENOBUFS) || errors.Is(err, unix.EAGAIN) {
		q.noteRefused()
		return
	}
	q.mu.Lock()
	if q.err == nil {
		q.err = fmt.Errorf("synscan: sending to %v: %w", m.dst, err)
	}
	q.mu.Unlock()
	q.failing.Store(true)
}

// prepare points the headers of sendmmsg at b's messages. The batch is
// the sender's alone, and hdrs and iovs have room for a whole one:
// nothing moves while the kernel reads them.
func (b *sendBatch) prepare() {
	b.hdrs, b.iovs = b.hdrs[:0], b.iovs[:0]
	for i := range b.msgs {
		m := &b.msgs[i]
		b.iovs = append(b.iovs, unix.Iovec{Base: &b.buf[m.off]})
		b.iovs[i].SetLen(m.end - m.off)
		var h unix.Mmsghdr
		h.Hdr.Name = (*byte)(unsafe.Pointer(&m.name.raw))
		h.Hdr.Namelen = m.name.len
		h.Hdr.Iov = &b.iovs[i]
		h.Hdr.SetIovlen(1)
		if m.ctlEnd > 0 {
			h.Hdr.Control = &b.buf[m.ctlOff]
			h.Hdr.SetControllen(m.ctlEnd - m.ctlOff)
		}
		b.hdrs = append(b.hdrs, h)
	}
}

// sendBatch sends b's messages in order, each once: the messages in a
// row to one socket in one sendmmsg. A call that sent only some (the
// kernel stops at the first it cannot send, and says nothing of why) is
// followed by one from the first unsent, which then fails alone with its
// error, is counted, and is skipped.
func (q *sendQueue) sendBatch(b *sendBatch) {
	b.prepare()
	intr := 0
	for i := 0; i < len(b.msgs); {
		j := i + 1
		for j < len(b.msgs) && b.msgs[j].fd == b.msgs[i].fd {
			j++
		}
		n, err := q.sendmmsg(b.msgs[i].fd, b.hdrs[i:j])
		switch {
		case err == nil && n > 0:
			i += min(n, j-i)
			intr = 0
		case errors.Is(err, unix.EINTR) && intr < maxEINTR:
			intr++
		default:
			if err == nil {
				err = errSentNone
			}
			q.noteFailed(&b.msgs[i], err)
			i++
			intr = 0
		}
	}
	b.buf, b.msgs = b.buf[:0], b.msgs[:0]
	q.empty <- b
}

// errSentNone is a sendmmsg that returned neither a count nor an error.
var errSentNone = errors.New("sendmmsg sent nothing and returned no error")

// close stops the sender once the batches handed over are sent; a batch
// being filled is dropped.
func (q *sendQueue) close() {
	q.stop.Do(func() {
		close(q.quit)
		<-q.done
	})
}
