package synscan

import (
	"errors"
	"net"
	"net/netip"
	"strconv"
	"time"

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

// empty reports whether neither reading socket holds a segment.
func (s *sockets) empty() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
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
		// Each socket in turn; the runtime's poller is edge-triggered, so
		// both are read until empty before it is waited on.
		for range 2 {
			s.turn = !s.turn
			var ok bool
			if s.turn {
				n, arr, ok, err = s.read4(b)
			} else {
				n, arr, ok, err = s.read6(b)
			}
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

// read4 reads the next IPv4 segment; ok is false when none is left.
func (s *sockets) read4(b []byte) (n int, arr Arrival, ok bool, err error) {
	for {
		before := time.Now()
		k, oobn, _, _, err := unix.Recvmsg(s.recv4, s.rbuf, s.roob, unix.MSG_DONTWAIT)
		if err != nil {
			if errors.Is(err, unix.EAGAIN) {
				s.mark4.upTo = before
			}
			return 0, arr, false, recvErr(err)
		}
		at, _ := parseControl(s.roob[:oobn])
		seg, src, dst, ok := ipv4Segment(&s.ip4, s.rbuf[:k])
		if !ok {
			s.mark4.upTo = later(s.mark4.upTo, at)
			continue
		}
		s.mark4.pending = at
		return copy(b, seg), Arrival{From: src, To: dst, At: at}, true, nil
	}
}

// read6 reads the next IPv6 segment; ok is false when none is left.
func (s *sockets) read6(b []byte) (n int, arr Arrival, ok bool, err error) {
	if s.recv6 < 0 {
		return 0, arr, false, nil
	}
	for {
		before := time.Now()
		k, oobn, _, from, err := unix.Recvmsg(s.recv6, b, s.roob, unix.MSG_DONTWAIT)
		if err != nil {
			if errors.Is(err, unix.EAGAIN) {
				s.mark6.upTo = before
			}
			return 0, arr, false, recvErr(err)
		}
		sa, ok := from.(*unix.SockaddrInet6)
		at, dst := parseControl(s.roob[:oobn])
		if !ok || !dst.IsValid() {
			s.mark6.upTo = later(s.mark6.upTo, at)
			continue
		}
		s.mark6.pending = at
		src := netip.AddrFrom16(sa.Addr)
		if src.IsLinkLocalUnicast() && sa.ZoneId != 0 {
			src = src.WithZone(s.zoneName(int(sa.ZoneId)))
		}
		return k, Arrival{From: src, To: dst, At: at}, true, nil
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
