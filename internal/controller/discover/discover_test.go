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
	"github.com/ifl-project/ifl/internal/support/netinfo"
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
	links := []link{{name: "lo", prefixes: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/8"), netip.MustParsePrefix("::1/128")}}}
	got, err := withSources(dests, links)
	if err != nil || len(got) != 2 || got[0].dst != dests[0] || got[1].dst != dests[1] || got[0].src.IsValid() || got[1].src.IsValid() {
		t.Errorf("got %+v, %v; want each destination once, from the kernel's choice", got, err)
	}
	if _, err := withSources([]netip.AddrPort{netip.AddrPortFrom(AllNodes.WithZone("no-such-link0"), 7440)}, links); err == nil {
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

// forger stands where an agent would answer a query, at addr: it reads
// the query, then hands it to answer, which sends what it likes.
func forger(t *testing.T, addr string, answer func(q proto.Query, to netip.AddrPort)) netip.AddrPort {
	t.Helper()
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr)))
	if err != nil {
		t.Skipf("no %v here: %v", addr, err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { c.Close(); <-done })
	go func() {
		defer close(done)
		for {
			var buf [proto.QueryLen]byte
			n, from, err := c.ReadFromUDPAddrPort(buf[:])
			if err != nil {
				return
			}
			var q proto.Query
			if q.UnmarshalBinary(buf[:n]) == nil {
				answer(q, from)
			}
		}
	}()
	return c.LocalAddr().(*net.UDPAddr).AddrPort()
}

// senders are sockets bound to n loopback addresses from first on.
func senders(t *testing.T, first netip.Addr, n int) []*net.UDPConn {
	t.Helper()
	var out []*net.UDPConn
	a := first
	for range n {
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: a.AsSlice()})
		if err != nil {
			t.Skipf("no %v here: %v", a, err)
		}
		t.Cleanup(func() { c.Close() })
		out = append(out, c)
		a = a.Next()
	}
	return out
}

// TestRunForgedAnswers: a holder of the network key answers the query
// from 200 addresses of the link, each answer claiming one agent's
// identity, before that agent answers; and the agent's answer is sent
// again from 20 more. The round hands on MaxAddrsPerKind of the forged
// addresses, no copy, and the agent's own address, where it was found
// before; where it was not, the forged answers crowd it out (the
// documented residual), still no more than MaxAddrsPerKind.
func TestRunForgedAnswers(t *testing.T) {
	key, _ := proto.NewNetworkKey()
	dk := key.DiscoveryKey()
	id, _ := proto.NewIdentity()
	fp := proto.FingerprintBytes(id.Public[:])
	forged := senders(t, netip.MustParseAddr("127.0.1.1"), 200)
	copies := senders(t, netip.MustParseAddr("127.0.2.1"), 20)
	// The agent answers from the address the query goes to.
	agent := senders(t, netip.MustParseAddr("127.0.0.2"), 1)[0]
	agentAddr := forger(t, "127.0.0.2:0", func(q proto.Query, to netip.AddrPort) {
		for _, c := range forged {
			a, _ := q.Answer(&dk, 7440, fp)
			b, _ := a.MarshalBinary()
			c.WriteToUDPAddrPort(b, to)
		}
		a, _ := q.Answer(&dk, 7440, fp)
		b, _ := a.MarshalBinary()
		agent.WriteToUDPAddrPort(b, to) // the agent's own answer
		for _, c := range copies {
			c.WriteToUDPAddrPort(b, to)
		}
	})
	for _, known := range []bool{true, false} {
		d := &Discoverer{Key: key, Port: 7440, Retries: -1, Floor: 500 * time.Millisecond}
		if known {
			d.Known = func(identity string, a netip.Addr) bool { return identity == id.Fingerprint() && a == agentAddr.Addr() }
		}
		got, st := collect(t, d, []netip.AddrPort{agentAddr})
		var others, own int
		for _, a := range got {
			switch {
			case a.Identity != id.Fingerprint():
				t.Errorf("known %v: %v claims %s", known, a.Addr, a.Identity)
			case a.Addr == agentAddr.Addr():
				own++
			case a.Addr.Compare(netip.MustParseAddr("127.0.1.1")) >= 0 && a.Addr.Compare(netip.MustParseAddr("127.0.1.200")) <= 0:
				others++
			default:
				t.Errorf("known %v: %v handed on", known, a.Addr)
			}
		}
		wantOwn := 0
		if known {
			wantOwn = 1
		}
		if own != wantOwn || others != MaxAddrsPerKind || st.Answers != wantOwn+MaxAddrsPerKind || st.Capped != 200-MaxAddrsPerKind+1-wantOwn || st.Dropped != len(copies) {
			t.Errorf("known %v: %d forged and %d own addresses handed on, stats %+v; want %d and %d, %d capped, the %d copies dropped",
				known, others, own, st, MaxAddrsPerKind, wantOwn, 200-MaxAddrsPerKind+1-wantOwn, len(copies))
		}
	}
}

