package announce_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/ifl-project/ifl/internal/controller/announce"
	"github.com/ifl-project/ifl/internal/controller/engine"
	"github.com/ifl-project/ifl/internal/controller/inventory"
	"github.com/ifl-project/ifl/internal/controller/verify"
	"github.com/ifl-project/ifl/internal/testbed/agenttest"
	"github.com/ifl-project/ifl/proto"
)

var loopback = netip.MustParsePrefix("127.0.0.0/24")

// rig is an agent on 127.0.0.1, a listener that watches 127.0.0.0/24,
// and a verifier that counts its connection attempts.
type rig struct {
	agent *agenttest.Agent
	l     *announce.Listener
	v     *verify.Verifier
	mu    sync.Mutex
	dials map[string]bool // addresses dialled: a verification may hedge with more connections to one
	fp    [16]byte
}

func newRig(t *testing.T, cfg announce.Config) *rig {
	t.Helper()
	r := &rig{agent: agenttest.Start(t), dials: map[string]bool{}}
	cfg.Key, cfg.Port = r.agent.Key, r.agent.Port
	if cfg.Accept == nil {
		cfg.Accept = loopback.Contains
	}
	r.l = announce.New(cfg)
	d := &net.Dialer{}
	r.v = &verify.Verifier{Key: r.agent.Key, Port: r.agent.Port, Timeout: 5 * time.Second, Retries: -1,
		Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			r.mu.Lock()
			r.dials[addr] = true
			r.mu.Unlock()
			return d.DialContext(ctx, network, addr)
		}}
	r.fp = proto.FingerprintBytes(r.agent.Identity.Public[:])
	return r
}

// datagram is an announcement of the rig's agent with key, at now.
func (r *rig) datagram(t *testing.T, key proto.NetworkKey, port int, now time.Time) []byte {
	t.Helper()
	ak := key.AnnounceKey()
	a, err := proto.NewAnnouncement(&ak, uint16(port), r.fp, now)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := a.MarshalBinary()
	return b
}

