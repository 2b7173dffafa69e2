package arpscan

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
)

// fakeLAN is a net.PacketConn standing in for a raw socket on a segment:
// it answers ARP requests for the hosts it knows, broadcast or sent to
// their MAC, except the ones each host is set to drop.
type fakeLAN struct {
	mu       sync.Mutex
	hosts    map[netip.Addr][]net.HardwareAddr // more than one MAC: a conflict
	drop     map[netip.Addr][]int              // requests lost, counted from 1
	requests map[netip.Addr]int
	sent     map[netip.Addr][]time.Time // when each request came
	unicasts map[netip.Addr]int
	// senders counts the requests by sender address, and broadcast or
	// unicast: "198.18.0.2 broadcast".
	senders map[string]int
	enobufs int                      // writes to refuse with ENOBUFS first
	late    map[string]time.Duration // by MAC: how long its replies take
	replies chan []byte
	// overflow replies are dropped as a full socket drops them, and
	// counted in dropped.
	overflow int
	dropped  uint64
	deadline time.Time
	wake     chan struct{}
	closed   bool
}

func newFakeLAN() *fakeLAN {
	return &fakeLAN{
		hosts:    map[netip.Addr][]net.HardwareAddr{},
		drop:     map[netip.Addr][]int{},
		requests: map[netip.Addr]int{},
		sent:     map[netip.Addr][]time.Time{},
		unicasts: map[netip.Addr]int{},
		senders:  map[string]int{},
		replies:  make(chan []byte, 1024),
		wake:     make(chan struct{}, 1),
	}
}

func (f *fakeLAN) WriteTo(b []byte, _ net.Addr) (int, error) {
	var fr ethernet.Frame
	if err := fr.UnmarshalBinary(b); err != nil {
		return 0, err
	}
	var p arp.Packet
	if err := p.UnmarshalBinary(fr.Payload); err != nil {
		return 0, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.enobufs > 0 {
		f.enobufs--
		return 0, syscall.ENOBUFS
	}
	f.requests[p.TargetIP]++
	f.sent[p.TargetIP] = append(f.sent[p.TargetIP], time.Now())
	broadcast := macEqual(fr.Destination, ethernet.Broadcast)
	if !broadcast {
		f.unicasts[p.TargetIP]++
	}
	kind := "unicast"
	if broadcast {
		kind = "broadcast"
	}
	f.senders[p.SenderIP.String()+" "+kind]++
	if slices.Contains(f.drop[p.TargetIP], f.requests[p.TargetIP]) {
		return len(b), nil
	}
	for _, mac := range f.hosts[p.TargetIP] {
		if !broadcast && !macEqual(fr.Destination, mac) {
			continue
		}
		r, _ := arp.NewPacket(arp.OperationReply, mac, p.TargetIP, p.SenderHardwareAddr, p.SenderIP)
		pb, _ := r.MarshalBinary()
		fb, _ := (&ethernet.Frame{Destination: p.SenderHardwareAddr, Source: mac, EtherType: ethernet.EtherTypeARP, Payload: pb}).MarshalBinary()
		if f.overflow > 0 {
			f.overflow--
			f.dropped++
			continue
		}
		if d := f.late[mac.String()]; d > 0 {
			time.AfterFunc(d, func() { f.replies <- fb })
			continue
		}
		f.replies <- fb
	}
	return len(b), nil
}

func (f *fakeLAN) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		f.mu.Lock()
		dl, closed := f.deadline, f.closed
		f.mu.Unlock()
		if closed {
			return 0, nil, net.ErrClosed
		}
		var timeout <-chan time.Time
		if !dl.IsZero() {
			d := time.Until(dl)
			if d <= 0 {
				return 0, nil, os.ErrDeadlineExceeded
			}
			t := time.NewTimer(d)
			defer t.Stop()
			timeout = t.C
		}
		select {
		case fb := <-f.replies:
			return copy(b, fb), nil, nil
		case <-timeout:
			return 0, nil, os.ErrDeadlineExceeded
		case <-f.wake: // the deadline changed
		}
	}
}

// Drops counts what overflow dropped, as a socket counts its drops.
func (f *fakeLAN) Drops() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.dropped
}

func (f *fakeLAN) SetReadDeadline(t time.Time) error {
	f.mu.Lock()
	f.deadline = t
	f.mu.Unlock()
	select {
	case f.wake <- struct{}{}:
	default:
	}
	return nil
}

func (f *fakeLAN) Close() error {
	f.mu.Lock()
	f.closed = true
	f.mu.Unlock()
	select {
	case f.wake <- struct{}{}:
	default:
	}
	return nil
}