// TestSegment: where the answers to a query may come from, for each kind
// of destination.
func TestSegment(t *testing.T) {
	links := []link{
		{name: "eth0", prefixes: []netip.Prefix{netip.MustParsePrefix("198.18.56.2/24"), netip.MustParsePrefix("198.18.60.2/30"),
			netip.MustParsePrefix("2001:db8:56::2/64"), netip.MustParsePrefix("fe80::2/64")}},
		{name: "eth1", prefixes: []netip.Prefix{netip.MustParsePrefix("198.18.57.2/24"), netip.MustParsePrefix("2001:db8:57::2/64")}},
		{name: "lo", prefixes: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/8"), netip.MustParsePrefix("::1/128")}},
	}
	tests := []struct {
		dst      string
		yes, not []string
	}{
		{"198.18.56.255", []string{"198.18.56.9", "198.18.56.254"},
			[]string{"198.18.56.255", "198.18.56.0", "198.18.57.9", "198.18.60.1", "2001:db8:56::9", "fe80::9%eth0", "198.19.201.1"}},
		{"198.18.60.3", []string{"198.18.60.1"}, []string{"198.18.60.3", "198.18.56.9"}},
		{"ff02::1%eth0", []string{"2001:db8:56::9", "fe80::9%eth0"},
			[]string{"2001:db8:57::9", "2001:db8:56::", "fe80::9%eth1", "fe80::9", "198.18.56.9", "2001:db8:ffff::9"}},
		{"127.0.0.2", []string{"127.0.0.2", "127.9.9.9"}, []string{"198.18.56.9", "::1"}},
		{"::1", []string{"::1"}, []string{"::2", "127.0.0.1"}},
		{"198.18.57.9", []string{"198.18.57.9", "198.18.57.10"}, []string{"198.18.56.9", "2001:db8:57::9"}},
		{"2001:db8:57::9", []string{"2001:db8:57::10", "fe80::9%eth1"}, []string{"2001:db8:56::9", "fe80::9%eth0", "198.18.57.9"}},
		{"fe80::9%eth1", []string{"fe80::10%eth1"}, []string{"fe80::10%eth0", "2001:db8:57::9"}},
		{"198.19.8.9", []string{"198.19.8.9"}, []string{"198.19.8.10", "198.18.56.9"}}, // routed: only itself
	}
	for _, tt := range tests {
		seg, err := segmentFor(netip.MustParseAddr(tt.dst), links)
		if err != nil {
			t.Errorf("%s: %v", tt.dst, err)
			continue
		}
		for _, a := range tt.yes {
			if !seg.contains(netip.MustParseAddr(a)) {
				t.Errorf("a query to %s: %s may not answer", tt.dst, a)
			}
		}
		for _, a := range tt.not {
			if seg.contains(netip.MustParseAddr(a)) {
				t.Errorf("a query to %s: %s may answer", tt.dst, a)
			}
		}
	}
	for _, dst := range []string{"ff02::1", "ff02::1%eth9"} {
		if _, err := segmentFor(netip.MustParseAddr(dst), links); err == nil {
			t.Errorf("%s: no error", dst)
		}
	}
}

// answerFrom is a good answer to q claiming fp, as received from src.
func answerFrom(dk *proto.DiscoveryKey, q proto.Query, fp [16]byte, src string) datagram {
	a, _ := q.Answer(dk, 7440, fp)
	b, _ := a.MarshalBinary()
	return datagram{b: b, src: netip.AddrPortFrom(netip.MustParseAddr(src), 7440), at: time.Now()}
}

// TestRoundCaps: a forger answering one query from many addresses of the
// link, under a new identity each time, gets MaxAnswersPerQuery of them
// handed on; each identity's addresses are bounded per kind, a kind's
// bound leaving the others' untouched; a known address passes every
// bound.
func TestRoundCaps(t *testing.T) {
	key, _ := proto.NewNetworkKey()
	d := &Discoverer{Key: key, Port: 7440}
	var st Stats
	r := newRound(d, &st)
	links := []link{{name: "eth0", prefixes: []netip.Prefix{netip.MustParsePrefix("198.18.56.2/24"), netip.MustParsePrefix("2001:db8:56::2/64")}}}
	seg4, _ := segmentFor(netip.MustParseAddr("198.18.56.255"), links)
	seg6, _ := segmentFor(netip.MustParseAddr("ff02::1%eth0"), links)
	query := func(seg segment) proto.Query {
		q, _ := proto.NewQuery(&r.dk, time.Now())
		r.sent[q.Nonce] = &sentQuery{at: time.Now(), seg: seg}
		return q
	}

	// One query, many identities, each from an address of its own.
	q6 := query(seg6)
	handed := 0
	for i := range MaxAnswersPerQuery + 100 {
		fp := [16]byte{byte(i >> 8), byte(i)}
		src := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 0x56, 13: 1, 14: byte(i >> 8), 15: byte(i)})
		if _, _, v := r.take(answerFrom(&r.dk, q6, fp, src.String())); v == fresh {
			handed++
		}
	}
	if handed != MaxAnswersPerQuery || st.Capped != 100 {
		t.Errorf("one query: %d handed on, %d capped; want %d and 100", handed, st.Capped, MaxAnswersPerQuery)
	}

	// One identity: MaxAddrsPerKind of each kind, from any query.
	st = Stats{}
	var x [16]byte
	x[0] = 0xff
	q4, q6b := query(seg4), query(seg6)
	var got []string
	for _, dg := range []datagram{
		answerFrom(&r.dk, q4, x, "198.18.56.10"), answerFrom(&r.dk, q4, x, "198.18.56.11"), answerFrom(&r.dk, q4, x, "198.18.56.12"),
		answerFrom(&r.dk, q6b, x, "fe80::10%eth0"), answerFrom(&r.dk, q6b, x, "fe80::11%eth0"), answerFrom(&r.dk, q6b, x, "fe80::12%eth0"),
		answerFrom(&r.dk, q6b, x, "2001:db8:56::f:10"), answerFrom(&r.dk, q6b, x, "2001:db8:56::f:11"), answerFrom(&r.dk, q6b, x, "2001:db8:56::f:12"),
	} {
		if a, _, v := r.take(dg); v == fresh {
			got = append(got, a.Addr.String())
		}
	}
	want := []string{"198.18.56.10", "198.18.56.11", "fe80::10%eth0", "fe80::11%eth0", "2001:db8:56::f:10", "2001:db8:56::f:11"}
	if diff := cmp.Diff(want, got); diff != "" || st.Capped != 3 {
		t.Errorf("one identity: %d capped, handed on (-want +got):\n%s", st.Capped, diff)
	}

	// Its known address passes; a copy of that answer from another
	// address does not, nor does an answer from off the link.
	d.Known = func(id string, a netip.Addr) bool { return a == netip.MustParseAddr("198.18.56.99") }
	st = Stats{}
	known := answerFrom(&r.dk, q4, x, "198.18.56.99")
	dup := known
	dup.src = netip.MustParseAddrPort("198.18.56.98:7440")
	off := answerFrom(&r.dk, q4, x, "198.18.57.99")
	for i, tt := range []struct {
		dg   datagram
		want verdict
	}{{known, fresh}, {dup, dropped}, {off, dropped}, {answerFrom(&r.dk, q4, x, "198.18.56.99"), again}} {
		if _, _, v := r.take(tt.dg); v != tt.want {
			t.Errorf("answer %d: verdict %d, want %d", i, v, tt.want)
		}
	}
	if st.Answers != 1 || st.Dropped != 2 || st.Capped != 0 {
		t.Errorf("stats %+v, want 1 answer, 2 dropped", st)
	}
}

