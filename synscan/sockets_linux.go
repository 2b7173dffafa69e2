package synscan

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/gopacket/gopacket/layers"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// srcPorts is how many source ports a scan spreads its probes over.
const srcPorts = 1024

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

// sockets is the PacketIO of NewRaw.
type sockets struct {
	first, n uint16
	send4    int      // IPPROTO_RAW: we write the IP header
	recv4    *os.File // IPPROTO_TCP: a copy of every TCP packet the kernel receives
	route4   int      // a UDP socket, connected to a target to learn the source address
	framer   *ipv4Framer
	// Used by ReadFrom only.
	rbuf []byte
	ip4  layers.IPv4
}

func openSockets(first, n uint16) (_ *sockets, err error) {
	s := &sockets{first: first, n: n, send4: -1, route4: -1, framer: newIPv4Framer(), rbuf: make([]byte, 2048)}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	if s.send4, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW); err != nil {
		return nil, wrapSocketErr(err)
	}
	recvFD, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.IPPROTO_TCP)
	if err != nil {
		return nil, wrapSocketErr(err)
	}
	// A raw IPv4 socket reads the IP header too: X = its length.
	if err := attachPortFilter(recvFD, first, n, bpf.LoadMemShift{Off: 0}); err != nil {
		unix.Close(recvFD)
		return nil, err
	}
	s.recv4 = os.NewFile(uintptr(recvFD), "synscan-recv4")
	if s.route4, err = unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0); err != nil {
		return nil, fmt.Errorf("synscan: %w", err)
	}
	return s, nil
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
		filter := make([]unix.SockFilter, len(prog))
		for i, ins := range prog {
			filter[i] = unix.SockFilter{Code: ins.Op, Jt: ins.Jt, Jf: ins.Jf, K: ins.K}
		}
		err = unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]})
	}
	if err != nil {
		return fmt.Errorf("synscan: attaching the socket filter: %w", err)
	}
	drain(fd)
	// A burst of answers must not overflow the socket.
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 4<<20)
	return nil
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

// Close closes the sockets; it may be called more than once.
func (s *sockets) Close() error {
	if s.send4 >= 0 {
		unix.Close(s.send4)
		s.send4 = -1
	}
	if s.route4 >= 0 {
		unix.Close(s.route4)
		s.route4 = -1
	}
	if s.recv4 != nil {
		s.recv4.Close()
		s.recv4 = nil
	}
	return nil
}

// Source implements PacketIO: the address the kernel would send from to
// reach dst.
func (s *sockets) Source(dst netip.Addr) (netip.Addr, error) {
	if !dst.Is4() {
		return netip.Addr{}, fmt.Errorf("%v: raw SYN probes are IPv4 only", dst)
	}
	if err := unix.Connect(s.route4, &unix.SockaddrInet4{Addr: dst.As4(), Port: 9}); err != nil {
		return netip.Addr{}, fmt.Errorf("no route to %v: %w", dst, err)
	}
	sa, err := unix.Getsockname(s.route4)
	if err != nil {
		return netip.Addr{}, err
	}
	in4, ok := sa.(*unix.SockaddrInet4)
	if !ok {
		return netip.Addr{}, fmt.Errorf("no IPv4 source for %v", dst)
	}
	return netip.AddrFrom4(in4.Addr), nil
}

// WriteTo implements PacketIO.
func (s *sockets) WriteTo(seg []byte, src, dst netip.Addr) error {
	pkt, err := s.framer.frame(seg, src, dst)
	if err != nil {
		return err
	}
	return unix.Sendto(s.send4, pkt, 0, &unix.SockaddrInet4{Addr: dst.As4()})
}

// ReadFrom implements PacketIO. What is not a whole IPv4 packet carrying
// TCP is skipped.
func (s *sockets) ReadFrom(b []byte) (int, netip.Addr, netip.Addr, error) {
	for {
		k, err := s.recv4.Read(s.rbuf)
		if err != nil {
			return 0, netip.Addr{}, netip.Addr{}, err
		}
		seg, src, dst, ok := ipv4Segment(&s.ip4, s.rbuf[:k])
		if !ok {
			continue
		}
		return copy(b, seg), src, dst, nil
	}
}

// SetReadDeadline implements PacketIO.
func (s *sockets) SetReadDeadline(t time.Time) error { return s.recv4.SetReadDeadline(t) }
