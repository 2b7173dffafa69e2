package testnet

import (
	"errors"
	"fmt"
	"net"
	"time"

	"golang.org/x/sys/unix"
)

// helperRelay, given as the program to exec, makes the helper forward
// every frame between two links of its namespace after a delay: args
// LINK-A LINK-B ONE-WAY-DELAY. This kernel has no netem, so a slow host
// is a host whose only link goes through such a relay.
const helperRelay = "@relay"

// relayQueue bounds the frames in flight in each direction, as a
// device's queue does: past it, frames are dropped.
const relayQueue = 8192

// vnetHdrLen is the size of struct virtio_net_hdr. With PACKET_VNET_HDR
// a frame is read with the kernel's offload state (a checksum still to
// compute, a segment still to split) and written back with it, so that
// the relay forwards what a veth carries, not only what fits one MTU
// with its checksum done.
const vnetHdrLen = 10

func serveRelay(args []string) error {
	if len(args) != 4 {
		return fmt.Errorf("usage: %s LINK-A LINK-B ONE-WAY-DELAY", helperRelay)
	}
	delay, err := time.ParseDuration(args[3])
	if err != nil || delay < 0 {
		return fmt.Errorf("%s: delay %q: want a duration such as 15ms", helperRelay, args[3])
	}
	a, err := openRelayLink(args[1])
	if err != nil {
		return err
	}
	b, err := openRelayLink(args[2])
	if err != nil {
		return err
	}
	// The same readiness line an agent logs.
	fmt.Printf("{\"event\":\"listening\",\"relay\":%q,\"delay\":%q}\n", args[1]+"<->"+args[2], delay)
	errc := make(chan error, 2)
	go func() { errc <- relayFrames(a, b, delay) }()
	go func() { errc <- relayFrames(b, a, delay) }()
	return <-errc
}

// openRelayLink opens a packet socket that reads every frame arriving on
// the named link, none that leave it, and writes frames out of it.
func openRelayLink(name string) (int, error) {
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return -1, err
	}
	proto := int(htons(unix.ETH_P_ALL))
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		return -1, fmt.Errorf("%s: packet socket: %w", name, err)
	}
	for _, o := range []struct {
		opt int
		val int
	}{{unix.PACKET_VNET_HDR, 1}, {unix.PACKET_IGNORE_OUTGOING, 1}} {
		if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, o.opt, o.val); err != nil {
			unix.Close(fd)
			return -1, fmt.Errorf("%s: packet socket option %d: %w", name, o.opt, err)
		}
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 8<<20)
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index}); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("%s: bind: %w", name, err)
	}
	// Frames for the host's MAC are not for this link's own.
	mr := unix.PacketMreq{Ifindex: int32(ifi.Index), Type: unix.PACKET_MR_PROMISC}
	if err := unix.SetsockoptPacketMreq(fd, unix.SOL_PACKET, unix.PACKET_ADD_MEMBERSHIP, &mr); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("%s: promiscuous mode: %w", name, err)
	}
	return fd, nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

type delayed struct {
	due   time.Time
	frame []byte
}

// relayFrames reads frames from src and writes each to dst delay after it
// arrived, in order.
func relayFrames(src, dst int, delay time.Duration) error {
	q := make(chan delayed, relayQueue)
	errc := make(chan error, 1)
	go func() {
		for d := range q {
			if w := time.Until(d.due); w > 0 {
				time.Sleep(w)
			}
			if _, err := unix.Write(dst, d.frame); err != nil && !errors.Is(err, unix.ENOBUFS) && !errors.Is(err, unix.ENETDOWN) {
				errc <- fmt.Errorf("relay: write: %w", err)
				return
			}
		}
	}()
	buf := make([]byte, vnetHdrLen+1<<16)
	for {
		n, err := unix.Read(src, buf)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return fmt.Errorf("relay: read: %w", err)
		}
		if n <= vnetHdrLen {
			continue
		}
		d := delayed{due: time.Now().Add(delay), frame: append([]byte(nil), buf[:n]...)}
		select {
		case q <- d:
		case err := <-errc:
			return err
		default: // the queue is full: dropped, as by a device
		}
	}
}
