package synscan

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"

	"golang.org/x/sys/unix"
)

// An on-link IPv4 host whose MAC a sweep has just learned gets its SYNs
// as Ethernet frames on the link's packet socket. Through the raw IP
// socket, the kernel would first resolve the host itself: one more ARP
// broadcast per host, with the SYN held until the reply, and if that
// broadcast is lost (a segment busy with the sweep's own), a second only
// a second later, long after a probe whose wait follows the host's round
// trip has given up.

// ethLink is a packet socket that sends on one link.
type ethLink struct {
	fd  int
	ifi *net.Interface
}

// neighbour is where to send frames for an address: the link, the
// Ethernet header and the packet socket's address of its frames.
type neighbour struct {
	link *ethLink
	head [14]byte
	name sockName
}

// addLink opens a packet socket on ifi. It needs CAP_NET_RAW.
func (s *sockets) addLink(ifi *net.Interface) error {
	if len(ifi.HardwareAddr) != 6 {
		return fmt.Errorf("synscan: %s: not an Ethernet link", ifi.Name)
	}
	s.nmu.Lock()
	defer s.nmu.Unlock()
	if s.links[ifi.Index] != nil {
		return nil
	}
	// Protocol 0: the socket sends and reads nothing.
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return wrapSocketErr(err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Ifindex: ifi.Index}); err != nil {
		unix.Close(fd)
		return fmt.Errorf("synscan: %s: %w", ifi.Name, err)
	}
	s.links[ifi.Index] = &ethLink{fd: fd, ifi: ifi}
	return nil
}

// learn records that a lives on the link with the given index at mac;
// a link without a packet socket is ignored.
func (s *sockets) learn(a netip.Addr, ifindex int, mac net.HardwareAddr) {
	s.nmu.Lock()
	defer s.nmu.Unlock()
	if l := s.links[ifindex]; l != nil && a.Is4() && len(mac) == 6 {
		n := neighbour{link: l, name: linkName(ifindex, mac)}
		copy(n.head[0:6], mac)
		copy(n.head[6:12], l.ifi.HardwareAddr)
		binary.BigEndian.PutUint16(n.head[12:], unix.ETH_P_IP)
		s.neigh[a] = n
	}
}

// frameTo returns where a frame to a goes and the queue it goes on, the
// queue started at the first probe (one lock a probe); ok is false for
// an address no sweep learned, the error net.ErrClosed once the sockets
// are closed.
func (s *sockets) frameTo(a netip.Addr) (n neighbour, q *sendQueue, ok bool, err error) {
	s.nmu.Lock()
	defer s.nmu.Unlock()
	if q, err = s.queueLocked(); err != nil {
		return n, nil, false, err
	}
	n, ok = s.neigh[a]
	return n, q, ok, nil
}

// queueLocked returns the queue probes go on, started at the first; the
// error net.ErrClosed once the sockets are closed. nmu is held.
func (s *sockets) queueLocked() (*sendQueue, error) {
	if s.queueClosed {
		return nil, net.ErrClosed
	}
	if s.queue == nil {
		s.queue = newSendQueue()
	}
	return s.queue, nil
}

// writeFrame queues an IPv4 packet to n as an Ethernet frame. A frame
// the kernel refused is found out after it left here: the next write
// says so (ENOBUFS, itself not sent), and the refused probe counts as
// lost.
func (q *sendQueue) writeFrame(pkt []byte, dst netip.Addr, n neighbour) error {
	return q.add(n.link.fd, n.head[:], pkt, nil, n.name, dst)
}

// Flush hands the probes queued to the sender.
func (s *sockets) Flush() {
	s.nmu.Lock()
	q := s.queue
	s.nmu.Unlock()
	if q != nil {
		q.flush()
	}
}
