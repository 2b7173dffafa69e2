package synscan

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/ifl-project/ifl/internal/pace"
)

// ErrPermission is returned by NewRaw when the process may not open raw
// sockets (it lacks CAP_NET_RAW).
var ErrPermission = errors.New("no permission to open a raw socket (needs CAP_NET_RAW: run with sudo, or: sudo setcap cap_net_raw+ep $(command -v ifl))")

// srcPorts is how many source ports a scan spreads its probes over.
const srcPorts = 1024

// Raw is the raw-socket SYN scanner. Create it with NewRaw.
type Raw struct {
	cfg    Config
	ck     cookies
	sendFD int      // IPPROTO_RAW: we write the IP header
	recv   *os.File // IPPROTO_TCP: a copy of every TCP packet the kernel receives
	route  int      // a UDP socket, connected to a target to learn the source address
}

// NewRaw opens the sockets of a raw scan. After it returns the process
// needs CAP_NET_RAW no more.
func NewRaw(cfg *Config) (*Raw, error) {
	c := cfg.withDefaults()
	base := sourcePortBase()
	r := &Raw{cfg: c, ck: newCookies(base, srcPorts), sendFD: -1, route: -1}
	var err error
	if r.sendFD, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW); err != nil {
		return nil, wrapSocketErr(err)
	}
	recvFD, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.IPPROTO_TCP)
	if err != nil {
		r.Close()
		return nil, wrapSocketErr(err)
	}
	// Only TCP to our source ports reaches us; the filter is attached
	// before anything is read, and what queued before it is drained.
	prog, err := bpf.Assemble([]bpf.Instruction{
		bpf.LoadMemShift{Off: 0},          // X = IP header length
		bpf.LoadIndirect{Off: 2, Size: 2}, // TCP destination port
		bpf.JumpIf{Cond: bpf.JumpGreaterOrEqual, Val: uint32(base), SkipFalse: 2},
		bpf.JumpIf{Cond: bpf.JumpGreaterThan, Val: uint32(base) + srcPorts - 1, SkipTrue: 1},
		bpf.RetConstant{Val: 0xffff},
		bpf.RetConstant{Val: 0},
	})
	if err == nil {
		filter := make([]unix.SockFilter, len(prog))
		for i, ins := range prog {
			filter[i] = unix.SockFilter{Code: ins.Op, Jt: ins.Jt, Jf: ins.Jf, K: ins.K}
		}
		err = unix.SetsockoptSockFprog(recvFD, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]})
	}
	if err != nil {
		unix.Close(recvFD)
		r.Close()
		return nil, fmt.Errorf("synscan: attaching the socket filter: %w", err)
	}
	drain(recvFD)
	// A burst of answers must not overflow the socket.
	_ = unix.SetsockoptInt(recvFD, unix.SOL_SOCKET, unix.SO_RCVBUF, 4<<20)
	r.recv = os.NewFile(uintptr(recvFD), "synscan-recv")
	if r.route, err = unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
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

// Close closes the sockets.
func (r *Raw) Close() error {
	if r.sendFD >= 0 {
		unix.Close(r.sendFD)
		r.sendFD = -1
	}
	if r.route >= 0 {
		unix.Close(r.route)
		r.route = -1
	}
	if r.recv != nil {
		r.recv.Close()
		r.recv = nil
	}
	return nil
}

// source returns the address the kernel would send from to reach dst.
func (r *Raw) source(dst netip.Addr) (netip.Addr, error) {
	if !dst.Is4() {
		return netip.Addr{}, fmt.Errorf("%v: raw SYN probes are IPv4 only", dst)
	}
	if err := unix.Connect(r.route, &unix.SockaddrInet4{Addr: dst.As4(), Port: 9}); err != nil {
		return netip.Addr{}, fmt.Errorf("no route to %v: %w", dst, err)
	}
	sa, err := unix.Getsockname(r.route)
	if err != nil {
		return netip.Addr{}, err
	}
	in4, ok := sa.(*unix.SockaddrInet4)
	if !ok {
		return netip.Addr{}, fmt.Errorf("no IPv4 source for %v", dst)
	}
	return netip.AddrFrom4(in4.Addr), nil
}

// flight is a probe that has been sent and not yet answered or given up.
type flight struct {
	t        Target
	src      netip.Addr
	sport    uint16
	tries    int
	lastSent time.Time
	done     bool
}

type answer struct {
	t     Target
	state State
	at    time.Time
}

