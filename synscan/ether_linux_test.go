package synscan

import (
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// A frame that fails to go out is reported by the next write, once, with
// where it was going; refusals are reported as ENOBUFS, once; after
// Close, nothing is queued.
func TestFrameQueueReportsFailures(t *testing.T) {
	// No sockets of its own: Close must close no descriptor.
	dst := netip.MustParseAddr("198.18.0.2")
	s := &sockets{send4: -1, route4: -1, send6: -1, route6: -1, recv4: -1, recv6: -1,
		links: map[int]*ethLink{1: {fd: -1, ifi: &net.Interface{Index: 1, HardwareAddr: net.HardwareAddr{2, 0, 0, 0, 0, 1}}}}, neigh: map[netip.Addr]neighbour{}}
	s.learn(dst, 1, net.HardwareAddr{2, 0, 0, 0, 0, 2})
	delete(s.links, 1)
	n, q, ok, err := s.frameTo(dst)
	if !ok || err != nil {
		t.Fatalf("frameTo a learned address: %v, %v", ok, err)
	}
	t.Cleanup(q.close)
	if err := q.writeFrame(make([]byte, 40), dst, n); err != nil {
		t.Fatalf("first write: %v, want it queued", err)
	}
	s.Flush()
	q.close() // waits for the batch handed over to be sent
	err = q.failed()
	if !errors.Is(err, unix.EBADF) || !strings.Contains(err.Error(), dst.String()) {
		t.Errorf("after a frame to a closed socket: %v, want EBADF and %v", err, dst)
	}
	if err := q.failed(); err != nil {
		t.Errorf("a failure reported twice: %v", err)
	}
	q.noteRefused()
	q.noteRefused()
	if err := q.failed(); !errors.Is(err, unix.ENOBUFS) {
		t.Errorf("after refusals: %v, want ENOBUFS", err)
	}
	if err := q.failed(); err != nil {
		t.Errorf("refusals reported twice: %v", err)
	}
	s.Close()
	if _, _, _, err := s.frameTo(dst); !errors.Is(err, net.ErrClosed) {
		t.Errorf("a frame after Close: %v, want net.ErrClosed", err)
	}
	if err := q.writeFrame(make([]byte, 40), dst, n); !errors.Is(err, net.ErrClosed) {
		t.Errorf("a write to the closed queue: %v, want net.ErrClosed", err)
	}
	s.Flush() // nothing to hand over, and no panic
}
