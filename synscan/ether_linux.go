package synscan

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// An on-link IPv4 host whose MAC a sweep has just learned gets its SYNs
// as Ethernet frames on the link's packet socket. Through the raw IP
// socket, the kernel would first resolve the host itself: one more ARP
// broadcast per host, with the SYN held until the reply, and if that
// broadcast is lost (a segment busy with the sweep's own), a second only
// a second later, long after a probe whose wait follows the host's round
// trip has given up.

// ethLink is a packet socket that sends on one link.
type ethLink struct {
	fd  int
	ifi *net.Interface
}

// neighbour is where to send frames for an address.
type neighbour struct {
	link *ethLink
	mac  net.HardwareAddr
}

// addLink opens a packet socket on ifi. It needs CAP_NET_RAW.
func (s *sockets) addLink(ifi *net.Interface) error {
	if len(ifi.HardwareAddr) != 6 {
		return fmt.Errorf("synscan: %s: not an Ethernet link", ifi.Name)
	}
	s.nmu.Lock()
	defer s.nmu.Unlock()
	if s.links[ifi.Index] != nil {
		return nil
	}
	// Protocol 0: the socket sends and reads nothing.
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return wrapSocketErr(err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Ifindex: ifi.Index}); err != nil {
		unix.Close(fd)
		return fmt.Errorf("synscan: %s: %w", ifi.Name, err)
	}
	s.links[ifi.Index] = &ethLink{fd: fd, ifi: ifi}
	return nil
}

// learn records that a lives on the link with the given index at mac;
// a link without a packet socket is ignored.
func (s *sockets) learn(a netip.Addr, ifindex int, mac net.HardwareAddr) {
	s.nmu.Lock()
	defer s.nmu.Unlock()
	if l := s.links[ifindex]; l != nil && a.Is4() && len(mac) == 6 {
		s.neigh[a] = neighbour{link: l, mac: append(net.HardwareAddr(nil), mac...)}
	}
}

// frameTo returns where a frame to a goes and the queue it goes on, the
// queue started at the first frame (one lock a probe); ok is false for an
// address no sweep learned, the error net.ErrClosed once the sockets are
// closed.
func (s *sockets) frameTo(a netip.Addr) (n neighbour, q *frameQueue, ok bool, err error) {
	s.nmu.Lock()
	defer s.nmu.Unlock()
	if s.framesClosed {
		return n, nil, false, net.ErrClosed
	}
	if n, ok = s.neigh[a]; !ok {
		return n, nil, false, nil
	}
	if s.frames == nil {
		s.frames = newFrameQueue()
	}
	return n, s.frames, true, nil
}

// write queues an IPv4 packet to n as an Ethernet frame. Frames are
// sent by a goroutine of their own, a batch at a time: on a virtual link
// the send carries the whole round trip (the bridge, the host's answer,
// its way back) in the sender's system call, and the scan's loop meanwhile
// gets on with the next probes on the other CPU. A frame the kernel
// refused is found out after it left here: the next write says so
// (ENOBUFS, itself not sent), and the refused probe counts as lost.
func (q *frameQueue) write(pkt []byte, dst netip.Addr, n neighbour) error {
	if err := q.failed(); err != nil {
		return err
	}
	b := q.batch()
	if b == nil {
		return net.ErrClosed
	}
	off := len(b.buf)
	b.buf = append(b.buf, n.mac...)
	b.buf = append(b.buf, n.link.ifi.HardwareAddr...)
	b.buf = binary.BigEndian.AppendUint16(b.buf, unix.ETH_P_IP)
	b.buf = append(b.buf, pkt...)
	f := queuedFrame{fd: n.link.fd, off: off, end: len(b.buf), dst: dst}
	f.sa = unix.SockaddrLinklayer{Ifindex: n.link.ifi.Index, Halen: 6, Protocol: htons(unix.ETH_P_IP)}
	copy(f.sa.Addr[:], n.mac)
	b.frames = append(b.frames, f)
	if len(b.frames) == frameBatchLen {
		q.flush()
	}
	return nil
}

