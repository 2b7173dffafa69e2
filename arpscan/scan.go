package arpscan

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/packet"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/ifl-project/ifl/arpscan/oui"
	"github.com/ifl-project/ifl/internal/kstamp"
	"github.com/ifl-project/ifl/internal/pace"
	"github.com/ifl-project/ifl/internal/readmark"
	"github.com/ifl-project/ifl/internal/rtt"
)

// Defaults for the zero values of Config: fast and reliable on a wired
// LAN. On a fragile or congested network lower the rate.
const (
	// DefaultRate is the most broadcast requests per second, where the
	// sending rate starts: a /24's first pass takes 13 ms, all out
	// before the first retry falls due (at 10,000/s it took 25 ms, and
	// the retries pushed the last first tries past 40); the broadcast
	// load (10 Mbit/s, for a few dozen milliseconds on a /24) is small
	// next to a LAN's capacity. The rate halves when answers that should
	// come do not (see Config.Rate).
	DefaultRate = 20000
	// DefaultMinRateDivisor sets the least the rate falls to under loss
	// when Config.MinRate is 0: a 16th of Rate, 1,250/s by default. A
	// segment that takes less than that loses what the retries recover.
	DefaultMinRateDivisor = 16
	// DefaultRetries are the extra tries a silent address gets once the
	// sweep has seen requests get lost: five tries in all, so that a host
	// that drops a fifth of them is missed about once in 3,000 sweeps.
	DefaultRetries = 4
	// DefaultMinRetries are the extra tries every silent address gets,
	// loss seen or not. Each try of a silent address is a broadcast that
	// every host on the segment reads, and most addresses of a sweep are
	// silent: two tries in all, and more only where loss shows. A lone
	// host that drops a fifth of its requests, on a segment that loses
	// nothing else, is then missed once in 25 sweeps (--min-retries 2:
	// once in 125).
	DefaultMinRetries = 1
	// DefaultTimeout is how long a request waits for its reply before
	// anything is measured, and the most it ever waits: the waits follow
	// the round trips the first answers show (a wired host answers
	// within a millisecond), as TCP's do.
	DefaultTimeout = 250 * time.Millisecond
	// DefaultPatience is the least an address is waited for after its
	// first request, however fast the segment: a host a few dozen
	// milliseconds away (a Wi-Fi client, a congested link) among fast
	// ones answers the first request after its retries are spent.
	DefaultPatience = 40 * time.Millisecond
)

// timeoutFloor is the least a try waits before its retry: the jitter of
// a loaded machine's scheduler, which a few fast samples do not show. At
// 2 ms, and still at 5, sweeps of a /22 on a busy two-core machine sent
// retries for answers that were only late, took them for loss and slowed
// down. It costs a sweep little: retries wait while first tries go out.
const timeoutFloor = 20 * time.Millisecond

// How a sweep sees loss: the first hosts that answer are asked again, by
// unicast, a few dozen times each. A host that misses lossMisses of its
// requests (broadcasts before its first answer included) loses enough
// that two tries could miss a host like it, and the silent addresses then
// get all their retries; the odd request dropped by a busy segment or a
// loaded machine does not count. Unicast requests reach one host and cost
// the segment next to nothing, where each retry of a silent address is a
// broadcast, so they go out at confirmRate times the rate; but each
// answer is a frame for the sweep's reader, and a reader that falls
// behind drops replies and sees loss of its own making, so they are few.
// 24 of them catch a host that drops a fifth of its requests 88 times in
// 100 (and one of several such hosts nearly always); a segment that
// drops one request in 200 sets this off about once in 120 sweeps.
const (
	confirmHosts = 32
	confirmTries = 24
	lossMisses   = 3
	confirmRate  = 2
)

// ErrPermission is returned by Dial when the process may not open a raw
// socket (it lacks CAP_NET_RAW).
var ErrPermission = errors.New("no permission to open a raw socket (needs CAP_NET_RAW)")

// Config tunes a sweep. Zero values mean the defaults.
type Config struct {
	// Rate is the most broadcast requests per second, where the sending
	// rate starts; it halves when hosts leave requests unanswered (the
	// unicast confirmations of hosts that answered, retries that draw a
	// first answer, the kernel's ENOBUFS) and grows back while answers
	// come. Unicast confirmations go at confirmRate times the rate.
	Rate int
	// MinRate is the least the sending rate falls to; 0: Rate divided by
	// DefaultMinRateDivisor.
	MinRate int
	// Retries are the most extra tries a silent address gets: all of them
	// once the sweep has seen requests get lost. Negative: none.
	Retries int
	// MinRetries are the extra tries every silent address gets, loss seen
	// or not. Negative: none. When it is Retries or more, every silent
	// address gets Retries and no host is asked twice.
	MinRetries int
	// Timeout is the wait for a reply before any round trip is
	// measured, and the ceiling of every wait; the waits follow the
	// measured round trips (smoothed, with their deviation).
	Timeout time.Duration
	// Patience is the least an address is waited for after its first
	// request: DefaultPatience, at most Timeout; one set longer than
	// Timeout raises Timeout to it, for hosts farther away than that
	// among fast ones.
	Patience time.Duration
	// Probes sends the broadcasts as ARP probes (RFC 5227): from sender
	// address 0.0.0.0, which a host answers as it answers a request for
	// its address (but a Linux router does not proxy for it, and a
	// switch's ARP inspection may drop it). Every host on a segment reads
	// every broadcast, and for a Linux host that is not its target a
	// probe is a check of its own addresses where a request is a route
	// and a neighbour lookup: where the hosts share the scanner's CPUs
	// (a virtual LAN) the sweep is cheaper, and loses less to the
	// kernel's backlogs. A probe teaches no host the scanner's MAC, so
	// each host that answers is introduced: sent a unicast request from
	// the interface's address, which costs no other host. Off by default,
	// because a host that is probing for an address it is about to take
	// (a DHCP client with conflict detection, IPv4 link-local
	// addressing) takes a probe for that address from another MAC as a
	// conflict, and gives the address up.
	Probes bool

	// minWait, when set, replaces timeoutFloor. Tests of sweeps that
	// must see no loss raise it: on a loaded machine (the race detector,
	// packages tested side by side) a goroutine of the fake LAN can be
	// late by more than timeoutFloor, which is then loss.
	minWait time.Duration
}

