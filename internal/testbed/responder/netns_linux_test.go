package responder_test

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ifl-project/ifl/internal/testbed/responder"
	"github.com/ifl-project/ifl/internal/testbed/testnet"
)

// Two namespaces joined by a veth pair: a kernel with an address on one
// side, a responder on the other. The kernel's own TCP and ARP judge the
// responder's frames: a connection completes only on a SYN-ACK with the
// right checksums and acknowledgement, and is refused only on a reset that
// answers it. Nothing is added to the test's own namespace.
const (
	nsKernel    = "ifl-rsptest-k"
	nsResponder = "ifl-rsptest-r"
)

func TestServeAnswersAKernel(t *testing.T) {
	testnet.Require(t, false)
	down := func() {
		for _, ns := range []string{nsKernel, nsResponder} {
			exec.Command("ip", "netns", "del", ns).Run()
		}
	}
	down()
	t.Cleanup(down)
	for _, args := range [][]string{
		{"netns", "add", nsKernel},
		{"netns", "add", nsResponder},
		{"-n", nsKernel, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", nsResponder},
		{"-n", nsKernel, "addr", "add", "198.19.112.1/24", "dev", "eth0"},
		{"-n", nsResponder, "link", "set", "eth0", "addrgenmode", "none"},
		{"-n", nsKernel, "link", "set", "eth0", "up"},
		{"-n", nsResponder, "link", "set", "eth0", "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	a := func(s string) netip.Addr { return netip.MustParseAddr("198.19.112." + s) }
	cfg := &responder.Config{
		Groups: []responder.Group{
			{Open: []uint16{7440}},
			{Filtered: []uint16{7440}, Delay: 300 * time.Millisecond},
			{Open: []uint16{7440}, Loss: 100},
		},
		Hosts: []responder.Host{{a("10"), 0}, {a("11"), 1}, {a("12"), 2}},
		Seed:  1,
	}
	var srv *responder.Server
	inNetns(t, nsResponder, func() {
		var err error
		if srv, err = responder.Listen("eth0", cfg); err != nil {
			t.Fatal(err)
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	type served struct {
		st  responder.Stats
		err error
	}
	done := make(chan served, 1)
	go func() {
		st, err := srv.Serve(ctx)
		done <- served{st, err}
	}()
	// Stopped once: at the end, or when the test fails first.
	stop := sync.OnceValue(func() served {
		cancel()
		return <-done
	})
	defer stop()

	dial := func(addr string, timeout time.Duration) (err error) {
		inNetns(t, nsKernel, func() {
			var c net.Conn
			if c, err = net.DialTimeout("tcp", addr, timeout); err == nil {
				c.Close()
			}
		})
		return err
	}
	// The SYN of the first dial may go before the link has its carrier:
	// the kernel sends it again a second later.
	if err := dial("198.19.112.10:7440", 10*time.Second); err != nil {
		t.Errorf("open port: %v", err)
	}
	if err := dial("198.19.112.10:7441", 5*time.Second); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("closed port: %v, want connection refused", err)
	}
	// Delayed: the ARP reply and the reset go through the queue.
	start := time.Now()
	if err := dial("198.19.112.11:7441", 5*time.Second); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("closed port of a slow host: %v, want connection refused", err)
	}
	t.Logf("a host 300 ms away refused a connection in %v", time.Since(start))
	var ne net.Error
	if err := dial("198.19.112.11:7440", 500*time.Millisecond); !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("filtered port: %v, want a timeout", err)
	}
	// A host that loses everything, and an address of no host: the
	// kernel's ARP never learns a MAC for either, and the dial gets no
	// answer: a timeout, or no route to host once ARP gives up (three
	// requests a second apart, by default).
	lost := []string{"198.19.112.12", "198.19.112.13"}
	errs := make(chan error, len(lost))
	for _, ip := range lost {
		go func() { errs <- dial(ip+":7440", 2*time.Second) }()
	}
	for range lost {
		err := <-errs
		if !errors.Is(err, syscall.EHOSTUNREACH) && (!errors.As(err, &ne) || !ne.Timeout()) {
			t.Errorf("an address nobody answers for: %v, want a timeout or no route to host", err)
		}
	}
	out, err := exec.Command("ip", "-n", nsKernel, "neigh", "show", "dev", "eth0").CombinedOutput()
	if err != nil {
		t.Fatalf("ip neigh: %v\n%s", err, out)
	}
	// The kernel learned each host at its own MAC, and no MAC for the
	// others.
	for _, h := range []string{"10", "11"} {
		mac := responder.MAC(a(h))
		want := "198.19.112." + h + " lladdr " + net.HardwareAddr(mac[:]).String()
		if !strings.Contains(string(out), want) {
			t.Errorf("neighbours without %q:\n%s", want, out)
		}
	}
	for _, ip := range lost {
		if strings.Contains(string(out), ip+" lladdr") {
			t.Errorf("%s has a MAC:\n%s", ip, out)
		}
	}

	// Counted while it serves too.
	if mid := srv.Stats(); mid.SynAck != 1 || mid.Reset != 2 || mid.ARP != 2 {
		t.Errorf("stats while serving %+v: want 1 SYN-ACK, 2 resets and 2 ARP replies", mid)
	}
	s := stop()
	if s.err != nil {
		t.Fatalf("serve: %v", s.err)
	}
	st := s.st
	t.Logf("stats %+v", st)
	// One connection each; the losses and the filtered SYNs are the
	// kernel's retries, as many as it sends.
	if st.SynAck != 1 || st.Reset != 2 || st.ARP != 2 || st.Delayed != 2 || st.Lost < 1 || st.Filtered < 1 ||
		st.QueueFull != 0 || st.KernelDrops != 0 || st.WriteErrors != 0 {
		t.Errorf("stats %+v: want 1 SYN-ACK, 2 resets, 2 ARP replies, 2 delayed, losses and filtered SYNs, and nothing refused or dropped", st)
	}
}

func inNetns(t *testing.T, name string, fn func()) {
	t.Helper()
	runtime.LockOSThread()
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	defer orig.Close()
	ns, err := os.Open("/run/netns/" + name)
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	defer ns.Close()
	if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("setns %s: %v", name, err)
	}
	defer func() {
		// A thread that cannot go back stays locked, and ends with its
		// goroutine.
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			t.Errorf("setns back: %v", err)
			return
		}
		runtime.UnlockOSThread()
	}()
	fn()
}
