package agent

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ifl-project/ifl/proto"
)

// pingFrom pings the agent from a loopback address of the test's choice,
// asking for announcements at port (0: none).
func (ta *testAgent) pingFrom(t *testing.T, from string, port uint16) {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	c, err := d.Dial("tcp", ta.addr)
	if err != nil {
		t.Fatal(err)
	}
	pc := proto.Client(c, &proto.ClientConfig{NetworkKey: ta.key, AnnouncePort: port})
	defer pc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := pc.Ping(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestAgentLearnsControllers: a verified ping that asks for
// announcements makes its source a controller to announce to, the most
// recent first, one entry per address, at most maxLearned; a ping that
// does not ask changes nothing.
func TestAgentLearnsControllers(t *testing.T) {
	ta := startAgent(t, nil)
	ta.pingFrom(t, "127.0.0.2", 0)
	if got := ta.Learned(); len(got) != 0 {
		t.Fatalf("learned %v from a ping that asked for nothing", got)
	}
	ta.pingFrom(t, "127.0.0.2", 7441)
	ta.pingFrom(t, "127.0.0.3", 7441)
	ta.pingFrom(t, "127.0.0.2", 7442)
	want := []netip.AddrPort{netip.MustParseAddrPort("127.0.0.2:7442"), netip.MustParseAddrPort("127.0.0.3:7441")}
	if diff := cmp.Diff(want, ta.Learned(), cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })); diff != "" {
		t.Fatalf("learned (-want +got):\n%s", diff)
	}
	for i := 10; i < 10+maxLearned+2; i++ {
		ta.pingFrom(t, netip.AddrFrom4([4]byte{127, 0, 0, byte(i)}).String(), 7441)
	}
	got := ta.Learned()
	if len(got) != maxLearned || got[0] != netip.MustParseAddrPort("127.0.0.19:7441") || got[maxLearned-1] != netip.MustParseAddrPort("127.0.0.12:7441") {
		t.Errorf("after %d controllers, learned %v: want the %d latest, latest first", maxLearned+4, got, maxLearned)
	}
}

// sent is one datagram the agent sent.
type sent struct {
	from netip.Addr
	to   netip.AddrPort
	b    []byte
}

// announceRig runs Announce with a host whose addresses the test sets,
// and a network that records what is sent.
type announceRig struct {
	ta     *testAgent
	events chan struct{}
	sent   chan sent
	mu     sync.Mutex
	addrs  []netip.Addr
	done   chan error
	cancel context.CancelFunc
}

func startAnnounce(t *testing.T, controllers []string, addrs ...string) *announceRig {
	t.Helper()
	r := &announceRig{ta: startAgent(t, nil), events: make(chan struct{}, 1), sent: make(chan sent, 100), done: make(chan error, 1)}
	r.set(addrs...)
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	cfg := AnnounceConfig{
		Listen:      netip.MustParseAddrPort("0.0.0.0:7440"),
		Controllers: controllers,
		Addrs: func() ([]netip.Addr, error) {
			r.mu.Lock()
			defer r.mu.Unlock()
			return append([]netip.Addr(nil), r.addrs...), nil
		},
		Send: func(local netip.Addr, to netip.AddrPort, b []byte) error {
			r.sent <- sent{local, to, b}
			return nil
		},
		Resolve: func(ctx context.Context, host string) ([]netip.Addr, error) {
			if host == "ctl.test" {
				return []netip.Addr{netip.MustParseAddr("198.18.9.9")}, nil
			}
			return nil, errors.New("no such host")
		},
	}
	r.ta.ann.verified(fenceController.Addr(), fenceController.Port(), netip.Addr{})
	go func() { r.done <- r.ta.Announce(ctx, cfg, r.events) }()
	t.Cleanup(func() {
		cancel()
		if err := <-r.done; err != nil {
			t.Errorf("announce: %v", err)
		}
	})
	return r
}

func (r *announceRig) set(addrs ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.addrs = nil
	for _, a := range addrs {
		r.addrs = append(r.addrs, netip.MustParseAddr(a))
	}
}

// change sets the host's addresses and tells the agent, as the kernel
// would.
func (r *announceRig) change(addrs ...string) {
	r.set(addrs...)
	r.events <- struct{}{}
}

func (r *announceRig) next(t *testing.T) sent {
	t.Helper()
	select {
	case s := <-r.sent:
		return s
	case <-time.After(10 * time.Second):
		t.Fatal("nothing announced within 10s")
	}
	return sent{}
}

