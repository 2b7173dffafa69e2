package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/ifl-project/ifl/proto"
)

// dialFrom connects to the agent from src, one of the loopback addresses,
// as from another machine.
func dialFrom(t *testing.T, ta *testAgent, src string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c, err := d.Dial("tcp", ta.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// pingFrom pings over a connection of its own from src, and closes it.
func pingFrom(t *testing.T, ta *testAgent, src string) (*proto.Facts, error) {
	t.Helper()
	pc := proto.Client(dialFrom(t, ta, src), &proto.ClientConfig{NetworkKey: ta.key, ExpectIdentity: ta.Identity()})
	defer pc.Close()
	return pingOn(pc)
}

func pingOn(pc *proto.Conn) (*proto.Facts, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return pc.Ping(ctx)
}

// heldConn is a verified connection kept open.
type heldConn struct {
	c  net.Conn
	pc *proto.Conn
}

// holdVerified pings from src and keeps the connection open and idle, as
// a key holder that wants to hold the agent's places would.
func holdVerified(t *testing.T, ta *testAgent, src string) (heldConn, error) {
	t.Helper()
	c := dialFrom(t, ta, src)
	pc := proto.Client(c, &proto.ClientConfig{NetworkKey: ta.key})
	_, err := pingOn(pc)
	return heldConn{c, pc}, err
}

// TestKeyHolderCannotHoldEverySlot: a holder of the network key opens
// connections, pings once on each and keeps them idle, from one address
// and then from eight. A controller from another address still pings,
// and the places given up are exactly the holder's least recently active.
func TestKeyHolderCannotHoldEverySlot(t *testing.T) {
	t.Run("one address", func(t *testing.T) {
		ta := startAgent(t, nil)
		const n = DefaultMaxConns + 6
		held := make([]heldConn, n)
		for i := range held {
			var err error
			if held[i], err = holdVerified(t, ta, "127.0.0.2"); err != nil {
				t.Errorf("key holder's connection %d: %v", i, err)
			}
		}
		if _, err := pingFrom(t, ta, "127.0.0.3"); err != nil {
			t.Fatalf("controller's ping while one key holder opened %d connections: %v", n, err)
		}
		// The holder keeps its last DefaultMaxConnsPerSource.
		for i, h := range held {
			if i < n-DefaultMaxConnsPerSource {
				closedByAgent(t, h.c)
			} else if _, err := pingOn(h.pc); err != nil {
				t.Errorf("connection %d, among the holder's last %d: %v", i, DefaultMaxConnsPerSource, err)
			}
		}
	})
	t.Run("eight addresses", func(t *testing.T) {
		ta := startAgent(t, nil)
		var held []heldConn
		for i := range DefaultMaxConns {
			src := fmt.Sprintf("127.0.0.%d", 10+i/DefaultMaxConnsPerSource)
			pc, err := holdVerified(t, ta, src)
			if err != nil {
				t.Fatalf("key holder's connection %d from %s: %v", i, src, err)
			}
			held = append(held, pc)
		}
		if _, err := pingFrom(t, ta, "127.0.0.3"); err != nil {
			t.Fatalf("controller's ping while a key holder holds every place: %v", err)
		}
		// Every address holds as many: the least recently active of all
		// gave way, and only it.
		closedByAgent(t, held[0].c)
		for i, h := range held[1:] {
			if _, err := pingOn(h.pc); err != nil {
				t.Errorf("connection %d: %v", i+1, err)
			}
		}
	})
}

// blockingFacts makes every ping wait for release, and reports on
// requests each request the agent logs, so that a test knows when
// connections are being served.
func blockingFacts(o *Options, release <-chan struct{}) {
	o.FactsTTL = -1
	o.Facts = func(v string, labels map[string]string) (*proto.Facts, error) {
		<-release
		return &proto.Facts{Hostname: "h", AgentVersion: v, Labels: labels}, nil
	}
}

// TestFullAgentAnswersBusy fills the agent's verified places with
// connections whose pings are being served: a newcomer over a cap is told
// that the agent is busy, never that its key is wrong, and the others go
// on.
func TestFullAgentAnswersBusy(t *testing.T) {
	release := make(chan struct{})
	ta := startAgent(t, func(o *Options) {
		o.MaxConns = 3
		o.MaxConnsPerSource = 2
		blockingFacts(o, release)
	})
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	serve := func(src string) {
		c := dialFrom(t, ta, src)
		wg.Add(1)
		go func() {
			defer wg.Done()
			pc := proto.Client(c, &proto.ClientConfig{NetworkKey: ta.key})
			_, err := pingOn(pc)
			errs <- err
		}()
	}
	defer func() {
		close(release)
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Errorf("a ping held while the agent was full: %v", err)
			}
		}
	}()
	serve("127.0.0.2")
	serve("127.0.0.2")
	ta.logs.waitFor(t, "request", 2)

	busy := func(src string) {
		t.Helper()
		_, err := pingFrom(t, ta, src)
		var perr *proto.Error
		if !errors.Is(err, proto.ErrBusy) || !errors.As(err, &perr) || perr.Code != proto.CodeBusy {
			t.Errorf("ping from %s: got %v, want an error of code %q", src, err, proto.CodeBusy)
		}
		if errors.Is(err, proto.ErrRejected) {
			t.Errorf("a busy agent reported as a rejection: %v", err)
		}
	}
	// Over its address's cap.
	busy("127.0.0.2")
	// Another address has room, until the total cap.
	serve("127.0.0.3")
	ta.logs.waitFor(t, "request", 3)
	busy("127.0.0.4")
	if n := len(ta.logs.events("refused")); n != 2 {
		t.Errorf("%d refused events, want 2: %v", n, ta.logs.events("refused"))
	}
}