func (c *Config) withDefaults() Config {
	out := Config{Rate: DefaultRate, Retries: DefaultRetries, MinRetries: DefaultMinRetries, Timeout: DefaultTimeout, Patience: DefaultPatience, minWait: timeoutFloor}
	if c != nil {
		if c.minWait > 0 {
			out.minWait = c.minWait
		}
		if c.Rate > 0 {
			out.Rate = c.Rate
		}
		if c.MinRate > 0 {
			out.MinRate = c.MinRate
		}
		if c.Patience > 0 {
			out.Patience = c.Patience
		}
		out.Probes = c.Probes
		out.Retries = orDefault(c.Retries, DefaultRetries)
		out.MinRetries = orDefault(c.MinRetries, DefaultMinRetries)
		if c.Timeout > 0 {
			out.Timeout = c.Timeout
		}
	}
	out.MinRetries = min(out.MinRetries, out.Retries)
	if out.MinRate == 0 {
		out.MinRate = max(1, out.Rate/DefaultMinRateDivisor)
	}
	out.MinRate = min(out.MinRate, out.Rate)
	if c != nil && c.Patience > out.Timeout {
		out.Timeout = c.Patience
	}
	out.Patience = min(out.Patience, out.Timeout)
	return out
}

// orDefault maps a count's zero value to def and a negative one to 0.
func orDefault(n, def int) int {
	switch {
	case n < 0:
		return 0
	case n == 0:
		return def
	}
	return n
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
	Targets int // addresses swept
	Sent    int // broadcast requests sent, retries included
	// Confirmations are the unicast requests sent to hosts that had
	// answered: to see whether requests get lost, and with Probes to
	// introduce the scanner to them.
	Confirmations int
	// LossSeen: a request went unanswered by a host that answers, so the
	// silent addresses got all their retries.
	LossSeen bool
	Replies  int           // replies read for a target, repeats and confirmations included
	Elapsed  time.Duration // from the first request to the end
	// RateCuts counts the times loss halved the sending rate; MinRate is
	// the lowest rate it reached.
	RateCuts int
	MinRate  int
	// SRTT is the smoothed round trip of the answers.
	SRTT time.Duration
	// Dropped counts the replies the reading socket dropped for want of
	// room; Unsure the addresses found silent although replies were
	// dropped after their last try: they may be there.
	Dropped, Unsure int
}

// Scanner sweeps one interface. Create it with Dial or New; it is not
// safe for concurrent use.
type Scanner struct {
	ifi     *net.Interface
	client  *arp.Client     // reads replies, and sends
	stamped syscall.RawConn // client's socket, read with the kernel's receive times; nil: read by client
	writers []*arp.Client   // send only, beside client
	srcs    []netip.Prefix  // the interface's IPv4 prefixes, for source addresses
	pc      net.PacketConn  // client's
}

// Dial opens raw ARP sockets on the named interface: one that reads the
// replies and sends, and one more to send on for each further CPU (up to
// maxWriters in all).
func Dial(name string) (*Scanner, error) {
	ifi, err := Interface(name)
	if err != nil {
		return nil, err
	}
	// Only replies: the socket would otherwise also read every request,
	// ours included.
	replies, err := bpf.Assemble([]bpf.Instruction{
		bpf.LoadAbsolute{Off: 20, Size: 2}, // ARP opcode, after 14 bytes of Ethernet and 6 of ARP
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: 2, SkipFalse: 1},
		bpf.RetConstant{Val: 256},
		bpf.RetConstant{Val: 0},
	})
	if err != nil {
		return nil, err
	}
	// The sending sockets read nothing.
	nothing, err := bpf.Assemble([]bpf.Instruction{bpf.RetConstant{Val: 0}})
	if err != nil {
		return nil, err
	}
	listen := func(filter []bpf.RawInstruction) (*packet.Conn, error) {
		pc, err := packet.Listen(ifi, packet.Raw, int(ethernet.EtherTypeARP), &packet.Config{Filter: filter})
		if err != nil {
			if errors.Is(err, os.ErrPermission) || errors.Is(err, syscall.EPERM) {
				return nil, fmt.Errorf("%s: %w", name, ErrPermission)
			}
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		return pc, nil
	}
	pc, err := listen(replies)
	if err != nil {
		return nil, err
	}
	// Replies come as fast as requests go out, confirmations at several
	// times the rate: a socket of the default size (208 KiB, 270 frames)
	// overflows while the reader waits for a CPU, and the sweep takes its
	// own dropped replies for loss on the segment. The kernel caps this
	// at net.core.rmem_max.
	if rc, err := pc.SyscallConn(); err == nil {
		rc.Control(func(fd uintptr) {
			_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, 4<<20)
		})
	}
	s, err := New(ifi, pc)
	if err != nil {
		pc.Close()
		return nil, err
	}
	for range min(runtime.NumCPU(), maxWriters) - 1 {
		wc, err := listen(nothing)
		if err == nil {
			var c *arp.Client
			if c, err = arp.New(ifi, wc); err == nil {
				s.writers = append(s.writers, c)
				continue
			}
			wc.Close()
		}
		s.Close()
		return nil, err
	}
	return s, nil
}

