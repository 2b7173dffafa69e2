package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"golang.org/x/sys/unix"

	"github.com/ifl-project/ifl/internal/controller/inventory"
	"github.com/ifl-project/ifl/internal/testbed/testnet"
	"github.com/ifl-project/ifl/proto"
)

// envAnnounce makes the test binary a helper in a namespace of the LAN:
// "send DST PORT FILE" sends the datagrams of FILE (lines "SRC HEX") to
// DST:PORT over UDP from the given (spoofed) sources; "get URL" prints
// the body at URL.
const envAnnounce = "IFL_E2E_ANNOUNCE"

// annHelper runs in a namespace of the LAN, as envAnnounce says.
func annHelper(spec string) error {
	f := strings.Fields(spec)
	switch {
	case len(f) == 2 && f[0] == "get":
		c := http.Client{Timeout: 30 * time.Second}
		resp, err := c.Get(f[1])
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %s", f[1], resp.Status)
		}
		_, err = io.Copy(os.Stdout, resp.Body)
		return err
	case len(f) == 4 && f[0] == "send":
		return sendSpoofed(f[1], f[2], f[3])
	case len(f) == 5 && f[0] == "flood":
		return floodUDP(f[1], f[2], f[3], f[4])
	}
	return fmt.Errorf("%s=%q: want get URL, send DST PORT FILE or flood DST:PORT RATE SECONDS HEX", envAnnounce, spec)
}

// sendSpoofed sends each datagram of file from its source address on a
// raw socket, in order.
func sendSpoofed(dst, port, file string) error {
	d, err := netip.ParseAddr(dst)
	if err != nil {
		return err
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return err
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	to := &unix.SockaddrInet4{Addr: d.As4()}
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	for i, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		src, payload, ok := strings.Cut(line, " ")
		s, err := netip.ParseAddr(src)
		if !ok || err != nil {
			return fmt.Errorf("%s:%d: want SRC HEX", file, i+1)
		}
		data, err := hex.DecodeString(payload)
		if err != nil {
			return fmt.Errorf("%s:%d: %w", file, i+1, err)
		}
		ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: s.AsSlice(), DstIP: d.AsSlice()}
		udp := &layers.UDP{SrcPort: layers.UDPPort(40000 + i%1000), DstPort: layers.UDPPort(p)}
		udp.SetNetworkLayerForChecksum(ip)
		if err := gopacket.SerializeLayers(buf, opts, ip, udp, gopacket.Payload(data)); err != nil {
			return err
		}
		if err := unix.Sendto(fd, buf.Bytes(), 0, to); err != nil {
			return err
		}
	}
	return nil
}

// floodUDP sends the datagram hex to dst at rate a second for seconds,
// in bursts every millisecond, and prints how many it sent.
func floodUDP(dst, rate, seconds, payload string) error {
	r, err := strconv.Atoi(rate)
	if err != nil {
		return err
	}
	secs, err := strconv.Atoi(seconds)
	if err != nil {
		return err
	}
	b, err := hex.DecodeString(payload)
	if err != nil {
		return err
	}
	c, err := net.Dial("udp", dst)
	if err != nil {
		return err
	}
	defer c.Close()
	sent := 0
	start := time.Now()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for now := start; now.Sub(start) < time.Duration(secs)*time.Second; now = <-tick.C {
		// As many as the rate allows by now: a late tick catches up.
		for want := int(float64(r) * now.Sub(start).Seconds()); sent < want; sent++ {
			if _, err := c.Write(b); err != nil && !errors.Is(err, syscall.ECONNREFUSED) {
				return err
			}
		}
	}
	fmt.Println(sent)
	return nil
}

// inNamespace runs this test binary as the helper in ns and returns
// its output.
func inNamespace(t testing.TB, ns, spec string) []byte {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", ns, self)
	cmd.Env = append(os.Environ(), envAnnounce+"="+spec)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helper %q in %s: %v", spec, ns, err)
	}
	return out
}

// lanWatch is an ifl probe --watch running in the controller's
// namespace, its events decoded as they come.
type lanWatch struct {
	*eventLog
	// pid is the controller's: ip netns exec execs it in its own place.
	pid int
}

func startLANWatch(t testing.TB, lan *testnet.LAN, args ...string) *lanWatch {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	cmd := lan.Controller.Command(ctx, lan.IFL, append([]string{"probe", "--network-key", lan.NetworkKey}, args...)...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w := &lanWatch{eventLog: readEvents(stderr, 1000, ""), pid: cmd.Process.Pid}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		for range w.events {
		}
		cmd.Wait()
		cancel()
	})
	return w
}

