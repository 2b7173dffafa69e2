package arpscan

import (
	"math"
	"slices"
	"time"
)

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
// sweep locked): the window halves, once a round; it reports whether it
// did. A cut means the sweep's own rate filled the queues (the kernel's
// backlogs, a switch's buffers) from before the lost request until after
// the cut takes effect: the silent addresses tried in that span are owed
// a try (one: a try owed for a try owed would make one congested moment
// cost a sweep's worth of broadcasts). What is lost between the cuts
// shows in the tries the hosts found took, which set the tries of every
// silent address (lossShareExtra). That is not loss to a host, which the
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
	if owed {
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

// maxExtra is the most tries an address is owed for congestion.
func (sn *sender) maxExtra() int { return min(1, sn.c.Retries-sn.c.MinRetries) }

// retries is how many extra tries t gets now.
func (sn *sender) retries(t *target) int {
	if sn.loss {
		return sn.c.Retries
	}
	return min(sn.c.MinRetries+max(t.extra, sn.shareExtra), sn.c.Retries)
}

// lossShareExtra is how many tries more than MinRetries the silent
// addresses are owed for what a broadcast try loses on this segment
// (where the queues of a crowded segment overflow, whatever the sweep's
// own rate): as many as it takes for the hosts still missing to be
// expected well under one (missBound). A try's loss q is estimated from
// the hosts found so far, as a geometric's: the tries they left
// unanswered over all the tries they took. F hosts found, each missed by
// all of n tries with q^n, leave F·q^n/(1-q^n) missing. The first try
// found lost does not count: alone it is jitter (a reply held in a busy
// host's queues past its retry looks the same), and on a large segment
// it would cost every silent address a third try.
func (sn *sender) lossShareExtra() int {
	if sn.firstAnswers < lossSample || sn.failedTries < 2 {
		return 0
	}
	failed := float64(sn.failedTries - 1)
	q := failed / (failed + float64(sn.firstAnswers))
	found := float64(sn.firstAnswers)
	for extra := 0; extra < sn.c.Retries-sn.c.MinRetries; extra++ {
		qn := math.Pow(q, float64(sn.c.MinRetries+1+extra))
		if found*qn/(1-qn) < missBound {
			return extra
		}
	}
	return sn.c.Retries
}

// missBound is how many hosts a sweep may expect to miss for want of a
// try: one sweep in 200 misses one.
const missBound = 0.005

// lossSample is the fewest first answers whose tries say what a try
// loses.
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

// checkWait is how long a confirmation of a host whose first answer took
// hostRTT is given to be answered: twice a try's wait (at least
// timeoutFloor), so that a loaded machine's jitter is not taken for loss;
// and for a slow host twice its own round trip, even past the ceiling,
// as a slow host is not a lossy one.
func (sn *sender) checkWait(hostRTT time.Duration) time.Duration {
	return max(min(sn.c.Timeout, 2*sn.est.Timeout()), 2*hostRTT)
}