// maxWriters bounds the sending sockets. On a virtual LAN the kernel
// floods a broadcast to every port of the bridge within the sending
// call, so one socket sends only as fast as one CPU floods (on two CPUs a
// /24's sweep took 75 ms with one, 60 with two); a physical interface is
// far from that limit with one. The reading socket is one of them: each
// packet socket's close waits for an RCU grace period, and a socket
// fewer took some 5 ms off a sweep's end.
const maxWriters = 4

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
	return &Scanner{ifi: ifi, client: c, srcs: srcs, stamped: stampedConn(pc), pc: pc}, nil
}

// Close closes the sockets, at once: the kernel waits for an RCU grace
// period (milliseconds) to release each packet socket.
func (s *Scanner) Close() error {
	var wg sync.WaitGroup
	for _, w := range s.writers {
		wg.Go(func() { w.Close() })
	}
	err := s.client.Close()
	wg.Wait()
	return err
}

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
	ip        netip.Addr
	tries     int // broadcast requests sent
	firstSent time.Time
	lastSent  time.Time
	askedAt   time.Time        // the last unicast confirmation
	mac       net.HardwareAddr // first answer
	others    []net.HardwareAddr
	rtt       time.Duration
	firstTry  int // the try that drew the first answer
	asked     int // unicast confirmations sent
	echoes    int // replies from mac after the first
	missed    int // confirmations unanswered by their check
	lost      int // of those, the ones no other host missed with
	// extra are tries owed for tries that went out while the sweep's own
	// rate was filling the queues.
	extra      int
	introduced int // introductions sent (Config.Probes)
	// introEchoes is the count of echoes that answers the introduction in
	// flight, if any: the reader wakes the sender when it is reached.
	introEchoes int
}

// sweep is the state shared by the sender and the reader.
type sweep struct {
	mu       sync.Mutex
	byIP     map[netip.Addr]*target
	answered int
	replies  int
	fresh    []*target       // answered since the sender last looked
	echoRTTs []time.Duration // confirmations answered since the sender last looked
	slowest  time.Duration   // the longest round trip to a first answer
	changed  chan struct{}   // a new address answered, or an introduction was
	// mark is how far the reader has read (nil where the socket gives
	// no receive times): silence is judged by it, not by the clock.
	mark *readmark.Mark
}

// Scan sweeps targets: one sender paces requests at the configured rate
// while one reader collects replies; silent addresses are retried; the
// sweep ends when every address has used up its tries and the timeout has
// passed since the last request, or soon after every address has answered
// (four times the slowest round trip, at least 5 ms, to hear a second host
// answering for an address). Each address's first answer
// is sent on out as it arrives (out may be nil); Scan returns every answer,
// sorted by address, with conflicts in Others. If ctx is cancelled Scan
// returns what it has with ctx's error.
func (s *Scanner) Scan(ctx context.Context, targets []netip.Addr, cfg *Config, out chan<- Result) ([]Result, Stats, error) {
	c := cfg.withDefaults()
	sw := &sweep{byIP: make(map[netip.Addr]*target, len(targets)), changed: make(chan struct{}, 1)}
	if s.stamped != nil {
		sw.mark = readmark.New()
	}
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
	rel := startRelay(ctx, out)
	go func() { readErr <- s.read(sw, rel, stopRead) }()

	wctx, stopWriters := context.WithCancel(ctx)
	snd := &sender{s: s, sw: sw, c: c, order: order, st: &st,
		bcast: pace.New(c.Rate), uni: pace.New(c.Rate * confirmRate), timer: time.NewTimer(0),
		win: pace.NewWindow(c.Rate, c.Rate, c.MinRate), est: rtt.New(rtt.Limits{Initial: c.Timeout, Floor: min(c.minWait, c.Timeout)}),
		w: s.startWriters(wctx)}
	st.MinRate = c.Rate
	// A socket kept from sweep to sweep counts what it dropped in the
	// ones before.
	snd.dropsSeen, snd.lookedAt = s.drops(), start
	err := snd.run(ctx)
	snd.timer.Stop()
	if err != nil {
		stopWriters()
	}
	// Let the writers finish what is queued: no request goes out after
	// Scan returns.
	close(snd.w.jobs)
	snd.w.wg.Wait()
	stopWriters()
	// Unblock the reader: a read deadline in the past.
	close(stopRead)
	s.client.SetReadDeadline(time.Unix(1, 0))
	rerr := <-readErr
	s.client.SetReadDeadline(time.Time{})
	rel.finish()
	if err == nil {
		err = rerr
	}

	st.Elapsed = time.Since(start)
	st.RateCuts = snd.win.Cuts()
	st.SRTT = snd.est.SRTT()
	sw.mu.Lock()
	defer sw.mu.Unlock()
	st.Replies = sw.replies
	var res []Result
	for _, t := range order {
		if t.mac != nil {
			res = append(res, Result{IP: t.ip, MAC: t.mac, RTT: t.rtt, Vendor: oui.Vendor(t.mac), Others: t.others})
		}
	}
	sortResults(res)
	return res, st, err
}

