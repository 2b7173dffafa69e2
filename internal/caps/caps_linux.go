package caps

import (
	"errors"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ErrUnsupported is returned by KeepOnly in a binary built with cgo, where
// Go cannot run a system call on every thread.
var ErrUnsupported = errors.New("caps: cannot change every thread's capabilities in a cgo binary")

func has(c int) (bool, error) {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return false, err
	}
	return data[c/32].Effective&(1<<(uint(c)%32)) != 0, nil
}

func lastCap() int {
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err != nil {
		return 40
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 40
	}
	return n
}

func keepOnly(keep []int) error {
	// On the heap, where they do not move while the kernel reads them.
	hdr := &unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	data := new([2]unix.CapUserData)
	if err := unix.Capget(hdr, &data[0]); err != nil {
		return err
	}
	want := [2]uint32{}
	for _, c := range keep {
		want[c/32] |= 1 << (uint(c) % 32)
	}
	// Nothing to drop: leave the threads alone.
	if data[0].Permitted&^want[0] == 0 && data[1].Permitted&^want[1] == 0 && data[0].Inheritable == 0 && data[1].Inheritable == 0 {
		return nil
	}
	keepSet := map[int]bool{}
	for _, c := range keep {
		keepSet[c] = true
	}
	allThreads := func(trap, a1, a2, a3 uintptr) error {
		_, _, errno := syscall.AllThreadsSyscall(trap, a1, a2, a3)
		if errno == syscall.ENOTSUP {
			return ErrUnsupported
		}
		if errno != 0 {
			return errno
		}
		return nil
	}
	// The bounding set, while CAP_SETPCAP allows it: then no exec can
	// win the capabilities back.
	if data[unix.CAP_SETPCAP/32].Effective&(1<<(unix.CAP_SETPCAP%32)) != 0 {
		last := lastCap()
		for c := 0; c <= last; c++ {
			if keepSet[c] {
				continue
			}
			if err := allThreads(unix.SYS_PRCTL, unix.PR_CAPBSET_DROP, uintptr(c), 0); err != nil {
				if errors.Is(err, ErrUnsupported) {
					return err
				}
				if !errors.Is(err, syscall.EINVAL) {
					return err
				}
			}
		}
	}
	if err := allThreads(unix.SYS_PRCTL, unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0); err != nil && !errors.Is(err, syscall.EINVAL) {
		return err
	}
	for i := range data {
		data[i] = unix.CapUserData{Effective: want[i] & data[i].Permitted, Permitted: want[i] & data[i].Permitted}
	}
	err := allThreads(unix.SYS_CAPSET, uintptr(unsafe.Pointer(hdr)), uintptr(unsafe.Pointer(&data[0])), 0)
	runtime.KeepAlive(hdr)
	runtime.KeepAlive(data)
	return err
}
