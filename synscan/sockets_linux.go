package synscan

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gopacket/gopacket/layers"
	"golang.org/x/net/bpf"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"

	"github.com/ifl-project/ifl/internal/support/readmark"
)

// NewRaw opens the sockets of a raw scan. After it returns the process
// needs CAP_NET_RAW no more. It returns ErrPermission without the
// capability.
func NewRaw(cfg *Config) (*Raw, error) {
	io, err := openSockets(sourcePortBase(), srcPorts)
	if err != nil {
		return nil, err
	}
	r, err := New(cfg, io)
	if err != nil {
		io.Close()
		return nil, err
	}
	return r, nil
}

// sockets is the PacketIO of NewRaw: per family, a raw socket to send
// on, one that reads TCP to the scan's ports, and a UDP socket that finds
// the source address of a target. ReadFrom waits on an epoll set of both
// reading sockets, through the runtime's poller, so that one goroutine
// reads both families with deadlines.
type sockets struct {
	first, n uint16
	// IPv4: send4 is IPPROTO_RAW, we write the IP header.
	send4, route4 int
	// IPv6 (-1 where the kernel has none): send6 is IPPROTO_TCP, the
	// kernel writes the IP header from the source given with each
	// segment, and reads nothing.
	send6, route6 int
	recv4, recv6  int      // non-blocking; -1: none
	poll          *os.File // epoll over recv4 and recv6
	rc            syscall.RawConn

	// Used by the sender only.
	framer *ipv4Framer
	oob6   []byte     // IPV6_PKTINFO with oobSrc, oobIf
	oobSrc netip.Addr // of oob6
	oobIf  int
	zones  map[string]int

	// Used by ReadFrom only, under mu: empty looks at rx4 and rx6 too.
	rx4, rx6 *rxQueue
	ip4      layers.IPv4
	turn     bool
	names    map[int]string
	// How far each reading socket is read (see readMarker): up to when
	// it was last found empty, or to the arrival of the last segment
	// read from it, which counts once ReadFrom is called again.
	mark4, mark6 socketMark
	mark         *readmark.Mark

	// mu keeps Close from closing the reading sockets under a read.
	mu     sync.Mutex
	closed bool
	// nmu guards what sends probes: links, neigh and queue.
	nmu   sync.Mutex
	links map[int]*ethLink // by interface index
	neigh map[netip.Addr]neighbour
	queue *sendQueue // nil until a probe is sent
	// queueClosed: the sockets are closed, and no probe goes out.
	queueClosed bool
}

func openSockets(first, n uint16) (_ *sockets, err error) {
	s := &sockets{first: first, n: n, send4: -1, route4: -1, send6: -1, route6: -1, recv4: -1, recv6: -1,
		framer: newIPv4Framer(), zones: map[string]int{}, links: map[int]*ethLink{}, neigh: map[netip.Addr]neighbour{},
		rx4: newRxQueue(false), rx6: newRxQueue(true), names: map[int]string{}, mark: readmark.New()}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	if s.send4, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW); err != nil {
		return nil, wrapSocketErr(err)
	}
	if s.recv4, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.IPPROTO_TCP); err != nil {
		return nil, wrapSocketErr(err)
	}
	// A raw IPv4 socket reads the IP header too: X = its length.
	if err := attachPortFilter(s.recv4, first, n, bpf.LoadMemShift{Off: 0}); err != nil {
		return nil, err
	}
	timestamp(s.recv4)
	if s.route4, err = unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0); err != nil {
		return nil, fmt.Errorf("synscan: %w", err)
	}
	if err := s.open6(first, n); err != nil {
		return nil, err
	}
	if err := s.openPoll(); err != nil {
		return nil, fmt.Errorf("synscan: %w", err)
	}
	return s, nil
}

