package e2e

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"golang.org/x/sys/unix"

	"github.com/ifl-project/ifl/internal/controller/discover"
	"github.com/ifl-project/ifl/internal/testbed/testnet"
	"github.com/ifl-project/ifl/proto"
)

// envDiscAttack makes the test binary the attacker of
// TestBroadcastUnderAttack: its value is the attack, as JSON.
const envDiscAttack = "IFL_E2E_DISCATTACK"

func init() {
	if spec := os.Getenv(envDiscAttack); spec != "" {
		if err := discAttack(spec); err != nil {
			fmt.Fprintln(os.Stderr, "discovery attack:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
}

// attack is what the attacker of TestBroadcastUnderAttack does, from a
// host of the LAN that holds the network key, written from proto/doc.go.
type attack struct {
	KeyFile string `json:"key_file"`
	Port    int    `json:"port"`
	// The controller, whose address the spoofed queries come from and
	// whose queries the forged answers answer.
	CtrlMAC string     `json:"ctrl_mac"`
	Ctrl4   netip.Addr `json:"ctrl4"`
	CtrlLL  netip.Addr `json:"ctrl_ll"`
	Ctrl6   netip.Addr `json:"ctrl6"`
	// Spoofed queries, Rate a second of each kind: from each of the
	// controller's addresses (TTL 255, half of them stamped 59 s ago), from off the link (OffLink4, OffLink6: TTL 255), and from
	// Victim with TTL 64.
	Rate      int        `json:"rate"`
	Broadcast netip.Addr `json:"broadcast"`
	OffLink4  netip.Addr `json:"off_link4"`
	OffLink6  netip.Addr `json:"off_link6"`
	Victim    netip.Addr `json:"victim"`
	// Forged answers to each of the controller's queries, claiming
	// Identity: from empty addresses of the link (Forged*) and from off
	// the link (Off*).
	Identity string       `json:"identity"`
	Forged4  []netip.Addr `json:"forged4"`
	Forged6  []netip.Addr `json:"forged6"`
	ForgedLL []netip.Addr `json:"forged_ll"`
	Off4     []netip.Addr `json:"off4"`
	Off6     []netip.Addr `json:"off6"`
}

// addrRange returns n addresses from first on.
func addrRange(first string, n int) []netip.Addr {
	var out []netip.Addr
	for a := netip.MustParseAddr(first); len(out) < n; a = a.Next() {
		out = append(out, a)
	}
	return out
}

// TestBroadcastUnderAttack puts a compromised host on a dual-stack LAN of
// agents: it holds the network key, spoofs good queries from each of the
// controller's addresses (IPv4, link-local and global IPv6, 200 a second
// each, far above what one source address used to be answered, half of
// them stamped 59 s ago), sends good queries
// from off the link and with TTL 64, and answers every query of the
// controller with forged answers claiming one agent's identity, from 20
// empty addresses of each kind on the link and 5 of each family off it.
// Every broadcast round must find every agent, that one at all its
// addresses; dial MaxAddrsPerKind forged addresses of each kind and none
// off the link; and no agent may answer a query from off the link or with
// a lower TTL. Then, with the answers dropped, a round must say that it
// heard no agent and exit 1.
func TestBroadcastUnderAttack(t *testing.T) {
	testnet.Require(t, true)
	a := netip.MustParseAddr
	hosts := []testnet.HostSpec{{Role: testnet.Hostile, Name: "evil", Addr: a("198.18.56.20"), IPv6: true}}
	for i := range 6 {
		hosts = append(hosts, testnet.HostSpec{Role: testnet.Agent, Name: fmt.Sprintf("a%d", i+1), Addr: a(fmt.Sprintf("198.18.56.%d", 10+i)), IPv6: true})
	}
	spec := testnet.Spec{Name: "e2edisc", Prefix: netip.MustParsePrefix("198.18.56.0/24"), Prefix6: netip.MustParsePrefix("2001:db8:56::/64"), Port: 7440, Hosts: hosts}
	lan := testnet.Start(t, spec, testnet.BuildIFL(t))
	var evil testnet.Host
	var agents []testnet.Host
	for _, h := range lan.Hosts {
		if h.Role == testnet.Hostile {
			evil = h
		} else {
			agents = append(agents, h)
		}
	}
	target := agents[0] // the agent whose identity the forged answers claim
	for _, n := range append([]testnet.Node{lan.Controller}, agentNodes(lan)...) {
		waitLinkLocal(t, n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	// The controller records every address it dials; each agent counts
	// its answers to anywhere off the link, and to the victim.
	nft(t, ctx, lan.Controller, `table inet ifldisc {
 set dialled4 { type ipv4_addr; flags dynamic; }
 set dialled6 { type ipv6_addr; flags dynamic; }
 chain output {
  type filter hook output priority 0; policy accept;
  tcp dport 7440 tcp flags & (syn|ack) == syn add @dialled4 { ip daddr }
  tcp dport 7440 tcp flags & (syn|ack) == syn add @dialled6 { ip6 daddr }
 }
 chain input {
  type filter hook input priority 0; policy accept;
 }
}
`)
	for _, h := range agents {
		nft(t, ctx, node(h), `table inet ifldisc {
 chain output {
  type filter hook output priority 0; policy accept;
  udp sport 7440 ip daddr != 198.18.56.0/24 counter
  udp sport 7440 ip daddr 198.18.56.202 counter
  udp sport 7440 ip6 daddr != { 2001:db8:56::/64, fe80::/10 } counter
 }
}
`)
	}

	// A round before the attack: the inventory learns where each agent
	// is, IPv4, link-local and global IPv6.
	rep := broadcastRound(t, lan, 0)
	checkFound(t, "before the attack", rep, agents, target)

	att := attack{
		KeyFile: lan.NetworkKey, Port: lan.Port, CtrlMAC: lan.Controller.MAC, Ctrl4: lan.Controller.Addr, CtrlLL: lan.Controller.LinkLocal, Ctrl6: lan.Controller.Addr6,
		Rate: 100, Broadcast: a("198.18.56.255"), OffLink4: a("198.19.202.7"), OffLink6: a("2001:db8:ffff:1::7"), Victim: a("198.18.56.202"),
		Identity: target.Identity,
		Forged4:  addrRange("198.18.56.100", 20), Forged6: addrRange("2001:db8:56::f000:1", 20), ForgedLL: addrRange("fe80::f000:1", 20),
		Off4: addrRange("198.19.203.1", 5), Off6: addrRange("2001:db8:57::1", 5),
	}
	stop := startAttack(t, evil, att)

	for round := 1; round <= 5; round++ {
		nft(t, ctx, lan.Controller, "flush set inet ifldisc dialled4\nflush set inet ifldisc dialled6\n")
		rep := broadcastRound(t, lan, round)
		checkFound(t, fmt.Sprintf("round %d", round), rep, agents, target)
		d4, d6 := setElems(t, ctx, lan.Controller, "dialled4"), setElems(t, ctx, lan.Controller, "dialled6")
		var forged4, forged6, forgedLL []netip.Addr
		for _, d := range append(d4, d6...) {
			switch {
			case slices.Contains(att.Forged4, d):
				forged4 = append(forged4, d)
			case slices.Contains(att.Forged6, d):
				forged6 = append(forged6, d)
			case slices.Contains(att.ForgedLL, d):
				forgedLL = append(forgedLL, d)
			case !isAgentAddr(agents, d):
				t.Errorf("round %d: the controller dialled %v, neither an agent's address nor a forged one of the link", round, d)
			}
		}
		if len(forged4) != discover.MaxAddrsPerKind || len(forged6) != discover.MaxAddrsPerKind || len(forgedLL) != discover.MaxAddrsPerKind {
			t.Errorf("round %d: dialled forged addresses %v, %v, %v; want %d of each kind", round, forged4, forged6, forgedLL, discover.MaxAddrsPerKind)
		}
	}
	stop()

	// No agent answered off the link, or the victim.
	for _, h := range agents {
		out, err := node(h).Command(ctx, "nft", "list", "chain", "inet", "ifldisc", "output").CombinedOutput()
		if err != nil {
			t.Fatalf("%s: nft: %v: %s", h.Name, err, out)
		}
		counts := regexp.MustCompile(`counter packets (\d+)`).FindAllStringSubmatch(string(out), -1)
		if len(counts) != 3 {
			t.Fatalf("%s: %d counters in\n%s", h.Name, len(counts), out)
		}
		for i, what := range []string{"to IPv4 addresses off the link", "to the victim of TTL-64 queries", "to IPv6 addresses off the link"} {
			if counts[i][1] != "0" {
				t.Errorf("%s: %s answers %s", h.Name, counts[i][1], what)
			}
		}
	}

	// Nothing answers now: a round that should have heard six agents
	// says so, and exits 1.
	nft(t, ctx, lan.Controller, "add rule inet ifldisc input udp sport 7440 drop\n")
	_, stderr, code := iflWithoutNetRaw(t, lan, "probe", "--broadcast", "-o", "json")
	wantErr := fmt.Sprintf("ifl: probe --broadcast: no agent answered, though the inventory has %d agents on these links: ", len(agents))
	if code != 1 || !strings.Contains(stderr, wantErr) {
		t.Errorf("a silenced round: exit %d, stderr:\n%s\nwant exit 1 and %q", code, stderr, wantErr)
	}
}

// broadcastReport is what TestBroadcastUnderAttack reads of a round.
type broadcastReport struct {
	Hosts []struct {
		Address  string   `json:"address"`
		Status   string   `json:"status"`
		Identity string   `json:"identity"`
		AlsoAt   []string `json:"also_at"`
	} `json:"hosts"`
	Summary struct {
		Agents   int  `json:"agents"`
		Complete bool `json:"complete"`
	} `json:"summary"`
}

// broadcastRound runs ifl probe --broadcast on the default route's link.
func broadcastRound(t *testing.T, lan *testnet.LAN, round int) broadcastReport {
	t.Helper()
	stdout, stderr, code := iflWithoutNetRaw(t, lan, "probe", "--broadcast", "-o", "json")
	if code != 0 {
		t.Fatalf("round %d: exit %d: %s", round, code, stderr)
	}
	var rep broadcastReport
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("round %d: %v\n%s", round, err, stdout)
	}
	t.Logf("round %d: %+v; %s", round, rep.Summary, strings.TrimSpace(stderr))
	return rep
}

// checkFound checks that a round found every agent, each once, at its
// IPv4 address, and target also at its link-local and global IPv6 ones.
func checkFound(t *testing.T, what string, rep broadcastReport, agents []testnet.Host, target testnet.Host) {
	t.Helper()
	got := map[string]string{}
	for _, h := range rep.Hosts {
		if h.Status != "agent" {
			continue
		}
		got[h.Identity] = h.Address
		if h.Identity == target.Identity {
			want := []string{target.Addr6.String(), target.LinkLocal.String() + "%eth0"}
			if !slices.Equal(h.AlsoAt, want) {
				t.Errorf("%s: %s also at %v, want %v", what, target.Name, h.AlsoAt, want)
			}
		}
	}
	for _, h := range agents {
		if got[h.Identity] != h.Addr.String() {
			t.Errorf("%s: %s (%s) found at %q, want %v", what, h.Name, h.Identity, got[h.Identity], h.Addr)
		}
	}
	if rep.Summary.Agents != len(agents) || !rep.Summary.Complete {
		t.Errorf("%s: summary %+v, want %d agents, complete", what, rep.Summary, len(agents))
	}
}

func isAgentAddr(agents []testnet.Host, a netip.Addr) bool {
	for _, h := range agents {
		if a == h.Addr || a == h.Addr6 || a == h.LinkLocal {
			return true
		}
	}
	return false
}

func node(h testnet.Host) testnet.Node {
	return testnet.Node{Namespace: h.Namespace, Addr: h.Addr, MAC: h.MAC}
}

// nft runs an nft script in n's namespace.
func nft(t *testing.T, ctx context.Context, n testnet.Node, script string) {
	t.Helper()
	cmd := n.Command(ctx, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: nft: %v: %s\n%s", n.Namespace, err, out, script)
	}
}

// setElems lists a set of the controller's table.
func setElems(t *testing.T, ctx context.Context, n testnet.Node, set string) []netip.Addr {
	t.Helper()
	out, err := n.Command(ctx, "nft", "-j", "list", "set", "inet", "ifldisc", set).Output()
	if err != nil {
		t.Fatalf("nft list set %s: %v", set, err)
	}
	var doc struct {
		Nftables []struct {
			Set *struct {
				Elem []json.RawMessage `json:"elem"`
			} `json:"set"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatalf("nft list set %s: %v\n%s", set, err, out)
	}
	var addrs []netip.Addr
	for _, o := range doc.Nftables {
		if o.Set == nil {
			continue
		}
		for _, e := range o.Set.Elem {
			var s string
			if json.Unmarshal(e, &s) != nil {
				// A dynamic set's element may be an object:
				// {"elem": {"val": ADDR, ...}}.
				var obj struct {
					Elem struct {
						Val string `json:"val"`
					} `json:"elem"`
				}
				if err := json.Unmarshal(e, &obj); err != nil {
					t.Fatalf("nft set element %s: %v", e, err)
				}
				s = obj.Elem.Val
			}
			a, err := netip.ParseAddr(s)
			if err != nil {
				t.Fatalf("nft set element %s: %v", e, err)
			}
			addrs = append(addrs, a)
		}
	}
	return addrs
}

// startAttack runs the attacker in h's namespace, waits until it attacks,
// and returns a function that stops it (also run at cleanup).
func startAttack(t *testing.T, h testnet.Host, att attack) (stop func()) {
	t.Helper()
	b, err := json.Marshal(att)
	if err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", h.Namespace, self)
	cmd.Env = append(os.Environ(), envDiscAttack+"="+string(b))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			cmd.Process.Signal(syscall.SIGTERM)
			cmd.Wait()
		}
	}
	t.Cleanup(stop)
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "attacking\n" {
		stop()
		t.Fatalf("attacker: %q, %v", line, err)
	}
	return stop
}

// discAttack runs in the attacking host's namespace, until SIGTERM or
// three minutes have passed; it prints "attacking" once its listener is
// up and its first spoofed queries are out.
func discAttack(spec string) error {
	var att attack
	if err := json.Unmarshal([]byte(spec), &att); err != nil {
		return err
	}
	key, err := proto.LoadNetworkKey(att.KeyFile)
	if err != nil {
		return err
	}
	dk := key.DiscoveryKey()
	idb, err := hex.DecodeString(att.Identity)
	if err != nil || len(idb) != 16 {
		return fmt.Errorf("identity %q: want 32 hex digits", att.Identity)
	}
	fp := [16]byte(idb)
	ifi, err := net.InterfaceByName("eth0")
	if err != nil {
		return err
	}
	ctrlMAC, err := net.ParseMAC(att.CtrlMAC)
	if err != nil {
		return err
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, int(htons(unix.ETH_P_ALL)))
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	// send writes one UDP datagram in a frame of its own to dstMAC.
	// The flood and the forger send from goroutines of their own: one
	// frame built at a time.
	var sendMu sync.Mutex
	send := func(dstMAC net.HardwareAddr, src, dst netip.AddrPort, ttl uint8, payload []byte) error {
		sendMu.Lock()
		defer sendMu.Unlock()
		eth := &layers.Ethernet{SrcMAC: ifi.HardwareAddr, DstMAC: dstMAC}
		udp := &layers.UDP{SrcPort: layers.UDPPort(src.Port()), DstPort: layers.UDPPort(dst.Port())}
		var ip gopacket.SerializableLayer
		if src.Addr().Is4() {
			eth.EthernetType = layers.EthernetTypeIPv4
			ip4 := &layers.IPv4{Version: 4, TTL: ttl, Protocol: layers.IPProtocolUDP, SrcIP: src.Addr().AsSlice(), DstIP: dst.Addr().AsSlice()}
			udp.SetNetworkLayerForChecksum(ip4)
			ip = ip4
		} else {
			eth.EthernetType = layers.EthernetTypeIPv6
			ip6 := &layers.IPv6{Version: 6, HopLimit: ttl, NextHeader: layers.IPProtocolUDP, SrcIP: src.Addr().AsSlice(), DstIP: dst.Addr().AsSlice()}
			udp.SetNetworkLayerForChecksum(ip6)
			ip = ip6
		}
		if err := gopacket.SerializeLayers(buf, opts, eth, ip, udp, gopacket.Payload(payload)); err != nil {
			return err
		}
		var to [8]byte
		copy(to[:], dstMAC)
		return unix.Sendto(fd, buf.Bytes(), 0, &unix.SockaddrLinklayer{Ifindex: ifi.Index, Halen: 6, Addr: to})
	}

	// The forger: every query the controller sends, answered from the
	// forged addresses, claiming the target's identity.
	pc, err := net.ListenPacket("udp", fmt.Sprintf(":%d", att.Port))
	if err != nil {
		return err
	}
	defer pc.Close()
	own := map[[16]byte]bool{}
	ownCh := make(chan [16]byte, 1024)
	forgeErr := make(chan error, 1)
	go func() {
		for {
			var b [proto.QueryLen + 1]byte
			n, from, err := pc.(*net.UDPConn).ReadFromUDPAddrPort(b[:])
			if err != nil {
				forgeErr <- err
				return
			}
			for drained := false; !drained; {
				select {
				case nonce := <-ownCh:
					own[nonce] = true
				default:
					drained = true
				}
			}
			var q proto.Query
			if q.UnmarshalBinary(b[:n]) != nil || own[q.Nonce] {
				continue
			}
			if _, err := q.Check([]proto.DiscoveryKey{dk}, time.Now()); err != nil {
				continue
			}
			to := netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
			var srcs []netip.Addr
			if to.Addr().Is4() {
				srcs = append(slices.Clone(att.Forged4), att.Off4...)
			} else {
				srcs = append(append(slices.Clone(att.ForgedLL), att.Forged6...), att.Off6...)
			}
			for _, s := range srcs {
				ans, err := q.Answer(&dk, uint16(att.Port), fp)
				if err != nil {
					forgeErr <- err
					return
				}
				ab, _ := ans.MarshalBinary()
				if err := send(ctrlMAC, netip.AddrPortFrom(s, uint16(att.Port)), netip.AddrPortFrom(to.Addr().WithZone(""), to.Port()), 64, ab); err != nil {
					forgeErr <- err
					return
				}
			}
		}
	}()

	// The spoofer.
	bcastMAC := net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	allNodesMAC := net.HardwareAddr{0x33, 0x33, 0, 0, 0, 1}
	allNodes := netip.AddrPortFrom(discover.AllNodes, uint16(att.Port))
	bcast := netip.AddrPortFrom(att.Broadcast, uint16(att.Port))
	spoofs := []struct {
		mac      net.HardwareAddr
		src      netip.Addr
		dst      netip.AddrPort
		ttl      uint8
		stamp59s bool
	}{
		{bcastMAC, att.Ctrl4, bcast, 255, false},
		{bcastMAC, att.Ctrl4, bcast, 255, true},
		{allNodesMAC, att.CtrlLL, allNodes, 255, false},
		{allNodesMAC, att.CtrlLL, allNodes, 255, true},
		{allNodesMAC, att.Ctrl6, allNodes, 255, false},
		{allNodesMAC, att.Ctrl6, allNodes, 255, true},
		{bcastMAC, att.OffLink4, bcast, 255, false},
		{allNodesMAC, att.OffLink6, allNodes, 255, false},
		{bcastMAC, att.Victim, bcast, 64, false},
	}
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	// Each kind at Rate a second, the two stamps of one source together.
	tick := time.NewTicker(time.Second / time.Duration(att.Rate))
	defer tick.Stop()
	deadline := time.After(3 * time.Minute)
	for first := true; ; first = false {
		for _, s := range spoofs {
			at := time.Now()
			if s.stamp59s {
				at = at.Add(-59 * time.Second)
			}
			q, err := proto.NewQuery(&dk, at)
			if err != nil {
				return err
			}
			select {
			case ownCh <- q.Nonce:
			default:
			}
			b, _ := q.MarshalBinary()
			src := netip.AddrPortFrom(s.src, uint16(1024+rand.IntN(60000)))
			if err := send(s.mac, src, s.dst, s.ttl, b); err != nil {
				return err
			}
		}
		if first {
			fmt.Println("attacking")
		}
		select {
		case <-tick.C:
		case <-term:
			return nil
		case <-deadline:
			return nil
		case err := <-forgeErr:
			return err
		}
	}
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
