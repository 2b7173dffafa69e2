package arpscan

import (
	"fmt"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// fineTimer sleeps to the microsecond where the runtime's timers wake
// about a millisecond late: a timerfd, waited on through the runtime's
// poller, so that the goroutine gives up its CPU while it waits.
type fineTimer struct {
	f  *os.File
	rc syscall.RawConn
}

func newFineTimer() (*fineTimer, error) {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("arpscan: timerfd: %w", err)
	}
	f := os.NewFile(uintptr(fd), "timerfd")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("arpscan: timerfd: %w", err)
	}
	return &fineTimer{f: f, rc: rc}, nil
}

// sleep waits for d.
func (t *fineTimer) sleep(d time.Duration) error {
	if d <= 0 {
		return nil
	}
	spec := unix.ItimerSpec{Value: unix.NsecToTimespec(int64(d))}
	var serr error
	if err := t.rc.Control(func(fd uintptr) { serr = unix.TimerfdSettime(int(fd), 0, &spec, nil) }); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("arpscan: timerfd: %w", serr)
	}
	var expirations [8]byte
	_, err := t.f.Read(expirations[:])
	return err
}

func (t *fineTimer) Close() error { return t.f.Close() }
