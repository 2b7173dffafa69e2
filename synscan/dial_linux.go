package synscan

import (
	"context"
	"net"
	"net/netip"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// dialTCP opens a TCP connection to ap and closes it again: nil if it
// was accepted, an error wrapping ECONNREFUSED if it was reset, one
// wrapping os.ErrDeadlineExceeded if nothing settled it by deadline.
//
// It is connect(2) on a bare socket, not net.Dialer: a scan dials every
// port, and net.Dialer's address strings, resolver path and deep stacks
// were most of a connect() scan's CPU. Where the answer (a reset, mostly)
// comes within the system call, as on a virtual link, the dial settles
// there without the poller; the others wait in the runtime's poller.
func dialTCP(ctx context.Context, ap netip.AddrPort, deadline time.Time) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	sa, family, err := sockaddr(ap)
	if err != nil {
		return err
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return os.NewSyscallError("socket", err)
	}
	switch err := unix.Connect(fd, sa); err {
	case nil:
		unix.Close(fd)
		return nil
	case unix.EINPROGRESS, unix.EINTR:
	default:
		unix.Close(fd)
		return os.NewSyscallError("connect", err)
	}
	if done, err := connected(fd); done {
		unix.Close(fd)
		return err
	}
	// Still in flight: wait for it to become writable (connected) or to
	// fail, in the poller. The file's name is only for errors of its
	// own, which a fresh socket does not have: no address string per
	// dial.
	f := os.NewFile(uintptr(fd), "tcp")
	defer f.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	if err := f.SetWriteDeadline(deadline); err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { f.SetWriteDeadline(time.Unix(1, 0)) })
	defer stop()
	var result error
	werr := rc.Write(func(fd uintptr) bool {
		done, err := connected(int(fd))
		result = err
		return done
	})
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if werr != nil {
		return werr
	}
	return result
}

// connected says whether the connection on fd has settled: with nil when
// it is established, with the error that ended it otherwise.
func connected(fd int) (bool, error) {
	soerr, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
	if err != nil {
		return true, os.NewSyscallError("getsockopt", err)
	}
	if soerr != 0 {
		return true, os.NewSyscallError("connect", unix.Errno(soerr))
	}
	if _, err := unix.Getpeername(fd); err == nil {
		return true, nil
	}
	return false, nil
}

// sockaddr is ap as connect(2) takes it.
func sockaddr(ap netip.AddrPort) (unix.Sockaddr, int, error) {
	a := ap.Addr().Unmap()
	if a.Is4() {
		return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: a.As4()}, unix.AF_INET, nil
	}
	sa := &unix.SockaddrInet6{Port: int(ap.Port()), Addr: a.As16()}
	if z := a.Zone(); z != "" {
		if i, err := strconv.Atoi(z); err == nil {
			sa.ZoneId = uint32(i)
		} else if ifi, err := net.InterfaceByName(z); err == nil {
			sa.ZoneId = uint32(ifi.Index)
		} else {
			return nil, 0, err
		}
	}
	return sa, unix.AF_INET6, nil
}
