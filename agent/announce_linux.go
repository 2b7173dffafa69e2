package agent

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// FollowAddrs subscribes to the kernel's address and link events
// (rtnetlink: addresses added and removed, IPv4 and IPv6, links up and
// down) and says on the channel when the addresses may have changed,
// one word for any number of events: the reader lists them again. It
// stops, closing the channel, when ctx is done.
func FollowAddrs(ctx context.Context) (<-chan struct{}, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netlink socket: %w", err)
	}
	groups := uint32(unix.RTMGRP_LINK | unix.RTMGRP_IPV4_IFADDR | unix.RTMGRP_IPV6_IFADDR)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: groups}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("netlink: subscribing to address events: %w", err)
	}
	// Through the runtime's poller: Close wakes a Read that waits.
	f := os.NewFile(uintptr(fd), "rtnetlink")
	out := make(chan struct{}, 1)
	stop := context.AfterFunc(ctx, func() { f.Close() })
	go func() {
		defer close(out)
		defer stop()
		defer f.Close()
		buf := make([]byte, 16<<10)
		for {
			_, err := f.Read(buf)
			// ENOBUFS: events were lost, which a new listing makes up for.
			if err != nil && !errors.Is(err, unix.ENOBUFS) {
				return
			}
			select {
			case out <- struct{}{}:
			default:
			}
		}
	}()
	return out, nil
}

// sendFrom sends b to to from the local address local, on a socket that
// is never bound: the kernel gives it a port at the first send, so a
// unit that denies bind(2) (SocketBindDeny=) still lets it through, and
// the source address goes with the datagram (IP_PKTINFO,
// IPV6_PKTINFO).
func sendFrom(local netip.Addr, to netip.AddrPort, b []byte) error {
	family := unix.AF_INET6
	if local.Is4() {
		family = unix.AF_INET
	}
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	var oob []byte
	var sa unix.Sockaddr
	if local.Is4() {
		oob = (&ipv4.ControlMessage{Src: local.AsSlice()}).Marshal()
		sa = &unix.SockaddrInet4{Port: int(to.Port()), Addr: to.Addr().Unmap().As4()}
	} else {
		oob = (&ipv6.ControlMessage{Src: local.AsSlice()}).Marshal()
		sa = &unix.SockaddrInet6{Port: int(to.Port()), Addr: to.Addr().As16()}
	}
	return unix.Sendmsg(fd, b, oob, sa, 0)
}
