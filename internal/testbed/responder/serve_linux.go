package responder

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// rcvBuf is the packet socket's receive buffer: frames that arrive while
// the responder waits for a CPU queue there, and past it the kernel drops
// them (Stats.KernelDrops).
const rcvBuf = 8 << 20

// Server answers for a Config's hosts on one link.
type Server struct {
	t   *table
	q   *delayQueue
	fd  int
	f   *os.File // fd, non-blocking, through the runtime's poller
	rc  syscall.RawConn
	ifi *net.Interface
	// drops adds up the kernel's count of drops, which reading resets.
	drops atomic.Uint64
}

// Listen opens a packet socket on the named link that reads, in
// promiscuous mode, the ARP requests and TCP SYNs that arrive on it (a
// kernel filter passes nothing else), and writes the replies. cfg's
// LinkMAC is the link's own when unset. It needs CAP_NET_RAW.
func Listen(link string, cfg *Config) (_ *Server, err error) {
	ifi, err := net.InterfaceByName(link)
	if err != nil {
		return nil, fmt.Errorf("responder: %w", err)
	}
	c := *cfg
	if c.LinkMAC == nil {
		c.LinkMAC = ifi.HardwareAddr
	}
	t, err := newTable(&c)
	if err != nil {
		return nil, err
	}
	qn := c.Queue
	if qn == 0 {
		qn = DefaultQueue
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, int(htons(unix.ETH_P_ALL)))
	if err != nil {
		return nil, fmt.Errorf("responder: %s: packet socket: %w", link, err)
	}
	defer func() {
		if err != nil {
			unix.Close(fd)
		}
	}()
	if err := setup(fd, ifi); err != nil {
		return nil, fmt.Errorf("responder: %s: %w", link, err)
	}
	s := &Server{t: t, q: newDelayQueue(qn), fd: fd, ifi: ifi}
	s.f = os.NewFile(uintptr(fd), "responder-"+link)
	if s.rc, err = s.f.SyscallConn(); err != nil {
		s.f.Close()
		return nil, err
	}
	return s, nil
}

// setup filters, binds and sizes the socket.
func setup(fd int, ifi *net.Interface) error {
	prog, err := bpf.Assemble(filterProgram())
	if err != nil {
		return err
	}
	filter := make([]unix.SockFilter, len(prog))
	for i, ins := range prog {
		filter[i] = unix.SockFilter{Code: ins.Op, Jt: ins.Jt, Jf: ins.Jf, K: ins.K}
	}
	if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}); err != nil {
		return fmt.Errorf("socket filter: %w", err)
	}
	for _, o := range []struct{ level, opt, val int }{
		// Its own replies are not read back.
		{unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1},
		// Whether a frame's TCP checksum is still to compute.
		{unix.SOL_PACKET, unix.PACKET_AUXDATA, 1},
	} {
		if err := unix.SetsockoptInt(fd, o.level, o.opt, o.val); err != nil {
			return fmt.Errorf("socket option %d: %w", o.opt, err)
		}
	}
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, rcvBuf) != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, rcvBuf)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index}); err != nil {
		return fmt.Errorf("bind: %w", err)
	}
	// The hosts' MACs are not the link's own.
	mr := unix.PacketMreq{Ifindex: int32(ifi.Index), Type: unix.PACKET_MR_PROMISC}
	if err := unix.SetsockoptPacketMreq(fd, unix.SOL_PACKET, unix.PACKET_ADD_MEMBERSHIP, &mr); err != nil {
		return fmt.Errorf("promiscuous mode: %w", err)
	}
	// What queued before the filter was attached.
	buf := make([]byte, readBuf)
	for range 4096 {
		if _, _, err := unix.Recvfrom(fd, buf, unix.MSG_DONTWAIT); err != nil {
			break
		}
	}
	// The kernel's count of drops starts now.
	_, _ = unix.GetsockoptTpacketStats(fd, unix.SOL_PACKET, unix.PACKET_STATISTICS)
	return nil
}