// quiet checks that nothing more is announced: the host gains an IPv6
// address, which goes to the IPv6 controller the rig knows, and that
// datagram must be the next one.
func (r *announceRig) quiet(t *testing.T, addrs ...string) {
	t.Helper()
	r.change(addrs...)
	s := r.next(t)
	if s.to != fenceController {
		t.Fatalf("announced %v to %v, want nothing before the fence to %v", s.from, s.to, fenceController)
	}
}

// fenceController is an IPv6 controller every rig knows.
var fenceController = netip.MustParseAddrPort("[2001:db8::1]:7441")

// open checks a datagram as a controller with the agent's key would.
func (r *announceRig) open(t *testing.T, s sent) {
	t.Helper()
	var a proto.Announcement
	if err := a.UnmarshalBinary(s.b); err != nil {
		t.Fatal(err)
	}
	fp, err := a.Open([]proto.AnnounceKey{r.ta.key.AnnounceKey()}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if fp != r.ta.fingerprint || a.Port != 7440 {
		t.Errorf("announcement of %x port %d, want %x port 7440", fp, a.Port, r.ta.fingerprint)
	}
}

// fastRetries makes the back-off milliseconds long for the test.
func fastRetries(t *testing.T) {
	old := announceAfter
	for i := range announceAfter {
		announceAfter[i] = time.Duration(i) * time.Millisecond
	}
	t.Cleanup(func() { announceAfter = old })
}

// TestAnnounceAtStart: the host's addresses are announced at start,
// from each, to each controller of its family, learned and configured
// (names looked up); a controller's verified ping at that address stops
// its announcements.
func TestAnnounceAtStart(t *testing.T) {
	fastRetries(t)
	r := startAnnounce(t, []string{"198.18.9.8:7450", "ctl.test", "nowhere.test"}, "198.18.1.5")
	got := map[netip.AddrPort]netip.Addr{}
	for range 2 {
		s := r.next(t)
		r.open(t, s)
		got[s.to] = s.from
	}
	want := map[netip.AddrPort]netip.Addr{
		netip.MustParseAddrPort("198.18.9.8:7450"): netip.MustParseAddr("198.18.1.5"),
		netip.MustParseAddrPort("198.18.9.9:7441"): netip.MustParseAddr("198.18.1.5"),
	}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Fatalf("announced at start (-want +got):\n%s", diff)
	}
	local := netip.MustParseAddr("198.18.1.5")
	r.ta.ann.verified(netip.MustParseAddr("198.18.9.8"), 0, local)
	r.ta.ann.verified(netip.MustParseAddr("198.18.9.9"), 0, local)
	// Retries under way at the acknowledgements may still come out.
	for len(r.sent) > 0 {
		<-r.sent
	}
	r.quiet(t, "198.18.1.5", "2001:db8::5")
}

// TestAnnounceBackoffUntilVerified: without a verification an address is
// announced len(announceAfter) times and then given up; a verified ping
// from the controller at the announced address stops it at once.
func TestAnnounceBackoffUntilVerified(t *testing.T) {
	fastRetries(t)
	r := startAnnounce(t, nil, "198.18.1.5")
	ctl := netip.MustParseAddr("198.18.0.2")
	r.ta.ann.verified(ctl, 7441, netip.MustParseAddr("198.18.1.5"))
	r.change("198.18.1.6")
	for i := range len(announceAfter) {
		s := r.next(t)
		if s.from != netip.MustParseAddr("198.18.1.6") || s.to != netip.AddrPortFrom(ctl, 7441) {
			t.Fatalf("datagram %d from %v to %v, want from the new address to the controller", i, s.from, s.to)
		}
		r.open(t, s)
	}
	// Given up: the next change is the only thing announced.
	r.change("198.18.1.7")
	if s := r.next(t); s.from != netip.MustParseAddr("198.18.1.7") {
		t.Fatalf("announced %v, want the newest address", s.from)
	}
	r.ta.ann.verified(ctl, 7441, netip.MustParseAddr("198.18.1.7"))
	r.quiet(t, "198.18.1.7", "2001:db8::7")
	st := r.ta.AnnounceStats()
	if st.GaveUp != 1 || st.Acked != 1 || st.Sent != int64(len(announceAfter))+2 {
		t.Errorf("stats %+v, want 1 given up, 1 acknowledged, %d sent (the fence too)", st, len(announceAfter)+2)
	}
}

