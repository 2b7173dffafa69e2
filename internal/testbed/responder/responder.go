package responder

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"sync/atomic"
	"time"
)

// Bounds of a Config.
const (
	// MaxHosts is the most addresses one responder answers for: every
	// address of 198.18.0.0/15, the test range.
	MaxHosts = 1 << 17
	// MaxDelay is the longest a group's replies wait.
	MaxDelay = 2 * time.Second
	// DefaultQueue is how many delayed replies wait at most by default;
	// past it, a reply is dropped, as by a full device queue.
	DefaultQueue = 16384
	// MaxQueue bounds Config.Queue.
	MaxQueue = 1 << 20
)

// Group is how some of the hosts behave.
type Group struct {
	// Open ports answer a SYN with a SYN-ACK.
	Open []uint16 `json:"open,omitempty" yaml:"open,omitempty"`
	// Filtered ports answer nothing, as behind a firewall that drops
	// them.
	Filtered []uint16 `json:"filtered,omitempty" yaml:"filtered,omitempty"`
	// FilterRest makes every port that is not open filtered; by default
	// the others are closed: they answer a SYN with a reset.
	FilterRest bool `json:"filter_rest,omitempty" yaml:"filter_rest,omitempty"`
	// Delay is how long every reply (ARP and TCP) waits before it goes.
	Delay time.Duration `json:"delay,omitempty" yaml:"delay,omitempty"`
	// Loss is the percentage of ARP requests and SYNs left unanswered,
	// at random.
	Loss int `json:"loss,omitempty" yaml:"loss,omitempty"`
}

// Host is one address answered for, and the index of its group in
// Config.Groups.
type Host struct {
	Addr  netip.Addr `json:"addr"`
	Group int        `json:"group"`
}

// Config is what a responder answers for.
type Config struct {
	// LinkMAC is the MAC of the responder's own link: a SYN sent there
	// for one of its addresses is answered as if sent to the host's own
	// MAC, as a gateway that sends it on would have it answered (a
	// scanner that sends every frame to one MAC, as masscan does, is
	// given it as its router's). Replies always come from the host's MAC.
	LinkMAC net.HardwareAddr `json:"-"`
	Groups  []Group          `json:"groups"`
	Hosts   []Host           `json:"hosts"`
	// Seed keys the SYN-ACKs' sequence numbers and the losses.
	Seed uint64 `json:"seed"`
	// Queue is how many delayed replies wait at most; 0: DefaultQueue.
	Queue int `json:"queue,omitempty"`
}

// MAC is the MAC of the host at an IPv4 address: 02:18 (locally
// administered) followed by the address's four bytes, so that a MAC
// names its address in every capture.
func MAC(a netip.Addr) [6]byte {
	b := a.As4()
	return [6]byte{0x02, 0x18, b[0], b[1], b[2], b[3]}
}

// Check checks c against the bounds above.
func (c *Config) Check() error {
	if len(c.LinkMAC) != 6 {
		return fmt.Errorf("responder: link MAC %v: want 6 bytes", c.LinkMAC)
	}
	if len(c.Hosts) > MaxHosts {
		return fmt.Errorf("responder: %d hosts: at most %d", len(c.Hosts), MaxHosts)
	}
	if c.Queue < 0 || c.Queue > MaxQueue {
		return fmt.Errorf("responder: queue %d: want 0 (the default, %d) to %d", c.Queue, DefaultQueue, MaxQueue)
	}
	for i, g := range c.Groups {
		if err := g.check(); err != nil {
			return fmt.Errorf("responder: group %d: %w", i, err)
		}
	}
	seen := make(map[netip.Addr]bool, len(c.Hosts))
	for _, h := range c.Hosts {
		switch {
		case !h.Addr.Is4():
			return fmt.Errorf("responder: host %v: want an IPv4 address", h.Addr)
		case seen[h.Addr]:
			return fmt.Errorf("responder: host %v listed twice", h.Addr)
		case h.Group < 0 || h.Group >= len(c.Groups):
			return fmt.Errorf("responder: host %v: group %d: want 0 to %d", h.Addr, h.Group, len(c.Groups)-1)
		}
		seen[h.Addr] = true
	}
	return nil
}

func (g *Group) check() error {
	for _, p := range g.Open {
		if p == 0 {
			return fmt.Errorf("open port 0: want 1-65535")
		}
		if slices.Contains(g.Filtered, p) {
			return fmt.Errorf("port %d both open and filtered", p)
		}
	}
	if slices.Contains(g.Filtered, 0) {
		return fmt.Errorf("filtered port 0: want 1-65535")
	}
	if g.Delay < 0 || g.Delay > MaxDelay {
		return fmt.Errorf("delay %v: want 0 to %v", g.Delay, MaxDelay)
	}
	if g.Loss < 0 || g.Loss > 100 {
		return fmt.Errorf("loss %d%%: want 0-100", g.Loss)
	}
	return nil
}

// State is what a port of a host answers.
type State uint8

// States.
const (
	Closed   State = iota // a reset
	Open                  // a SYN-ACK
	Filtered              // nothing
)

