package readmark

import (
	"testing"

	"golang.org/x/sys/unix"
)

// TestDrops fills a UDP socket's small receive queue on loopback: what
// does not fit is counted.
func TestDrops(t *testing.T) {
	rx, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(rx)
	unix.SetsockoptInt(rx, unix.SOL_SOCKET, unix.SO_RCVBUF, 1)
	if err := unix.Bind(rx, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Skip("no loopback:", err)
	}
	if n, err := Drops(rx); err != nil || n != 0 {
		t.Fatalf("a new socket: %d drops, %v", n, err)
	}
	sa, _ := unix.Getsockname(rx)
	tx, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(tx)
	for range 100 {
		unix.Sendto(tx, make([]byte, 1000), 0, sa)
	}
	if n, err := Drops(rx); err != nil || n == 0 {
		t.Errorf("a full socket: %d drops, %v; want some", n, err)
	}
}
