package arpscan

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/mdlayher/ethernet"

	"github.com/ifl-project/ifl/internal/support/pace"
	"github.com/ifl-project/ifl/internal/support/readmark"
	"github.com/ifl-project/ifl/internal/support/rtt"
)

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
	// With FromZero: hosts to introduce the scanner to, and the
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
	// Over the whole sweep: first answers, and the tries before them
	// that were lost. They say what a broadcast try loses on this
	// segment, and set how many tries the silent addresses get.
	firstAnswers, failedTries int
	// shareExtra are the tries that loss owes every silent address; it
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
	fine       *fineTimer // nil: none, the timer alone
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

func (sn *sender) run(ctx context.Context) error {
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
		all, fresh, slowest := sn.absorb(now, seen)
		if all && len(sn.introduce) == 0 && len(sn.introducing) == 0 {
			// A second host that answers for an address (a conflict) is
			// heard if it is not much slower than the slowest first
			// answer.
			end := sn.lastSend.Add(min(sn.c.Timeout, max(4*slowest, 5*time.Millisecond)))
			if done, err := sn.endOrWait(ctx, now, seen, end); done || err != nil {
				return err
			}
			continue
		}
		sn.pickConfirmations(fresh)
		sent, due, err := sn.schedule(ctx, now, seen)
		switch {
		case err != nil:
			return err
		case sent:
			continue
		case due.IsZero():
			// Every request is sent and every confirmation settled: wait
			// for the last replies, as long as the round trips say, and
			// for the last address first tried as long as patience says.
			end := sn.lastSend.Add(sn.est.Timeout())
			if p := sn.lastFirst.Add(sn.c.Patience); p.After(end) {
				end = p
			}
			if done, err := sn.endOrWait(ctx, now, seen, end); done || err != nil {
				return err
			}
			continue
		}
		if err := sn.wait(ctx, due); err != nil {
			return err
		}
	}
}

// endOrWait ends the sweep if the reader has read up to end (done, unless
// replies were dropped and tries are owed), else waits for end.
func (sn *sender) endOrWait(ctx context.Context, now, seen, end time.Time) (done bool, err error) {
	if seen.Before(end) {
		return false, sn.wait(ctx, end)
	}
	if err := sn.ended(now); err != errDropped {
		return true, err
	}
	return false, nil
}

// absorb takes in what the reader recorded since the last turn, at now,
// judging silence at seen: the kernel's and the reader's drops, the
// first answers (fresh) and the confirmations' echoes, which set the
// round trip, the loss share and the rate; the introductions and
// confirmations whose wait is over. It reports whether every address
// has answered, and the slowest first answer.
func (sn *sender) absorb(now, seen time.Time) (all bool, fresh []*target, slowest time.Duration) {
	sn.win.SetRound(sn.checkWait(0))
	sn.sw.mu.Lock()
	all, fresh, slowest = sn.absorbLocked(now, seen)
	sn.sw.mu.Unlock()
	sn.bcast.SetRate(sn.win.Rate())
	sn.uni.SetRate(sn.win.Rate() * confirmRate)
	sn.st.MinRate = min(sn.st.MinRate, sn.win.Rate())
	return all, fresh, slowest
}

// absorbLocked is absorb's work with the sweep locked.
func (sn *sender) absorbLocked(now, seen time.Time) (all bool, fresh []*target, slowest time.Duration) {
	// The kernel dropped requests for want of room: slow down.
	if sn.w.congested.Swap(0) > 0 {
		sn.cut(now, now)
	}
	if sn.turns++; sn.turns%dropLookEvery == 0 {
		sn.lookForDrops(now)
	}
	all = sn.sw.answered == len(sn.order)
	fresh = sn.sw.fresh
	sn.sw.fresh = nil
	if len(sn.sw.echoRTTs) > 0 || len(fresh) > 0 {
		sn.win.Ack(now)
	}
	for _, d := range sn.sw.echoRTTs {
		sn.est.Observe(d)
	}
	// Confirmations answered are requests that were not lost: a lossy
	// host's misses are a small share of them, where full queues lose
	// far more.
	sn.okSinceCut += len(sn.sw.echoRTTs)
	sn.sw.echoRTTs = sn.sw.echoRTTs[:0]
	sn.firstAnswered(fresh, now)
	if sn.c.FromZero {
		sn.introduce = append(sn.introduce, fresh...)
	}
	sn.reintroduce(seen)
	if e := sn.lossShareExtra(); e > sn.shareExtra {
		sn.shareExtra = e
		sn.respend()
	}
	sn.confirmationsDue(now, seen)
	return all, fresh, sn.sw.slowest
}