// Serve answers until ctx is done, and returns what it did. The socket is
// closed when it returns.
func (s *Server) Serve(ctx context.Context) (Stats, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var mu sync.Mutex // guards s.q
	wake := make(chan struct{}, 1)
	var wg sync.WaitGroup
	wg.Go(func() { s.sendDelayed(ctx, &mu, wake) })
	stop := context.AfterFunc(ctx, func() {
		s.kernelDrops()
		s.f.Close()
	})
	defer stop()

	base := time.Now()
	r := newReader()
	out := make([]byte, MaxReply)
	var err error
	for {
		n, ready, rerr := r.read(s.rc)
		if rerr != nil {
			if ctx.Err() == nil {
				err = fmt.Errorf("responder: %s: reading: %w", s.ifi.Name, rerr)
			}
			break
		}
		m, delay := s.t.answer(r.buf[:n], ready, out)
		switch {
		case m == 0:
		case delay == 0:
			s.write(out[:m])
		default:
			mu.Lock()
			ok := s.q.push(out[:m], int64(time.Since(base)+delay))
			mu.Unlock()
			if !ok {
				s.t.st.queueFull.Add(1)
				continue
			}
			s.t.st.delayed.Add(1)
			select {
			case wake <- struct{}{}:
			default:
			}
		}
	}
	cancel()
	wg.Wait()
	s.f.Close()
	st := s.t.st.snapshot()
	st.KernelDrops = s.drops.Load()
	return st, err
}

// Stats returns what the server did so far; it may be called while it
// serves.
func (s *Server) Stats() Stats {
	st := s.t.st.snapshot()
	st.KernelDrops = s.kernelDrops()
	return st
}

// kernelDrops adds the kernel's drops since it last asked to the count,
// and returns the count.
func (s *Server) kernelDrops() uint64 {
	_ = s.rc.Control(func(fd uintptr) {
		if ts, err := unix.GetsockoptTpacketStats(int(fd), unix.SOL_PACKET, unix.PACKET_STATISTICS); err == nil {
			s.drops.Add(uint64(ts.Drops))
		}
	})
	return s.drops.Load()
}

// Close closes the socket of a Server that never served.
func (s *Server) Close() error { return s.f.Close() }

func (s *Server) write(frame []byte) {
	if err := s.rc.Write(func(fd uintptr) bool {
		_, err := unix.Write(int(fd), frame)
		if errors.Is(err, unix.EAGAIN) {
			return false
		}
		if err != nil {
			s.t.st.writeErrors.Add(1)
		}
		return true
	}); err != nil {
		s.t.st.writeErrors.Add(1)
	}
}

// sendDelayed sends each delayed reply when it is due, until ctx is done.
func (s *Server) sendDelayed(ctx context.Context, mu *sync.Mutex, wake <-chan struct{}) {
	base := time.Now()
	out := make([]byte, MaxReply)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		mu.Lock()
		n, next, ok := s.q.pop(int64(time.Since(base)), out)
		mu.Unlock()
		if n > 0 {
			s.write(out[:n])
			continue
		}
		wait := time.Hour
		if ok {
			wait = time.Duration(next) - time.Since(base)
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-wake:
		case <-timer.C:
		}
	}
}

// reader reads frames with recvmsg(2) into buffers of its own, and the
// kernel's word on their checksums: nothing is allocated a frame.
type reader struct {
	buf []byte
	oob []byte
	iov unix.Iovec
	msg unix.Msghdr
}

func newReader() *reader {
	r := &reader{buf: make([]byte, readBuf), oob: make([]byte, unix.CmsgSpace(int(unsafe.Sizeof(unix.TpacketAuxdata{}))))}
	r.iov.Base = &r.buf[0]
	r.iov.SetLen(len(r.buf))
	r.msg.Iov = &r.iov
	r.msg.Iovlen = 1
	r.msg.Control = &r.oob[0]
	return r
}

// read returns the next frame's length, and whether its checksums are
// written (false: a local sender left the TCP checksum to the device).
func (r *reader) read(rc syscall.RawConn) (n int, csumReady bool, err error) {
	var errno syscall.Errno
	rerr := rc.Read(func(fd uintptr) bool {
		r.msg.SetControllen(len(r.oob))
		r.msg.Flags = 0
		m, _, e := unix.Syscall(unix.SYS_RECVMSG, fd, uintptr(unsafe.Pointer(&r.msg)), 0)
		if e == unix.EAGAIN {
			return false
		}
		n, errno = int(m), e
		return true
	})
	switch {
	case rerr != nil:
		return 0, false, rerr
	case errno == unix.EINTR:
		return 0, false, nil
	case errno != 0:
		return 0, false, errno
	}
	csumReady = true
	if int(r.msg.Controllen) >= unix.CmsgLen(int(unsafe.Sizeof(unix.TpacketAuxdata{}))) {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&r.oob[0]))
		if h.Level == unix.SOL_PACKET && h.Type == unix.PACKET_AUXDATA {
			status := binary.NativeEndian.Uint32(r.oob[unix.CmsgLen(0):])
			csumReady = status&unix.TP_STATUS_CSUMNOTREADY == 0
		}
	}
	return n, csumReady, nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