// Stream implements Scanner.
func (r *Raw) Stream(ctx context.Context, in <-chan Target, out chan<- Result) (Stats, error) {
	var st Stats
	answers := make(chan answer, 1024)
	stop, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		r.read(answers, stop)
	}()
	// The reader is gone before Stream returns, so that the next Stream
	// has the socket to itself.
	defer func() {
		close(stop)
		r.recv.SetReadDeadline(time.Unix(1, 0))
		<-stopped
		r.recv.SetReadDeadline(time.Time{})
	}()

	b := newSynBuilder()
	inflight := map[Target]*flight{}
	var fifo []*flight // in the order sent, so due in that order
	pacer := pace.New(r.cfg.Rate)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()

	emit := func(res Result) error {
		select {
		case out <- res:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	send := func(f *flight) error {
		seq := r.ck.seq(f.src, f.sport, f.t)
		pkt, err := b.build(f.src, f.sport, f.t, seq)
		if err != nil {
			return err
		}
		// Recorded before the packet leaves, so that the fastest answer
		// finds it.
		f.tries++
		f.lastSent = time.Now()
		fifo = append(fifo, f)
		st.Sent++
		err = unix.Sendto(r.sendFD, pkt, 0, &unix.SockaddrInet4{Addr: f.t.Addr.As4()})
		if errors.Is(err, unix.ENOBUFS) {
			// The kernel dropped it: its queue for a neighbour that is
			// still being resolved is full, or the device's is. Slow
			// down; the retry will send it again.
			pacer.Congested()
			err = nil
		}
		if err != nil {
			return fmt.Errorf("synscan: sending to %v: %w", f.t.Addr, err)
		}
		pacer.Sent(f.lastSent)
		return nil
	}
	handle := func(a answer) error {
		f := inflight[a.t]
		if f == nil || f.done {
			return nil // late, or a repeat
		}
		f.done = true
		delete(inflight, a.t)
		return emit(Result{Target: a.t, State: a.state, RTT: a.at.Sub(f.lastSent)})
	}

	inOpen := true
	for {
		if err := ctx.Err(); err != nil {
			return st, err
		}
		now := time.Now()
		// Retries and give-ups that are due.
		for len(fifo) > 0 {
			f := fifo[0]
			if f.done {
				fifo = fifo[1:]
				continue
			}
			due := f.lastSent.Add(r.cfg.Timeout)
			if now.Before(due) {
				break
			}
			if f.tries > r.cfg.Retries {
				fifo = fifo[1:]
				f.done = true
				delete(inflight, f.t)
				if err := emit(Result{Target: f.t, State: Filtered}); err != nil {
					return st, err
				}
				continue
			}
			if now.Before(pacer.Next()) {
				break
			}
			fifo = fifo[1:]
			if err := send(f); err != nil {
				return st, err
			}
			now = time.Now()
		}
		if !inOpen && len(inflight) == 0 {
			return st, nil
		}
		// Wait for the next thing to do.
		var inCh <-chan Target
		wake := time.Hour
		if inOpen {
			if now.Before(pacer.Next()) {
				wake = pacer.Next().Sub(now)
			} else {
				inCh = in
			}
		}
		if len(fifo) > 0 {
			d := fifo[0].lastSent.Add(r.cfg.Timeout).Sub(now)
			if d < time.Microsecond {
				d = pacer.Next().Sub(now) // due, waiting for the pacer
			}
			wake = min(wake, max(d, time.Microsecond))
		}
		timer.Reset(wake)
		select {
		case <-ctx.Done():
			return st, ctx.Err()
		case a := <-answers:
			if err := handle(a); err != nil {
				return st, err
			}
		case t, ok := <-inCh:
			if !ok {
				inOpen = false
				break
			}
			st.Targets++
			if _, dup := inflight[t]; dup {
				break
			}
			src, err := r.source(t.Addr)
			if err != nil {
				// Unreachable from here: nothing will answer.
				if err := emit(Result{Target: t, State: Filtered}); err != nil {
					return st, err
				}
				break
			}
			f := &flight{t: t, src: src, sport: r.ck.sport(t)}
			inflight[t] = f
			if err := send(f); err != nil {
				return st, err
			}
		case <-timer.C:
		}
	}
}

// read matches replies and sends answers until stop is closed. Anything
// that does not carry one of our cookies (forged, late or unrelated) is
// dropped.
func (r *Raw) read(answers chan<- answer, stop <-chan struct{}) {
	p := newReplyParser()
	buf := make([]byte, 2048)
	for {
		k, err := r.recv.Read(buf)
		if err != nil {
			select {
			case <-stop:
				return
			default:
			}
			if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, syscall.EINTR) {
				continue
			}
			if errors.Is(err, os.ErrClosed) || errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		now := time.Now()
		rep, ok := p.parse(buf[:k])
		if !ok {
			continue
		}
		t, state, ok := r.ck.match(rep)
		if !ok {
			continue
		}
		select {
		case answers <- answer{t: t, state: state, at: now}:
		case <-stop:
			return
		}
	}
}