// sender is the sweep's sending side. It interleaves three kinds of work:
// first tries in order, retries as they fall due, and unicast
// confirmations of hosts that answered (while loss is still unseen).
type sender struct {
	s     *Scanner
	sw    *sweep
	c     Config
	order []*target
	st    *Stats

	next  int       // first try due: order[next]
	retry []*target // due a retry, in the order of their last request
	// spent have had the tries due without loss; they get the rest if
	// loss is seen.
	spent    []*target
	confirm  []*target // hosts to confirm, round robin
	checking []check   // confirmations awaiting their timeout, in order
	// With Probes: hosts to introduce the scanner to, and the
	// introductions awaiting an answer, in the order they fall due.
	introduce   []*target
	introducing []check
	picked      int // hosts picked for confirmation
	loss        bool
	// Tries sent before suspectUntil went out into queues the sweep's
	// own rate was filling: they are owed again.
	suspectUntil time.Time
	// Since the last cut: requests found lost (first answers that came
	// only to a retry, confirmations missed) and answered (first answers
	// to a first try, confirmations echoed). The rate is cut when the
	// lost are a lossShare of them: one late answer on a busy machine
	// is jitter, not a full queue.
	lostSinceCut, okSinceCut int
	// Over the whole sweep: first answers, and those that came only to
	// a retry. Their ratio is what a broadcast try loses on this
	// segment, and sets how many tries the silent addresses get.
	firstAnswers, lateAnswers int
	// shareExtra are the tries that share owes every silent address; it
	// only grows, and each time it does the spent addresses are respent.
	shareExtra int
	// The loss episode: when its first missed confirmation was found,
	// and the hosts that have missed one in it.
	episodeAt    time.Time
	episodeHosts map[*target]bool

	// The reader's drops: how many so far, when they were last looked
	// at, and when more were last found (drops.go).
	dropsSeen           uint64
	lookedAt, droppedAt time.Time
	turns               int

	bcast, uni *pace.Pacer
	win        *pace.Window   // the broadcast rate, from loss
	est        *rtt.Estimator // the segment's round trip
	lastSend   time.Time      // of the last broadcast
	lastFirst  time.Time      // of the last first try
	timer      *time.Timer
	w          *writers
}

// check is a confirmation in flight: by its timeout, host must have sent
// echoes replies after its first.
type check struct {
	host   *target
	echoes int
	sent   time.Time
	due    time.Time
}

// misses counts the requests t has left unanswered: the broadcasts before
// its first answer, and the confirmations it missed alone. Call it with
// the sweep locked.
func (t *target) misses() int {
	return t.firstTry - 1 + t.lost
}

func (sn *sender) run(ctx context.Context) error {
	c := sn.c
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := sn.w.failed(); err != nil {
			return err
		}
		// How far the reader has read, before what it read is looked
		// at: every reply that came before seen is recorded by then.
		// What was not answered is judged at seen, what is sent at now.
		seen := sn.seen()
		now := time.Now()
		if seen.IsZero() || seen.After(now) {
			seen = now
		}
		// The kernel dropped requests for want of room: slow down.
		sn.win.SetRound(sn.checkWait(0))
		sn.sw.mu.Lock()
		if sn.w.congested.Swap(0) > 0 {
			sn.cut(now, now)
		}
		if sn.turns++; sn.turns%dropLookEvery == 0 {
			sn.lookForDrops(now)
		}
		all := sn.sw.answered == len(sn.order)
		fresh := sn.sw.fresh
		sn.sw.fresh = nil
		if len(sn.sw.echoRTTs) > 0 || len(fresh) > 0 {
			sn.win.Ack(now)
		}
		for _, d := range sn.sw.echoRTTs {
			sn.est.Observe(d)
		}
		// Confirmations answered are requests that were not lost: a
		// lossy host's misses are a small share of them, where full
		// queues lose far more.
		sn.okSinceCut += len(sn.sw.echoRTTs)
		sn.sw.echoRTTs = sn.sw.echoRTTs[:0]
		for _, t := range fresh {
			// As Karn's algorithm: an answer after a retry may be a
			// slow answer to an earlier try, so it measures nothing,
			// and is no proof of loss either.
			sn.firstAnswers++
			if t.firstTry == 1 {
				sn.est.Observe(t.rtt)
				sn.okSinceCut++
				continue
			}
			// An answer much nearer its retry than its first request
			// answers the retry: the first was lost (a slow host's
			// answer to the first comes as long after it as its round
			// trip). Or it was delayed past its retry, which on a
			// fast segment means full queues, the step before loss.
			// One such answer may be one host's hiccup; a second
			// since the last cut is the queues.
			if gap := t.lastSent.Sub(t.firstSent); 2*t.rtt < gap {
				sn.lateAnswers++
				sn.lost(t.firstSent, now)
			}
		}
		if c.Probes {
			sn.introduce = append(sn.introduce, fresh...)
		}
		sn.reintroduce(seen)
		if e := sn.lossShareExtra(); e > sn.shareExtra {
			sn.shareExtra = e
			sn.respend()
		}
		// Confirmations past their timeout: each must have been answered.
		for len(sn.checking) > 0 && !seen.Before(sn.checking[0].due) {
			ck := sn.checking[0]
			sn.checking = sn.checking[1:]
			// The echoes owed are counted from the first confirmation:
			// those already found missing are not missed again. A miss
			// counts against the host unless half the hosts asked have
			// missed in the same episode: that is the sweep's own rate
			// filling the queues, which spares no host, where lossy
			// hosts, even several, lose on their own.
			if ck.host.echoes+ck.host.missed < ck.echoes {
				ck.host.missed++
				sn.lost(ck.sent, now)
				if sn.episodeHosts == nil || now.Sub(sn.episodeAt) > 2*sn.checkWait(0) {
					sn.episodeAt, sn.episodeHosts = now, map[*target]bool{}
				}
				sn.episodeHosts[ck.host] = true
				if len(sn.episodeHosts) < max(2, (sn.picked+1)/2) {
					ck.host.lost++
				}
			}
			if ck.host.misses() >= lossMisses {
				sn.sawLoss()
			}
		}
		slowest := sn.sw.slowest
		sn.sw.mu.Unlock()
		sn.bcast.SetRate(sn.win.Rate())
		sn.uni.SetRate(sn.win.Rate() * confirmRate)
		sn.st.MinRate = min(sn.st.MinRate, sn.win.Rate())
		if all && len(sn.introduce) == 0 && len(sn.introducing) == 0 {
			// A second host that answers for an address (a conflict) is
			// heard if it is not much slower than the slowest first
			// answer.
			end := sn.lastSend.Add(min(c.Timeout, max(4*slowest, 5*time.Millisecond)))
			if !seen.Before(end) {
				if err := sn.ended(now); err != errDropped {
					return err
				}
				continue
			}
			if err := sn.wait(ctx, end); err != nil {
				return err
			}
			continue
		}
		if !sn.loss && c.MinRetries < c.Retries {
			for _, t := range fresh {
				if sn.picked < confirmHosts {
					sn.picked++
					sn.confirm = append(sn.confirm, t)
				}
			}
		}

		// An introduction or a confirmation first, if one may go out:
		// they cost next to nothing, an introduction saves its host a
		// broadcast, and the sooner loss is seen the fewer retries go out
		// in vain.
		var due time.Time // when something may be sent next; zero: nothing is left
		if sent, err := sn.introduceOne(ctx, now); err != nil {
			return err
		} else if sent {
			continue
		}
		if len(sn.introduce) > 0 {
			due = sn.uni.Next()
		}
		if len(sn.confirm) > 0 {
			if now.Before(sn.uni.Next()) {
				due = sn.uni.Next()
			} else {
				if err := sn.confirmOne(ctx); err != nil {
					return err
				}
				continue
			}
		}
		if t, when := sn.nextBroadcast(now, seen); t != nil {
			if err := sn.broadcast(ctx, t); err != nil {
				return err
			}
			continue
		} else if !when.IsZero() {
			due = earliest(due, when)
		}
		if len(sn.checking) > 0 {
			due = earliest(due, sn.checking[0].due)
		}
		if len(sn.introducing) > 0 {
			due = earliest(due, sn.introducing[0].due)
		}
		if due.IsZero() {
			// Every request is sent and every confirmation settled: wait
			// for the last replies, as long as the round trips say, and
			// for the last address first tried as long as patience says.
			end := sn.lastSend.Add(sn.est.Timeout())
			if p := sn.lastFirst.Add(c.Patience); p.After(end) {
				end = p
			}
			if !seen.Before(end) {
				if err := sn.ended(now); err != errDropped {
					return err
				}
				continue
			}
			due = end
		}
		if err := sn.wait(ctx, due); err != nil {
			return err
		}
	}
}

