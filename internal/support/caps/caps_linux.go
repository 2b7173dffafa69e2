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
	want := mask(keep)
	// Nothing to drop: leave the threads alone.
	if data[0].Permitted&^want[0] == 0 && data[1].Permitted&^want[1] == 0 && data[0].Inheritable == 0 && data[1].Inheritable == 0 {
		return nil
	}
	if err := dropInherited(data, keep); err != nil {
		return err
	}
	return capset(hdr, data, want)
}

// dropInherited drops what an exec could win back: from the bounding set
// every capability but keep, while CAP_SETPCAP (in data) allows it, and
// the ambient set.
func dropInherited(data *[2]unix.CapUserData, keep []int) error {
	if data[unix.CAP_SETPCAP/32].Effective&(1<<(unix.CAP_SETPCAP%32)) != 0 {
		keepSet := map[int]bool{}
		for _, c := range keep {
			keepSet[c] = true
		}
		if err := dropBounding(keepSet); err != nil {
			return err
		}
	}
	if err := allThreads(unix.SYS_PRCTL, unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0); err != nil && !errors.Is(err, syscall.EINVAL) {
		return err
	}
	return nil
}

// allThreads runs a system call on every thread of the process.
func allThreads(trap, a1, a2, a3 uintptr) error {
	_, _, errno := syscall.AllThreadsSyscall(trap, a1, a2, a3)
	if errno == syscall.ENOTSUP {
		return ErrUnsupported
	}
	if errno != 0 {
		return errno
	}
	return nil
}

// dropBounding drops from the bounding set every capability not in keep.
func dropBounding(keep map[int]bool) error {
	last := lastCap()
	for c := 0; c <= last; c++ {
		if keep[c] {
			continue
		}
		if err := allThreads(unix.SYS_PRCTL, unix.PR_CAPBSET_DROP, uintptr(c), 0); err != nil {
			if errors.Is(err, ErrUnsupported) || !errors.Is(err, syscall.EINVAL) {
				return err
			}
		}
	}
	return nil
}

// capset sets every thread's permitted and effective sets to want, of
// what data says is permitted, and clears the inheritable set.
func capset(hdr *unix.CapUserHeader, data *[2]unix.CapUserData, want [2]uint32) error {
	for i := range data {
		data[i] = unix.CapUserData{Effective: want[i] & data[i].Permitted, Permitted: want[i] & data[i].Permitted}
	}
	err := allThreads(unix.SYS_CAPSET, uintptr(unsafe.Pointer(hdr)), uintptr(unsafe.Pointer(&data[0])), 0)
	runtime.KeepAlive(hdr)
	runtime.KeepAlive(data)
	return err
}

func become(uid, gid int, keep []int) error {
	hdr := &unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	data := new([2]unix.CapUserData)
	if err := unix.Capget(hdr, &data[0]); err != nil {
		return err
	}
	// The bounding set first, while CAP_SETPCAP is held: after the
	// change of user nothing could shrink it.
	if err := dropInherited(data, keep); err != nil {
		return err
	}
	// What the change of user needs stays until it is done.
	if err := capset(hdr, data, mask(append([]int{unix.CAP_SETGID, unix.CAP_SETUID}, keep...))); err != nil {
		return err
	}
	// Without keep-caps the permitted set is emptied when the user
	// changes, and keep would be lost with the rest.
	if err := allThreads(unix.SYS_PRCTL, unix.PR_SET_KEEPCAPS, 1, 0); err != nil {
		return err
	}
	if err := syscall.Setgroups(nil); err != nil {
		return err
	}
	if err := syscall.Setresgid(gid, gid, gid); err != nil {
		return err
	}
	if err := syscall.Setresuid(uid, uid, uid); err != nil {
		return err
	}
	if err := allThreads(unix.SYS_PRCTL, unix.PR_SET_KEEPCAPS, 0, 0); err != nil {
		return err
	}
	// The change of user emptied the effective set and left the
	// permitted one.
	if err := unix.Capget(hdr, &data[0]); err != nil {
		return err
	}
	return capset(hdr, data, mask(keep))
}

// mask is the capability sets' bit mask of cs.
func mask(cs []int) [2]uint32 {
	var m [2]uint32
	for _, c := range cs {
		m[c/32] |= 1 << (uint(c) % 32)
	}
	return m
}
