package verify

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// minRTO is the least a verifying connection waits before it sends a
// lost segment again. Linux waits at least 200 ms: on a LAN whose round
// trips are a fraction of a millisecond, a lossy host's lost handshake
// message cost a probe 200 ms, where the few segments of a verification
// can be sent again as soon as their round trips say, as data centres
// configure TCP (its timeout is still the smoothed round trip plus four
// deviations, so a far host is not hurried).
const minRTO = 10000 // µs

// fastRetransmit lowers a connection's least retransmission timeout to
// minRTO (TCP_RTO_MIN_US, Linux 6.15 and later; elsewhere nothing).
func fastRetransmit(network, address string, c syscall.RawConn) error {
	return c.Control(func(fd uintptr) {
		_ = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_RTO_MIN_US, minRTO)
	})
}