// errDropped: the sweep would have ended, but replies were dropped since
// the last look and some addresses are owed a try.
var errDropped = errors.New("arpscan: replies dropped")

// ended is the sweep's end, unless replies were dropped since the last
// look (errDropped: the owed tries go out first). It records the unsure
// addresses.
func (sn *sender) ended(now time.Time) error {
	sn.sw.mu.Lock()
	defer sn.sw.mu.Unlock()
	if sn.lookForDrops(now) && len(sn.retry) > 0 {
		return errDropped
	}
	sn.st.Unsure = sn.unsure()
	return nil
}

// nextBroadcast takes the broadcast to send now, if one is due and the
// pacer allows it; else it says when one could be.
func (sn *sender) nextBroadcast(now, seen time.Time) (*target, time.Time) {
	for len(sn.retry) > 0 && sn.sw.hasAnswered(sn.retry[0]) {
		sn.retry = sn.retry[1:]
	}
	for sn.next < len(sn.order) && sn.sw.hasAnswered(sn.order[sn.next]) {
		sn.next++
	}
	var retryAt time.Time
	if len(sn.retry) > 0 {
		// Not backed off as TCP's retries are: a silent address is not
		// a congested path (the window is the sweep's congestion
		// control), a lost request is as likely lost the next round as
		// after two, and backed-off tries kept a lossy segment's sweep
		// waiting for its last (doubled once, five tries took 230 ms on
		// a /24 where one round apart they take 170).
		retryAt = sn.retry[0].lastSent.Add(sn.est.Timeout())
	}
	retryDue := len(sn.retry) > 0 && !seen.Before(retryAt)
	switch {
	case !retryDue && sn.next == len(sn.order) && len(sn.retry) > 0:
		return nil, retryAt
	case !retryDue && sn.next == len(sn.order):
		return nil, time.Time{}
	case now.Before(sn.bcast.Next()):
		return nil, sn.bcast.Next()
	case retryDue:
		t := sn.retry[0]
		sn.retry = sn.retry[1:]
		return t, time.Time{}
	default:
		t := sn.order[sn.next]
		sn.next++
		return t, time.Time{}
	}
}

// sawLoss gives the silent addresses all their retries and stops the
// confirmations: they have shown what they are for.
func (sn *sender) sawLoss() {
	if sn.loss {
		return
	}
	sn.loss = true
	sn.st.LossSeen = true
	sn.confirm, sn.checking = nil, nil
	sn.respend()
}

// cut reports a request sent at sent left unanswered, at now (with the
// sweep locked): the window
// halves, once a round; it reports whether it did. A cut means the
// sweep's own rate filled the queues (the kernel's backlogs, a switch's
// buffers) from before the lost request until after the cut takes
// effect: the silent addresses tried in that
// span are owed a try (one: a try owed for a try owed would make one
// congested moment cost a sweep's worth of broadcasts). That is not loss
// to a host, which the
// confirmations tell apart: a sweep that slows down loses little after,
// where a lossy host goes on losing at any rate.
func (sn *sender) cut(sent, now time.Time) bool {
	if !sn.win.Loss(sent, now) {
		return false
	}
	sn.lostSinceCut, sn.okSinceCut = 0, 0
	// A round either side: how long an answer takes to be missed.
	round := sn.checkWait(0)
	from := sent.Add(-round)
	sn.suspectUntil = now.Add(round)
	owed := false
	for _, t := range sn.order[:sn.next] {
		if t.mac == nil && !t.lastSent.Before(from) && t.extra < sn.maxExtra() {
			t.extra++
			owed = true
		}
	}
	if owed || sn.win.Cuts() == congestedCuts {
		sn.respend()
	}
	return true
}

