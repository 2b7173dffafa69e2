package synscan

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// fakeNet is a PacketIO standing in for raw sockets on a network of fake
// hosts, each answering SYNs as its kind says. Its hosts answer on the
// sender's goroutine (or a timer's, for slow ones), as a kernel would on
// a LAN, so a test knows what was sent when Stream returns.
type fakeNet struct {
	first, n   uint16
	src4, src6 netip.Addr

	mu    sync.Mutex
	hosts map[netip.Addr]*fakeHost
	sent  map[key][]time.Time // SYNs received (connect: dials), by target
	// timeouts are the times connect dials were given, by target.
	timeouts map[key][]time.Duration
	enobufs  int      // sends to refuse with ENOBUFS first
	sendErr  error    // when set, every send fails with it
	badSums  int      // SYNs whose checksum did not verify
	synSeen  chan key // when set, told of every SYN (never blocks)
	// overflow answers are dropped as a full socket drops them, and
	// counted in drops, which Drops reports as a dropCounter does.
	overflow int
	drops    uint64

	segs     chan fakeSeg
	deadline time.Time
	wake     chan struct{}
	closed   bool
	timers   []*time.Timer
}

// fakeHost is a host of a fakeNet. The zero value closes every port.
type fakeHost struct {
	open     []uint16 // ports that answer SYN-ACK; the others RST
	dropped  []uint16 // ports whose SYNs it drops
	filtered bool     // drops every SYN
	// lose, when set, drops the try-th SYN (from 1) to a port: a lossy
	// host.
	lose  func(try int) bool
	delay time.Duration // answers this late: a slow host
	// unreachable: no route to it.
	unreachable bool
}

// drops reports whether h drops the try-th SYN to port.
func (h *fakeHost) drops(port uint16, try int) bool {
	return h.filtered || slices.Contains(h.dropped, port) || (h.lose != nil && h.lose(try))
}

type fakeSeg struct {
	b        []byte
	src, dst netip.Addr
	at       time.Time // delivered, as a kernel's receive timestamp
}

func newFakeNet() *fakeNet {
	return &fakeNet{
		first: 61000, n: srcPorts,
		src4:     netip.MustParseAddr("198.18.40.1"),
		src6:     netip.MustParseAddr("2001:db8:5::1"),
		hosts:    map[netip.Addr]*fakeHost{},
		sent:     map[key][]time.Time{},
		timeouts: map[key][]time.Duration{},
		segs:     make(chan fakeSeg, 4096),
		wake:     make(chan struct{}, 1),
	}
}

func (f *fakeNet) add(addr string, h *fakeHost) netip.Addr {
	a := netip.MustParseAddr(addr)
	f.mu.Lock()
	f.hosts[a] = h
	f.mu.Unlock()
	return a
}

// syns returns the times SYNs were sent to t.
func (f *fakeNet) syns(t Target) []time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]time.Time(nil), f.sent[t.key()]...)
}

func (f *fakeNet) Ports() (uint16, uint16) { return f.first, f.n }

func (f *fakeNet) Source(dst netip.Addr) (netip.Addr, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if h := f.hosts[dst]; h != nil && h.unreachable {
		return netip.Addr{}, syscall.ENETUNREACH
	}
	if dst.Is4() {
		return f.src4, nil
	}
	return f.src6, nil
}

func (f *fakeNet) WriteTo(seg []byte, src, dst netip.Addr) error {
	now := time.Now()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.sendErr != nil {
		return f.sendErr
	}
	if f.enobufs > 0 {
		f.enobufs--
		return syscall.ENOBUFS
	}
	var syn layers.TCP
	if err := syn.DecodeFromBytes(seg, gopacket.NilDecodeFeedback); err != nil || !syn.SYN || syn.ACK {
		return errors.New("fake: not a SYN")
	}
	if !checksumOK(seg, src, dst) {
		f.badSums++
		return nil
	}
	k := key{dst, uint16(syn.DstPort)}
	f.sent[k] = append(f.sent[k], now)
	if f.synSeen != nil {
		select {
		case f.synSeen <- k:
		default:
		}
	}
	h := f.hosts[dst]
	if h == nil || h.drops(k.port, len(f.sent[k])) {
		return nil
	}
	open := false
	for _, p := range h.open {
		open = open || p == uint16(syn.DstPort)
	}
	r := &layers.TCP{SrcPort: syn.DstPort, DstPort: syn.SrcPort, Seq: 4242, Ack: syn.Seq + 1, ACK: true, SYN: open, RST: !open, Window: 64240}
	b, err := serializeTCP(r, dst, src)
	if err != nil {
		return err
	}
	s := fakeSeg{b: b, src: dst, dst: src}
	if h.delay > 0 {
		f.timers = append(f.timers, time.AfterFunc(h.delay, func() { f.deliver(s) }))
		return nil
	}
	f.deliverLocked(s)
	return nil
}

