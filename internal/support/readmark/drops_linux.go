package readmark

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// skMeminfoDrops is SK_MEMINFO_DROPS, the index of the drop count in
// SO_MEMINFO's array.
const skMeminfoDrops = 8

// Drops returns how many packets the socket fd dropped so far for want of
// room in its receive queue (its reader fell behind, and the kernel
// discarded what came): answers that arrived and were lost on this host,
// not on the network.
func Drops(fd int) (uint64, error) {
	var info [16]uint32
	n := uint32(unsafe.Sizeof(info))
	_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_SOCKET, unix.SO_MEMINFO,
		uintptr(unsafe.Pointer(&info[0])), uintptr(unsafe.Pointer(&n)), 0)
	if errno != 0 {
		return 0, errno
	}
	if n < (skMeminfoDrops+1)*4 {
		return 0, unix.EINVAL
	}
	return uint64(info[skMeminfoDrops]), nil
}