// lost records a request sent at sent found lost at now, and cuts the
// rate if enough of the requests since the last cut were. It reports
// whether it cut.
func (sn *sender) lost(sent, now time.Time) bool {
	sn.lostSinceCut++
	if sn.lostSinceCut < 2 || sn.lostSinceCut*lossShare < sn.lostSinceCut+sn.okSinceCut {
		return false
	}
	return sn.cut(sent, now)
}

// lossShare: the rate is cut when one request in lossShare is lost. A
// queue that overflows loses far more; a loaded machine's late answers
// and a lossy host among many, far fewer.
const lossShare = 32

// congestedCuts: a sweep whose rate was cut this often runs at what the
// network takes, where loss comes and goes unseen between the cuts: every
// silent address gets a try more than MinRetries.
const congestedCuts = 3

// maxExtra is the most tries an address is owed for congestion.
func (sn *sender) maxExtra() int { return min(1, sn.c.Retries-sn.c.MinRetries) }

// retries is how many extra tries t gets now.
func (sn *sender) retries(t *target) int {
	if sn.loss {
		return sn.c.Retries
	}
	extra := t.extra
	if sn.win.Cuts() >= congestedCuts {
		extra = max(extra, 1)
	}
	extra = max(extra, sn.shareExtra)
	return min(sn.c.MinRetries+extra, sn.c.Retries)
}

// lossShareExtra is how many tries more than MinRetries the share of
// first answers that came only to a retry owes every silent address.
// Where broadcasts are lost (the queues of a crowded segment overflow,
// whatever the sweep's own rate), two tries miss a host too often: with
// one try in 200 lost, a /21 of 400 hosts would miss one in 12 sweeps.
// A try more from there; from one in 20, every try (with four, a virtual
// /21 that lost one in eight still missed a host in some 30 sweeps). The
// first late answer does not count: alone it is jitter (a reply held in
// a busy host's queues past its retry looks the same), and on a /22 it
// made the share one in 200 and cost every silent address a third try.
func (sn *sender) lossShareExtra() int {
	if sn.firstAnswers < lossSample || sn.lateAnswers < 2 {
		return 0
	}
	switch p := float64(sn.lateAnswers-1) / float64(sn.firstAnswers); {
	case p >= 0.05:
		return sn.c.Retries
	case p >= 0.005:
		return 1
	}
	return 0
}

// lossSample is the fewest first answers whose share of late ones says
// what a try loses.
const lossSample = 20

// respend makes the spent addresses that are owed tries due at once:
// merged into the retry queue, which stays in the order of the last
// requests.
func (sn *sender) respend() {
	var keep []*target
	for _, t := range sn.spent {
		if t.tries <= sn.retries(t) {
			sn.retry = append(sn.retry, t)
		} else {
			keep = append(keep, t)
		}
	}
	sn.spent = keep
	slices.SortStableFunc(sn.retry, func(a, b *target) int { return a.lastSent.Compare(b.lastSent) })
}

// broadcast sends t a request and queues its next try, if it has one.
func (sn *sender) broadcast(ctx context.Context, t *target) error {
	now := time.Now()
	// Recorded before the request goes out, so that the fastest reply
	// finds it.
	sn.sw.mu.Lock()
	t.tries++
	t.lastSent = now
	if t.tries == 1 {
		t.firstSent = now
	}
	if now.Before(sn.suspectUntil) && t.extra < sn.maxExtra() {
		t.extra++
	}
	owed := t.tries <= sn.retries(t)
	sn.sw.mu.Unlock()
	if err := sn.w.send(ctx, request{ip: t.ip, dst: ethernet.Broadcast, probe: sn.c.Probes}); err != nil {
		return err
	}
	sn.lastSend = now
	if t.tries == 1 {
		sn.lastFirst = now
	}
	sn.bcast.Sent(now)
	sn.win.Sent(now)
	sn.st.Sent++
	switch {
	case owed:
		sn.retry = append(sn.retry, t)
	case t.tries <= sn.c.Retries:
		sn.spent = append(sn.spent, t)
	}
	return nil
}

// introTries bounds the introductions of a host that does not answer
// them: a lossy host's first may be lost.
const introTries = 3

// introduceOne sends the next host in line an introduction, if the
// unicast pacer allows one now, and reports whether it did. A host that
// answered a probe has not learnt the scanner's MAC from it, and would
// broadcast a request of its own before it answers what comes next (a
// SYN): a lost one costs a second, the kernel's retransmission time.
// A unicast request from the interface's address, which costs no other
// host, tells it (and where the SYN came first, it settles the host's
// own request: Linux then sends what waited for the answer). It is sent
// again, up to introTries, until answered.
func (sn *sender) introduceOne(ctx context.Context, now time.Time) (bool, error) {
	if len(sn.introduce) == 0 || now.Before(sn.uni.Next()) {
		return false, nil
	}
	t := sn.introduce[0]
	sn.introduce = sn.introduce[1:]
	sn.sw.mu.Lock()
	t.asked++
	t.askedAt = now
	t.introduced++
	// Its answer is an echo more than it has sent, and than the
	// broadcast tries after the one it answered may still draw: a reply
	// to one of those answers a probe, and teaches it nothing.
	t.introEchoes = t.echoes + t.tries - t.firstTry + 1
	ck := check{host: t, echoes: t.introEchoes, sent: now, due: now.Add(sn.checkWait(t.rtt))}
	sn.sw.mu.Unlock()
	if err := sn.w.send(ctx, request{ip: t.ip, dst: t.mac}); err != nil {
		return false, err
	}
	sn.uni.Sent(now)
	sn.st.Confirmations++
	i, _ := slices.BinarySearchFunc(sn.introducing, ck.due, func(c check, due time.Time) int { return c.due.Compare(due) })
	sn.introducing = slices.Insert(sn.introducing, i, ck)
	return true, nil
}

