package arpscan

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/packet"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/ifl-project/ifl/internal/support/kstamp"
	"github.com/ifl-project/ifl/internal/support/readmark"
)

// Scanner sweeps one interface. Create it with Dial or New; it is not
// safe for concurrent use.
type Scanner struct {
	ifi     *net.Interface
	client  *arp.Client     // reads replies, and sends
	stamped syscall.RawConn // client's socket, read with the kernel's receive times; nil: read by client
	writers []*arp.Client   // send only, beside client
	srcs    []netip.Prefix  // the interface's IPv4 prefixes, for source addresses
	pc      net.PacketConn  // client's
}

// Dial opens raw ARP sockets on the named interface: one that reads the
// replies and sends, and one more to send on for each further CPU (up to
// maxWriters in all).
func Dial(name string) (*Scanner, error) {
	ifi, err := Interface(name)
	if err != nil {
		return nil, err
	}
	// Only replies: the socket would otherwise also read every request,
	// ours included.
	replies, err := bpf.Assemble([]bpf.Instruction{
		bpf.LoadAbsolute{Off: 20, Size: 2}, // ARP opcode, after 14 bytes of Ethernet and 6 of ARP
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: 2, SkipFalse: 1},
		bpf.RetConstant{Val: 256},
		bpf.RetConstant{Val: 0},
	})
	if err != nil {
		return nil, err
	}
	// The sending sockets read nothing.
	nothing, err := bpf.Assemble([]bpf.Instruction{bpf.RetConstant{Val: 0}})
	if err != nil {
		return nil, err
	}
	listen := func(filter []bpf.RawInstruction) (*packet.Conn, error) {
		pc, err := packet.Listen(ifi, packet.Raw, int(ethernet.EtherTypeARP), &packet.Config{Filter: filter})
		if err != nil {
			if errors.Is(err, os.ErrPermission) || errors.Is(err, syscall.EPERM) {
				return nil, fmt.Errorf("%s: %w", name, ErrPermission)
			}
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		return pc, nil
	}
	pc, err := listen(replies)
	if err != nil {
		return nil, err
	}
	// Replies come as fast as requests go out, confirmations at several
	// times the rate: a socket of the default size (208 KiB, 270 frames)
	// overflows while the reader waits for a CPU, and the sweep takes its
	// own dropped replies for loss on the segment. The kernel caps this
	// at net.core.rmem_max.
	if rc, err := pc.SyscallConn(); err == nil {
		rc.Control(func(fd uintptr) {
			_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, 4<<20)
		})
	}
	s, err := New(ifi, pc)
	if err != nil {
		pc.Close()
		return nil, err
	}
	for range min(runtime.NumCPU(), maxWriters) - 1 {
		wc, err := listen(nothing)
		if err == nil {
			var c *arp.Client
			if c, err = arp.New(ifi, wc); err == nil {
				s.writers = append(s.writers, c)
				continue
			}
			wc.Close()
		}
		s.Close()
		return nil, err
	}
	return s, nil
}

// maxWriters bounds the sending sockets. On a virtual LAN the kernel
// floods a broadcast to every port of the bridge within the sending
// call, so one socket sends only as fast as one CPU floods, and a socket
// per CPU sends faster; a physical interface is far from that limit with
// one. The reading socket is one of them: each packet socket's close
// waits for an RCU grace period, which a sweep's end waits for.
const maxWriters = 4

// New returns a scanner that sends and reads Ethernet frames on pc, for
// tests or a socket opened by the caller.
func New(ifi *net.Interface, pc net.PacketConn) (*Scanner, error) {
	srcs, err := prefixes(ifi)
	if err != nil {
		return nil, err
	}
	return newScanner(ifi, pc, srcs)
}

func newScanner(ifi *net.Interface, pc net.PacketConn, srcs []netip.Prefix) (*Scanner, error) {
	c, err := arp.New(ifi, pc)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ifi.Name, err)
	}
	return &Scanner{ifi: ifi, client: c, srcs: srcs, stamped: stampedConn(pc), pc: pc}, nil
}

// Close closes the sockets, at once: the kernel waits for an RCU grace
// period (milliseconds) to release each packet socket.
func (s *Scanner) Close() error {
	var wg sync.WaitGroup
	for _, w := range s.writers {
		wg.Go(func() { w.Close() })
	}
	err := s.client.Close()
	wg.Wait()
	return err
}

// Prefixes returns the interface's IPv4 prefixes (masked): what a sweep
// covers by default.
func (s *Scanner) Prefixes() []netip.Prefix {
	out := make([]netip.Prefix, len(s.srcs))
	for i, p := range s.srcs {
		out[i] = p.Masked()
	}
	return out
}