// TestAnnounceRemovedAddress: an address that goes, with none coming,
// makes the agent announce the ones left; the one that went is no more
// announced.
func TestAnnounceRemovedAddress(t *testing.T) {
	fastRetries(t)
	r := startAnnounce(t, nil, "198.18.1.5", "198.18.2.5")
	ctl := netip.MustParseAddr("198.18.0.2")
	r.ta.ann.verified(ctl, 7441, netip.MustParseAddr("198.18.1.5"))
	r.change("198.18.2.5")
	s := r.next(t)
	if s.from != netip.MustParseAddr("198.18.2.5") {
		t.Fatalf("announced from %v, want the address left", s.from)
	}
	r.ta.ann.verified(ctl, 7441, s.from)
	for len(r.sent) > 0 {
		<-r.sent
	}
	r.quiet(t, "198.18.2.5", "2001:db8::5")
}

// TestAnnounceBudget: a host whose addresses change faster than the
// budget sends AnnounceBurst datagrams at once, then AnnounceRate a
// second.
func TestAnnounceBudget(t *testing.T) {
	ta := startAgent(t, nil)
	n := 0
	r := &annRun{a: ta.Agent, n: ta.ann, cfg: AnnounceConfig{Listen: netip.MustParseAddrPort("0.0.0.0:7440"),
		Send: func(netip.Addr, netip.AddrPort, []byte) error { n++; return nil }}}
	for i := range maxLearned {
		ta.ann.verified(netip.AddrFrom4([4]byte{198, 18, 0, byte(10 + i)}), 7441, netip.Addr{})
	}
	var addrs []netip.Addr
	for i := range maxAnnounceAddrs {
		addrs = append(addrs, netip.AddrFrom4([4]byte{198, 18, 1, byte(10 + i)}))
	}
	now := time.Now()
	r.schedule(context.Background(), addrs, now)
	for _, tc := range []struct {
		at   time.Duration
		want int
	}{{0, AnnounceBurst}, {0, AnnounceBurst}, {time.Second, AnnounceBurst + AnnounceRate}} {
		r.sendDue(now.Add(tc.at))
		if n != tc.want {
			t.Errorf("after %v: %d sent, want %d", tc.at, n, tc.want)
		}
	}
}

// TestControllersResolvedTogether: the names of agent.yaml's controllers
// are looked up at once, not one after the other (each lookup here
// answers only once every one has started), and a name whose lookup
// then fails keeps its last answer; one that resolves to a multicast
// address is skipped.
func TestControllersResolvedTogether(t *testing.T) {
	ta := startAgent(t, nil)
	names := []string{"a.test", "b.test", "c.test", "group.test"}
	var mu sync.Mutex
	started, failing := 0, false
	all := make(chan struct{})
	resolve := func(ctx context.Context, host string) ([]netip.Addr, error) {
		mu.Lock()
		if failing {
			mu.Unlock()
			return nil, errors.New("no resolver reachable")
		}
		if started++; started == len(names) {
			close(all)
		}
		mu.Unlock()
		select {
		case <-all:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if host == "group.test" {
			return []netip.Addr{netip.MustParseAddr("239.1.2.3")}, nil
		}
		return []netip.Addr{netip.AddrFrom4([4]byte{198, 18, 9, host[0]})}, nil
	}
	var ctls []configured
	for _, n := range names {
		ctls = append(ctls, configured{n, 7441})
	}
	r := &annRun{a: ta.Agent, n: ta.ann, cfg: AnnounceConfig{Resolve: resolve}, ctls: ctls}
	want := []netip.AddrPort{
		netip.MustParseAddrPort("198.18.9.97:7441"),
		netip.MustParseAddrPort("198.18.9.98:7441"),
		netip.MustParseAddrPort("198.18.9.99:7441"),
	}
	if got := r.controllers(context.Background()); !slices.Equal(got, want) {
		t.Fatalf("controllers %v, want %v", got, want)
	}
	mu.Lock()
	failing = true
	mu.Unlock()
	if got := r.controllers(context.Background()); !slices.Equal(got, want) {
		t.Fatalf("with the resolver gone: controllers %v, want the last answers %v", got, want)
	}
}

// TestAddrsKeepsFollowed: past maxAnnounceAddrs, the addresses the
// agent followed before stay followed, whatever sorts before them: a
// rogue router's advertisements, each one more address in a low prefix,
// do not push out the host's own IPv6 address, nor its IPv4 one.
func TestAddrsKeepsFollowed(t *testing.T) {
	ta := startAgent(t, nil)
	own := []netip.Addr{netip.MustParseAddr("198.18.1.5"), netip.MustParseAddr("2001:db8:ffff::5")}
	var mu sync.Mutex
	have := own
	r := &annRun{a: ta.Agent, n: ta.ann, cfg: AnnounceConfig{Listen: netip.MustParseAddrPort("0.0.0.0:7440"), Addrs: func() ([]netip.Addr, error) {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(have), nil
	}}}
	if got := r.addrs(); !slices.Equal(got, own) {
		t.Fatalf("addrs %v, want %v", got, own)
	}
	var rogue []netip.Addr
	for i := range 2 * maxAnnounceAddrs {
		rogue = append(rogue, netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, byte(i), 15: 5}))
	}
	mu.Lock()
	have = append(slices.Clone(rogue), own...)
	mu.Unlock()
	want := append(slices.Clone(own[:1]), rogue[:maxAnnounceAddrs-2]...)
	want = append(want, own[1])
	if got := r.addrs(); !slices.Equal(got, want) {
		t.Fatalf("addrs %v, want %v", got, want)
	}
}

