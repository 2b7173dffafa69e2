package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ifl-project/ifl/internal/testbed/testnet"
)

// envFlood makes the test binary the flooder of TestFloodSparesController.
const envFlood = "IFL_E2E_FLOOD"

// Flood shape: fast enough to recycle all 128 of the agent's places for
// connections in the handshake within the controller's round trip, even
// on a loaded machine that opens fewer than asked; bounded in time and in
// sockets held.
const (
	floodRate   = 3000 // connections a second
	floodHold   = time.Second
	floodLimit  = time.Minute
	floodRounds = 10
)

// TestFloodSparesController: an agent 100 ms away from its controller
// (50 ms each way, as over a long link) takes a flood of silent
// connections from another host of the segment, more than its places for
// connections in the handshake can hold within that round trip. The
// controller's ping must succeed in every round: the flood drops only its
// own connections.
func TestFloodSparesController(t *testing.T) {
	testnet.Require(t, false)
	spec := testnet.Spec{Name: "e2eflood", Prefix: netip.MustParsePrefix("198.19.44.0/28"), Port: 7440, Hosts: []testnet.HostSpec{
		{Role: testnet.Agent, Name: "far", Delay: 100 * time.Millisecond},
		{Role: testnet.Closed, Name: "flood"},
	}}
	lan := testnet.Start(t, spec, testnet.BuildIFL(t))
	far, flooder := lan.Hosts[0], lan.Hosts[1]

	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", flooder.Namespace, self)
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s,%d,%d", envFlood, netip.AddrPortFrom(far.Addr, uint16(lan.Port)), floodRate, int(floodHold/time.Millisecond)))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	out := bufio.NewReader(stdout)
	stopped := false
	var summary string
	stop := func() {
		if !stopped {
			stopped = true
			cmd.Process.Signal(syscall.SIGTERM)
			summary, _ = out.ReadString('\n')
			cmd.Wait()
		}
	}
	t.Cleanup(stop)
	// It says when a second of the flood is out.
	if line, err := out.ReadString('\n'); err != nil || line != "flooding\n" {
		t.Fatalf("flooder: %q, %v", line, err)
	}

	ok := 0
	for i := range floodRounds {
		_, stderr, code := ifl(t, lan, "ping", far.Addr.String())
		if code != 0 {
			t.Errorf("round %d: ping of the agent under the flood: exit %d: %s", i, code, stderr)
			continue
		}
		ok++
	}
	stop()
	t.Logf("%d of %d pings under the flood; flooder: %s", ok, floodRounds, strings.TrimSpace(summary))

	// The flood was real: the agent recycled its places many times over.
	log, err := os.ReadFile(filepath.Join(lan.Dir, far.Name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	evicted := strings.Count(string(log), `"event":"evicted"`)
	if evicted < 10*128 {
		t.Errorf("the agent dropped %d connections for newcomers, want the flood to have filled its 128 places ten times at least", evicted)
	}
	if n := strings.Count(string(log), `"event":"evicted","remote":"`+lan.Controller.Addr.String()+":"); n != 0 {
		t.Errorf("the agent dropped %d of the controller's connections", n)
	}
}

// flood runs in the flooding host's namespace: ADDR,RATE,HOLD-MS. It opens
// RATE connections a second to ADDR and sends nothing on them; each is
// closed when the agent closes it, or after HOLD-MS. It prints "flooding"
// after its first second, and on SIGTERM (or after floodLimit) stops and
// prints how many connections it opened and how many the agent closed.
func flood(spec string) error {
	f := strings.Split(spec, ",")
	if len(f) != 3 {
		return fmt.Errorf("%s=%q: want ADDR,RATE,HOLD-MS", envFlood, spec)
	}
	addr := f[0]
	rate, err := strconv.Atoi(f[1])
	if err != nil || rate < 100 {
		return fmt.Errorf("%s: rate %q: want 100 or more", envFlood, f[1])
	}
	holdMS, err := strconv.Atoi(f[2])
	if err != nil {
		return err
	}
	hold := time.Duration(holdMS) * time.Millisecond
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer cancel()
	ctx, cancelLimit := context.WithTimeout(ctx, floodLimit)
	defer cancelLimit()
	var opened, closedByAgent atomic.Int64
	var wg sync.WaitGroup
	// A batch every 10 ms.
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	d := net.Dialer{Timeout: time.Second}
	start := time.Now()
	said := false
	for ctx.Err() == nil {
		for range rate / 100 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, err := d.DialContext(ctx, "tcp", addr)
				if err != nil {
					return
				}
				defer c.Close()
				opened.Add(1)
				c.SetReadDeadline(time.Now().Add(hold))
				var b [1]byte
				if _, err := c.Read(b[:]); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
					closedByAgent.Add(1)
				}
			}()
		}
		if !said && time.Since(start) >= time.Second {
			said = true
			fmt.Println("flooding")
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
		}
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	fmt.Printf("%d connections in %.1fs (%.0f/s), %d closed by the agent\n", opened.Load(), secs, float64(opened.Load())/secs, closedByAgent.Load())
	return nil
}