// TestReach: an address may answer a query to a loopback address if it
// is on loopback, and one to a routed address only if it is that one.
func TestReach(t *testing.T) {
	reach, err := Reach([]netip.AddrPort{netip.MustParseAddrPort("127.0.0.2:7440"), netip.MustParseAddrPort("198.19.8.9:7440")})
	if err != nil {
		t.Fatal(err)
	}
	for a, want := range map[string]bool{"127.0.0.9": true, "198.19.8.9": true, "198.19.8.10": false} {
		if reach(netip.MustParseAddr(a)) != want {
			t.Errorf("%s: %v, want %v", a, !want, want)
		}
	}
}

// TestCopyFromOffTheLink: a copy of an answer sent first from off the
// link is dropped, and does not make the answer itself, from the link,
// pass for a copy.
func TestCopyFromOffTheLink(t *testing.T) {
	key, _ := proto.NewNetworkKey()
	var st Stats
	r := newRound(&Discoverer{Key: key, Port: 7440}, &st)
	links := []link{{name: "eth0", prefixes: []netip.Prefix{netip.MustParsePrefix("198.18.56.2/24")}}}
	seg, _ := segmentFor(netip.MustParseAddr("198.18.56.255"), links)
	q, _ := proto.NewQuery(&r.dk, time.Now())
	r.sent[q.Nonce] = &sentQuery{at: time.Now(), seg: seg}
	real := answerFrom(&r.dk, q, [16]byte{1}, "198.18.56.10")
	copied := real
	copied.src = netip.MustParseAddrPort("198.18.99.10:7440")
	if _, _, v := r.take(copied); v != dropped {
		t.Fatalf("a copy from off the link: %v, want dropped", v)
	}
	if a, _, v := r.take(real); v != fresh || a.Addr != netip.MustParseAddr("198.18.56.10") {
		t.Errorf("the answer itself: %v %v, want it handed on", a.Addr, v)
	}
}