// reintroduce settles the introductions in flight: the answered ones at
// once (a sweep whose every address has answered ends as soon as they
// are), and those unanswered for their wait are queued again. Call it
// with the sweep locked.
func (sn *sender) reintroduce(now time.Time) {
	sn.introducing = slices.DeleteFunc(sn.introducing, func(ck check) bool {
		switch {
		case ck.host.echoes >= ck.echoes:
			return true
		case now.Before(ck.due):
			return false
		case ck.host.introduced < introTries:
			sn.introduce = append(sn.introduce, ck.host)
		}
		return true
	})
}

// confirmOne sends the next host in line a unicast request.
func (sn *sender) confirmOne(ctx context.Context) error {
	t := sn.confirm[0]
	sn.confirm = sn.confirm[1:]
	now := time.Now()
	sn.sw.mu.Lock()
	t.asked++
	t.askedAt = now
	ck := check{host: t, echoes: t.asked, sent: now, due: now.Add(sn.checkWait(t.rtt))}
	sn.sw.mu.Unlock()
	if err := sn.w.send(ctx, request{ip: t.ip, dst: t.mac}); err != nil {
		return err
	}
	sn.uni.Sent(now)
	sn.st.Confirmations++
	// In the order they fall due: a slow host's wait is longer.
	i, _ := slices.BinarySearchFunc(sn.checking, ck.due, func(c check, due time.Time) int { return c.due.Compare(due) })
	sn.checking = slices.Insert(sn.checking, i, ck)
	if t.asked < confirmTries {
		sn.confirm = append(sn.confirm, t)
	}
	return nil
}

// checkWait is how long a confirmation of a host whose first answer took
// hostRTT is given to be answered: twice a try's wait (at least
// timeoutFloor), so that a loaded machine's jitter is not taken for loss;
// and for a slow host twice its own round trip, even past the ceiling,
// as a slow host is not a lossy one.
func (sn *sender) checkWait(hostRTT time.Duration) time.Duration {
	return max(min(sn.c.Timeout, 2*sn.est.Timeout()), 2*hostRTT)
}

// wait sleeps until the given time, a new answer, the reader reading
// further, or ctx's end. A time already past is one the reader has not
// read up to yet: it waits for the reader.
func (sn *sender) wait(ctx context.Context, until time.Time) error {
	var advanced <-chan struct{}
	if sn.sw.mark != nil {
		advanced = sn.sw.mark.Advanced()
	}
	d := time.Until(until)
	if d <= 0 && (advanced == nil || !sn.seen().Before(until)) {
		// Past, and read up to: a reader at rest sets no mark.
		return ctx.Err()
	}
	if d > 0 {
		// Since Go 1.23 Stop and Reset discard a pending tick: no draining.
		sn.timer.Reset(d)
		defer sn.timer.Stop()
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-sn.sw.changed:
		return nil
	case <-sn.timer.C:
		return nil
	case <-advanced:
		return nil
	}
}

// seen is how far the reader has read: the zero time where the socket
// gives no receive times, and then the clock decides alone.
func (sn *sender) seen() time.Time {
	if sn.sw.mark == nil {
		return time.Time{}
	}
	return sn.sw.mark.UpTo(sn.s.empty)
}

func earliest(a, b time.Time) time.Time {
	if a.IsZero() || b.Before(a) {
		return b
	}
	return a
}

// request is an ARP request for a writer to send.
type request struct {
	ip    netip.Addr
	dst   net.HardwareAddr // broadcast, or a host that answered
	probe bool             // from 0.0.0.0 (Config.Probes)
}

// writers send the sender's requests, each on its own socket: the
// scanner's client, and its writers.
type writers struct {
	jobs      chan request
	congested atomic.Int64 // requests the kernel dropped and a writer sent again
	errc      chan error
	wg        sync.WaitGroup
}

// startWriters starts a writer per sending socket. They stop when jobs is
// closed and drained.
func (s *Scanner) startWriters(ctx context.Context) *writers {
	conns := append([]*arp.Client{s.client}, s.writers...)
	// A short queue: the sender blocks while every writer is busy, so its
	// timestamps stay close to when requests go out.
	w := &writers{jobs: make(chan request, len(conns)), errc: make(chan error, len(conns))}
	for _, c := range conns {
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			var failed bool
			for r := range w.jobs {
				if failed {
					continue // drain, so that the sender never blocks
				}
				if err := s.write(ctx, c, r, &w.congested); err != nil {
					failed = true
					w.errc <- err
				}
			}
		}()
	}
	return w
}

// send queues r for the next free writer.
func (w *writers) send(ctx context.Context, r request) error {
	select {
	case w.jobs <- r:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case err := <-w.errc:
		return err
	}
}

// failed returns a writer's error, if one has failed.
func (w *writers) failed() error {
	select {
	case err := <-w.errc:
		return err
	default:
		return nil
	}
}

