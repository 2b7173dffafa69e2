package verify

import (
	"errors"
	"net"
	"testing"

	"golang.org/x/sys/unix"
)

// A verifying connection retransmits after minRTO, not Linux's 200 ms,
// where the kernel has TCP_RTO_MIN_US.
func TestFastRetransmit(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := (&net.Dialer{Control: fastRetransmit}).Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var got int
	var gerr error
	rc.Control(func(fd uintptr) { got, gerr = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_RTO_MIN_US) })
	if errors.Is(gerr, unix.ENOPROTOOPT) {
		t.Skip("this kernel has no TCP_RTO_MIN_US")
	}
	// Kept in jiffies: rounded up to the kernel's tick.
	if gerr != nil || got < minRTO || got > minRTO+10000 {
		t.Errorf("TCP_RTO_MIN_US %d, %v; want %d, to a tick", got, gerr, minRTO)
	}
}
