package kstamp

import (
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestParseOnASocket: a datagram read with Enable'd stamps carries a
// receive time, and it is when the datagram came, on the clock a send
// time is taken on.
func TestParseOnASocket(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_DGRAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])
	if err := Enable(fds[1]); err != nil {
		t.Fatal(err)
	}
	sent := time.Now()
	if _, err := unix.Write(fds[0], []byte("x")); err != nil {
		t.Fatal(err)
	}
	buf, oob := make([]byte, 8), make([]byte, OOBSize)
	_, oobn, _, _, err := unix.Recvmsg(fds[1], buf, oob, 0)
	if err != nil {
		t.Fatal(err)
	}
	at := Parse(oob[:oobn])
	if at.IsZero() || at.Before(sent.Add(-time.Millisecond)) || at.After(time.Now()) {
		t.Errorf("stamp %v, want between the send (%v) and now", at, sent)
	}
	if !Parse(nil).IsZero() {
		t.Error("no control message: want the zero time")
	}
}
