package arpscan

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/packet"
	"golang.org/x/net/bpf"

	"github.com/ifl-project/ifl/internal/pace"
)

// Defaults for the zero values of Config: fast and reliable on a wired
// LAN. On a fragile or congested network lower the rate.
const (
	// DefaultRate is requests per second, as nmap's -T5 --min-rate 10000:
	// a /24's first pass takes 25 ms; the broadcast load (5 Mbit/s,
	// for a fraction of a second on a /24) is small next to a LAN's
	// capacity. The sender slows down by itself when the kernel drops
	// requests.
	DefaultRate = 10000
	// DefaultRetries: four tries in all, so a host that drops a fifth of
	// ARP requests is missed about once in 625 sweeps. Retries cost only
	// the silent addresses, at the send rate.
	DefaultRetries = 3
	// DefaultTimeout is how long a request waits for its reply before it
	// is retried, and how long the sweep waits after its last request. A
	// wired host answers within a millisecond; a Wi-Fi client in power
	// save may need --timeout 300ms.
	DefaultTimeout = 20 * time.Millisecond
)

// ErrPermission is returned by Dial when the process may not open a raw
// socket (it lacks CAP_NET_RAW).
var ErrPermission = errors.New("no permission to open a raw socket (needs CAP_NET_RAW: run with sudo, or: sudo setcap cap_net_raw+ep $(command -v ifl))")

// Config tunes a sweep. Zero values mean the defaults.
type Config struct {
	Rate    int           // requests per second
	Retries int           // extra tries for a silent address; negative: none
	Timeout time.Duration // wait for a reply before a retry, and after the last request
}

func (c *Config) withDefaults() Config {
	out := Config{Rate: DefaultRate, Retries: DefaultRetries, Timeout: DefaultTimeout}
	if c == nil {
		return out
	}
	if c.Rate > 0 {
		out.Rate = c.Rate
	}
	switch {
	case c.Retries < 0:
		out.Retries = 0
	case c.Retries > 0:
		out.Retries = c.Retries
	}
	if c.Timeout > 0 {
		out.Timeout = c.Timeout
	}
	return out
}

// Result is one address that answered.
type Result struct {
	IP     netip.Addr
	MAC    net.HardwareAddr
	RTT    time.Duration // from the last request for IP to the first reply
	Vendor string        // from the IEEE registry, see Vendor
	// Others are further MACs that answered for IP: an address conflict,
	// or spoofing. Final only in the results Scan returns.
	Others []net.HardwareAddr
}

// Stats count what a sweep did.
type Stats struct {
	Targets int           // addresses swept
	Sent    int           // requests sent, retries included
	Replies int           // replies read for a target, repeats included
	Elapsed time.Duration // from the first request to the end
}

// Scanner sweeps one interface. Create it with Dial or New; it is not
// safe for concurrent use.
type Scanner struct {
	ifi    *net.Interface
	client *arp.Client
	srcs   []netip.Prefix // the interface's IPv4 prefixes, for source addresses
}

// Dial opens a raw ARP socket on the named interface.
func Dial(name string) (*Scanner, error) {
	ifi, err := Interface(name)
	if err != nil {
		return nil, err
	}
	// Only replies: the socket would otherwise also read every request,
	// ours included.
	filter, err := bpf.Assemble([]bpf.Instruction{
		bpf.LoadAbsolute{Off: 20, Size: 2}, // ARP opcode, after 14 bytes of Ethernet and 6 of ARP
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: 2, SkipFalse: 1},
		bpf.RetConstant{Val: 256},
		bpf.RetConstant{Val: 0},
	})
	if err != nil {
		return nil, err
	}
	pc, err := packet.Listen(ifi, packet.Raw, int(ethernet.EtherTypeARP), &packet.Config{Filter: filter})
	if err != nil {
		if errors.Is(err, os.ErrPermission) || errors.Is(err, syscall.EPERM) {
			return nil, fmt.Errorf("%s: %w", name, ErrPermission)
		}
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	s, err := New(ifi, pc)
	if err != nil {
		pc.Close()
		return nil, err
	}
	return s, nil
}

// New returns a scanner that sends and reads Ethernet frames on pc, for
// tests or a socket opened by the caller.
func New(ifi *net.Interface, pc net.PacketConn) (*Scanner, error) {
	srcs, err := prefixes(ifi)
	if err != nil {
		return nil, err
	}
	return newScanner(ifi, pc, srcs)
}

