package synscan

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"
)

// PacketIO is what a raw scan sends its probes on and reads the answers
// from: raw sockets (NewRaw), or a network in a test. Both ways go TCP
// segments with their addresses; the IO adds and strips the IP headers.
// ReadFrom is called from one goroutine, the other methods from another.
type PacketIO interface {
	// Ports is the range of source ports probes use, n of them from
	// first; segments to other ports need not be read.
	Ports() (first, n uint16)
	// Source returns the address a packet to dst leaves from, or an
	// error if dst cannot be reached from here.
	Source(dst netip.Addr) (netip.Addr, error)
	// WriteTo sends seg, a TCP segment with its checksum, from src to
	// dst. An error that wraps syscall.ENOBUFS means the kernel had no
	// room for it, or for a segment queued before it (a queue's sender
	// found out late): seg was not sent, and may be sent again.
	WriteTo(seg []byte, src, dst netip.Addr) error
	// ReadFrom reads the next TCP segment into b and returns its length
	// and how it came.
	ReadFrom(b []byte) (n int, arr Arrival, err error)
	// SetReadDeadline makes ReadFrom, waiting or to come, return an
	// error wrapping os.ErrDeadlineExceeded once t has passed; the zero
	// time, never.
	SetReadDeadline(t time.Time) error
	Close() error
}

// readMarker is a PacketIO that says how far its reader has read (see
// package readmark): every segment that arrived before ReadUpTo has been
// returned by ReadFrom, and ReadFrom has been called again since, its
// caller done with it. Advanced is signalled when the mark moves. A scan
// over one ends a probe's wait when the reader has read past it, not
// before: a segment left in the socket is not silence.
type readMarker interface {
	ReadUpTo() time.Time
	Advanced() <-chan struct{}
}

// dropCounter is a PacketIO that counts the segments its reading
// sockets dropped for want of room, their reader having fallen behind:
// answers that came and were lost on this host. A scan over one takes
// them for loss (the rate falls), gives the probes that waited through
// them a try more, and counts those still silent after it as unsure.
type dropCounter interface {
	Drops() uint64
}

// flusher is a PacketIO that may queue what it is given to write (the
// sockets of NewRaw queue every probe, and send a batch with one system
// call): a scan calls Flush before it waits for anything.
type flusher interface {
	Flush()
}

// Arrival is how a segment came.
type Arrival struct {
	From, To netip.Addr
	// At is when the kernel received it; the zero time: unknown, and the
	// time it is read stands for it. A reader that falls behind must not
	// make round trips seem longer, nor answers seem to come after the
	// retries they came before.
	At time.Time
}

// srcPorts is how many source ports NewRaw spreads probes over.
const srcPorts = 1024

// Raw is the raw-socket SYN scanner. Create it with NewRaw, or New over
// any PacketIO. A Raw runs one Stream at a time.
type Raw struct {
	cfg Config
	ck  cookies
	io  PacketIO
}

// New returns a raw scanner that sends and reads on io, and closes it on
// Close.
func New(cfg *Config, io PacketIO) (*Raw, error) {
	first, n := io.Ports()
	if n == 0 || int(first)+int(n) > 65536 {
		return nil, fmt.Errorf("synscan: bad source port range: %d ports from %d", n, first)
	}
	return &Raw{cfg: cfg.withDefaults(), ck: newCookies(first, n), io: io}, nil
}

// Close closes the IO.
func (r *Raw) Close() error { return r.io.Close() }

// answer is a reply that carried one of our cookies.
type answer struct {
	t     Target
	state State
	at    time.Time
}

// Stream implements Scanner.
func (r *Raw) Stream(ctx context.Context, in <-chan Target, out chan<- Result) (Stats, error) {
	answers := make(chan answer, 1024)
	readErr := make(chan error, 1)
	stop, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		if err := r.read(answers, stop); err != nil {
			readErr <- err
		}
	}()
	// The reader is gone before Stream returns, so that the next Stream
	// has the socket to itself.
	defer func() {
		close(stop)
		r.io.SetReadDeadline(time.Unix(1, 0))
		<-stopped
		r.io.SetReadDeadline(time.Time{})
	}()
	s := newScan(r, out)
	defer s.timer.Stop()
	err := s.run(ctx, in, answers, readErr)
	return s.st, err
}

// read matches replies and sends answers until stop is closed. Anything
// that does not carry one of our cookies (forged, late or unrelated) is
// dropped. It returns the error that stops it before stop is closed.
func (r *Raw) read(answers chan<- answer, stop <-chan struct{}) error {
	var p replyParser
	buf := make([]byte, 2048)
	for {
		n, arr, err := r.io.ReadFrom(buf)
		if err != nil {
			select {
			case <-stop:
				return nil
			default:
			}
			if errors.Is(err, syscall.EINTR) || errors.Is(err, os.ErrDeadlineExceeded) {
				continue
			}
			if errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrClosed) {
				err = net.ErrClosed
			}
			return fmt.Errorf("synscan: reading replies: %w", err)
		}
		if arr.At.IsZero() {
			arr.At = time.Now()
		}
		rep, ok := p.parse(buf[:n], arr.From, arr.To)
		if !ok {
			continue
		}
		t, state, ok := r.ck.match(rep)
		if !ok {
			continue
		}
		select {
		case answers <- answer{t: t, state: state, at: arr.At}:
		case <-stop:
			return nil
		}
	}
}