// Port returns what port answers on the hosts of g.
func (g *Group) Port(port uint16) State {
	switch {
	case slices.Contains(g.Open, port):
		return Open
	case g.FilterRest || slices.Contains(g.Filtered, port):
		return Filtered
	}
	return Closed
}

// Stats count what a responder did.
type Stats struct {
	ARP    uint64 `json:"arp"`     // ARP replies
	SynAck uint64 `json:"syn_ack"` // open ports
	Reset  uint64 `json:"reset"`   // closed ports
	// Filtered counts SYNs to filtered ports, Lost the requests and SYNs
	// left unanswered by a group's loss.
	Filtered uint64 `json:"filtered"`
	Lost     uint64 `json:"lost"`
	// Delayed counts the replies that waited; QueueFull those dropped
	// because Config.Queue were waiting already.
	Delayed   uint64 `json:"delayed"`
	QueueFull uint64 `json:"queue_full"`
	// Others counts frames read that asked nothing of any of its hosts.
	Others uint64 `json:"others"`
	// KernelDrops counts the frames the kernel dropped before the
	// responder read them, its socket being full: a responder that
	// falls behind shows here.
	KernelDrops uint64 `json:"kernel_drops"`
	// WriteErrors counts replies the kernel refused.
	WriteErrors uint64 `json:"write_errors"`
}

// stats are Stats counted from two goroutines.
type stats struct {
	arp, synAck, reset, filtered, lost, delayed, queueFull, others, writeErrors atomic.Uint64
}

func (s *stats) snapshot() Stats {
	return Stats{ARP: s.arp.Load(), SynAck: s.synAck.Load(), Reset: s.reset.Load(), Filtered: s.filtered.Load(),
		Lost: s.lost.Load(), Delayed: s.delayed.Load(), QueueFull: s.queueFull.Load(), Others: s.others.Load(), WriteErrors: s.writeErrors.Load()}
}

// table is a Config made ready to answer frames. answer is called from
// one goroutine.
type table struct {
	link   [6]byte
	hosts  map[[4]byte]int32 // group index by address
	groups []Group
	seed   uint64
	rng    *rand.Rand
	frame  Frame
	st     stats
}

func newTable(c *Config) (*table, error) {
	if err := c.Check(); err != nil {
		return nil, err
	}
	t := &table{hosts: make(map[[4]byte]int32, len(c.Hosts)), groups: slices.Clone(c.Groups), seed: c.Seed,
		rng: rand.New(rand.NewPCG(c.Seed, c.Seed^0x9e3779b97f4a7c15))}
	copy(t.link[:], c.LinkMAC)
	for _, h := range c.Hosts {
		t.hosts[h.Addr.As4()] = int32(h.Group)
	}
	return t, nil
}

var broadcast = [6]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// answer decides what frame in gets: its reply, written into out
// (MaxReply bytes at least), and how long the reply waits; n is 0 for no
// reply. A host answers what reaches it: an ARP request broadcast or sent
// to its MAC, a SYN sent to its MAC; and the responder's own MAC stands
// for every host's.
func (t *table) answer(in []byte, csumReady bool, out []byte) (n int, delay time.Duration) {
	f := &t.frame
	if !Decode(in, csumReady, f) {
		t.st.others.Add(1)
		return 0, 0
	}
	var ip [4]byte
	switch f.Kind {
	case ARPRequest:
		ip = f.TargetIP
		// An announcement of the address (its sender's own) asks
		// nothing.
		if f.SenderIP == f.TargetIP {
			t.st.others.Add(1)
			return 0, 0
		}
	case TCPSyn:
		ip = f.DstIP
	}
	gi, ok := t.hosts[ip]
	if !ok {
		t.st.others.Add(1)
		return 0, 0
	}
	mac := MAC(netip.AddrFrom4(ip))
	if f.DstMAC != mac && f.DstMAC != t.link && (f.Kind != ARPRequest || f.DstMAC != broadcast) {
		t.st.others.Add(1)
		return 0, 0
	}
	g := &t.groups[gi]
	if g.Loss > 0 && t.rng.IntN(100) < g.Loss {
		t.st.lost.Add(1)
		return 0, 0
	}
	switch {
	case f.Kind == ARPRequest:
		t.st.arp.Add(1)
		return ARPReply(out, mac, ip, f), g.Delay
	case g.Port(f.DstPort) == Open:
		t.st.synAck.Add(1)
		return SynAck(out, mac, f, t.isn(f)), g.Delay
	case g.Port(f.DstPort) == Closed:
		t.st.reset.Add(1)
		return Reset(out, mac, f), g.Delay
	}
	t.st.filtered.Add(1)
	return 0, 0
}

// isn is the initial sequence number of a SYN-ACK: a keyed hash of the
// connection's addresses and ports, so that a SYN sent again gets the
// same answer, and nothing is kept per connection.
func (t *table) isn(f *Frame) uint32 {
	x := t.seed
	x = mix(x ^ uint64(binary.BigEndian.Uint32(f.SrcIP[:]))<<32 ^ uint64(binary.BigEndian.Uint32(f.DstIP[:])))
	x = mix(x ^ uint64(f.SrcPort)<<16 ^ uint64(f.DstPort))
	return uint32(x >> 32)
}

// mix is splitmix64's finaliser.
func mix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}