// open6 opens the IPv6 sockets, unless the kernel has no IPv6.
func (s *sockets) open6(first, n uint16) (err error) {
	s.recv6, err = unix.Socket(unix.AF_INET6, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.IPPROTO_TCP)
	if errors.Is(err, unix.EAFNOSUPPORT) {
		s.recv6 = -1
		return nil
	}
	if err != nil {
		return wrapSocketErr(err)
	}
	// A raw IPv6 socket reads from the TCP header on: X = 0.
	if err := attachPortFilter(s.recv6, first, n, bpf.LoadConstant{Dst: bpf.RegX, Val: 0}); err != nil {
		return err
	}
	// The address a segment was sent to, for its cookie.
	if err := unix.SetsockoptInt(s.recv6, unix.IPPROTO_IPV6, unix.IPV6_RECVPKTINFO, 1); err != nil {
		return fmt.Errorf("synscan: IPV6_RECVPKTINFO: %w", err)
	}
	timestamp(s.recv6)
	if s.send6, err = unix.Socket(unix.AF_INET6, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP); err != nil {
		return wrapSocketErr(err)
	}
	// It would read a copy of every TCP segment: none.
	nothing, err := bpf.Assemble([]bpf.Instruction{bpf.RetConstant{Val: 0}})
	if err == nil {
		err = attachFilter(s.send6, nothing)
	}
	if err != nil {
		return fmt.Errorf("synscan: attaching the socket filter: %w", err)
	}
	drain(s.send6)
	if s.route6, err = unix.Socket(unix.AF_INET6, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0); err != nil {
		return fmt.Errorf("synscan: %w", err)
	}
	return nil
}

// openPoll puts the reading sockets in an epoll set, itself pollable:
// the runtime's poller wakes ReadFrom when either has a segment.
func (s *sockets) openPoll() error {
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return err
	}
	for _, fd := range []int{s.recv4, s.recv6} {
		if fd < 0 {
			continue
		}
		if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}); err != nil {
			unix.Close(ep)
			return err
		}
	}
	if err := unix.SetNonblock(ep, true); err != nil {
		unix.Close(ep)
		return err
	}
	s.poll = os.NewFile(uintptr(ep), "synscan-recv")
	if s.rc, err = s.poll.SyscallConn(); err != nil {
		return err
	}
	return nil
}

// attachPortFilter makes fd read only TCP to the ports n from first:
// the filter is attached before anything is read, and what queued before
// it is drained. hdr sets X to the offset of the TCP header.
func attachPortFilter(fd int, first, n uint16, hdr bpf.Instruction) error {
	prog, err := bpf.Assemble([]bpf.Instruction{
		hdr,
		bpf.LoadIndirect{Off: 2, Size: 2}, // TCP destination port
		bpf.JumpIf{Cond: bpf.JumpGreaterOrEqual, Val: uint32(first), SkipFalse: 2},
		bpf.JumpIf{Cond: bpf.JumpGreaterThan, Val: uint32(first) + uint32(n) - 1, SkipTrue: 1},
		bpf.RetConstant{Val: 0xffff},
		bpf.RetConstant{Val: 0},
	})
	if err == nil {
		err = attachFilter(fd, prog)
	}
	if err != nil {
		return fmt.Errorf("synscan: attaching the socket filter: %w", err)
	}
	drain(fd)
	// A burst of answers must not overflow the socket.
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 4<<20)
	return nil
}

// timestamp asks the kernel for the time each segment was received:
// without it, a reader that falls behind lengthens round trips. It is
// asked for, not required.
func timestamp(fd int) {
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1)
}

func attachFilter(fd int, prog []bpf.RawInstruction) error {
	filter := make([]unix.SockFilter, len(prog))
	for i, ins := range prog {
		filter[i] = unix.SockFilter{Code: ins.Op, Jt: ins.Jt, Jf: ins.Jf, K: ins.K}
	}
	return unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]})
}

func wrapSocketErr(err error) error {
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
		return ErrPermission
	}
	return fmt.Errorf("synscan: raw socket: %w", err)
}

func drain(fd int) {
	buf := make([]byte, 2048)
	for range 4096 {
		if _, _, err := unix.Recvfrom(fd, buf, unix.MSG_DONTWAIT); err != nil {
			return
		}
	}
}

// sourcePortBase picks a random window of source ports outside the
// kernel's ephemeral range, so a probe's port never belongs to one of this
// host's own connections.
func sourcePortBase() uint16 {
	lo, hi := 32768, 60999
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			l, err1 := strconv.Atoi(f[0])
			h, err2 := strconv.Atoi(f[1])
			if err1 == nil && err2 == nil {
				lo, hi = l, h
			}
		}
	}
	if hi+1+srcPorts <= 65535 {
		return uint16(hi + 1 + rand.IntN(65535-hi-srcPorts))
	}
	if lo-srcPorts >= 1024 {
		return uint16(1024 + rand.IntN(lo-srcPorts-1024+1))
	}
	return uint16(65535 - srcPorts)
}

// Ports implements PacketIO.
func (s *sockets) Ports() (first, n uint16) { return s.first, s.n }

