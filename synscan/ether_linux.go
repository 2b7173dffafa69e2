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

// neighbour is where to send frames for an address.
type neighbour struct {
	link *ethLink
	mac  net.HardwareAddr
}

// addLink opens a packet socket on ifi. It needs CAP_NET_RAW.
func (s *sockets) addLink(ifi *net.Interface) error {
	if len(ifi.HardwareAddr) != 6 {
		return fmt.Errorf("synscan: %s: not an Ethernet link", ifi.Name)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
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
	s.mu.Lock()
	defer s.mu.Unlock()
	if l := s.links[ifindex]; l != nil && a.Is4() && len(mac) == 6 {
		s.neigh[a] = neighbour{link: l, mac: append(net.HardwareAddr(nil), mac...)}
	}
}

func (s *sockets) neighbourOf(a netip.Addr) (neighbour, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n, ok := s.neigh[a]
	return n, ok
}

// writeFrame sends an IPv4 packet to n as an Ethernet frame.
func (s *sockets) writeFrame(pkt []byte, n neighbour) error {
	frame := s.ebuf[:0]
	frame = append(frame, n.mac...)
	frame = append(frame, n.link.ifi.HardwareAddr...)
	frame = binary.BigEndian.AppendUint16(frame, unix.ETH_P_IP)
	frame = append(frame, pkt...)
	s.ebuf = frame
	var addr [8]byte
	copy(addr[:], n.mac)
	return unix.Sendto(n.link.fd, frame, 0, &unix.SockaddrLinklayer{Ifindex: n.link.ifi.Index, Halen: 6, Addr: addr, Protocol: htons(unix.ETH_P_IP)})
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
