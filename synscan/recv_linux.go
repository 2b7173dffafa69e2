package synscan

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ifl-project/ifl/internal/support/kstamp"
	"github.com/ifl-project/ifl/internal/support/readmark"
)

// socketMark is how far one reading socket has been read.
type socketMark struct {
	upTo    time.Time // every segment that arrived before was read
	pending time.Time // the arrival of the segment ReadFrom returned last
}

// ReadUpTo implements readMarker.
func (s *sockets) ReadUpTo() time.Time { return s.mark.UpTo(s.empty) }

// Advanced implements readMarker.
func (s *sockets) Advanced() <-chan struct{} { return s.mark.Advanced() }

// Drops implements dropCounter.
func (s *sockets) Drops() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var n uint64
	for _, fd := range []int{s.recv4, s.recv6} {
		if fd >= 0 {
			d, _ := readmark.Drops(fd)
			n += d
		}
	}
	return n
}

// empty reports whether neither reading socket holds a segment, nor
// what was read from it and not returned.
func (s *sockets) empty() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.rx4.held() || s.rx6.held() {
		return false
	}
	for _, fd := range []int{s.recv4, s.recv6} {
		if fd < 0 {
			continue
		}
		// The length of the first segment queued; 0: none.
		if n, err := unix.IoctlGetInt(fd, unix.SIOCINQ); err != nil || n > 0 {
			return false
		}
	}
	return true
}

// publish moves the mark to what both sockets have been read up to; a
// socket that does not exist holds nothing back.
func (s *sockets) publish() {
	m := s.mark4.upTo
	if s.recv6 >= 0 && s.mark6.upTo.Before(m) {
		m = s.mark6.upTo
	}
	s.mark.Set(m)
}

// ReadFrom implements PacketIO. What is not a whole IPv4 packet carrying
// TCP, or an IPv6 segment with its destination, is skipped.
func (s *sockets) ReadFrom(b []byte) (n int, arr Arrival, err error) {
	// The segment returned last is handled: it counts as read.
	for _, m := range []*socketMark{&s.mark4, &s.mark6} {
		if m.pending.After(m.upTo) {
			m.upTo = m.pending
		}
	}
	s.publish()
	rerr := s.rc.Read(func(uintptr) bool {
		s.mark.Reading(true)
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.closed {
			err = net.ErrClosed
			return true
		}
		// A batch from one socket, then one from the other, so that
		// neither waits behind a flood to the other; the runtime's poller
		// is edge-triggered, so both are read until empty before it is
		// waited on.
		for range 2 {
			var ok bool
			rx := s.rx4
			if s.turn {
				rx = s.rx6
				n, arr, ok, err = s.read6(b)
			} else {
				n, arr, ok, err = s.read4(b)
			}
			if ok && rx.held() {
				return true
			}
			s.turn = !s.turn
			if ok || err != nil {
				return true
			}
		}
		// Both are empty: everything that came before is read, and
		// until the poller wakes it the reader waits.
		s.publish()
		s.mark.Reading(false)
		return false
	})
	if rerr != nil {
		s.mu.Lock()
		if s.closed {
			rerr = net.ErrClosed
		}
		s.mu.Unlock()
		return 0, arr, rerr
	}
	return n, arr, err
}

// A reading socket is read rxBatch segments at a time with recvmmsg(2):
// answers come in bursts (a batch of probes sent, a flood of RSTs), and
// a system call for each would cost the reader as much as the reading.
const (
	rxBatch  = 16
	rxBufLen = 2048 // a segment, with its IPv4 header
	rxOOBLen = 128  // its timestamp, and its IPv6 destination
)

// rxQueue is what was read from one socket and not returned yet:
// hdrs[next:n].
type rxQueue struct {
	v6      bool // names are read, as sockaddr_in6
	bufs    []byte
	oobs    []byte
	names   []unix.RawSockaddrInet6
	iovs    []unix.Iovec
	hdrs    []unix.Mmsghdr
	next, n int
	// recvmmsg reads into msgs from fd without waiting: how many, or an
	// error when none (EAGAIN: the socket is empty).
	recvmmsg func(fd int, msgs []unix.Mmsghdr) (int, error)
}

func newRxQueue(v6 bool) *rxQueue {
	q := &rxQueue{v6: v6, bufs: make([]byte, rxBatch*rxBufLen), oobs: make([]byte, rxBatch*rxOOBLen),
		iovs: make([]unix.Iovec, rxBatch), hdrs: make([]unix.Mmsghdr, rxBatch), recvmmsg: recvmmsg}
	if v6 {
		q.names = make([]unix.RawSockaddrInet6, rxBatch)
	}
	for i := range q.hdrs {
		q.iovs[i].Base = &q.bufs[i*rxBufLen]
		q.iovs[i].SetLen(rxBufLen)
		q.hdrs[i].Hdr.Iov = &q.iovs[i]
		q.hdrs[i].Hdr.SetIovlen(1)
		q.hdrs[i].Hdr.Control = &q.oobs[i*rxOOBLen]
		if v6 {
			q.hdrs[i].Hdr.Name = (*byte)(unsafe.Pointer(&q.names[i]))
		}
	}
	return q
}

