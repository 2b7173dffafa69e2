// Package sdnotify speaks systemd's notification protocol
// (sd_notify(3)): one datagram per state change to the unix socket named
// by $NOTIFY_SOCKET, which systemd sets for a unit of Type=notify. It is
// a few lines, not a library: a service outside systemd has no socket,
// and Notify does nothing there.
package sdnotify

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"time"
)

// States a service sends.
const (
	Ready    = "READY=1"
	Stopping = "STOPPING=1"
	Watchdog = "WATCHDOG=1"
)

// Notify sends state to $NOTIFY_SOCKET; without it, it does nothing and
// returns nil. A name starting with @ is an abstract socket.
func Notify(state string) error {
	name := os.Getenv("NOTIFY_SOCKET")
	if name == "" {
		return nil
	}
	if name[0] != '/' && name[0] != '@' {
		return fmt.Errorf("sd_notify: NOTIFY_SOCKET=%q: want an absolute path or an abstract name (@...)", name)
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(state)); err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	return nil
}

// WatchdogInterval is how often systemd wants WATCHDOG=1 (WatchdogSec=,
// told in $WATCHDOG_USEC), if it watches this process ($WATCHDOG_PID
// unset or this process's id).
func WatchdogInterval() (time.Duration, bool, error) {
	us := os.Getenv("WATCHDOG_USEC")
	if us == "" {
		return 0, false, nil
	}
	if pid := os.Getenv("WATCHDOG_PID"); pid != "" && pid != strconv.Itoa(os.Getpid()) {
		return 0, false, nil
	}
	n, err := strconv.ParseInt(us, 10, 64)
	if err != nil || n <= 0 {
		return 0, false, errors.New("sd_notify: WATCHDOG_USEC=" + strconv.Quote(us) + ": want a positive number of microseconds")
	}
	return time.Duration(n) * time.Microsecond, true, nil
}