func (f *fakeLAN) LocalAddr() net.Addr                { return nil }
func (f *fakeLAN) SetDeadline(t time.Time) error      { return f.SetReadDeadline(t) }
func (f *fakeLAN) SetWriteDeadline(t time.Time) error { return nil }

func testScanner(t *testing.T, lan *fakeLAN) *Scanner {
	t.Helper()
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		t.Skip("no loopback interface")
	}
	ifi := *lo
	ifi.HardwareAddr = net.HardwareAddr{2, 0, 0, 0, 0, 1}
	s, err := newScanner(&ifi, lan, []netip.Prefix{netip.MustParsePrefix("198.18.0.2/24")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func mac(b byte) net.HardwareAddr { return net.HardwareAddr{2, 0x18, 0, 0, 0, b} }

func span(first string, n int) []netip.Addr {
	var out []netip.Addr
	for a := netip.MustParseAddr(first); len(out) < n; a = a.Next() {
		out = append(out, a)
	}
	return out
}

type pair struct{ IP, MAC string }

func pairs(rs []Result) []pair {
	var out []pair
	for _, r := range rs {
		out = append(out, pair{r.IP.String(), r.MAC.String()})
	}
	return out
}

// fastConfig makes a sweep on a fakeLAN quick.
var fastConfig = &Config{Rate: 100000, Timeout: 5 * time.Millisecond}

// steadyConfig is fastConfig for sweeps that must see no loss: waits
// long enough that a late goroutine of the fake LAN is not a lost reply.
var steadyConfig = &Config{Rate: 100000, Timeout: 500 * time.Millisecond, minWait: 200 * time.Millisecond}

func TestScanFindsHostsAndStreamsThem(t *testing.T) {
	lan := newFakeLAN()
	lan.hosts[netip.MustParseAddr("198.18.0.5")] = []net.HardwareAddr{mac(5)}
	lan.hosts[netip.MustParseAddr("198.18.0.9")] = []net.HardwareAddr{mac(9)}
	s := testScanner(t, lan)

	streamed := make(chan Result, 10)
	// Exact counts: waits long enough that a late goroutine of the fake
	// LAN is not a lost reply.
	res, st, err := s.Scan(context.Background(), span("198.18.0.1", 10), steadyConfig, streamed)
	if err != nil {
		t.Fatal(err)
	}
	want := []pair{{"198.18.0.5", mac(5).String()}, {"198.18.0.9", mac(9).String()}}
	if diff := cmp.Diff(want, pairs(res)); diff != "" {
		t.Errorf("results (-want +got):\n%s", diff)
	}
	close(streamed)
	var got []Result
	for r := range streamed {
		got = append(got, r)
	}
	sortResults(got)
	if diff := cmp.Diff(want, pairs(got)); diff != "" {
		t.Errorf("streamed (-want +got):\n%s", diff)
	}
	// No loss: the eight silent addresses got two tries, the hosts one
	// broadcast and their confirmations.
	wantStats := Stats{Targets: 10, Sent: 8*(1+DefaultMinRetries) + 2, Confirmations: 2 * confirmTries, Replies: 2 + 2*confirmTries}
	if diff := cmp.Diff(wantStats, st, cmpopts.IgnoreFields(Stats{}, "Elapsed", "MinRate", "SRTT")); diff != "" {
		t.Errorf("stats (-want +got):\n%s", diff)
	}
	lan.mu.Lock()
	defer lan.mu.Unlock()
	if n := lan.requests[netip.MustParseAddr("198.18.0.5")] - lan.unicasts[netip.MustParseAddr("198.18.0.5")]; n != 1 {
		t.Errorf("%d broadcasts to a host that answered the first", n)
	}
}

// TestScanReaderNeverWaitsForTheCaller: a caller busy with the first host
// found (a port scan of it) does not stop the sweep from reading the
// others' replies, nor makes it take them for silent.
func TestScanReaderNeverWaitsForTheCaller(t *testing.T) {
	lan := newFakeLAN()
	hosts := span("198.18.0.5", 20)
	for i, a := range hosts {
		lan.hosts[a] = []net.HardwareAddr{mac(byte(5 + i))}
	}
	s := testScanner(t, lan)
	streamed := make(chan Result)
	var got []Result
	consumed := make(chan struct{})
	go func() {
		defer close(consumed)
		got = append(got, <-streamed)
		// Busy with it for many of the sweep's waits.
		time.Sleep(100 * time.Millisecond)
		for r := range streamed {
			got = append(got, r)
		}
	}()
	res, _, err := s.Scan(context.Background(), span("198.18.0.1", 30), fastConfig, streamed)
	close(streamed)
	<-consumed
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != len(hosts) || len(got) != len(hosts) {
		t.Errorf("found %d and streamed %d of %d hosts", len(res), len(got), len(hosts))
	}
}

// TestScanRetriesWhatItDropped: replies the socket dropped are loss of
// the sweep's own making: the addresses tried before get a try more,
// and one still silent after it is counted unsure.
func TestScanRetriesWhatItDropped(t *testing.T) {
	for _, tc := range []struct {
		overflow, requests, found, unsure int
	}{
		{overflow: 1, requests: 2, found: 1},
		{overflow: 2, requests: 2, found: 0, unsure: 1},
	} {
		lan := newFakeLAN()
		host := netip.MustParseAddr("198.18.0.5")
		lan.hosts[host] = []net.HardwareAddr{mac(5)}
		lan.overflow = tc.overflow
		s := testScanner(t, lan)
		// One try for a silent address, and one more where loss shows.
		cfg := &Config{Rate: 100000, Timeout: 5 * time.Millisecond, Retries: 1, MinRetries: -1}
		res, st, err := s.Scan(context.Background(), []netip.Addr{host}, cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		lan.mu.Lock()
		requests := lan.requests[host]
		lan.mu.Unlock()
		if len(res) != tc.found || requests != tc.requests || st.Dropped != tc.overflow || st.Unsure != tc.unsure {
			t.Errorf("%d dropped: found %d with %d requests, %d dropped, %d unsure; want %d, %d, %d, %d",
				tc.overflow, len(res), requests, st.Dropped, st.Unsure, tc.found, tc.requests, tc.overflow, tc.unsure)
		}
	}
}

// Probes go out from 0.0.0.0 as broadcasts and find the hosts as requests
// do (the hosts answer to 0.0.0.0); confirmations keep the interface's
// address, as every request does without FromZero.
func TestFromZero(t *testing.T) {
	broadcasts, unicasts := 8*(1+DefaultMinRetries)+2, 2*confirmTries
	for _, tt := range []struct {
		probes bool
		want   map[string]int
	}{
		{false, map[string]int{"198.18.0.2 broadcast": broadcasts, "198.18.0.2 unicast": unicasts}},
		{true, map[string]int{"0.0.0.0 broadcast": broadcasts, "198.18.0.2 unicast": unicasts}},
	} {
		t.Run(fmt.Sprintf("probes=%v", tt.probes), func(t *testing.T) {
			lan := newFakeLAN()
			lan.hosts[netip.MustParseAddr("198.18.0.5")] = []net.HardwareAddr{mac(5)}
			lan.hosts[netip.MustParseAddr("198.18.0.9")] = []net.HardwareAddr{mac(9)}
			s := testScanner(t, lan)
			cfg := *steadyConfig
			cfg.FromZero = tt.probes
			res, _, err := s.Scan(context.Background(), span("198.18.0.1", 10), &cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			want := []pair{{"198.18.0.5", mac(5).String()}, {"198.18.0.9", mac(9).String()}}
			if diff := cmp.Diff(want, pairs(res)); diff != "" {
				t.Errorf("results (-want +got):\n%s", diff)
			}
			lan.mu.Lock()
			defer lan.mu.Unlock()
			if diff := cmp.Diff(tt.want, lan.senders); diff != "" {
				t.Errorf("requests by sender (-want +got):\n%s", diff)
			}
		})
	}
}

// With probes every host that answers is sent a unicast request from the
// interface's address, so that it knows the scanner's MAC before what
// follows the sweep; one whose introduction goes unanswered gets it again,
// up to introTries in all. Without confirmations (as many tries for every
// address), the introductions are the only unicasts. Where every address
// answers, the sweep does not end before its introductions.
func TestIntroductions(t *testing.T) {
	answers, once, never := netip.MustParseAddr("198.18.0.5"), netip.MustParseAddr("198.18.0.6"), netip.MustParseAddr("198.18.0.7")
	for _, tt := range []struct {
		name    string
		targets []netip.Addr
	}{
		{"with silent addresses", span("198.18.0.1", 10)},
		{"every address answers", span("198.18.0.5", 3)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			lan := newFakeLAN()
			for i, a := range []netip.Addr{answers, once, never} {
				lan.hosts[a] = []net.HardwareAddr{mac(byte(5 + i))}
			}
			// Their first request is the broadcast they answer; the rest
			// are introductions.
			lan.drop[once] = []int{2}
			lan.drop[never] = []int{2, 3, 4}
			s := testScanner(t, lan)
			cfg := *steadyConfig
			cfg.FromZero, cfg.Retries, cfg.MinRetries = true, 1, 1
			res, st, err := s.Scan(context.Background(), tt.targets, &cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(res) != 3 {
				t.Errorf("found %v, want .5, .6 and .7", pairs(res))
			}
			lan.mu.Lock()
			defer lan.mu.Unlock()
			got := map[string]int{}
			for _, a := range []netip.Addr{answers, once, never} {
				got[a.String()] = lan.unicasts[a]
			}
			want := map[string]int{answers.String(): 1, once.String(): 2, never.String(): introTries}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("introductions by host (-want +got):\n%s", diff)
			}
			if st.Confirmations != 1+2+introTries || lan.senders["198.18.0.2 unicast"] != st.Confirmations {
				t.Errorf("%d unicasts counted, %d from the interface's address; want %d", st.Confirmations, lan.senders["198.18.0.2 unicast"], 1+2+introTries)
			}
		})
	}
}

func TestScanSeesLoss(t *testing.T) {
	for _, tt := range []struct {
		name string
		drop []int // of .5's requests: the first is a broadcast, the rest confirmations
		loss bool
	}{
		{"three confirmations lost", []int{3, 7, 8}, true},
		{"the first broadcast and two confirmations lost", []int{1, 3, 4}, true},
		{"two requests lost", []int{1, 5}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			lan := newFakeLAN()
			lan.hosts[netip.MustParseAddr("198.18.0.5")] = []net.HardwareAddr{mac(5)}
			lan.hosts[netip.MustParseAddr("198.18.0.9")] = []net.HardwareAddr{mac(9)}
			lan.drop[netip.MustParseAddr("198.18.0.5")] = tt.drop
			// .9 misses the tries an address gets without loss.
			lan.drop[netip.MustParseAddr("198.18.0.9")] = []int{1, 2, 3}
			s := testScanner(t, lan)
			res, st, err := s.Scan(context.Background(), span("198.18.0.1", 10), steadyConfig, nil)
			if err != nil {
				t.Fatal(err)
			}
			want := []pair{{"198.18.0.5", mac(5).String()}, {"198.18.0.9", mac(9).String()}}
			got := pairs(res)
			if !tt.loss {
				// Without loss .9 gets its retries only for the tries
				// that went out as the window was cut: it may be
				// missed.
				got = slices.DeleteFunc(got, func(p pair) bool { return p.IP == "198.18.0.9" })
				want = want[:1]
			}
			// With loss, .9 is found with its fourth try.
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("results (-want +got):\n%s", diff)
			}
			if st.LossSeen != tt.loss {
				t.Errorf("loss seen: %v, want %v", st.LossSeen, tt.loss)
			}
		})
	}
}

func TestScanRetryCounts(t *testing.T) {
	for _, tt := range []struct {
		name              string
		cfg               Config
		sent, confirmed   int
		unicastsToTheHost int
	}{
		{"one try", Config{Retries: -1}, 9 + 1, 0, 0},
		{"all retries, no confirmation", Config{MinRetries: DefaultRetries}, 9*(1+DefaultRetries) + 1, 0, 0},
		{"fewer retries than the minimum", Config{Retries: 2, MinRetries: 5}, 9*3 + 1, 0, 0},
		{"no retry without loss", Config{MinRetries: -1}, 9 + 1, confirmTries, confirmTries},
	} {
		t.Run(tt.name, func(t *testing.T) {
			lan := newFakeLAN()
			lan.hosts[netip.MustParseAddr("198.18.0.5")] = []net.HardwareAddr{mac(5)}
			s := testScanner(t, lan)
			cfg := tt.cfg
			cfg.Rate, cfg.Timeout, cfg.minWait = steadyConfig.Rate, steadyConfig.Timeout, steadyConfig.minWait
			_, st, err := s.Scan(context.Background(), span("198.18.0.1", 10), &cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			if st.Sent != tt.sent || st.Confirmations != tt.confirmed || st.LossSeen {
				t.Errorf("sent %d, confirmed %d, loss seen %v; want %d, %d, false", st.Sent, st.Confirmations, st.LossSeen, tt.sent, tt.confirmed)
			}
			lan.mu.Lock()
			defer lan.mu.Unlock()
			if n := lan.unicasts[netip.MustParseAddr("198.18.0.5")]; n != tt.unicastsToTheHost {
				t.Errorf("%d unicasts to the host, want %d", n, tt.unicastsToTheHost)
			}
		})
	}
}

func TestScanFlagsConflicts(t *testing.T) {
	lan := newFakeLAN()
	lan.hosts[netip.MustParseAddr("198.18.0.7")] = []net.HardwareAddr{mac(7), mac(0x77)}
	s := testScanner(t, lan)
	// A silent address keeps the sweep going long enough to hear both.
	res, _, err := s.Scan(context.Background(), span("198.18.0.7", 2), fastConfig, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 1 || res[0].MAC.String() != mac(7).String() || len(res[0].Others) != 1 || res[0].Others[0].String() != mac(0x77).String() {
		t.Fatalf("got %+v, want .7 at %v with %v as a conflict", res, mac(7), mac(0x77))
	}
}

// TestScanHearsAConflictAfterEveryAddressAnswered: the sweep of one
// address that two hosts claim, the second answering 2 ms after the
// first, ends only once it has heard both.
func TestScanHearsAConflictAfterEveryAddressAnswered(t *testing.T) {
	lan := newFakeLAN()
	lan.hosts[netip.MustParseAddr("198.18.0.7")] = []net.HardwareAddr{mac(7), mac(0x77)}
	lan.late = map[string]time.Duration{mac(0x77).String(): 2 * time.Millisecond}
	s := testScanner(t, lan)
	res, _, err := s.Scan(context.Background(), span("198.18.0.7", 1), &Config{Rate: 100000, Timeout: time.Hour}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 1 || len(res[0].Others) != 1 || res[0].Others[0].String() != mac(0x77).String() {
		t.Fatalf("got %+v, want .7 at %v with %v as a conflict", res, mac(7), mac(0x77))
	}
}

// TestScanSendsAgainWhenTheKernelHasNoRoom: writes refused with ENOBUFS
// are sent again, and the sweep still finds every host.
func TestScanSendsAgainWhenTheKernelHasNoRoom(t *testing.T) {
	lan := newFakeLAN()
	lan.hosts[netip.MustParseAddr("198.18.0.5")] = []net.HardwareAddr{mac(5)}
	lan.enobufs = 5
	s := testScanner(t, lan)
	res, st, err := s.Scan(context.Background(), span("198.18.0.1", 10), fastConfig, nil)
	if err != nil || len(res) != 1 {
		t.Fatalf("%d results, %v; want 1, nil", len(res), err)
	}
	lan.mu.Lock()
	defer lan.mu.Unlock()
	got := 0
	for _, n := range lan.requests {
		got += n
	}
	if want := st.Sent + st.Confirmations; got != want || lan.enobufs != 0 {
		t.Errorf("%d requests reached the LAN, %d refusals left; want %d, 0", got, lan.enobufs, want)
	}
}

func TestScanEndsWhenAllAnswered(t *testing.T) {
	lan := newFakeLAN()
	targets := span("198.18.0.1", 4)
	for i, a := range targets {
		lan.hosts[a] = []net.HardwareAddr{mac(byte(i))}
	}
	s := testScanner(t, lan)
	// A timeout this long would show if the sweep waited it out.
	res, st, err := s.Scan(context.Background(), targets, &Config{Rate: 100000, Timeout: time.Hour}, nil)
	if err != nil || len(res) != 4 || st.Sent != 4 {
		t.Fatalf("%d results, %d sent, %v; want 4, 4, nil", len(res), st.Sent, err)
	}
}

func TestScanCancelled(t *testing.T) {
	s := testScanner(t, newFakeLAN())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, _, err := s.Scan(ctx, span("198.18.0.1", 100), &Config{Timeout: time.Hour}, nil)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
}

func TestScanRejectsIPv6(t *testing.T) {
	s := testScanner(t, newFakeLAN())
	if _, _, err := s.Scan(context.Background(), []netip.Addr{netip.MustParseAddr("2001:db8::1")}, nil, nil); err == nil {
		t.Fatal("no error for an IPv6 target")
	}
}

// TestScanWaitsFollowTheRoundTrip: with a timeout of an hour (the wait
// before anything is measured, and the ceiling), a sweep of a segment
// whose host answers at once still ends: its waits follow the measured
// round trip. The context's deadline only turns a hang into a failure.
func TestScanWaitsFollowTheRoundTrip(t *testing.T) {
	lan := newFakeLAN()
	lan.hosts[netip.MustParseAddr("198.18.0.1")] = []net.HardwareAddr{mac(1)}
	s := testScanner(t, lan)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, st, err := s.Scan(ctx, span("198.18.0.1", 10), &Config{Rate: 100000, Timeout: time.Hour, Patience: time.Millisecond}, nil)
	if err != nil || len(res) != 1 {
		t.Fatalf("%d results, %v; want 1, nil", len(res), err)
	}
	if st.SRTT <= 0 || st.SRTT >= time.Hour {
		t.Errorf("smoothed round trip %v", st.SRTT)
	}
}

// TestScanWaitsForASlowHost: a host whose replies take 30 ms, swept
// last among fast ones, is found with the default patience.
func TestScanWaitsForASlowHost(t *testing.T) {
	lan := newFakeLAN()
	targets := span("198.18.0.1", 10)
	for i, a := range targets[:5] {
		lan.hosts[a] = []net.HardwareAddr{mac(byte(i + 1))}
	}
	lan.hosts[targets[9]] = []net.HardwareAddr{mac(0x99)}
	lan.late = map[string]time.Duration{mac(0x99).String(): 30 * time.Millisecond}
	s := testScanner(t, lan)
	res, _, err := s.Scan(context.Background(), targets, &Config{Rate: 100000}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 6 || res[5].IP != targets[9] {
		t.Fatalf("found %v, want the five fast hosts and the slow %v", pairs(res), targets[9])
	}
	// Its reply may have come after a retry: RTT is then the least its
	// round trip may be, RTTMax the most, and that is no less than 30 ms.
	if r := res[5]; r.RTTMax < 30*time.Millisecond || r.RTT > r.RTTMax {
		t.Errorf("slow host: RTT %v, RTTMax %v; want RTTMax at least 30ms, RTT no more", r.RTT, r.RTTMax)
	}
}

// TestRTTMaxBounds: a reply after a retry spans RTT (from the retry) to
// RTTMax (from the first request), at most the sweep's timeout; after
// one request both are its round trip.
func TestRTTMaxBounds(t *testing.T) {
	const ms = time.Millisecond
	now := time.Now()
	ip := netip.MustParseAddr("198.18.0.9")
	for _, tt := range []struct {
		name             string
		tries            int
		first, last      time.Duration // before the reply
		maxRTT           time.Duration // the sweep's timeout
		wantRTT, wantMax time.Duration
	}{
		{"one request", 1, 3 * ms, 3 * ms, 250 * ms, 3 * ms, 3 * ms},
		{"after a retry", 2, 300 * ms, 2 * ms, 400 * ms, 2 * ms, 300 * ms},
		{"past the timeout", 3, 900 * ms, 2 * ms, 250 * ms, 2 * ms, 250 * ms},
	} {
		sw := &sweep{byIP: map[netip.Addr]*target{ip: {ip: ip, tries: tt.tries, firstSent: now.Add(-tt.first), lastSent: now.Add(-tt.last)}}, changed: make(chan struct{}, 1), maxRTT: tt.maxRTT}
		r, ok := sw.record(ip, mac(1), now)
		if !ok || r.RTT != tt.wantRTT || r.RTTMax != tt.wantMax {
			t.Errorf("%s: %v, RTT %v, RTTMax %v; want RTT %v, RTTMax %v", tt.name, ok, r.RTT, r.RTTMax, tt.wantRTT, tt.wantMax)
		}
	}
}

// TestScanSlowsDownUnderLoss: confirmations that go unanswered halve
// the sending rate, down to MinRate at the least.
func TestScanSlowsDownUnderLoss(t *testing.T) {
	lan := newFakeLAN()
	lan.hosts[netip.MustParseAddr("198.18.0.5")] = []net.HardwareAddr{mac(5)}
	var drop []int
	for i := 2; i < 2+confirmTries; i += 2 {
		drop = append(drop, i) // every other confirmation
	}
	lan.drop[netip.MustParseAddr("198.18.0.5")] = drop
	s := testScanner(t, lan)
	res, st, err := s.Scan(context.Background(), span("198.18.0.1", 40), &Config{Rate: 100000, MinRate: 1000, Timeout: 5 * time.Millisecond}, nil)
	if err != nil || len(res) != 1 {
		t.Fatalf("%d results, %v; want 1, nil", len(res), err)
	}
	if st.RateCuts == 0 || st.MinRate >= 100000 || st.MinRate < 1000 {
		t.Errorf("%d cuts, lowest rate %d/s; want cuts, and a rate from 1000/s to below 100000/s", st.RateCuts, st.MinRate)
	}
	if !st.LossSeen {
		t.Error("loss not seen")
	}
}

// TestScanKeepsItsRateWithoutLoss: no answer missing, no cut.
func TestScanKeepsItsRateWithoutLoss(t *testing.T) {
	lan := newFakeLAN()
	lan.hosts[netip.MustParseAddr("198.18.0.5")] = []net.HardwareAddr{mac(5)}
	s := testScanner(t, lan)
	_, st, err := s.Scan(context.Background(), span("198.18.0.1", 40), steadyConfig, nil)
	if err != nil || st.RateCuts != 0 || st.MinRate != steadyConfig.Rate {
		t.Errorf("%d cuts, lowest rate %d, %v; want none, %d, nil", st.RateCuts, st.MinRate, err, steadyConfig.Rate)
	}
}

// TestScanRetriesWhatWentOutAsTheRateWasCut: the kernel refusing requests
// cuts the rate, and the silent addresses tried around the cut get a try
// more than MinRetries, without loss being seen: .9, which misses its
// first two requests, is found with its third.
func TestScanRetriesWhatWentOutAsTheRateWasCut(t *testing.T) {
	for _, refusals := range []int{0, 3} {
		lan := newFakeLAN()
		lan.hosts[netip.MustParseAddr("198.18.0.5")] = []net.HardwareAddr{mac(5)}
		lan.hosts[netip.MustParseAddr("198.18.0.9")] = []net.HardwareAddr{mac(9)}
		lan.drop[netip.MustParseAddr("198.18.0.9")] = []int{1, 2}
		lan.enobufs = refusals
		s := testScanner(t, lan)
		res, st, err := s.Scan(context.Background(), span("198.18.0.1", 10), steadyConfig, nil)
		if err != nil {
			t.Fatal(err)
		}
		found := slices.ContainsFunc(res, func(r Result) bool { return r.IP == netip.MustParseAddr("198.18.0.9") })
		if cut := refusals > 0; found != cut || (st.RateCuts > 0) != cut || st.LossSeen {
			t.Errorf("%d refusals: .9 found %v, %d cuts, loss seen %v; want %v, cuts %v, false", refusals, found, st.RateCuts, st.LossSeen, cut, cut)
		}
	}
}

// TestScanTriesFollowTheLateShare: the silent addresses get as many
// tries as it takes for the hosts expected still missing to fall under
// missBound, from the share of tries the hosts found left unanswered:
// of 200 hosts, none or one with its first request lost (one is jitter)
// leave two tries; three, three tries; 10 (5%), four; 20 (10%) and every
// first request lost, all five.
func TestScanTriesFollowTheLateShare(t *testing.T) {
	for _, tt := range []struct {
		name      string
		hosts     int
		lost      int // hosts whose first request is lost
		wantTries int
	}{
		{"first requests answered", lossSample, 0, 1 + DefaultMinRetries},
		{"first requests lost", lossSample, lossSample, 1 + DefaultRetries},
		{"one lost in 200", 200, 1, 1 + DefaultMinRetries},
		{"three lost in 200", 200, 3, 2 + DefaultMinRetries},
		{"ten lost in 200", 200, 10, 3 + DefaultMinRetries},
		{"twenty lost in 200", 200, 20, 1 + DefaultRetries},
	} {
		t.Run(tt.name, func(t *testing.T) {
			lan := newFakeLAN()
			hosts := span("198.18.0.1", tt.hosts)
			for i, a := range hosts {
				lan.hosts[a] = []net.HardwareAddr{{2, 0x18, 0, 0, a.As4()[2], a.As4()[3]}}
				if i < tt.lost {
					lan.drop[a] = []int{1}
				}
			}
			s := testScanner(t, lan)
			targets := span("198.18.0.1", tt.hosts+lossSample)
			res, _, err := s.Scan(context.Background(), targets, steadyConfig, nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(res) != tt.hosts {
				t.Fatalf("%d hosts found, want %d", len(res), tt.hosts)
			}
			lan.mu.Lock()
			defer lan.mu.Unlock()
			for _, a := range targets[tt.hosts:] {
				if n := lan.requests[a]; n != tt.wantTries {
					t.Errorf("%v: %d tries, want %d", a, n, tt.wantTries)
				}
			}
		})
	}
}

// A patience set longer than the timeout raises the timeout to it; the
// default patience (none set) is lowered to a shorter timeout.
func TestPatienceRaisesTimeout(t *testing.T) {
	for _, tt := range []struct {
		in                Config
		timeout, patience time.Duration
	}{
		{Config{}, DefaultTimeout, DefaultPatience},
		{Config{Patience: 400 * time.Millisecond}, 400 * time.Millisecond, 400 * time.Millisecond},
		{Config{Timeout: 20 * time.Millisecond}, 20 * time.Millisecond, 20 * time.Millisecond},
		{Config{Timeout: time.Second, Patience: 400 * time.Millisecond}, time.Second, 400 * time.Millisecond},
	} {
		got := tt.in.withDefaults()
		if got.Timeout != tt.timeout || got.Patience != tt.patience {
			t.Errorf("%+v: timeout %v, patience %v; want %v, %v", tt.in, got.Timeout, got.Patience, tt.timeout, tt.patience)
		}
	}
}

// TestLossyHostsAreNotTheQueues: three of eight hosts that each lose
// every other confirmation, at the same time as one another, are lossy
// hosts (loss is seen: the silent addresses get every try); all eight
// missing the same confirmations are the queues (the rate is cut, and no
// host counts as lossy).
func TestLossyHostsAreNotTheQueues(t *testing.T) {
	for _, tt := range []struct {
		name     string
		lossy    int
		drop     []int
		lossSeen bool
	}{
		{"three lossy hosts", 3, []int{2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24}, true},
		{"the queues", 8, []int{10, 11}, false},
	} {
		lan := newFakeLAN()
		for i := range 8 {
			a := netip.AddrFrom4([4]byte{198, 18, 0, byte(2 + i)})
			lan.hosts[a] = []net.HardwareAddr{mac(byte(2 + i))}
			if i < tt.lossy {
				lan.drop[a] = tt.drop
			}
		}
		s := testScanner(t, lan)
		res, st, err := s.Scan(context.Background(), span("198.18.0.1", 40), &Config{Rate: 100000, MinRate: 1000, Timeout: 50 * time.Millisecond, minWait: 20 * time.Millisecond}, nil)
		if err != nil || len(res) != 8 {
			t.Fatalf("%s: %d results, %v; want 8, nil", tt.name, len(res), err)
		}
		if st.LossSeen != tt.lossSeen {
			t.Errorf("%s: loss seen %v, want %v (%+v)", tt.name, st.LossSeen, tt.lossSeen, st)
		}
		if !tt.lossSeen && st.RateCuts == 0 {
			t.Errorf("%s: no cut (%+v)", tt.name, st)
		}
	}
}

// TestRetriesARoundApart: a silent address's tries go one round apart,
// not backed off: a lost request is as likely lost the next round as
// after two.
func TestRetriesARoundApart(t *testing.T) {
	const round = 50 * time.Millisecond // the floor: the host answers at once
	lan := newFakeLAN()
	lan.hosts[netip.MustParseAddr("198.18.0.1")] = []net.HardwareAddr{mac(1)}
	s := testScanner(t, lan)
	_, _, err := s.Scan(context.Background(), span("198.18.0.1", 4), &Config{Rate: 100000, Retries: 4, MinRetries: 4, Timeout: time.Second, minWait: round}, nil)
	if err != nil {
		t.Fatal(err)
	}
	lan.mu.Lock()
	defer lan.mu.Unlock()
	for _, a := range span("198.18.0.2", 3) {
		sent := lan.sent[a]
		if len(sent) != 5 {
			t.Fatalf("%v: %d tries, want 5", a, len(sent))
		}
		for i := 1; i < len(sent); i++ {
			// Backed off, the third try would come two rounds after the
			// second. A loaded machine sends late, never early; but a
			// try the fake stamped late makes the next gap look short,
			// by as much as its stamp lagged the sender's clock.
			if gap := sent[i].Sub(sent[i-1]); gap < round-round/10 || gap >= 2*round-round/4 {
				t.Errorf("%v: try %d %v after the one before, want a round (%v)", a, i+1, gap, round)
			}
		}
	}
}

// TestLargeSweepSpacesBroadcasts: a sweep of more than smoothFrom
// addresses never sends two broadcasts closer than half the interval its
// rate sets, where a smaller one may send them back to back after a late
// timer.
func TestLargeSweepSpacesBroadcasts(t *testing.T) {
	const rate = 4000 // 250 µs apart
	lan := newFakeLAN()
	s := testScanner(t, lan)
	targets := make([]netip.Addr, 0, smoothFrom+100)
	for a := netip.MustParseAddr("198.18.8.1"); len(targets) < cap(targets); a = a.Next() {
		targets = append(targets, a)
	}
	cfg := &Config{Rate: rate, MinRate: rate, Retries: -1, MinRetries: -1, Timeout: 20 * time.Millisecond}
	if _, _, err := s.Scan(context.Background(), targets, cfg, nil); err != nil {
		t.Fatal(err)
	}
	lan.mu.Lock()
	defer lan.mu.Unlock()
	var sent []time.Time
	for _, a := range targets {
		sent = append(sent, lan.sent[a]...)
	}
	if len(sent) != len(targets) {
		t.Fatalf("%d requests, want %d", len(sent), len(targets))
	}
	slices.SortFunc(sent, func(a, b time.Time) int { return a.Compare(b) })
	// The fake LAN stamps a request when its writer hands it over, a
	// little after the sender let it go: a margin for that.
	const least = time.Second / rate / 2 * 3 / 4
	close := 0
	for i := 1; i < len(sent); i++ {
		if sent[i].Sub(sent[i-1]) < least {
			close++
		}
	}
	// A loaded machine may delay one writer and not the next: a few.
	if close > len(sent)/100 {
		t.Errorf("%d of %d broadcasts less than %v after the one before", close, len(sent), least)
	}
}