func newScanner(ifi *net.Interface, pc net.PacketConn, srcs []netip.Prefix) (*Scanner, error) {
	c, err := arp.New(ifi, pc)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ifi.Name, err)
	}
	return &Scanner{ifi: ifi, client: c, srcs: srcs}, nil
}

// Close closes the socket.
func (s *Scanner) Close() error { return s.client.Close() }

// Prefixes returns the interface's IPv4 prefixes (masked): what a sweep
// covers by default.
func (s *Scanner) Prefixes() []netip.Prefix {
	out := make([]netip.Prefix, len(s.srcs))
	for i, p := range s.srcs {
		out[i] = p.Masked()
	}
	return out
}

// OnLink reports whether a is on one of the interface's subnets.
func (s *Scanner) OnLink(a netip.Addr) bool {
	for _, p := range s.srcs {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// source picks the interface address to send from for target: the one on
// its subnet, else the first.
func (s *Scanner) source(target netip.Addr) netip.Addr {
	for _, p := range s.srcs {
		if p.Contains(target) {
			return p.Addr()
		}
	}
	return s.srcs[0].Addr()
}

// target is the sweep's state for one address.
type target struct {
	ip       netip.Addr
	tries    int
	lastSent time.Time
	mac      net.HardwareAddr // first answer
	others   []net.HardwareAddr
	rtt      time.Duration
}

// sweep is the state shared by the sender and the reader.
type sweep struct {
	mu       sync.Mutex
	byIP     map[netip.Addr]*target
	answered int
	replies  int
	changed  chan struct{} // a new address answered
}

// Scan sweeps targets: one sender paces requests at the configured rate
// while one reader collects replies; silent addresses are retried; the
// sweep ends when every address has answered or used up its tries and the
// timeout has passed since the last request. Each address's first answer
// is sent on out as it arrives (out may be nil); Scan returns every answer,
// sorted by address, with conflicts in Others. If ctx is cancelled Scan
// returns what it has with ctx's error.
func (s *Scanner) Scan(ctx context.Context, targets []netip.Addr, cfg *Config, out chan<- Result) ([]Result, Stats, error) {
	c := cfg.withDefaults()
	sw := &sweep{byIP: make(map[netip.Addr]*target, len(targets)), changed: make(chan struct{}, 1)}
	order := make([]*target, 0, len(targets))
	for _, a := range targets {
		if !a.Is4() {
			return nil, Stats{}, fmt.Errorf("arp-scan: %v is not an IPv4 address", a)
		}
		if _, dup := sw.byIP[a]; !dup {
			t := &target{ip: a}
			sw.byIP[a] = t
			order = append(order, t)
		}
	}
	st := Stats{Targets: len(order)}
	start := time.Now()

	readErr := make(chan error, 1)
	stopRead := make(chan struct{})
	go func() { readErr <- s.read(sw, out, stopRead) }()

	err := s.send(ctx, sw, order, c, &st)
	// Unblock the reader: a read deadline in the past.
	close(stopRead)
	s.client.SetReadDeadline(time.Unix(1, 0))
	rerr := <-readErr
	s.client.SetReadDeadline(time.Time{})
	if err == nil {
		err = rerr
	}

	st.Elapsed = time.Since(start)
	sw.mu.Lock()
	defer sw.mu.Unlock()
	st.Replies = sw.replies
	var res []Result
	for _, t := range order {
		if t.mac != nil {
			res = append(res, Result{IP: t.ip, MAC: t.mac, RTT: t.rtt, Vendor: Vendor(t.mac), Others: t.others})
		}
	}
	sortResults(res)
	return res, st, err
}

// send paces the requests: first tries in order, interleaved with retries
// as they fall due, then waits the timeout after the last request, or
// less if every address has answered.
func (s *Scanner) send(ctx context.Context, sw *sweep, order []*target, c Config, st *Stats) error {
	pacer := pace.New(c.Rate)
	var retry []*target // due in the order they were sent
	next := 0
	var lastSend time.Time
	timer := time.NewTimer(0)
	defer timer.Stop()
	wait := func(until time.Time) error {
		d := time.Until(until)
		if d <= 0 {
			return ctx.Err()
		}
		timer.Reset(d)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-sw.changed:
			return nil
		case <-timer.C:
			return nil
		}
	}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		if sw.done(len(order)) {
			return nil
		}
		now := time.Now()
		var t *target
		switch {
		case len(retry) > 0 && !now.Before(retry[0].lastSent.Add(c.Timeout)):
			t, retry = retry[0], retry[1:]
		case next < len(order):
			t = order[next]
			next++
		case len(retry) > 0:
			if err := wait(retry[0].lastSent.Add(c.Timeout)); err != nil {
				return err
			}
			continue
		default:
			// Every try is sent: wait for the last replies.
			for !sw.done(len(order)) && time.Now().Before(lastSend.Add(c.Timeout)) {
				if err := wait(lastSend.Add(c.Timeout)); err != nil {
					return err
				}
			}
			return nil
		}
		if sw.hasAnswered(t) {
			continue
		}
		for time.Now().Before(pacer.Next()) {
			if err := wait(pacer.Next()); err != nil {
				return err
			}
		}
		// Recorded before the request goes out, so that the fastest reply
		// finds it.
		lastSend = time.Now()
		sw.mu.Lock()
		t.tries++
		t.lastSent = lastSend
		sw.mu.Unlock()
		if err := s.requestRetrying(ctx, t.ip, pacer); err != nil {
			return err
		}
		pacer.Sent(lastSend)
		st.Sent++
		if t.tries <= c.Retries {
			retry = append(retry, t)
		}
	}
}

