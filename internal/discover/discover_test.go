package discover

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/ifl-project/ifl/agent"
	"github.com/ifl-project/ifl/internal/netinfo"
	"github.com/ifl-project/ifl/proto"
)

// serve runs an agent that answers queries on addr (port 0: any) and
// returns where it listens and its identity.
func serve(t *testing.T, key proto.NetworkKey, addr netip.AddrPort) (netip.AddrPort, string) {
	t.Helper()
	id, _ := proto.NewIdentity()
	a, err := agent.New(agent.Options{NetworkKeys: []proto.NetworkKey{key}, Identity: id})
	if err != nil {
		t.Fatal(err)
	}
	pc, err := agent.ListenDiscovery(addr.String())
	if err != nil {
		t.Skipf("no %v here: %v", addr, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.ServeDiscovery(ctx, pc, 7440) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return pc.LocalAddr().(*net.UDPAddr).AddrPort(), id.Fingerprint()
}

func collect(t *testing.T, d *Discoverer, dests []netip.AddrPort) ([]Answer, Stats) {
	t.Helper()
	out := make(chan Answer)
	var got []Answer
	done := make(chan struct{})
	go func() {
		for a := range out {
			got = append(got, a)
		}
		close(done)
	}()
	st, err := d.Run(context.Background(), dests, out)
	close(out)
	<-done
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(got, func(a, b Answer) int { return a.Addr.Compare(b.Addr) })
	return got, st
}

// TestRun: agents with the key answer, each address once although two
// queries went out; an agent with another key does not; an address that
// Accept refuses is dropped.
func TestRun(t *testing.T) {
	key, _ := proto.NewNetworkKey()
	other, _ := proto.NewNetworkKey()
	a1, id1 := serve(t, key, netip.MustParseAddrPort("127.0.0.2:0"))
	port := a1.Port()
	a2, id2 := serve(t, key, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.3"), port))
	a3, _ := serve(t, other, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.4"), port))
	a4, _ := serve(t, key, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.5"), port))
	dests := []netip.AddrPort{a1, a2, a3, a4}
	d := &Discoverer{Key: key, Port: 7440, Accept: func(a netip.Addr) bool { return a != a4.Addr() }}
	got, st := collect(t, d, dests)
	want := []Answer{{Addr: a1.Addr(), Identity: id1}, {Addr: a2.Addr(), Identity: id2}}
	if diff := cmp.Diff(want, got, cmpopts.EquateComparable(netip.Addr{}), cmpopts.IgnoreFields(Answer{}, "RTT")); diff != "" {
		t.Errorf("answers (-want +got):\n%s", diff)
	}
	for _, a := range got {
		if a.RTT <= 0 || a.RTT > DefaultCeiling {
			t.Errorf("%v: round trip %v", a.Addr, a.RTT)
		}
	}
	// Two queries to four agents; the second round's answers from a1 and
	// a2 are not new, a4's are refused twice.
	if st.Queries != 8 || st.Answers != 2 || st.Dropped != 2 {
		t.Errorf("stats %+v, want 8 queries, 2 answers, 2 dropped", st)
	}
}

// TestRunIPv6 queries over IPv6 loopback: answers from IPv6 work as from
// IPv4.
func TestRunIPv6(t *testing.T) {
	key, _ := proto.NewNetworkKey()
	a, id := serve(t, key, netip.MustParseAddrPort("[::1]:0"))
	got, _ := collect(t, &Discoverer{Key: key, Retries: -1}, []netip.AddrPort{a})
	if len(got) != 1 || got[0].Addr != a.Addr() || got[0].Identity != id {
		t.Errorf("answers %+v, want %v with %s", got, a.Addr(), id)
	}
}

// TestRunWrongPort: an answer that names another TCP port than the one
// the prober dials is dropped.
func TestRunWrongPort(t *testing.T) {
	key, _ := proto.NewNetworkKey()
	a, _ := serve(t, key, netip.MustParseAddrPort("127.0.0.2:0"))
	got, st := collect(t, &Discoverer{Key: key, Port: 7441, Retries: -1}, []netip.AddrPort{a})
	if len(got) != 0 || st.Dropped != 1 {
		t.Errorf("answers %+v, stats %+v; want none, one dropped", got, st)
	}
}

func TestBroadcast(t *testing.T) {
	for in, want := range map[string]string{"198.18.16.7/24": "198.18.16.255", "198.18.0.0/22": "198.18.3.255", "10.1.2.3/30": "10.1.2.3", "10.0.0.0/8": "10.255.255.255"} {
		if got := Broadcast(netip.MustParsePrefix(in)); got.String() != want {
			t.Errorf("Broadcast(%s) = %v, want %s", in, got, want)
		}
	}
}

// TestRunBothFamilies: one agent on a dual-stack socket hears a query on
// IPv4 and one on IPv6, and answers both (each has a nonce of its own, so
// the second is not taken for a replay of the first).
func TestRunBothFamilies(t *testing.T) {
	key, _ := proto.NewNetworkKey()
	a, id := serve(t, key, netip.MustParseAddrPort("[::]:0"))
	dests := []netip.AddrPort{netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), a.Port()), netip.AddrPortFrom(netip.IPv6Loopback(), a.Port())}
	got, _ := collect(t, &Discoverer{Key: key, Retries: -1}, dests)
	if len(got) != 2 || got[0].Identity != id || got[1].Identity != id {
		t.Errorf("answers %+v, want 127.0.0.1 and ::1, both %s", got, id)
	}
}

// TestRunSlowReader: more answers than the receive queue holds, read from
// out slowly (a prober that dials each), are all handed on, and Run
// returns when its waits are over, not when its context ends.
func TestRunSlowReader(t *testing.T) {
	key, _ := proto.NewNetworkKey()
	first, _ := serve(t, key, netip.MustParseAddrPort("127.0.1.1:0"))
	dests := []netip.AddrPort{first}
	for i := 2; i <= 200; i++ {
		a, _ := serve(t, key, netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, byte(1 + i/250), byte(i % 250)}), first.Port()))
		dests = append(dests, a)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out := make(chan Answer)
	got := map[netip.Addr]bool{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for a := range out {
			got[a.Addr] = true
			time.Sleep(time.Millisecond) // a dial's worth of work, not synchronisation
		}
	}()
	st, err := (&Discoverer{Key: key, Port: 7440}).Run(ctx, dests, out)
	close(out)
	<-done
	if err != nil {
		t.Fatalf("Run: %v (answers %d)", err, st.Answers)
	}
	if len(got) != len(dests) || st.Answers != len(dests) {
		t.Errorf("%d addresses handed on, %d answers counted; want %d", len(got), st.Answers, len(dests))
	}
}

// TestGlobalIPv6: the extra sources of a query to all nodes are a link's
// global IPv6 addresses, unique local ones included; not its link-local,
// loopback, IPv4 or IPv4-mapped ones.
func TestGlobalIPv6(t *testing.T) {
	var addrs []net.Addr
	for _, s := range []string{"198.18.48.2/24", "fe80::1/64", "2001:db8:48::2/64", "::1/128", "::ffff:198.18.48.2/120", "fd00::2/64"} {
		ip, ipn, err := net.ParseCIDR(s)
		if err != nil {
			t.Fatal(err)
		}
		ipn.IP = ip
		addrs = append(addrs, ipn)
	}
	addrs = append(addrs, &net.IPAddr{IP: net.ParseIP("2001:db8:48::3")})
	got := globalIPv6(netinfo.AddrPrefixes(addrs))
	want := []netip.Addr{netip.MustParseAddr("2001:db8:48::2"), netip.MustParseAddr("fd00::2")}
	if diff := cmp.Diff(want, got, cmpopts.EquateComparable(netip.Addr{})); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// TestWithSources: only a query to all nodes on a link gets more sources;
// one to a unicast address or a broadcast address goes once.
func TestWithSources(t *testing.T) {
	dests := []netip.AddrPort{netip.MustParseAddrPort("198.18.48.255:7440"), netip.MustParseAddrPort("[::1]:7440")}
	got, err := withSources(dests)
	if err != nil || len(got) != 2 || got[0].dst != dests[0] || got[1].dst != dests[1] || got[0].src.IsValid() || got[1].src.IsValid() {
		t.Errorf("got %+v, %v; want each destination once, from the kernel's choice", got, err)
	}
	if _, err := withSources([]netip.AddrPort{netip.AddrPortFrom(AllNodes.WithZone("no-such-link0"), 7440)}); err == nil {
		t.Error("all nodes on a link that is not there: no error")
	}
}

// TestWriteFromSource: a query sent from a given source leaves from it,
// and one from an address that is not this host's fails, naming both.
func TestWriteFromSource(t *testing.T) {
	srv, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		t.Skipf("no IPv6 loopback here: %v", err)
	}
	defer srv.Close()
	c6, err := net.ListenUDP("udp6", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c6.Close()
	dst := srv.LocalAddr().(*net.UDPAddr).AddrPort()
	if err := (send{dst: dst, src: netip.IPv6Loopback()}).write(nil, c6, []byte("q")); err != nil {
		t.Fatal(err)
	}
	srv.SetReadDeadline(time.Now().Add(5 * time.Second))
	var buf [8]byte
	n, from, err := srv.ReadFromUDPAddrPort(buf[:])
	if err != nil || string(buf[:n]) != "q" || from.Addr() != netip.IPv6Loopback() || from.Port() != c6.LocalAddr().(*net.UDPAddr).AddrPort().Port() {
		t.Errorf("read %q from %v, %v; want q from [::1] at the sending socket's port", buf[:n], from, err)
	}
	err = (send{dst: dst, src: netip.MustParseAddr("2001:db8:ffff:fffd::1")}).write(nil, c6, []byte("q"))
	if err == nil || !strings.HasPrefix(err.Error(), "discover: query to "+dst.String()+" from 2001:db8:ffff:fffd::1: ") {
		t.Errorf("from an address not ours: %v", err)
	}
}