// Close closes the sockets; it may be called more than once, and while
// ReadFrom waits, which then returns net.ErrClosed.
func (s *sockets) Close() error {
	if s.poll != nil {
		s.poll.Close()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for _, fd := range []*int{&s.send4, &s.route4, &s.recv4, &s.send6, &s.route6, &s.recv6} {
		if *fd >= 0 {
			unix.Close(*fd)
			*fd = -1
		}
	}
	s.nmu.Lock()
	defer s.nmu.Unlock()
	s.queueClosed = true
	if s.queue != nil {
		s.queue.close()
	}
	// Packet sockets each wait for an RCU grace period to close: at
	// once, not one after the other.
	var wg sync.WaitGroup
	for i, l := range s.links {
		wg.Go(func() { unix.Close(l.fd) })
		delete(s.links, i)
	}
	wg.Wait()
	clear(s.neigh)
	return nil
}

// errNoIPv6 is Source's error for an IPv6 target on a kernel without IPv6.
var errNoIPv6 = errors.New("this kernel has no IPv6")

// Source implements PacketIO: the address the kernel would send from to
// reach dst.
func (s *sockets) Source(dst netip.Addr) (netip.Addr, error) {
	var sa unix.Sockaddr
	fd := s.route4
	if dst.Is4() {
		sa = &unix.SockaddrInet4{Addr: dst.As4(), Port: 9}
	} else {
		if s.route6 < 0 {
			return netip.Addr{}, fmt.Errorf("%v: %w", dst, errNoIPv6)
		}
		idx, err := s.zoneIndex(dst.Zone())
		if err != nil {
			return netip.Addr{}, err
		}
		sa, fd = &unix.SockaddrInet6{Addr: dst.As16(), Port: 9, ZoneId: uint32(idx)}, s.route6
	}
	if err := unix.Connect(fd, sa); err != nil {
		return netip.Addr{}, fmt.Errorf("no route to %v: %w", dst, err)
	}
	local, err := unix.Getsockname(fd)
	if err != nil {
		return netip.Addr{}, err
	}
	switch la := local.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrFrom4(la.Addr), nil
	case *unix.SockaddrInet6:
		return netip.AddrFrom16(la.Addr), nil
	}
	return netip.Addr{}, fmt.Errorf("no source address for %v", dst)
}

// zoneIndex returns the index of the interface a zone names (0 for
// none), as a scope ID. Names are looked up in the sockets' network
// namespace, which need not be the calling thread's.
func (s *sockets) zoneIndex(zone string) (int, error) {
	if zone == "" {
		return 0, nil
	}
	if idx, ok := s.zones[zone]; ok {
		return idx, nil
	}
	idx, err := strconv.Atoi(zone)
	if err != nil {
		ifr, err := unix.NewIfreq(zone)
		if err == nil {
			err = unix.IoctlIfreq(s.route6, unix.SIOCGIFINDEX, ifr)
		}
		if err != nil {
			return 0, fmt.Errorf("interface %q: %w", zone, err)
		}
		idx = int(ifr.Uint32())
	}
	s.zones[zone] = idx
	return idx, nil
}

// WriteTo implements PacketIO. The probe is queued (see sendQueue): a
// failure to send it is returned by a later WriteTo.
func (s *sockets) WriteTo(seg []byte, src, dst netip.Addr) error {
	if dst.Is4() {
		pkt, err := s.framer.frame(seg, src, dst)
		if err != nil {
			return err
		}
		n, q, ok, err := s.frameTo(dst)
		if err != nil {
			return err
		}
		if ok {
			return q.writeFrame(pkt, dst, n)
		}
		return q.add(s.send4, nil, pkt, nil, inet4Name(dst), dst)
	}
	if s.send6 < 0 {
		return errNoIPv6
	}
	idx, err := s.zoneIndex(dst.Zone())
	if err != nil {
		return err
	}
	// The source goes with the segment, so that the kernel sends from the
	// address the checksum and the cookie were computed with.
	if src != s.oobSrc || idx != s.oobIf || s.oob6 == nil {
		s.oob6 = (&ipv6.ControlMessage{Src: src.AsSlice(), IfIndex: idx}).Marshal()
		s.oobSrc, s.oobIf = src, idx
	}
	s.nmu.Lock()
	q, err := s.queueLocked()
	s.nmu.Unlock()
	if err != nil {
		return err
	}
	return q.add(s.send6, nil, seg, s.oob6, inet6Name(dst, idx), dst)
}

// SetReadDeadline implements PacketIO.
func (s *sockets) SetReadDeadline(t time.Time) error { return s.poll.SetReadDeadline(t) }