func recvmmsg(fd int, msgs []unix.Mmsghdr) (int, error) {
	n, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, uintptr(fd), uintptr(unsafe.Pointer(&msgs[0])), uintptr(len(msgs)), unix.MSG_DONTWAIT, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// held reports whether q holds segments not returned yet.
func (q *rxQueue) held() bool { return q.next < q.n }

// fill reads what fd holds, up to a batch, into q, which holds nothing.
func (q *rxQueue) fill(fd int) (int, error) {
	for i := range q.hdrs {
		h := &q.hdrs[i]
		h.Hdr.SetControllen(rxOOBLen)
		h.Hdr.Flags, h.Len = 0, 0
		if q.v6 {
			h.Hdr.Namelen = unix.SizeofSockaddrInet6
		}
	}
	n, err := q.recvmmsg(fd, q.hdrs)
	if err != nil {
		return 0, err
	}
	if n <= 0 || n > len(q.hdrs) {
		return 0, fmt.Errorf("recvmmsg returned %d of %d", n, len(q.hdrs))
	}
	q.next, q.n = 0, n
	return n, nil
}

// pop returns the next segment q holds: its bytes, control messages and
// sender (IPv6 only; ok false for one that is no sockaddr_in6).
func (q *rxQueue) pop() (buf, oob []byte, from unix.RawSockaddrInet6, fromOK bool) {
	i := q.next
	q.next++
	h := &q.hdrs[i].Hdr
	buf = q.bufs[i*rxBufLen:][:min(int(q.hdrs[i].Len), rxBufLen)]
	oob = q.oobs[i*rxOOBLen:][:min(int(h.Controllen), rxOOBLen)]
	if q.v6 {
		from = q.names[i]
		fromOK = h.Namelen >= unix.SizeofSockaddrInet6 && from.Family == unix.AF_INET6
	}
	return buf, oob, from, fromOK
}

// nextFrom returns the next segment of q, reading fd once q is empty; ok
// is false when fd is empty too, and it was so at the time upTo is set
// to.
func (q *rxQueue) nextFrom(fd int, upTo *time.Time) (buf, oob []byte, from unix.RawSockaddrInet6, fromOK, ok bool, err error) {
	if !q.held() {
		before := time.Now()
		if _, err := q.fill(fd); err != nil {
			if errors.Is(err, unix.EAGAIN) {
				*upTo = before
			}
			return nil, nil, from, false, false, recvErr(err)
		}
	}
	buf, oob, from, fromOK = q.pop()
	return buf, oob, from, fromOK, true, nil
}

// read4 returns the next IPv4 segment; ok is false when none is left.
func (s *sockets) read4(b []byte) (n int, arr Arrival, ok bool, err error) {
	for {
		pkt, oob, _, _, ok, err := s.rx4.nextFrom(s.recv4, &s.mark4.upTo)
		if !ok {
			return 0, arr, false, err
		}
		at, _ := parseControl(oob)
		seg, src, dst, ok := ipv4Segment(&s.ip4, pkt)
		if !ok {
			s.mark4.upTo = later(s.mark4.upTo, at)
			continue
		}
		s.mark4.pending = at
		return copy(b, seg), Arrival{From: src, To: dst, At: at}, true, nil
	}
}

// read6 returns the next IPv6 segment; ok is false when none is left.
func (s *sockets) read6(b []byte) (n int, arr Arrival, ok bool, err error) {
	if s.recv6 < 0 {
		return 0, arr, false, nil
	}
	for {
		seg, oob, sa, saOK, ok, err := s.rx6.nextFrom(s.recv6, &s.mark6.upTo)
		if !ok {
			return 0, arr, false, err
		}
		at, dst := parseControl(oob)
		if !saOK || !dst.IsValid() {
			s.mark6.upTo = later(s.mark6.upTo, at)
			continue
		}
		s.mark6.pending = at
		src := netip.AddrFrom16(sa.Addr)
		if src.IsLinkLocalUnicast() && sa.Scope_id != 0 {
			src = src.WithZone(s.zoneName(int(sa.Scope_id)))
		}
		return copy(b, seg), Arrival{From: src, To: dst, At: at}, true, nil
	}
}

// parseControl returns what the control messages of a read say: when the
// kernel received the segment (SO_TIMESTAMPNS), as the monotonic clock
// counts, and the IPv6 address it was sent to (IPV6_PKTINFO); zero values
// for what they do not say.
func parseControl(oob []byte) (at time.Time, dst netip.Addr) {
	for len(oob) > 0 {
		h, data, rest, err := unix.ParseOneSocketControlMessage(oob)
		if err != nil {
			break
		}
		oob = rest
		switch {
		case h.Level == unix.SOL_SOCKET && h.Type == unix.SCM_TIMESTAMPNS:
			at = kstamp.Received(data)
		case h.Level == unix.IPPROTO_IPV6 && h.Type == unix.IPV6_PKTINFO && len(data) >= unix.SizeofInet6Pktinfo:
			dst = netip.AddrFrom16([16]byte(data[:16]))
		}
	}
	return at, dst
}

// zoneName names the interface of a scope ID, as a target's zone would.
func (s *sockets) zoneName(idx int) string {
	if name, ok := s.names[idx]; ok {
		return name
	}
	name := strconv.Itoa(idx)
	if ifr, err := unix.NewIfreq(""); err == nil {
		ifr.SetUint32(uint32(idx))
		if unix.IoctlIfreq(s.route6, unix.SIOCGIFNAME, ifr) == nil {
			name = ifr.Name()
		}
	}
	s.names[idx] = name
	return name
}

// recvErr maps an empty socket to no error.
func recvErr(err error) error {
	if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
		return nil
	}
	return err
}
