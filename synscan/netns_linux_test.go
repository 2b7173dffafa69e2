package synscan

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/ifl-project/ifl/internal/testbed/testnet"
)

// Two namespaces joined by a veth pair, IPv4 and IPv6 on it: the
// scanner's sockets are opened in one, the other listens on a port, has
// one closed and drops a third. Nothing is added to the test's own
// namespace.
const (
	nsScanner = "ifl-synv6-a"
	nsTarget  = "ifl-synv6-b"
)

func TestRawOnAVethPair(t *testing.T) {
	testnet.Require(t, true)
	down := func() {
		for _, ns := range []string{nsScanner, nsTarget} {
			exec.Command("ip", "netns", "del", ns).Run()
		}
	}
	down()
	t.Cleanup(down)
	for _, args := range [][]string{
		{"netns", "add", nsScanner},
		{"netns", "add", nsTarget},
		{"-n", nsScanner, "link", "add", "veth0", "type", "veth", "peer", "name", "veth1", "netns", nsTarget},
		{"-n", nsScanner, "addr", "add", "198.18.41.1/24", "dev", "veth0"},
		{"-n", nsScanner, "addr", "add", "2001:db8:5::1/64", "dev", "veth0", "nodad"},
		{"-n", nsTarget, "addr", "add", "198.18.41.2/24", "dev", "veth1"},
		{"-n", nsTarget, "addr", "add", "2001:db8:5::2/64", "dev", "veth1", "nodad"},
		// Link-local addresses that need no duplicate detection either.
		{"-n", nsScanner, "addr", "add", "fe80::5:1/64", "dev", "veth0", "nodad"},
		{"-n", nsTarget, "addr", "add", "fe80::5:2/64", "dev", "veth1", "nodad"},
		{"-n", nsScanner, "link", "set", "veth0", "up"},
		{"-n", nsTarget, "link", "set", "veth1", "up"},
		{"-n", nsTarget, "link", "set", "lo", "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	nft := exec.Command("ip", "netns", "exec", nsTarget, "nft", "-f", "-")
	nft.Stdin = strings.NewReader("table inet f {\n chain in {\n  type filter hook input priority 0;\n  tcp dport 7441 drop\n }\n}\n")
	if out, err := nft.CombinedOutput(); err != nil {
		t.Fatalf("nft: %v\n%s", err, out)
	}
	var ln net.Listener
	inNetns(t, nsTarget, func() {
		var err error
		if ln, err = net.Listen("tcp", ":7440"); err != nil {
			t.Fatal(err)
		}
	})
	defer ln.Close()
	go acceptAndClose(ln)
	waitLinkReady(t, "198.18.41.2:7440", "[2001:db8:5::2]:7440", "[fe80::5:2%veth0]:7440")
	var r *Raw
	inNetns(t, nsScanner, func() {
		var err error
		if r, err = NewRaw(nil); err != nil {
			t.Fatal(err)
		}
	})
	defer r.Close()

	v4, v6 := netip.MustParseAddr("198.18.41.2"), netip.MustParseAddr("2001:db8:5::2")
	linkLocal := netip.MustParseAddr("fe80::5:2%veth0")
	// No route to it from the scanner's namespace.
	nowhere := netip.MustParseAddr("2001:db8:6::1")
	targets := []netip.Addr{v4, v6, linkLocal, nowhere}
	var want []Result
	for _, a := range targets {
		for _, p := range []struct {
			port  uint16
			state State
		}{{7440, Open}, {7441, Filtered}, {7442, Closed}} {
			if a == nowhere {
				p.state = Filtered
			}
			want = append(want, Result{Target: Target{Addr: a, Port: p.port}, State: p.state})
		}
	}
	Sort(want)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for run := range 2 { // the second with the neighbours resolved
		got, st, err := Scan(ctx, r, targets, []uint16{7440, 7441, 7442})
		if err != nil {
			t.Fatal(err)
		}
		for i := range got {
			got[i].RTT = 0
		}
		if diff := cmp.Diff(want, got, addrs); diff != "" {
			t.Errorf("run %d: results (-want +got):\n%s", run, diff)
		}
		t.Logf("run %d: %+v", run, st)
	}

	// A learned host's SYNs go as frames to the MAC it was learned at:
	// at the target's, the port is open; at a MAC nobody has, the frame
	// reaches no host (the kernel would have resolved the right one).
	var veth0, veth1 *net.Interface
	inNetns(t, nsScanner, func() {
		var err error
		if veth0, err = net.InterfaceByName("veth0"); err == nil {
			err = r.AddLink(veth0)
		}
		if err != nil {
			t.Fatal(err)
		}
	})
	inNetns(t, nsTarget, func() {
		var err error
		if veth1, err = net.InterfaceByName("veth1"); err != nil {
			t.Fatal(err)
		}
	})
	for _, tt := range []struct {
		mac   net.HardwareAddr
		state State
	}{
		{veth1.HardwareAddr, Open},
		{net.HardwareAddr{0x02, 0, 0, 0, 0, 0x99}, Filtered},
	} {
		r.Learn(v4, veth0.Index, tt.mac)
		got, _, err := Scan(ctx, r, []netip.Addr{v4}, []uint16{7440})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || got[0].State != tt.state {
			t.Errorf("learned at %v: %+v, want %v", tt.mac, got, tt.state)
		}
	}
	// The connect() path's dial, on the same pair: accepted, reset,
	// dropped (given up at its deadline, or when its context ends), and
	// no route.
	inNetns(t, nsScanner, func() {
		cancelled, cancel := context.WithCancel(context.Background())
		cancel()
		for _, a := range []netip.Addr{v4, v6, linkLocal} {
			for _, tt := range []struct {
				ctx  context.Context
				port uint16
				want error
			}{
				{ctx, 7440, nil},
				{ctx, 7442, unix.ECONNREFUSED},
				{ctx, 7441, os.ErrDeadlineExceeded},
				{cancelled, 7441, context.Canceled},
			} {
				ap := netip.AddrPortFrom(a, tt.port)
				err := dialTCP(tt.ctx, ap, time.Now().Add(50*time.Millisecond))
				if (tt.want == nil) != (err == nil) || (tt.want != nil && !errors.Is(err, tt.want)) {
					t.Errorf("dialTCP %v: %v, want %v", ap, err, tt.want)
				}
			}
		}
		if err := dialTCP(ctx, netip.AddrPortFrom(nowhere, 7440), time.Now().Add(time.Second)); !errors.Is(err, unix.ENETUNREACH) {
			t.Errorf("dialTCP to %v: %v, want ENETUNREACH", nowhere, err)
		}
	})
}

// waitLinkReady waits until the scanner's namespace connects to every
// address, then makes both ends forget their neighbours, so that a scan
// resolves them itself. The kernel takes a second or so to make a new
// link ready for IPv6: until then neighbour solicitations go unanswered,
// and the first is tried again only a second later.
func waitLinkReady(t *testing.T, addrs ...string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for _, a := range addrs {
		for {
			var err error
			inNetns(t, nsScanner, func() {
				var c net.Conn
				if c, err = net.DialTimeout("tcp", a, 200*time.Millisecond); err == nil {
					c.Close()
				}
			})
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the veth pair does not connect to %s: %v", a, err)
			}
		}
	}
	for _, args := range [][]string{
		{"-n", nsScanner, "neigh", "flush", "dev", "veth0"},
		{"-n", nsTarget, "neigh", "flush", "dev", "veth1"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// inNetns runs fn on a thread in the named namespace: sockets it opens
// stay there.
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
