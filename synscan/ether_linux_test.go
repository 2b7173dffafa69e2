package synscan

import (
	"errors"
	"net"
	"testing"

	"golang.org/x/sys/unix"
)

// A frame that fails to go out is reported by the next write, and a
// frame queued is sent even when the queue is closed before its batch
// was full.
func TestFrameQueueReportsFailures(t *testing.T) {
	s := &sockets{}
	bad := neighbour{link: &ethLink{fd: -1, ifi: &net.Interface{Index: 1, HardwareAddr: net.HardwareAddr{2, 0, 0, 0, 0, 1}}}, mac: net.HardwareAddr{2, 0, 0, 0, 0, 2}}
	if err := s.writeFrame(make([]byte, 40), bad); err != nil {
		t.Fatalf("first write: %v, want it queued", err)
	}
	q := s.frames
	s.Flush()
	q.close() // waits for the batch to be sent
	if err := q.failed(); !errors.Is(err, unix.EBADF) {
		t.Errorf("after a frame to a closed socket: %v, want EBADF", err)
	}
	q.refused.Add(2)
	q.err = nil
	if err := q.failed(); !errors.Is(err, unix.ENOBUFS) {
		t.Errorf("after refusals: %v, want ENOBUFS", err)
	}
	if err := q.failed(); err != nil {
		t.Errorf("refusals reported twice: %v", err)
	}
}
