package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"golang.org/x/sys/unix"

	"github.com/ifl-project/ifl/internal/testbed/testnet"
)

// envForge makes the test binary the forger of TestScanIgnoresForgedAnswers.
const envForge = "IFL_E2E_FORGE"

// TestScanIgnoresForgedAnswers scans a firewalled port while the host
// behind it answers every source port the scanner may use with SYN-ACKs
// and RSTs whose acknowledgement numbers prove nothing: the port must
// still be filtered, and the other hosts' real answers still count.
func TestScanIgnoresForgedAnswers(t *testing.T) {
	testnet.Require(t, true)
	spec := testnet.Spec{Name: "e2eforge", Prefix: netip.MustParsePrefix("198.18.14.0/28"), Port: 7440,
		Hosts: []testnet.HostSpec{{Role: testnet.Dropped}, {Role: testnet.Closed}, {Role: testnet.Agent}}}
	lan := testnet.Start(t, spec, testnet.BuildIFL(t))
	var forger testnet.Host
	want := map[string]string{}
	var targets []string
	for _, h := range lan.Hosts {
		state := map[testnet.Role]string{testnet.Dropped: "filtered", testnet.Closed: "closed", testnet.Agent: "open"}[h.Role]
		want[h.Addr.String()] = state
		targets = append(targets, h.Addr.String())
		if h.Role == testnet.Dropped {
			forger = h
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// The scanner takes its source ports above the kernel's ephemeral
	// range, or below it when there is no room above (synscan's
	// sourcePortBase); the forger covers all of that.
	out, err := lan.Controller.Command(ctx, "cat", "/proc/sys/net/ipv4/ip_local_port_range").Output()
	if err != nil {
		t.Fatal(err)
	}
	var lo, hi int
	if _, err := fmt.Sscan(string(out), &lo, &hi); err != nil {
		t.Fatalf("ip_local_port_range %q: %v", out, err)
	}
	first, last := hi+1, 65535
	if hi+1+1024 > 65535 {
		first, last = 1024, lo-1
	}

	// Count the forged SYN-ACKs that reach the controller.
	rules := fmt.Sprintf("table inet iflforge {\n chain input {\n  type filter hook input priority 0; policy accept;\n  ip saddr %s tcp sport %d tcp flags & (syn|ack) == syn|ack counter\n }\n}\n", forger.Addr, lan.Port)
	nft := lan.Controller.Command(ctx, "nft", "-f", "-")
	nft.Stdin = strings.NewReader(rules)
	if out, err := nft.CombinedOutput(); err != nil {
		t.Fatalf("nft: %v: %s", err, out)
	}

	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", forger.Namespace, self)
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s,%s,%d,%d,%d", envForge, forger.Addr, lan.Controller.Addr, lan.Port, first, last))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			cmd.Process.Signal(syscall.SIGTERM)
			cmd.Wait()
		}
	}
	t.Cleanup(stop)
	// It says when its first round is out.
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "forging\n" {
		t.Fatalf("forger: %q, %v", line, err)
	}

	args := append([]string{"scan", "-p", fmt.Sprint(lan.Port), "--all", "--json"}, targets...)
	sout, serr, code := ifl(t, lan, args...)
	stop()
	if code != 0 {
		t.Fatalf("exit %d: %s", code, serr)
	}
	var rep scanReport
	if err := json.Unmarshal([]byte(sout), &rep); err != nil {
		t.Fatalf("%v\n%s", err, sout)
	}
	got := map[string]string{}
	for _, p := range rep.Ports {
		got[p.Address] = p.Status
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("port states (-want +got):\n%s", diff)
	}

	out, err = lan.Controller.Command(ctx, "nft", "list", "table", "inet", "iflforge").Output()
	if err != nil {
		t.Fatal(err)
	}
	i := strings.Index(string(out), "counter packets ")
	if i < 0 {
		t.Fatalf("no counter in the controller's rules:\n%s", out)
	}
	f := strings.Fields(string(out[i:]))
	if n, _ := strconv.Atoi(f[2]); n < last-first+1 {
		t.Errorf("%d forged SYN-ACKs reached the controller, want a round at least (%d)\n%s", n, last-first+1, out)
	}
}

// forge runs in the forging host's namespace: from SRC:PORT it sends a
// SYN-ACK and a RST-ACK with random acknowledgement numbers to every port
// FIRST..LAST of DST, round after round, until it is stopped (or a
// minute has passed). It prints "forging" after the first round.
func forge(spec string) error {
	f := strings.Split(spec, ",")
	if len(f) != 5 {
		return fmt.Errorf("%s=%q: want SRC,DST,PORT,FIRST,LAST", envForge, spec)
	}
	s, err := netip.ParseAddr(f[0])
	if err != nil {
		return err
	}
	d, err := netip.ParseAddr(f[1])
	if err != nil {
		return err
	}
	var port, first, last int
	for i, p := range []*int{&port, &first, &last} {
		if *p, err = strconv.Atoi(f[2+i]); err != nil {
			return err
		}
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	to := &unix.SockaddrInet4{Addr: d.As4()}
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	deadline := time.Now().Add(time.Minute)
	// About 40,000 packets a second: enough to cover the window several
	// times during a scan, not so many that the scanner's socket buffer
	// overflows and loses the real answers.
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	for round := 0; time.Now().Before(deadline); round++ {
		for dport := first; dport <= last; dport++ {
			for _, rst := range []bool{false, true} {
				ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: s.AsSlice(), DstIP: d.AsSlice()}
				tcp := &layers.TCP{SrcPort: layers.TCPPort(port), DstPort: layers.TCPPort(dport),
					Seq: rand.Uint32(), Ack: rand.Uint32(), ACK: true, SYN: !rst, RST: rst, Window: 64240}
				tcp.SetNetworkLayerForChecksum(ip)
				if err := gopacket.SerializeLayers(buf, opts, ip, tcp); err != nil {
					return err
				}
				if err := unix.Sendto(fd, buf.Bytes(), 0, to); err != nil {
					return err
				}
			}
			if dport%500 == 0 {
				<-tick.C
			}
		}
		if round == 0 {
			fmt.Println("forging")
		}
	}
	return nil
}