// Flush hands the frames queued to the sender.
func (s *sockets) Flush() {
	s.nmu.Lock()
	q := s.frames
	s.nmu.Unlock()
	if q != nil {
		q.flush()
	}
}

// frameBatchLen is how many frames go to the sender at a time; batches
// in flight bound the frames queued.
const (
	frameBatchLen = 32
	frameBatches  = 4
)

// frameQueue carries frames from the scan's loop (write, Flush) to
// the goroutine that sends them. Once quit is closed the loop's side
// hands over nothing more, and never blocks; the sender sends what was
// handed over and stops.
type frameQueue struct {
	full, empty chan *frameBatch
	cur         *frameBatch
	quit, done  chan struct{}
	stop        sync.Once
	refused     atomic.Int64
	mu          sync.Mutex
	err         error // a failure other than ENOBUFS, until reported
	// failing is set with err or refused: a write checks it alone.
	failing atomic.Bool
}

type frameBatch struct {
	buf    []byte // frames back to back
	frames []queuedFrame
}

type queuedFrame struct {
	fd       int
	off, end int // in buf
	sa       unix.SockaddrLinklayer
	dst      netip.Addr
}

func newFrameQueue() *frameQueue {
	q := &frameQueue{full: make(chan *frameBatch, frameBatches), empty: make(chan *frameBatch, frameBatches), quit: make(chan struct{}), done: make(chan struct{})}
	for range frameBatches {
		q.empty <- &frameBatch{buf: make([]byte, 0, frameBatchLen*128), frames: make([]queuedFrame, 0, frameBatchLen)}
	}
	go q.send()
	return q
}

// batch is the batch being filled; it waits for one to come back from
// the sender when all are queued, which paces the loop as a blocking
// send would. It is nil once the queue is closed.
func (q *frameQueue) batch() *frameBatch {
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

func (q *frameQueue) flush() {
	if q.cur != nil && len(q.cur.frames) > 0 {
		select {
		case q.full <- q.cur:
		case <-q.quit:
		}
		q.cur = nil
	}
}

// failed is why the frames sent since the last call did not all go: an
// error wrapping ENOBUFS for refusals, or what else failed (once: a link
// that was down for a moment does not fail every scan after).
func (q *frameQueue) failed() error {
	if !q.failing.Load() {
		return nil
	}
	q.failing.Store(false)
	q.mu.Lock()
	err := q.err
	q.err = nil
	q.mu.Unlock()
	if err != nil {
		return err
	}
	if k := q.refused.Swap(0); k > 0 {
		return fmt.Errorf("synscan: %d frames refused: %w", k, unix.ENOBUFS)
	}
	return nil
}

func (q *frameQueue) send() {
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

// noteRefused counts a frame the kernel had no room for.
func (q *frameQueue) noteRefused() {
	q.refused.Add(1)
	q.failing.Store(true)
}

func (q *frameQueue) sendBatch(b *frameBatch) {
	for _, f := range b.frames {
		err := unix.Sendto(f.fd, b.buf[f.off:f.end], 0, &f.sa)
		switch {
		case err == nil:
		case errors.Is(err, unix.ENOBUFS):
			q.noteRefused()
		default:
			q.mu.Lock()
			if q.err == nil {
				q.err = fmt.Errorf("synscan: sending a frame to %v: %w", f.dst, err)
			}
			q.mu.Unlock()
			q.failing.Store(true)
		}
	}
	b.buf, b.frames = b.buf[:0], b.frames[:0]
	q.empty <- b
}

// close stops the sender once the batches handed over are sent; a batch
// being filled is dropped.
func (q *frameQueue) close() {
	q.stop.Do(func() {
		close(q.quit)
		<-q.done
	})
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
