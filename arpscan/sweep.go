package arpscan

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/ifl-project/ifl/arpscan/oui"
	"github.com/ifl-project/ifl/internal/support/pace"
	"github.com/ifl-project/ifl/internal/support/readmark"
	"github.com/ifl-project/ifl/internal/support/rtt"
)

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
	rttMax    time.Duration // see Result.RTTMax
	firstTry  int           // the try that drew the first answer
	asked     int           // unicast confirmations sent
	echoes    int           // replies from mac after the first
	missed    int           // confirmations unanswered by their check
	lost      int           // of those, the ones no other host missed with
	// extra are tries owed for tries that went out while the sweep's own
	// rate was filling the queues.
	extra      int
	introduced int // introductions sent (Config.FromZero)
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
	maxRTT   time.Duration   // the most a Result's RTTMax says (Config.Timeout)
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
	sw := &sweep{byIP: make(map[netip.Addr]*target, len(targets)), changed: make(chan struct{}, 1), maxRTT: c.Timeout}
	if s.stamped != nil {
		sw.mark = readmark.New()
	}
	order := make([]*target, 0, len(targets))
	for _, a := range targets {
		if !a.Is4() {
			return nil, Stats{}, fmt.Errorf("arpscan: %v is not an IPv4 address", a)
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
	// Every host of the segment takes each broadcast in: on a large
	// segment a burst of them fills the receivers' queues (on a virtual
	// LAN, the backlog of the CPU the bridge floods from) where the same
	// rate spread out does not. A small sweep's first pass is over in
	// milliseconds, and spacing it out only makes it longer.
	if len(order) > smoothFrom {
		snd.bcast.Smooth()
		if ft, err := newFineTimer(); err == nil {
			snd.fine = ft
			defer ft.Close()
		}
	}
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
			res = append(res, Result{IP: t.ip, MAC: t.mac, RTT: t.rtt, RTTMax: t.rttMax, Vendor: oui.Vendor(t.mac), Others: t.others})
		}
	}
	sortResults(res)
	return res, st, err
}

// misses counts the requests t has left unanswered: the broadcasts before
// its first answer, and the confirmations it missed alone. Call it with
// the sweep locked.
func (t *target) misses() int {
	return t.firstTry - 1 + t.lost
}

func (sw *sweep) hasAnswered(t *target) bool {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	return t.mac != nil
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
		t.rttMax = max(min(now.Sub(t.firstSent), sw.maxRTT), t.rtt)
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
		return Result{IP: ip, MAC: t.mac, RTT: t.rtt, RTTMax: t.rttMax}, true
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