// OnLink reports whether a is on one of the interface's subnets.
func (s *Scanner) OnLink(a netip.Addr) bool {
	for _, p := range s.srcs {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// source picks the interface address to send from for target: the one on
// its subnet, else the first.
func (s *Scanner) source(target netip.Addr) netip.Addr {
	for _, p := range s.srcs {
		if p.Contains(target) {
			return p.Addr()
		}
	}
	return s.srcs[0].Addr()
}

// request is an ARP request for a writer to send.
type request struct {
	ip       netip.Addr
	dst      net.HardwareAddr // broadcast, or a host that answered
	fromZero bool             // from 0.0.0.0 (Config.FromZero)
}

// writers send the sender's requests, each on its own socket: the
// scanner's client, and its writers.
type writers struct {
	jobs      chan request
	congested atomic.Int64 // requests the kernel dropped and a writer sent again
	errc      chan error
	wg        sync.WaitGroup
}

// startWriters starts a writer per sending socket. They stop when jobs is
// closed and drained.
func (s *Scanner) startWriters(ctx context.Context) *writers {
	conns := append([]*arp.Client{s.client}, s.writers...)
	// A short queue: the sender blocks while every writer is busy, so its
	// timestamps stay close to when requests go out.
	w := &writers{jobs: make(chan request, len(conns)), errc: make(chan error, len(conns))}
	for _, c := range conns {
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			var failed bool
			for r := range w.jobs {
				if failed {
					continue // drain, so that the sender never blocks
				}
				if err := s.write(ctx, c, r, &w.congested); err != nil {
					failed = true
					w.errc <- err
				}
			}
		}()
	}
	return w
}

// send queues r for the next free writer.
func (w *writers) send(ctx context.Context, r request) error {
	select {
	case w.jobs <- r:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case err := <-w.errc:
		return err
	}
}

// failed returns a writer's error, if one has failed.
func (w *writers) failed() error {
	select {
	case err := <-w.errc:
		return err
	default:
		return nil
	}
}

// write sends r on c. ENOBUFS means the kernel dropped it: the interface
// (or, on a virtual LAN, the bridge flooding it to every port) is slower
// than the rate. Then the request is sent again after a pause, and the
// sender is told to slow down.
func (s *Scanner) write(ctx context.Context, c *arp.Client, r request, congested *atomic.Int64) error {
	src := netip.IPv4Unspecified()
	if !r.fromZero {
		src = s.source(r.ip)
	}
	p, err := arp.NewPacket(arp.OperationRequest, s.ifi.HardwareAddr, src, ethernet.Broadcast, r.ip)
	if err != nil {
		return err
	}
	pause := 100 * time.Microsecond
	for i := 0; ; i++ {
		err := c.WriteTo(p, r.dst)
		if err == nil {
			return nil
		}
		if !errors.Is(err, syscall.ENOBUFS) || i >= 1000 {
			return fmt.Errorf("arpscan: %s: sending: %w", s.ifi.Name, err)
		}
		congested.Add(1)
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		pause = min(2*pause, 10*time.Millisecond)
	}
}

// read collects replies until stop is closed, and hands each address's
// first answer to rel.
func (s *Scanner) read(sw *sweep, rel *relay, stop <-chan struct{}) error {
	buf, oob := make([]byte, 128), make([]byte, kstamp.OOBSize)
	for {
		p, at, err := s.readReply(buf, oob, sw.mark)
		if err != nil {
			select {
			case <-stop:
				return nil
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, os.ErrDeadlineExceeded) {
				continue
			}
			if errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrClosed) {
				return err
			}
			continue // a malformed frame: skip it
		}
		if p.Operation == arp.OperationReply {
			if r, ok := sw.record(p.SenderIP, p.SenderHardwareAddr, at); ok {
				rel.push(r)
			}
		}
		if sw.mark != nil {
			// Handled, and all that came before it: the socket's queue
			// is first in, first out.
			sw.mark.Set(at)
		}
	}
}

// empty reports whether the reading socket holds no reply.
func (s *Scanner) empty() bool {
	empty := false
	s.stamped.Control(func(fd uintptr) {
		// The length of the first frame queued; 0: none.
		n, err := unix.IoctlGetInt(int(fd), unix.SIOCINQ)
		empty = err == nil && n == 0
	})
	return empty
}

// stampedConn returns pc's raw connection with the kernel's receive
// times turned on, or nil where pc has none (a test's fake).
func stampedConn(pc net.PacketConn) syscall.RawConn {
	sc, ok := pc.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = kstamp.Enable(int(fd)) }); err != nil || serr != nil {
		return nil
	}
	return rc
}

// readReply reads the next ARP packet and when it arrived: the kernel's
// receive time where the socket has one, else now. A round trip timed by
// the reader includes its wait for a CPU, which on a busy machine is
// tens of times the round trip, and would set every wait after it.
func (s *Scanner) readReply(buf, oob []byte, mark *readmark.Mark) (*arp.Packet, time.Time, error) {
	if s.stamped == nil {
		p, _, err := s.client.Read()
		return p, time.Now(), err
	}
	for {
		var n, oobn int
		var rerr error
		err := s.stamped.Read(func(fd uintptr) bool {
			mark.Reading(true)
			before := time.Now()
			n, oobn, _, _, rerr = unix.Recvmsg(int(fd), buf, oob, 0)
			if rerr == unix.EAGAIN {
				// Empty: every reply that came before is read.
				mark.Set(before)
				mark.Reading(false)
				return false
			}
			return true
		})
		if err == nil {
			err = rerr
		}
		if err != nil {
			return nil, time.Time{}, err
		}
		at := kstamp.Parse(oob[:oobn])
		if at.IsZero() {
			at = time.Now()
		}
		var f ethernet.Frame
		var p arp.Packet
		if f.UnmarshalBinary(buf[:n]) != nil || f.EtherType != ethernet.EtherTypeARP || p.UnmarshalBinary(f.Payload) != nil {
			mark.Set(at)
			continue
		}
		return &p, at, nil
	}
}

func macEqual(a, b net.HardwareAddr) bool { return string(a) == string(b) }