// round takes what waits, verifies it as the watching controller does
// and records it in the state at path.
func (r *rig) round(t *testing.T, path string) (*engine.Round, []announce.Hint) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	hints, err := r.l.Take(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var addrs []netip.Addr
	for _, h := range hints {
		addrs = append(addrs, h.Addr)
	}
	round, err := engine.Announced(ctx, addrs, r.v, engine.RoundOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r.l.Done(hints)
	if path != "" {
		if _, err := round.Record(context.Background(), &inventory.File{Path: path}, "", time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	return round, hints
}

// dialled is how many addresses the verifier dialled.
func (r *rig) dialled() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.dials)
}

func src(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

// TestAnnouncementVerifiedAtItsSource: an announcement read from a
// socket makes the controller verify its source address, and only it;
// the round observes the agent there, but records no host the inventory
// does not know: sweeps add hosts.
func TestAnnouncementVerifiedAtItsSource(t *testing.T) {
	r := newRig(t, announce.Config{})
	pc, err := announce.Listen(netip.MustParseAddrPort("127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- r.l.Serve(ctx, pc) }()
	defer func() {
		cancel()
		if err := <-served; err != nil {
			t.Error(err)
		}
	}()
	c, err := net.DialUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, pc.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(r.datagram(t, r.agent.Key, r.agent.Port, time.Now())); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(t.TempDir(), "inventory.json")
	round, hints := r.round(t, "")
	if len(hints) != 1 || hints[0].Addr != netip.MustParseAddr("127.0.0.1") || hints[0].Identity != r.agent.Identity.Fingerprint() {
		t.Fatalf("hints %+v, want 127.0.0.1 claiming %s", hints, r.agent.Identity.Fingerprint())
	}
	if len(round.Observations) != 1 || round.Observations[0].Identity != r.agent.Identity.Fingerprint() || round.Method != engine.MethodAnnouncement {
		t.Fatalf("round %+v, want the agent observed at 127.0.0.1", round)
	}
	ch, err := round.Record(context.Background(), &inventory.File{Path: state}, "", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if !ch.Empty() {
		t.Errorf("changes %+v, want none: the agent is not in the inventory", ch)
	}
	if st, err := inventory.Load(state); err != nil || len(st.Hosts) != 0 {
		t.Errorf("inventory %+v (%v), want no host", st, err)
	}
	if n := r.dialled(); n != 1 {
		t.Errorf("%d addresses dialled, want 1", n)
	}
}

// knownAt puts the rig's agent in the inventory at path, at addr on
// port, seen in rounds sweeps an hour ago, and hosts more.
func (r *rig) knownAt(t *testing.T, path, addr string, port, rounds int, more ...*inventory.Host) {
	t.Helper()
	then := time.Now().Add(-time.Hour)
	// The agent reports this machine's hostname: the same, not a rename.
	hostname, _ := os.Hostname()
	err := inventory.Update(path, func(st *inventory.State) error {
		id := r.agent.Identity.Fingerprint()
		st.Hosts[id] = &inventory.Host{Identity: id, Name: "a1", Hostname: hostname, IP: addr, Verified: []inventory.Verified{{Addr: addr, At: then}},
			Port: port, FirstSeen: then, LastSeen: then, Rounds: rounds}
		for _, h := range more {
			st.Hosts[h.Identity] = h
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestAnnouncementRoundsRecordKnownHostsOnly: announcement rounds, which
// a key holder starts at will, add no host, however often the agent
// announces, and count in no host's rounds: a known host in probation
// (one sweep) moves, and stays in probation.
func TestAnnouncementRoundsRecordKnownHostsOnly(t *testing.T) {
	r := newRig(t, announce.Config{})
	state := filepath.Join(t.TempDir(), "inventory.json")
	for i := range 3 {
		now := time.Now()
		r.l.Receive(r.datagram(t, r.agent.Key, r.agent.Port, now), src("127.0.0.1:5000"), now)
		round, _ := r.round(t, "")
		ch, err := round.Record(context.Background(), &inventory.File{Path: state}, "", time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if len(round.Observations) != 1 || !ch.Empty() {
			t.Fatalf("round %d: observations %+v, changes %+v; want the agent verified and nothing recorded", i, round.Observations, ch)
		}
	}
	r.knownAt(t, state, "127.0.0.2", r.agent.Port, 1)
	now := time.Now()
	r.l.Receive(r.datagram(t, r.agent.Key, r.agent.Port, now), src("127.0.0.1:5000"), now)
	round, _ := r.round(t, "")
	ch, err := round.Record(context.Background(), &inventory.File{Path: state}, "", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(ch.Moved) != 1 || ch.Moved[0].From != "127.0.0.2" || ch.Moved[0].To != "127.0.0.1" || len(ch.New)+len(ch.Unseen)+len(ch.Warnings) != 0 {
		t.Errorf("changes %+v, want the known host moved from 127.0.0.2 to 127.0.0.1", ch)
	}
	st, err := inventory.Load(state)
	if err != nil {
		t.Fatal(err)
	}
	if h := st.Hosts[r.agent.Identity.Fingerprint()]; len(st.Hosts) != 1 || h == nil || h.IP != "127.0.0.1" || h.Rounds != 1 {
		t.Errorf("hosts %+v, want the agent alone, at 127.0.0.1, in 1 round", st.Hosts)
	}
}

// TestAnnouncementRoundLooksOnItsPortOnly: a second agent of the
// announcing machine, known at the same address on another port, was
// not looked for: the announcement round does not report it unseen.
func TestAnnouncementRoundLooksOnItsPortOnly(t *testing.T) {
	r := newRig(t, announce.Config{})
	state := filepath.Join(t.TempDir(), "inventory.json")
	then := time.Now().Add(-time.Hour)
	second := &inventory.Host{Identity: "0123456789abcdef0123456789abcdef", Name: "a2", Hostname: "a2", IP: "127.0.0.1",
		Verified: []inventory.Verified{{Addr: "127.0.0.1", At: then}}, Port: r.agent.Port + 1, FirstSeen: then, LastSeen: then, Rounds: 3}
	r.knownAt(t, state, "127.0.0.1", r.agent.Port, 3, second)
	now := time.Now()
	r.l.Receive(r.datagram(t, r.agent.Key, r.agent.Port, now), src("127.0.0.1:5000"), now)
	round, _ := r.round(t, "")
	ch, err := round.Record(context.Background(), &inventory.File{Path: state}, "", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(round.Observations) != 1 || !ch.Empty() {
		t.Errorf("observations %+v, changes %+v; want the agent verified, and a2 on the other port not unseen", round.Observations, ch)
	}
}

// TestBadAnnouncementsCostNothing: forged, wrong-key, stale, replayed,
// other-port and spoofed-source announcements are refused, each for its
// reason, and start no connection at all.
func TestBadAnnouncementsCostNothing(t *testing.T) {
	r := newRig(t, announce.Config{})
	now := time.Now()
	good := r.datagram(t, r.agent.Key, r.agent.Port, now)
	forged := make([]byte, proto.AnnouncementLen)
	rand.Read(forged)
	copy(forged, good[:16]) // form and timestamp right, the rest random
	other, _ := proto.NewNetworkKey()
	tampered := append([]byte(nil), good...)
	tampered[40] ^= 1
	for _, tc := range []struct {
		name string
		b    []byte
		src  netip.AddrPort
		want announce.Reason
	}{
		{"garbage", []byte("GET / HTTP/1.1\r\n\r\n"), src("127.0.0.1:5000"), announce.Form},
		{"long", append(append([]byte(nil), good...), 0), src("127.0.0.1:5000"), announce.Form},
		{"spoofed source outside the targets", good, src("198.18.0.9:5000"), announce.Source},
		{"source port 0", good, src("127.0.0.1:0"), announce.Source},
		{"link-local source", good, src("[fe80::1%eth0]:5000"), announce.Source},
		{"forged", forged, src("127.0.0.1:5000"), announce.Key},
		{"tampered", tampered, src("127.0.0.1:5000"), announce.Key},
		{"wrong key", r.datagram(t, other, r.agent.Port, now), src("127.0.0.1:5000"), announce.Key},
		{"stale", r.datagram(t, r.agent.Key, r.agent.Port, now.Add(-2*proto.MaxSkew)), src("127.0.0.1:5000"), announce.Stale},
		{"other port", r.datagram(t, r.agent.Key, r.agent.Port+1, now), src("127.0.0.1:5000"), announce.Port},
	} {
		if why, ok := r.l.Receive(tc.b, tc.src, now); ok || why != tc.want {
			t.Errorf("%s: accepted %v, reason %v; want refused for %v", tc.name, ok, why, tc.want)
		}
	}
	// The good one once; its replay, from the same source or another,
	// is refused after the round.
	if why, ok := r.l.Receive(good, src("127.0.0.1:5000"), now); !ok {
		t.Fatalf("good announcement refused: %v", why)
	}
	r.round(t, "")
	for _, from := range []string{"127.0.0.1:5000", "127.0.0.2:5000"} {
		if why, ok := r.l.Receive(good, src(from), now); ok || why != announce.Replay {
			t.Errorf("replay from %s: accepted %v, reason %v; want refused as a replay", from, ok, why)
		}
	}
	st := r.l.Stats()
	if st.Received != 13 || st.Accepted != 1 || st.RefusedTotal() != 12 || st.Refused[announce.Key] != 3 || st.Refused[announce.Replay] != 2 {
		t.Errorf("stats %+v", st)
	}
	if n := r.dialled(); n != 1 {
		t.Errorf("%d addresses dialled, want 1: the good announcement's", n)
	}
}

// TestAnnouncementBudget: announcements from many sources make the
// controller verify at most Burst addresses at once, then Rate a
// second; announcements for an address already waiting join it.
func TestAnnouncementBudget(t *testing.T) {
	r := newRig(t, announce.Config{Burst: 3, Rate: 1})
	now := time.Now()
	accepted := 0
	for i := 10; i < 20; i++ {
		from := netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, byte(i)}), 5000)
		why, ok := r.l.Receive(r.datagram(t, r.agent.Key, r.agent.Port, now), from, now)
		switch {
		case ok:
			accepted++
		case why != announce.Budget:
			t.Errorf("from %v: refused for %v, want budget", from, why)
		}
	}
	// Again from a waiting address: merged, no token spent.
	if _, ok := r.l.Receive(r.datagram(t, r.agent.Key, r.agent.Port, now), src("127.0.0.10:5001"), now); !ok {
		t.Error("a second announcement from a waiting address was refused")
	}
	if accepted != 3 {
		t.Errorf("%d addresses accepted at once, want 3 (the burst)", accepted)
	}
	if _, ok := r.l.Receive(r.datagram(t, r.agent.Key, r.agent.Port, now), src("127.0.0.30:5000"), now.Add(time.Second)); !ok {
		t.Error("no token a second later")
	}
	// A round takes the burst at most; the fourth waits for the next.
	round, hints := r.round(t, "")
	round2, hints2 := r.round(t, "")
	if len(hints) != 3 || len(hints2) != 1 || r.dialled() != 4 {
		t.Errorf("%d then %d hints, %d addresses dialled; want 3, 1 and 4", len(hints), len(hints2), r.dialled())
	}
	// Only 127.0.0.1 has the agent; the others, tried once each (no
	// retries in this rig), are no observation.
	if len(round.Observations)+len(round2.Observations) != 0 {
		t.Errorf("observations %+v %+v from addresses with no agent", round.Observations, round2.Observations)
	}
	st := r.l.Stats()
	if st.Merged != 1 || st.Refused[announce.Budget] != 7 {
		t.Errorf("stats %+v, want 1 merged and 7 refused for the budget", st)
	}
}

func TestParseAddr(t *testing.T) {
	for in, want := range map[string]string{":7441": "invalid AddrPort", "198.18.0.2:7441": "198.18.0.2:7441", "[2001:db8::2]:7441": "[2001:db8::2]:7441"} {
		got, err := announce.ParseAddr(in)
		if err != nil || got.String() != want {
			t.Errorf("%q: %v %v, want %s", in, got, err, want)
		}
	}
	for in, want := range map[string]string{
		"7441":         `"7441": want [ADDR]:PORT, such as :7441 or 198.18.0.2:7441`,
		":0":           `":0": port "0": want 1-65535`,
		"ctl.org:7441": `"ctl.org:7441": "ctl.org" is not an IP address`,
	} {
		if _, err := announce.ParseAddr(in); err == nil || err.Error() != want {
			t.Errorf("%q: %v, want %s", in, err, want)
		}
	}
}

// TestAnnouncementRoundReportsNoneUnseen: an announcement from the
// address of a known host where no agent answers (forged by a key
// holder, or the agent gone again) reports that host neither unseen nor
// moved.
func TestAnnouncementRoundReportsNoneUnseen(t *testing.T) {
	r := newRig(t, announce.Config{})
	state := filepath.Join(t.TempDir(), "inventory.json")
	then := time.Now().Add(-time.Hour)
	err := inventory.Update(state, func(st *inventory.State) error {
		st.Hosts["0123456789abcdef0123456789abcdef"] = &inventory.Host{Identity: "0123456789abcdef0123456789abcdef", Name: "gone", Hostname: "gone",
			IP: "127.0.0.9", Verified: []inventory.Verified{{Addr: "127.0.0.9", At: then}}, Port: r.agent.Port, FirstSeen: then, LastSeen: then, Rounds: 3}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	r.l.Receive(r.datagram(t, r.agent.Key, r.agent.Port, now), src("127.0.0.9:5000"), now)
	round, _ := r.round(t, "")
	if r.dialled() != 1 || !round.Complete {
		t.Fatalf("%d addresses dialled, complete %v; want 127.0.0.9 dialled in a complete round", r.dialled(), round.Complete)
	}
	ch, err := round.Record(context.Background(), &inventory.File{Path: state}, "", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if !ch.Empty() {
		t.Errorf("changes %+v from an announcement where no agent answered, want none", ch)
	}
}

// TestTakeAtMostBurst: addresses accepted while a round runs (at Rate a
// second once the burst is spent) pile up past Burst; Take hands them
// out Burst at a time, those waiting longest first, and the rest stay
// waiting for the next Take.
func TestTakeAtMostBurst(t *testing.T) {
	r := newRig(t, announce.Config{Burst: 3, Rate: 1})
	t0 := time.Now()
	from := func(i int) netip.AddrPort {
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, byte(100 + i)}), 5000)
	}
	for i := range 3 {
		if why, ok := r.l.Receive(r.datagram(t, r.agent.Key, r.agent.Port, t0), from(i), t0); !ok {
			t.Fatalf("announcement %d refused: %v", i, why)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	first, err := r.l.Take(ctx)
	if err != nil || len(first) != 3 {
		t.Fatalf("first Take: %d hints, %v; want 3", len(first), err)
	}
	// The round is under way (no Done) for 8 s: one a second arrives.
	for i := 3; i < 11; i++ {
		at := t0.Add(time.Duration(i-2) * time.Second)
		if why, ok := r.l.Receive(r.datagram(t, r.agent.Key, r.agent.Port, at), from(i), at); !ok {
			t.Fatalf("announcement %d refused: %v", i, why)
		}
	}
	r.l.Done(first)
	var got [][]int
	for range 3 {
		hints, err := r.l.Take(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var batch []int
		for _, h := range hints {
			batch = append(batch, int(h.Addr.As4()[3])-100)
		}
		got = append(got, batch)
		r.l.Done(hints)
	}
	if want := [][]int{{3, 4, 5}, {6, 7, 8}, {9, 10}}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("batches %v, want %v", got, want)
	}
}

// TestAnnouncedPaced: an announcement round waits for its pace before
// each address it dials, and one whose pace ends dials no more and is
// cut short.
func TestAnnouncedPaced(t *testing.T) {
	r := newRig(t, announce.Config{})
	addrs := []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.3"), netip.MustParseAddr("127.0.0.4")}
	paced := 0
	round, err := engine.Announced(context.Background(), addrs, r.v, engine.RoundOptions{Pace: func(context.Context) error {
		paced++
		return nil
	}})
	if err != nil || !round.Complete || paced != 3 || r.dialled() != 3 || len(round.Observations) != 1 {
		t.Fatalf("round complete %v (%v), paced %d, %d dialled, %d observations; want complete, 3, 3, 1", round.Complete, err, paced, r.dialled(), len(round.Observations))
	}
	stop := errors.New("stop")
	paced = 0
	round, err = engine.Announced(context.Background(), []netip.Addr{netip.MustParseAddr("127.0.0.5"), netip.MustParseAddr("127.0.0.6")}, r.v, engine.RoundOptions{Pace: func(context.Context) error {
		if paced++; paced == 2 {
			return stop
		}
		return nil
	}})
	if !errors.Is(err, stop) || round.Complete || r.dialled() != 4 {
		t.Errorf("round complete %v (%v), %d dialled; want cut short by the pace, 127.0.0.5 alone dialled", round.Complete, err, r.dialled())
	}
}