// TestFloodEvictsOnlyItsOwn: a silent flood from one address recycles the
// places of connections still in the handshake, and a controller from
// another address, whose handshake began before most of the flood, still
// completes it.
func TestFloodEvictsOnlyItsOwn(t *testing.T) {
	const places, flood = 8, 20
	ta := startAgent(t, func(o *Options) {
		o.MaxPending = places
		o.HandshakeTimeout = time.Hour // silence alone ends nothing here
	})
	for range places {
		dialFrom(t, ta, "127.0.0.2")
	}
	ta.logs.waitFor(t, "accepted", places)
	ctl := dialFrom(t, ta, "127.0.0.3")
	ta.logs.waitFor(t, "accepted", places+1)
	for range flood {
		dialFrom(t, ta, "127.0.0.2")
	}
	ta.logs.waitFor(t, "accepted", places+1+flood)
	pc := proto.Client(ctl, &proto.ClientConfig{NetworkKey: ta.key})
	if _, err := pingOn(pc); err != nil {
		t.Fatalf("controller's ping begun before a flood of %d from another address: %v", flood, err)
	}
	ev := ta.logs.events("evicted")
	if len(ev) != flood+1 {
		t.Errorf("%d evicted, want %d", len(ev), flood+1)
	}
	for _, e := range ev {
		if r, _ := e["remote"].(string); netip.MustParseAddrPort(r).Addr() != netip.MustParseAddr("127.0.0.2") {
			t.Errorf("evicted a connection from %s", r)
		}
	}
}

// TestWelcomedOutlastsSilent: among sources that hold as many
// connections in the handshake, a connection whose hello was answered
// outlasts silent ones, even older.
func TestWelcomedOutlastsSilent(t *testing.T) {
	const places = 4
	ta := startAgent(t, func(o *Options) {
		o.MaxPending = places
		o.HandshakeTimeout = time.Hour
	})
	pc := proto.Client(dialFrom(t, ta, "127.0.0.3"), &proto.ClientConfig{NetworkKey: ta.key})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := pc.Handshake(ctx); err != nil {
		t.Fatal(err)
	}
	// The controller has the welcome before the agent has marked its
	// connection welcomed.
	ta.logs.waitFor(t, "welcomed", 1)
	// One silent connection from each of more addresses than there are
	// places.
	for i := range 2 * places {
		dialFrom(t, ta, fmt.Sprintf("127.0.0.%d", 10+i))
	}
	ta.logs.waitFor(t, "accepted", 1+2*places)
	if _, err := pingOn(pc); err != nil {
		t.Fatalf("welcomed controller's ping after %d silent connections: %v", 2*places, err)
	}
}

// TestNewAgentIsSmall: an agent that nobody has talked to yet holds
// little memory, whatever its caps allow it to hold under load.
func TestNewAgentIsSmall(t *testing.T) {
	const most = 256 << 10
	heap := func() int64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return int64(m.HeapAlloc)
	}
	key, _ := proto.NewNetworkKey()
	id, _ := proto.NewIdentity()
	before := heap()
	a, err := New(Options{NetworkKeys: []proto.NetworkKey{key}, Identity: id})
	if err != nil {
		t.Fatal(err)
	}
	if got := heap() - before; got > most {
		t.Errorf("a new agent takes %d bytes, want at most %d", got, most)
	}
	runtime.KeepAlive(a)
}