func TestSplitController(t *testing.T) {
	for _, tc := range []struct {
		in, host string
		port     uint16
		err      string
	}{
		{"ctl.example.org", "ctl.example.org", 7441, ""},
		{"ctl.example.org:7450", "ctl.example.org", 7450, ""},
		{"198.18.0.2", "198.18.0.2", 7441, ""},
		{"198.18.0.2:7450", "198.18.0.2", 7450, ""},
		{"2001:db8::2", "2001:db8::2", 7441, ""},
		{"[2001:db8::2]:7450", "2001:db8::2", 7450, ""},
		{"ctl:0", "", 0, `controller "ctl:0": port "0": want 1-65535`},
		{"ctl:http", "", 0, `controller "ctl:http": port "http": want 1-65535`},
		{"fe80::1%eth0", "", 0, `controller "fe80::1%eth0": a link-local address with a zone cannot be announced to`},
		{":7441", "", 0, `controller ":7441": want a host name or address, with a port or not`},
		{"[fe80::1%eth0]:7441", "", 0, `controller "[fe80::1%eth0]:7441": a link-local address with a zone cannot be announced to`},
		{"0.0.0.0", "", 0, `controller "0.0.0.0": 0.0.0.0 is not a unicast address: want the controller's own address, or its host name`},
		{"0.0.0.0:7441", "", 0, `controller "0.0.0.0:7441": 0.0.0.0 is not a unicast address: want the controller's own address, or its host name`},
		{"[::]:7441", "", 0, `controller "[::]:7441": :: is not a unicast address: want the controller's own address, or its host name`},
		{"255.255.255.255", "", 0, `controller "255.255.255.255": 255.255.255.255 is not a unicast address: want the controller's own address, or its host name`},
		{"224.0.0.1:7441", "", 0, `controller "224.0.0.1:7441": 224.0.0.1 is not a unicast address: want the controller's own address, or its host name`},
		{"ff02::1", "", 0, `controller "ff02::1": ff02::1 is not a unicast address: want the controller's own address, or its host name`},
		{"[::ffff:239.1.2.3]:7441", "", 0, `controller "[::ffff:239.1.2.3]:7441": ::ffff:239.1.2.3 is not a unicast address: want the controller's own address, or its host name`},
	} {
		host, port, err := SplitController(tc.in)
		if tc.err != "" {
			if err == nil || err.Error() != tc.err {
				t.Errorf("%q: %v, want %s", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || host != tc.host || port != tc.port {
			t.Errorf("%q: %q %d %v, want %q %d", tc.in, host, port, err, tc.host, tc.port)
		}
	}
}

// TestSendFrom sends a datagram from a loopback address of the test's
// choice, on a socket that was never bound.
func TestSendFrom(t *testing.T) {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	to := c.LocalAddr().(*net.UDPAddr).AddrPort()
	if err := sendFrom(netip.MustParseAddr("127.0.0.7"), to, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 64)
	n, src, err := c.ReadFromUDPAddrPort(buf)
	if err != nil || string(buf[:n]) != "hello" || src.Addr() != netip.MustParseAddr("127.0.0.7") {
		t.Fatalf("received %q from %v, %v; want hello from 127.0.0.7", buf[:n], src, err)
	}
}