// firstAnswered takes the first answers that came, at now, for the round
// trip and the loss share. Call it with the sweep locked.
func (sn *sender) firstAnswered(fresh []*target, now time.Time) {
	for _, t := range fresh {
		// As Karn's algorithm: an answer after a retry may be a slow
		// answer to an earlier try, so it measures nothing, and is no
		// proof of loss either.
		sn.firstAnswers++
		if t.firstTry == 1 {
			sn.est.Observe(t.rtt)
			sn.okSinceCut++
			continue
		}
		// An answer much nearer its retry than its first request
		// answers the retry: the first was lost (a slow host's answer
		// to the first comes as long after it as its round trip). Or it
		// was delayed past its retry, which on a fast segment means
		// full queues, the step before loss. One such answer may be
		// one host's hiccup; a second since the last cut is the queues.
		if gap := t.lastSent.Sub(t.firstSent); 2*t.rtt < gap {
			sn.failedTries += t.firstTry - 1
			sn.lost(t.firstSent, now)
		}
	}
}

// confirmationsDue settles the confirmations whose wait is over by seen:
// each must have been answered. Call it with the sweep locked.
func (sn *sender) confirmationsDue(now, seen time.Time) {
	for len(sn.checking) > 0 && !seen.Before(sn.checking[0].due) {
		ck := sn.checking[0]
		sn.checking = sn.checking[1:]
		// The echoes owed are counted from the first confirmation:
		// those already found missing are not missed again. A miss
		// counts against the host unless half the hosts asked have
		// missed in the same episode: that is the sweep's own rate
		// filling the queues, which spares no host, where lossy hosts,
		// even several, lose on their own.
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
}

// pickConfirmations picks the first hosts that answered to be asked
// again, while loss is unseen and there are retries it would spend.
func (sn *sender) pickConfirmations(fresh []*target) {
	if sn.loss || sn.c.MinRetries >= sn.c.Retries {
		return
	}
	for _, t := range fresh {
		if sn.picked < confirmHosts {
			sn.picked++
			sn.confirm = append(sn.confirm, t)
		}
	}
}

// schedule sends the next request that may go out at now, if any (sent),
// or says when one could (due; zero: nothing is left to send or wait
// for). An introduction or a confirmation goes first: they cost next to
// nothing, an introduction saves its host a broadcast, and the sooner
// loss is seen the fewer retries go out in vain.
func (sn *sender) schedule(ctx context.Context, now, seen time.Time) (sent bool, due time.Time, err error) {
	if sent, err := sn.introduceOne(ctx, now); sent || err != nil {
		return sent, due, err
	}
	if len(sn.introduce) > 0 {
		due = sn.uni.Next()
	}
	if len(sn.confirm) > 0 {
		if now.Before(sn.uni.Next()) {
			due = sn.uni.Next()
		} else {
			return true, due, sn.confirmOne(ctx)
		}
	}
	if t, when := sn.nextBroadcast(now, seen); t != nil {
		return true, due, sn.broadcast(ctx, t)
	} else if !when.IsZero() {
		due = earliest(due, when)
	}
	if len(sn.checking) > 0 {
		due = earliest(due, sn.checking[0].due)
	}
	if len(sn.introducing) > 0 {
		due = earliest(due, sn.introducing[0].due)
	}
	return false, due, nil
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
	if err := sn.w.send(ctx, request{ip: t.ip, dst: ethernet.Broadcast, fromZero: sn.c.FromZero}); err != nil {
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
	if d <= 0 {
		// Not read up to: the reader says when it is, or, at rest, a
		// look at its socket.
		d = readmark.Recheck
	} else if d < preciseWait && sn.fine != nil {
		// The runtime's timers wake about a millisecond late: the
		// broadcasts due meanwhile would then go out close together,
		// and every host of the segment takes each one in. For so short
		// a wait, what it does not wake for (an answer, the reader)
		// waits its turn.
		if err := sn.fine.sleep(d); err != nil {
			return err
		}
		return ctx.Err()
	}
	// Since Go 1.23 Stop and Reset discard a pending tick: no draining.
	sn.timer.Reset(d)
	defer sn.timer.Stop()
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

// preciseWait is the longest wait timed by the sweep's fineTimer rather
// than by the runtime's timers.
const preciseWait = 2 * time.Millisecond