// requestRetrying sends a request. ENOBUFS means the kernel dropped it: the
// interface (or, on a virtual LAN, the bridge flooding it to every port) is
// slower than the rate. Then the request is sent again after a pause and
// the pacer slows down.
func (s *Scanner) requestRetrying(ctx context.Context, ip netip.Addr, p *pace.Pacer) error {
	for i := 0; ; i++ {
		err := s.request(ip)
		if err == nil {
			return nil
		}
		if !errors.Is(err, syscall.ENOBUFS) || i >= 1000 {
			return fmt.Errorf("arp-scan: %s: sending: %w", s.ifi.Name, err)
		}
		p.Congested()
		t := time.NewTimer(p.Interval())
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

func (s *Scanner) request(ip netip.Addr) error {
	p, err := arp.NewPacket(arp.OperationRequest, s.ifi.HardwareAddr, s.source(ip), ethernet.Broadcast, ip)
	if err != nil {
		return err
	}
	return s.client.WriteTo(p, ethernet.Broadcast)
}

func (sw *sweep) done(n int) bool {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	return sw.answered == n
}

func (sw *sweep) hasAnswered(t *target) bool {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	return t.mac != nil
}

// read collects replies until stop is closed.
func (s *Scanner) read(sw *sweep, out chan<- Result, stop <-chan struct{}) error {
	for {
		p, _, err := s.client.Read()
		now := time.Now()
		if err != nil {
			select {
			case <-stop:
				return nil
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			continue // a malformed frame: skip it
		}
		if p.Operation != arp.OperationReply {
			continue
		}
		r, ok := sw.record(p.SenderIP, p.SenderHardwareAddr, now)
		if ok && out != nil {
			select {
			case out <- r:
			case <-stop:
				return nil
			}
		}
	}
}

// record notes a reply; it returns the result to stream for a first
// answer.
func (sw *sweep) record(ip netip.Addr, mac net.HardwareAddr, now time.Time) (Result, bool) {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	t := sw.byIP[ip]
	if t == nil || t.tries == 0 {
		return Result{}, false // not ours
	}
	sw.replies++
	if t.mac == nil {
		t.mac = append(net.HardwareAddr(nil), mac...)
		t.rtt = now.Sub(t.lastSent)
		sw.answered++
		select {
		case sw.changed <- struct{}{}:
		default:
		}
		return Result{IP: ip, MAC: t.mac, RTT: t.rtt, Vendor: Vendor(t.mac)}, true
	}
	if !macEqual(t.mac, mac) {
		for _, o := range t.others {
			if macEqual(o, mac) {
				return Result{}, false
			}
		}
		t.others = append(t.others, append(net.HardwareAddr(nil), mac...))
	}
	return Result{}, false
}

func macEqual(a, b net.HardwareAddr) bool { return string(a) == string(b) }
