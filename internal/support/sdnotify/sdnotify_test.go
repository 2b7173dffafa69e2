package sdnotify

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// listen makes a socket as systemd's and points $NOTIFY_SOCKET at it.
func listen(t *testing.T, name string) *net.UnixConn {
	t.Helper()
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	t.Setenv("NOTIFY_SOCKET", name)
	return c
}

func read(t *testing.T, c *net.UnixConn) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 256)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	return string(buf[:n])
}

func TestNotify(t *testing.T) {
	for _, name := range []string{filepath.Join(t.TempDir(), "notify"), "@ifl-sdnotify-test-" + strconv.Itoa(os.Getpid())} {
		c := listen(t, name)
		for _, s := range []string{Ready, Watchdog, Stopping} {
			if err := Notify(s); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if got := read(t, c); got != s {
				t.Errorf("%s: received %q, want %q", name, got, s)
			}
		}
	}
}

func TestNotifyWithoutSystemd(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	if err := Notify(Ready); err != nil {
		t.Errorf("without NOTIFY_SOCKET: %v, want nothing done", err)
	}
	t.Setenv("NOTIFY_SOCKET", "relative")
	if err := Notify(Ready); err == nil || err.Error() != `sd_notify: NOTIFY_SOCKET="relative": want an absolute path or an abstract name (@...)` {
		t.Errorf("relative path: %v", err)
	}
}

func TestWatchdogInterval(t *testing.T) {
	pid := strconv.Itoa(os.Getpid())
	for _, tc := range []struct {
		usec, pid string
		want      time.Duration
		on        bool
		err       string
	}{
		{"", "", 0, false, ""},
		{"30000000", "", 30 * time.Second, true, ""},
		{"30000000", pid, 30 * time.Second, true, ""},
		{"30000000", "1", 0, false, ""},
		{"0", "", 0, false, `sd_notify: WATCHDOG_USEC="0": want a positive number of microseconds`},
		{"soon", "", 0, false, `sd_notify: WATCHDOG_USEC="soon": want a positive number of microseconds`},
	} {
		t.Setenv("WATCHDOG_USEC", tc.usec)
		t.Setenv("WATCHDOG_PID", tc.pid)
		d, on, err := WatchdogInterval()
		if d != tc.want || on != tc.on || (err == nil) != (tc.err == "") || (err != nil && err.Error() != tc.err) {
			t.Errorf("%q %q: %v %v %v, want %v %v %q", tc.usec, tc.pid, d, on, err, tc.want, tc.on, tc.err)
		}
	}
}