// scrape reads the controller's metrics at 127.0.0.1:port in its
// namespace with Prometheus' own parser.
func scrape(t testing.TB, lan *testnet.LAN, port int) map[string]*dto.MetricFamily {
	t.Helper()
	body := inNamespace(t, lan.Controller.Namespace, "get http://127.0.0.1:"+strconv.Itoa(port)+"/metrics")
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("metrics: %v\n%s", err, body)
	}
	return fams
}

// metric is the value of the series of name with the labels kv (name,
// value, ...), failing when there is none.
func metric(t testing.TB, fams map[string]*dto.MetricFamily, name string, kv ...string) float64 {
	t.Helper()
	f := fams[name]
	if f == nil {
		t.Fatalf("no %s in the scrape", name)
	}
	for _, m := range f.Metric {
		match := true
		for i := 0; i+1 < len(kv); i += 2 {
			found := false
			for _, l := range m.Label {
				found = found || l.GetName() == kv[i] && l.GetValue() == kv[i+1]
			}
			match = match && found
		}
		if match {
			return m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	t.Fatalf("no %s%v in the scrape", name, kv)
	return 0
}

// watchAgents starts a watch with a 10-minute interval and no broadcast
// rounds, listening for announcements and serving metrics, and waits for
// its first sweep to find n agents.
func watchAgents(t testing.TB, lan *testnet.LAN, state string, n int, extra ...string) *lanWatch {
	t.Helper()
	w := startLANWatch(t, lan, append([]string{"--watch", "10m", "--broadcast-every", "0", "--state", state,
		"--announcements", ":7441", "--metrics", "127.0.0.1:9174"}, extra...)...)
	for range n {
		w.next(t, "host_new", "probed")
	}
	w.next(t, "probed")
	return w
}

// TestAnnouncedMove: an agent's address changed with ip addr while a
// controller watches with a 10-minute interval: its announcement makes
// the controller verify it at the new address and record the move, with
// no sweep in between; the inventory and the metrics say so.
func TestAnnouncedMove(t *testing.T) {
	testnet.Require(t, true)
	spec := testnet.Spec{Name: "e2eann", Prefix: netip.MustParsePrefix("198.19.80.0/24"), Port: 7440,
		Hosts: []testnet.HostSpec{{Role: testnet.Agent, Name: "mover"}, {Role: testnet.Agent}, {Role: testnet.Closed}}}
	lan := testnet.Start(t, spec, testnet.BuildIFL(t))
	state := filepath.Join(t.TempDir(), "inventory.json")
	w := watchAgents(t, lan, state, 2)
	var mover testnet.Host
	for _, h := range lan.Hosts {
		if h.Name == "mover" {
			mover = h
		}
	}
	to := netip.MustParseAddr("198.19.80.200")
	start := time.Now()
	if err := lan.Move(context.Background(), mover.Name, to); err != nil {
		t.Fatal(err)
	}
	ev := w.next(t, "host_moved", "probed")
	t.Logf("move recorded %v after ip addr", time.Since(start))
	if ev["hostname"] != mover.Name || ev["from"] != mover.Addr.String() || ev["to"] != to.String() || ev["via"] != "announcement" {
		t.Errorf("move event %v, want %s from %v to %v via announcement", ev, mover.Name, mover.Addr, to)
	}
	w.next(t, "announced", "probed")

	st, err := inventory.Load(state)
	if err != nil {
		t.Fatal(err)
	}
	if h := st.Hosts[mover.Identity]; h == nil || h.IP != to.String() || len(st.Hosts) != 2 {
		t.Errorf("inventory: %d hosts, %s at %+v, want 2 hosts, %s at %v", len(st.Hosts), mover.Name, h, mover.Name, to)
	}

	fams := scrape(t, lan, 9174)
	for _, c := range []struct {
		name string
		kv   []string
		want float64
	}{
		{"ifl_rounds_total", []string{"kind", "sweep", "outcome", "complete"}, 1},
		{"ifl_changes_total", []string{"kind", "new", "via", "sweep"}, 2},
		{"ifl_changes_total", []string{"kind", "moved", "via", "announcement"}, 1},
		{"ifl_changes_total", []string{"kind", "moved", "via", "sweep"}, 0},
		{"ifl_hosts", []string{"status", "agent"}, 2},
		{"ifl_inventory_hosts", nil, 2},
		{"ifl_errors_total", []string{"stage", "probe"}, 0},
	} {
		if got := metric(t, fams, c.name, c.kv...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.kv, got, c.want)
		}
	}
	// The agent may announce again before the controller's ping reaches
	// it; every datagram is taken, none refused.
	received := metric(t, fams, "ifl_announcements_received_total")
	taken := metric(t, fams, "ifl_announcements_accepted_total") + metric(t, fams, "ifl_announcements_merged_total")
	refused := 0.0
	for _, m := range fams["ifl_announcements_refused_total"].Metric {
		refused += m.GetCounter().GetValue()
	}
	if received < 1 || taken != received || refused != 0 || metric(t, fams, "ifl_announcements_verified_total") < 1 {
		t.Errorf("announcements: %v received, %v taken, %v refused, %v verified; want all taken and verified", received, taken, refused,
			metric(t, fams, "ifl_announcements_verified_total"))
	}
}

// TestAnnouncedMoveToAnotherSubnet: an agent moved to another subnet
// behind the router, among the watched targets, announces from there,
// and the controller follows it through the router.
func TestAnnouncedMoveToAnotherSubnet(t *testing.T) {
	testnet.Require(t, true)
	spec := testnet.Spec{Name: "e2eannsn", Prefix: netip.MustParsePrefix("198.19.86.0/28"), Port: 7440,
		Hosts: []testnet.HostSpec{{Role: testnet.Agent, Name: "mover"}, {Role: testnet.Closed}}}
	lan := testnet.Start(t, spec, testnet.BuildIFL(t))
	// The other subnet: the router's too, on the same wire.
	other, to := "198.19.87.0/28", netip.MustParseAddr("198.19.87.5")
	if out, err := lan.Router.Command(context.Background(), "ip", "addr", "add", "198.19.87.1/28", "dev", "eth0").CombinedOutput(); err != nil {
		t.Fatalf("router: %v: %s", err, out)
	}
	w := startLANWatch(t, lan, "--watch", "10m", "--broadcast-every", "0", "--state", filepath.Join(t.TempDir(), "inventory.json"),
		"--announcements", ":7441", spec.Prefix.String(), other)
	ev := w.next(t, "host_new", "probed")
	w.next(t, "probed")
	mover := lan.Hosts[0]
	if ev["identity"] != mover.Identity {
		t.Fatalf("first round found %v, want %s", ev, mover.Name)
	}
	cmds := fmt.Sprintf("addr del %s/28 dev eth0\naddr add %s/28 dev eth0\nroute replace default via 198.19.87.1\n", mover.Addr, to)
	batch := exec.Command("ip", "-n", mover.Namespace, "-batch", "-")
	batch.Stdin = strings.NewReader(cmds)
	if out, err := batch.CombinedOutput(); err != nil {
		t.Fatalf("ip -batch: %v: %s", err, out)
	}
	ev = w.next(t, "host_moved", "probed")
	if ev["from"] != mover.Addr.String() || ev["to"] != to.String() || ev["via"] != "announcement" {
		t.Errorf("move event %v, want %s from %v to %v via announcement", ev, mover.Name, mover.Addr, to)
	}
}

// TestAnnouncementsDropped: with the announcement port dropped by the
// controller's firewall, the agent's announcements are lost, and the
// next sweep records the move all the same.
func TestAnnouncementsDropped(t *testing.T) {
	testnet.Require(t, true)
	spec := testnet.Spec{Name: "e2eanndr", Prefix: netip.MustParsePrefix("198.19.81.0/28"), Port: 7440,
		Hosts: []testnet.HostSpec{{Role: testnet.Agent, Name: "mover"}, {Role: testnet.Agent}}}
	lan := testnet.Start(t, spec, testnet.BuildIFL(t))
	state := filepath.Join(t.TempDir(), "inventory.json")
	w := startLANWatch(t, lan, "--watch", "3s", "--broadcast-every", "0", "--state", state, "--announcements", ":7441")
	w.next(t, "host_new")
	w.next(t, "host_new")
	w.next(t, "probed")
	rules := "table inet ifldrop {\n chain input {\n  type filter hook input priority 0; policy accept;\n  udp dport 7441 counter drop\n }\n}\n"
	nft := lan.Controller.Command(context.Background(), "nft", "-f", "-")
	nft.Stdin = strings.NewReader(rules)
	if out, err := nft.CombinedOutput(); err != nil {
		t.Fatalf("nft: %v: %s", err, out)
	}
	var mover testnet.Host
	for _, h := range lan.Hosts {
		if h.Name == "mover" {
			mover = h
		}
	}
	to := netip.MustParseAddr("198.19.81.13")
	if err := lan.Move(context.Background(), mover.Name, to); err != nil {
		t.Fatal(err)
	}
	ev := w.next(t, "host_moved", "announced")
	if ev["hostname"] != mover.Name || ev["from"] != mover.Addr.String() || ev["to"] != to.String() || ev["via"] != nil {
		t.Errorf("move event %v, want %s from %v to %v by a sweep", ev, mover.Name, mover.Addr, to)
	}
	w.next(t, "probed", "announced")
	if n := nftCounter(t, lan, "ifldrop"); n < 1 {
		t.Errorf("%d announcements dropped, want the agent's (1 at least)", n)
	}
}

// nftCounter is the packets of the one counter of the controller's
// table.
func nftCounter(t testing.TB, lan *testnet.LAN, table string) int {
	t.Helper()
	out, err := lan.Controller.Command(context.Background(), "nft", "list", "table", "inet", table).Output()
	if err != nil {
		t.Fatal(err)
	}
	i := strings.Index(string(out), "counter packets ")
	if i < 0 {
		t.Fatalf("no counter in the controller's table %s:\n%s", table, out)
	}
	n, err := strconv.Atoi(strings.Fields(string(out[i:]))[2])
	if err != nil {
		t.Fatalf("%v:\n%s", err, out)
	}
	return n
}

// TestForgedAnnouncements: malformed, forged, wrong-key, stale,
// wrong-port, out-of-target and replayed announcements change nothing
// and start no handshake; a genuine announcement from a spoofed source
// inside the targets starts exactly one, at that source, and records
// nothing. The controller's SYNs to the agent port are counted.
func TestForgedAnnouncements(t *testing.T) {
	testnet.Require(t, true)
	spec := testnet.Spec{Name: "e2eannfg", Prefix: netip.MustParsePrefix("198.19.82.0/28"), Port: 7440,
		Hosts: []testnet.HostSpec{{Role: testnet.Agent, Name: "owner"}, {Role: testnet.Closed, Name: "sender"}, {Role: testnet.Closed, Name: "victim"}}}
	lan := testnet.Start(t, spec, testnet.BuildIFL(t))
	state := filepath.Join(t.TempDir(), "inventory.json")
	w := watchAgents(t, lan, state, 1)
	before, err := inventory.Load(state)
	if err != nil {
		t.Fatal(err)
	}
	rules := fmt.Sprintf("table inet iflsyn {\n chain output {\n  type filter hook output priority 0; policy accept;\n  tcp dport %d tcp flags & (syn|ack) == syn counter\n }\n}\n", lan.Port)
	nft := lan.Controller.Command(context.Background(), "nft", "-f", "-")
	nft.Stdin = strings.NewReader(rules)
	if out, err := nft.CombinedOutput(); err != nil {
		t.Fatalf("nft: %v: %s", err, out)
	}

	var owner, sender, victim testnet.Host
	for _, h := range lan.Hosts {
		switch h.Name {
		case "owner":
			owner = h
		case "sender":
			sender = h
		case "victim":
			victim = h
		}
	}
	key, err := proto.LoadNetworkKey(lan.NetworkKey)
	if err != nil {
		t.Fatal(err)
	}
	wrong, _ := proto.NewNetworkKey()
	ak, wk := key.AnnounceKey(), wrong.AnnounceKey()
	fp, err := hex.DecodeString(owner.Identity)
	if err != nil || len(fp) != 16 {
		t.Fatalf("identity %q", owner.Identity)
	}
	make1 := func(k *proto.AnnounceKey, port int, at time.Time) []byte {
		a, err := proto.NewAnnouncement(k, uint16(port), [16]byte(fp), at)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := a.MarshalBinary()
		return b
	}
	var lines []string
	add := func(src netip.Addr, b []byte) { lines = append(lines, src.String()+" "+hex.EncodeToString(b)) }
	const n = 20
	outside := netip.MustParseAddr("198.19.83.1")
	now := time.Now()
	for range n {
		short := make([]byte, proto.AnnouncementLen-1)
		rand.Read(short)
		add(sender.Addr, short) // form
		forged := make1(&ak, lan.Port, now)
		rand.Read(forged[proto.AnnouncementLen-16:])
		add(sender.Addr, forged)                                    // key
		add(sender.Addr, make1(&wk, lan.Port, now))                 // key
		add(sender.Addr, make1(&ak, lan.Port, now.Add(-time.Hour))) // stale
		add(sender.Addr, make1(&ak, lan.Port+1, now))               // port
		add(outside, make1(&ak, lan.Port, now))                     // source
	}
	genuine := make1(&ak, lan.Port, now)
	add(victim.Addr, genuine) // accepted: one handshake at the victim
	for range n {
		add(victim.Addr, genuine) // replay
		add(sender.Addr, genuine) // replay, from elsewhere
	}
	// Last, a fresh one from the sender's own address: once both are
	// verified, every datagram before them has been read.
	add(sender.Addr, make1(&ak, lan.Port, now))
	file := filepath.Join(t.TempDir(), "datagrams")
	if err := os.WriteFile(file, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	inNamespace(t, sender.Namespace, fmt.Sprintf("send %s 7441 %s", lan.Controller.Addr, file))

	verified := 0
	for verified < 2 {
		ev := w.next(t, "announced", "probed", "host_moved", "host_new")
		if ev["agents"] != 0.0 {
			t.Errorf("announced %v, want no agent verified", ev)
		}
		verified += int(ev["addresses"].(float64))
	}
	if verified != 2 {
		t.Errorf("%d addresses verified, want 2 (the victim and the sender)", verified)
	}

	fams := scrape(t, lan, 9174)
	want := map[string]float64{"form": n, "key": 2 * n, "stale": n, "port": n, "source": n, "replay": 2 * n, "budget": 0, "full": 0}
	for reason, v := range want {
		if got := metric(t, fams, "ifl_announcements_refused_total", "reason", reason); got != v {
			t.Errorf("refused %s: %v, want %v", reason, got, v)
		}
	}
	for name, v := range map[string]float64{
		"ifl_announcements_received_total": float64(len(lines)),
		"ifl_announcements_accepted_total": 2,
		"ifl_announcements_merged_total":   0,
		"ifl_announcements_verified_total": 0,
	} {
		if got := metric(t, fams, name); got != v {
			t.Errorf("%s = %v, want %v", name, got, v)
		}
	}
	if syns := nftCounter(t, lan, "iflsyn"); syns != 2 {
		t.Errorf("the controller sent %d SYNs to the agent port, want 2 (the victim and the sender, each once)", syns)
	}
	after, err := inventory.Load(state)
	if err != nil {
		t.Fatal(err)
	}
	if len(after.Hosts) != 1 || after.Hosts[owner.Identity] == nil || after.Hosts[owner.Identity].IP != before.Hosts[owner.Identity].IP {
		t.Errorf("inventory changed: %+v, want %s at %s alone", after.Hosts, owner.Name, owner.Addr)
	}
}

// BenchmarkAnnouncedMove measures, 50 times, the time from ip addr on an
// agent to the move recorded by a controller watching with a 10-minute
// interval: median and worst (run with -benchtime=1x).
func BenchmarkAnnouncedMove(b *testing.B) {
	testnet.Require(b, true)
	spec := testnet.Spec{Name: "e2eannbm", Prefix: netip.MustParsePrefix("198.19.84.0/24"), Port: 7440,
		Hosts: testnet.Mix(map[testnet.Role]int{testnet.Agent: 20, testnet.Closed: 5}, 7)}
	lan := testnet.Start(b, spec, testnet.BuildIFL(b))
	w := watchAgents(b, lan, filepath.Join(b.TempDir(), "inventory.json"), 20)
	mover := lan.Hosts[0]
	for _, h := range lan.Hosts {
		if h.Role == testnet.Agent {
			mover = h
			break
		}
	}
	addrs := []netip.Addr{netip.MustParseAddr("198.19.84.250"), mover.Addr}
	const moves = 50
	var took []time.Duration
	for range b.N {
		took = took[:0]
		for i := range moves {
			to := addrs[i%2]
			start := time.Now()
			if err := lan.Move(context.Background(), mover.Name, to); err != nil {
				b.Fatal(err)
			}
			ev := w.next(b, "host_moved", "probed")
			took = append(took, time.Since(start))
			if ev["to"] != to.String() || ev["via"] != "announcement" {
				b.Fatalf("move event %v, want to %v via announcement", ev, to)
			}
			w.next(b, "announced", "probed")
		}
	}
	slices.Sort(took)
	b.ReportMetric(took[len(took)/2].Seconds(), "median-s")
	b.ReportMetric(took[len(took)-1].Seconds(), "worst-s")
	b.Logf("%d moves: median %v, worst %v", moves, took[len(took)/2], took[len(took)-1])
}

// BenchmarkForgedFlood floods a watching controller (a /24 of 20 agents,
// a sweep every 2 s) with announcements under another network key from
// a host of its targets, at 100,000 a second for 10 s: it reports the
// controller's CPU (from its own metrics) and its sweeps' durations
// before and during the flood, and fails if the flood made any address
// wait for verification (run with -benchtime=1x).
func BenchmarkForgedFlood(b *testing.B) {
	testnet.Require(b, true)
	hosts := testnet.Mix(map[testnet.Role]int{testnet.Agent: 20, testnet.Closed: 5}, 9)
	hosts = append(hosts, testnet.HostSpec{Role: testnet.Closed, Name: "flooder"})
	spec := testnet.Spec{Name: "e2eannfl", Prefix: netip.MustParsePrefix("198.19.88.0/24"), Port: 7440, Hosts: hosts}
	lan := testnet.Start(b, spec, testnet.BuildIFL(b))
	w := startLANWatch(b, lan, "--watch", "2s", "--broadcast-every", "0", "--no-state",
		"--announcements", ":7441", "--metrics", "127.0.0.1:9174")
	w.next(b, "probed")
	var flooder testnet.Host
	for _, h := range lan.Hosts {
		if h.Name == "flooder" {
			flooder = h
		}
	}
	other, _ := proto.NewNetworkKey()
	wk := other.AnnounceKey()
	const rate, seconds = 100_000, 10
	// Stamped a little ahead, so that it stays on time for the whole
	// flood: the costliest to refuse, its MAC computed.
	a, _ := proto.NewAnnouncement(&wk, uint16(lan.Port), [16]byte{1}, time.Now().Add(seconds*time.Second/2))
	bad, _ := a.MarshalBinary()
	rounds := func(n int) []float64 {
		var d []float64
		for range n {
			d = append(d, w.next(b, "probed")["seconds"].(float64))
		}
		slices.Sort(d)
		return d
	}
	cpu := func() (float64, time.Time) {
		return metric(b, scrape(b, lan, 9174), "process_cpu_seconds_total"), time.Now()
	}
	for range b.N {
		c0, t0 := cpu()
		quiet := rounds(4)
		c1, t1 := cpu()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		self, _ := os.Executable()
		cmd := exec.CommandContext(ctx, "ip", "netns", "exec", flooder.Namespace, self)
		cmd.Env = append(os.Environ(), fmt.Sprintf("%s=flood %s:7441 %d %d %x", envAnnounce, lan.Controller.Addr, rate, seconds, bad))
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			b.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		c2, t2 := cpu()
		flooded := rounds(4)
		c3, t3 := cpu()
		line, _ := io.ReadAll(out)
		if err := cmd.Wait(); err != nil {
			b.Fatal(err)
		}
		cancel()
		sent, _ := strconv.Atoi(strings.TrimSpace(string(line)))
		fams := scrape(b, lan, 9174)
		received := metric(b, fams, "ifl_announcements_received_total")
		if acc, merged := metric(b, fams, "ifl_announcements_accepted_total"), metric(b, fams, "ifl_announcements_merged_total"); acc != 0 || merged != 0 {
			b.Fatalf("the flood made %v addresses wait for verification (%v merged), want none", acc, merged)
		}
		quietCPU, floodCPU := (c1-c0)/t1.Sub(t0).Seconds(), (c3-c2)/t3.Sub(t2).Seconds()
		b.ReportMetric(float64(sent)/seconds, "sent/s")
		b.ReportMetric(quietCPU, "cpu-quiet")
		b.ReportMetric(floodCPU, "cpu-flood")
		b.ReportMetric(quiet[len(quiet)/2], "round-quiet-s")
		b.ReportMetric(flooded[len(flooded)/2], "round-flood-s")
		b.Logf("%d forged announcements sent in %d s, %v read by the controller, none accepted; controller CPU %.3f core quiet, %.3f core flooded; sweeps %v s quiet, %v s flooded",
			sent, seconds, received, quietCPU, floodCPU, quiet, flooded)
	}
}
