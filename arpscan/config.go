package arpscan

import (
	"errors"
	"net"
	"net/netip"
	"time"

	"github.com/ifl-project/ifl/internal/support/defaults"
)

// Defaults for the zero values of Config: fast and reliable on a wired
// LAN. On a fragile or congested network lower the rate.
const (
	// DefaultRate is the most broadcast requests per second, where the
	// sending rate starts: fast enough that a /24's first pass is out
	// before its first retries fall due, so that retries do not push
	// first tries back; the broadcast load (10 Mbit/s, for a few dozen
	// milliseconds on a /24) is small next to a LAN's capacity. The rate halves when answers that should
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
// a loaded machine's scheduler and of the hosts' own queues, which a few
// fast samples do not show. A retry sent for an answer that was only late
// is a broadcast every host reads, and is taken for loss, which slows the
// sweep: the floor is well above a SYN's (synscan). It costs a sweep
// little: retries wait while first tries go out.
const timeoutFloor = 20 * time.Millisecond

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
	// FromZero sends the broadcasts as ARP probes (RFC 5227): from sender
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
	FromZero bool

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
		out.FromZero = c.FromZero
		out.Retries = defaults.Count(c.Retries, DefaultRetries)
		out.MinRetries = defaults.Count(c.MinRetries, DefaultMinRetries)
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

// Result is one address that answered.
type Result struct {
	IP  netip.Addr
	MAC net.HardwareAddr
	RTT time.Duration // from the last request for IP to the first reply
	// RTTMax is from the first request for IP to the first reply, at
	// most Config.Timeout (the longest a request is waited for): the most
	// its round trip may be. A reply that came after several requests
	// may answer any of them (nothing in ARP says which), so RTT is then
	// only the least it may be: a host 300 ms away whose reply to the
	// first request came just after a retry.
	RTTMax time.Duration
	Vendor string // from the IEEE registry, see Vendor
	// Others are further MACs that answered for IP: an address conflict,
	// or spoofing. Final only in the results Scan returns.
	Others []net.HardwareAddr
}

// Stats count what a sweep did.
type Stats struct {
	Targets int // addresses swept
	Sent    int // broadcast requests sent, retries included
	// Confirmations are the unicast requests sent to hosts that had
	// answered: to see whether requests get lost, and with FromZero to
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

// smoothFrom is the most addresses a sweep sends its broadcasts to as
// fast as its rate allows, in the bursts the runtime's timers make; a
// larger one spaces them out (pace.Pacer's Smooth, and a fineTimer for
// the waits between them): on the test LANs that made a /21's sweep
// lose so few requests that its silent addresses need no third try, and
// a /24's a half longer (README, Benchmarks).
const smoothFrom = 1024
