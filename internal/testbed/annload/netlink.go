package main

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"syscall"

	"golang.org/x/sys/unix"
)

// netlink changes the addresses of an interface, one request at a time,
// each acknowledged by the kernel before the next: what ip addr does,
// without a process per change.
type netlink struct {
	fd  int
	seq uint32
	buf []byte
}

func openNetlink() (*netlink, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netlink socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("netlink bind: %w", err)
	}
	return &netlink{fd: fd, buf: make([]byte, 1<<16)}, nil
}

func (n *netlink) close() { unix.Close(n.fd) }

// addr adds (or removes) a/bits on the interface of index.
func (n *netlink) addr(add bool, index int, a netip.Addr, bits int) error {
	n.seq++
	msg := addrRequest(add, n.seq, index, a, bits)
	if err := unix.Sendto(n.fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return err
	}
	for {
		k, _, err := unix.Recvfrom(n.fd, n.buf, 0)
		if err != nil {
			return err
		}
		msgs, err := syscall.ParseNetlinkMessage(n.buf[:k])
		if err != nil {
			return err
		}
		for _, m := range msgs {
			if m.Header.Seq != n.seq || m.Header.Type != unix.NLMSG_ERROR {
				continue
			}
			if len(m.Data) < 4 {
				return fmt.Errorf("netlink: short error message")
			}
			if errno := int32(binary.NativeEndian.Uint32(m.Data[:4])); errno != 0 {
				return unix.Errno(-errno)
			}
			return nil
		}
	}
}

// addrRequest is the RTM_NEWADDR (or RTM_DELADDR) message for a/bits,
// IPv4, acknowledged.
func addrRequest(add bool, seq uint32, index int, a netip.Addr, bits int) []byte {
	typ, flags := uint16(unix.RTM_DELADDR), uint16(unix.NLM_F_REQUEST|unix.NLM_F_ACK)
	if add {
		typ, flags = unix.RTM_NEWADDR, flags|unix.NLM_F_CREATE|unix.NLM_F_EXCL
	}
	ip := a.As4()
	attr := func(t uint16, v []byte) []byte {
		b := make([]byte, unix.SizeofRtAttr, unix.SizeofRtAttr+len(v))
		binary.NativeEndian.PutUint16(b[0:2], uint16(unix.SizeofRtAttr+len(v)))
		binary.NativeEndian.PutUint16(b[2:4], t)
		return append(b, v...)
	}
	body := make([]byte, unix.SizeofIfAddrmsg)
	body[0] = unix.AF_INET
	body[1] = byte(bits)
	binary.NativeEndian.PutUint32(body[4:8], uint32(index))
	body = append(body, attr(unix.IFA_LOCAL, ip[:])...)
	body = append(body, attr(unix.IFA_ADDRESS, ip[:])...)
	msg := make([]byte, unix.SizeofNlMsghdr, unix.SizeofNlMsghdr+len(body))
	binary.NativeEndian.PutUint32(msg[0:4], uint32(unix.SizeofNlMsghdr+len(body)))
	binary.NativeEndian.PutUint16(msg[4:6], typ)
	binary.NativeEndian.PutUint16(msg[6:8], flags)
	binary.NativeEndian.PutUint32(msg[8:12], seq)
	return append(msg, body...)
}