// write sends r on c. ENOBUFS means the kernel dropped it: the interface
// (or, on a virtual LAN, the bridge flooding it to every port) is slower
// than the rate. Then the request is sent again after a pause, and the
// sender is told to slow down.
func (s *Scanner) write(ctx context.Context, c *arp.Client, r request, congested *atomic.Int64) error {
	src := netip.IPv4Unspecified()
	if !r.probe {
		src = s.source(r.ip)
	}
	p, err := arp.NewPacket(arp.OperationRequest, s.ifi.HardwareAddr, src, ethernet.Broadcast, r.ip)
	if err != nil {
		return err
	}
	pause := 100 * time.Microsecond
	for i := 0; ; i++ {
		err := c.WriteTo(p, r.dst)
		if err == nil {
			return nil
		}
		if !errors.Is(err, syscall.ENOBUFS) || i >= 1000 {
			return fmt.Errorf("arp-scan: %s: sending: %w", s.ifi.Name, err)
		}
		congested.Add(1)
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		pause = min(2*pause, 10*time.Millisecond)
	}
}

func (sw *sweep) hasAnswered(t *target) bool {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	return t.mac != nil
}

// read collects replies until stop is closed, and hands each address's
// first answer to rel.
func (s *Scanner) read(sw *sweep, rel *relay, stop <-chan struct{}) error {
	buf, oob := make([]byte, 128), make([]byte, kstamp.OOBSize)
	for {
		p, at, err := s.readReply(buf, oob, sw.mark)
		if err != nil {
			select {
			case <-stop:
				return nil
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, os.ErrDeadlineExceeded) {
				continue
			}
			if errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrClosed) {
				return err
			}
			continue // a malformed frame: skip it
		}
		if p.Operation == arp.OperationReply {
			if r, ok := sw.record(p.SenderIP, p.SenderHardwareAddr, at); ok {
				rel.push(r)
			}
		}
		if sw.mark != nil {
			// Handled, and all that came before it: the socket's queue
			// is first in, first out.
			sw.mark.Set(at)
		}
	}
}

// empty reports whether the reading socket holds no reply.
func (s *Scanner) empty() bool {
	empty := false
	s.stamped.Control(func(fd uintptr) {
		// The length of the first frame queued; 0: none.
		n, err := unix.IoctlGetInt(int(fd), unix.SIOCINQ)
		empty = err == nil && n == 0
	})
	return empty
}

// stampedConn returns pc's raw connection with the kernel's receive
// times turned on, or nil where pc has none (a test's fake).
func stampedConn(pc net.PacketConn) syscall.RawConn {
	sc, ok := pc.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = kstamp.Enable(int(fd)) }); err != nil || serr != nil {
		return nil
	}
	return rc
}

// readReply reads the next ARP packet and when it arrived: the kernel's
// receive time where the socket has one, else now. A round trip timed by
// the reader includes its wait for a CPU, which on a busy machine is
// tens of times the round trip, and would set every wait after it.
func (s *Scanner) readReply(buf, oob []byte, mark *readmark.Mark) (*arp.Packet, time.Time, error) {
	if s.stamped == nil {
		p, _, err := s.client.Read()
		return p, time.Now(), err
	}
	for {
		var n, oobn int
		var rerr error
		err := s.stamped.Read(func(fd uintptr) bool {
			mark.Reading(true)
			before := time.Now()
			n, oobn, _, _, rerr = unix.Recvmsg(int(fd), buf, oob, 0)
			if rerr == unix.EAGAIN {
				// Empty: every reply that came before is read.
				mark.Set(before)
				mark.Reading(false)
				return false
			}
			return true
		})
		if err == nil {
			err = rerr
		}
		if err != nil {
			return nil, time.Time{}, err
		}
		at := kstamp.Parse(oob[:oobn])
		if at.IsZero() {
			at = time.Now()
		}
		var f ethernet.Frame
		var p arp.Packet
		if f.UnmarshalBinary(buf[:n]) != nil || f.EtherType != ethernet.EtherTypeARP || p.UnmarshalBinary(f.Payload) != nil {
			mark.Set(at)
			continue
		}
		return &p, at, nil
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
		t.firstTry = t.tries
		if t.rtt < 0 && t.tries > 1 {
			// Received before the last try went out (the kernel's
			// time says so, where the reader was late): it answers an
			// earlier one, the first if there were two, and was not
			// lost.
			t.firstTry = t.tries - 1
			t.rtt = now.Sub(t.firstSent)
		}
		t.rtt = max(t.rtt, 0)
		sw.slowest = max(sw.slowest, t.rtt)
		sw.answered++
		sw.fresh = append(sw.fresh, t)
		sw.wake()
		// No vendor here: the first lookup reads the system's registry
		// (30 ms), and the reader must not stop reading for it. It is
		// read beside the sweep, once a MAC needs it.
		if mac[0]&0x02 == 0 {
			oui.Warm()
		}
		return Result{IP: ip, MAC: t.mac, RTT: t.rtt}, true
	}
	if macEqual(t.mac, mac) {
		t.echoes++
		if !t.askedAt.IsZero() {
			sw.echoRTTs = append(sw.echoRTTs, now.Sub(t.askedAt))
		}
		if t.echoes == t.introEchoes {
			sw.wake()
		}
		return Result{}, false
	}
	for _, o := range t.others {
		if macEqual(o, mac) {
			return Result{}, false
		}
	}
	t.others = append(t.others, append(net.HardwareAddr(nil), mac...))
	return Result{}, false
}

// wake tells the sender that something it waits for has come, without
// waiting for it to look.
func (sw *sweep) wake() {
	select {
	case sw.changed <- struct{}{}:
	default:
	}
}

func macEqual(a, b net.HardwareAddr) bool { return string(a) == string(b) }