func (f *fakeNet) deliver(s fakeSeg) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.deliverLocked(s)
}

func (f *fakeNet) deliverLocked(s fakeSeg) {
	if f.closed {
		return
	}
	s.at = time.Now()
	if f.overflow > 0 {
		f.overflow--
		f.drops++
		return
	}
	select {
	case f.segs <- s:
	default: // a full socket drops it
	}
}

func (f *fakeNet) ReadFrom(b []byte) (int, Arrival, error) {
	for {
		f.mu.Lock()
		dl, closed := f.deadline, f.closed
		f.mu.Unlock()
		if closed {
			return 0, Arrival{}, net.ErrClosed
		}
		var timeout <-chan time.Time
		if !dl.IsZero() {
			d := time.Until(dl)
			if d <= 0 {
				return 0, Arrival{}, os.ErrDeadlineExceeded
			}
			t := time.NewTimer(d)
			defer t.Stop()
			timeout = t.C
		}
		select {
		case s := <-f.segs:
			return copy(b, s.b), Arrival{From: s.src, To: s.dst, At: s.at}, nil
		case <-timeout:
			return 0, Arrival{}, os.ErrDeadlineExceeded
		case <-f.wake: // the deadline changed, or it closed
		}
	}
}

// Drops implements dropCounter.
func (f *fakeNet) Drops() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.drops
}

func (f *fakeNet) SetReadDeadline(t time.Time) error {
	f.mu.Lock()
	f.deadline = t
	f.mu.Unlock()
	f.poke()
	return nil
}

func (f *fakeNet) poke() {
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

func (f *fakeNet) Close() error {
	f.mu.Lock()
	f.closed = true
	for _, t := range f.timers {
		t.Stop()
	}
	f.mu.Unlock()
	f.poke()
	return nil
}

// serializeTCP returns the segment tcp, its checksum over the
// pseudo-header from src to dst.
func serializeTCP(tcp *layers.TCP, src, dst netip.Addr) ([]byte, error) {
	var nl gopacket.NetworkLayer = &layers.IPv4{SrcIP: src.AsSlice(), DstIP: dst.AsSlice(), Protocol: layers.IPProtocolTCP}
	if src.Is6() {
		nl = &layers.IPv6{SrcIP: src.AsSlice(), DstIP: dst.AsSlice(), NextHeader: layers.IPProtocolTCP}
	}
	if err := tcp.SetNetworkLayerForChecksum(nl); err != nil {
		return nil, err
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, tcp); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// checksumOK verifies a TCP segment's checksum over its pseudo-header
// (RFC 793 for IPv4, RFC 8200 section 8.1 for IPv6), written out here
// rather than with gopacket, which computed it.
func checksumOK(seg []byte, src, dst netip.Addr) bool {
	var sum uint32
	add := func(b []byte) {
		for i := 0; i+1 < len(b); i += 2 {
			sum += uint32(binary.BigEndian.Uint16(b[i:]))
		}
		if len(b)%2 == 1 {
			sum += uint32(b[len(b)-1]) << 8
		}
	}
	add(src.AsSlice())
	add(dst.AsSlice())
	sum += uint32(len(seg)) + 6
	add(seg)
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return sum == 0xffff
}

// dial is Connect's dial over the hosts of f: it records the dial as a
// SYN (and the time it was given in f.timeouts), and answers as the host
// would, at once or after its delay; a dial that gets no answer waits for
// its deadline, as the kernel's would.
func (f *fakeNet) dial(ctx context.Context, ap netip.AddrPort, deadline time.Time) error {
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	k := key{ap.Addr(), ap.Port()}
	f.mu.Lock()
	f.sent[k] = append(f.sent[k], time.Now())
	f.timeouts[k] = append(f.timeouts[k], time.Until(deadline))
	tries := len(f.sent[k])
	h := f.hosts[k.addr]
	if f.synSeen != nil {
		select {
		case f.synSeen <- k:
		default:
		}
	}
	f.mu.Unlock()
	opErr := func(err error) error { return os.NewSyscallError("connect", err) }
	switch {
	case h == nil:
		return opErr(syscall.EHOSTUNREACH)
	case h.unreachable:
		return opErr(syscall.ENETUNREACH)
	case h.drops(k.port, tries):
		<-ctx.Done()
		return ctx.Err()
	}
	if h.delay > 0 {
		t := time.NewTimer(h.delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if slices.Contains(h.open, k.port) {
		return nil
	}
	return opErr(syscall.ECONNREFUSED)
}
