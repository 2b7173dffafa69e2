package discover

import (
	"net/netip"
	"time"

	"github.com/ifl-project/ifl/internal/support/netinfo"
	"github.com/ifl-project/ifl/proto"
)

// Bounds on what the answers of one round make a caller dial. A holder of
// the network key can forge good answers, from any address it likes and
// claiming any identity, and every address handed on is dialled: these
// bounds, with the segment, keep those dials few and on the link.
const (
	// MaxAnswersPerQuery bounds the addresses one query hands on. An
	// agent answers a query once, so a link with more agents than this
	// loses the surplus to each query (which ones, the order of arrival
	// decides), and a probe without broadcast finds them.
	MaxAnswersPerQuery = 1024
	// MaxAddrsPerKind bounds the addresses handed on in a round for one
	// claimed identity and one kind of address: IPv4, link-local IPv6,
	// other IPv6. An agent answers a query from one address, the one
	// that reaches the controller's, so it has one of each kind per
	// subnet it shares with the controller: answers for one identity from
	// more are forged, or come from an agent on more subnets of one link
	// than this. An address a caller already knows for that identity
	// (Discoverer.Known) is handed on past both bounds.
	MaxAddrsPerKind = 2
	// maxSaltsPerQuery bounds what a round remembers of the answers to
	// one query, to drop copies of one answer sent from other addresses:
	// past it, the query's answers are dropped.
	maxSaltsPerQuery = 4 * MaxAnswersPerQuery
)

// sentQuery is a query of the round and what its answers did.
type sentQuery struct {
	at  time.Time
	seg segment
	// handed counts the addresses handed on for it, but known ones.
	handed int
	// salts are those of its good answers: a copy of one, sent again
	// from another address, has the same.
	salts map[[8]byte]struct{}
}

type claim struct {
	identity string
	kind     netinfo.AddrKind
}

// round is what Run knows of the answers so far.
type round struct {
	d    *Discoverer
	dk   proto.DiscoveryKey
	sent map[[16]byte]*sentQuery
	// seen are the addresses handed on.
	seen map[netip.Addr]bool
	// claims count the addresses handed on per claimed identity and
	// kind, but known ones.
	claims map[claim]int
	st     *Stats
}

func newRound(d *Discoverer, st *Stats) *round {
	return &round{d: d, dk: d.Key.DiscoveryKey(), sent: map[[16]byte]*sentQuery{}, seen: map[netip.Addr]bool{}, claims: map[claim]int{}, st: st}
}

// verdict is what became of an answer.
type verdict int

const (
	dropped verdict = iota // not a good answer to a query of the round, from its segment
	capped                 // a good answer past a bound
	again                  // a good answer from an address already handed on
	fresh                  // a good answer from a new address: handed on
)

// take checks a datagram as an answer to one of the round's queries and
// counts it in the round's stats; a fresh one is to be handed on.
func (r *round) take(dg datagram) (Answer, time.Duration, verdict) {
	a, rtt, v := r.check(dg)
	switch v {
	case dropped:
		r.st.Dropped++
	case capped:
		r.st.Capped++
	case fresh:
		r.st.Answers++
	}
	return a, rtt, v
}

func (r *round) check(dg datagram) (Answer, time.Duration, verdict) {
	var a proto.Answer
	if a.UnmarshalBinary(dg.b) != nil {
		return Answer{}, 0, dropped
	}
	q := r.sent[a.Nonce]
	if q == nil {
		return Answer{}, 0, dropped
	}
	id, err := a.Open(&r.dk, a.Nonce)
	if err != nil || (r.d.Port != 0 && int(a.Port) != r.d.Port) {
		return Answer{}, 0, dropped
	}
	addr := dg.src.Addr().Unmap()
	if !addr.IsLinkLocalUnicast() {
		addr = addr.WithZone("")
	}
	if !q.seg.contains(addr) || (r.d.Accept != nil && !r.d.Accept(addr)) {
		return Answer{}, 0, dropped
	}
	// One answer, seen once: the agent salts each answer anew, so the
	// same salt again is a copy, whatever address it comes from. Only
	// what passed the checks above is remembered: a copy from off the
	// link must not make the answer it copies pass for a copy.
	if _, ok := q.salts[a.Salt]; ok {
		return Answer{}, 0, dropped
	}
	if len(q.salts) >= maxSaltsPerQuery {
		return Answer{}, 0, capped
	}
	if q.salts == nil {
		q.salts = map[[8]byte]struct{}{}
	}
	q.salts[a.Salt] = struct{}{}
	rtt := dg.at.Sub(q.at)
	ans := Answer{Addr: addr, Identity: id, RTT: rtt}
	if r.seen[addr] {
		return ans, rtt, again
	}
	if r.d.Known == nil || !r.d.Known(id, addr) {
		c := claim{id, netinfo.Kind(addr)}
		if q.handed >= MaxAnswersPerQuery || r.claims[c] >= MaxAddrsPerKind {
			return Answer{}, 0, capped
		}
		q.handed++
		r.claims[c]++
	}
	r.seen[addr] = true
	return ans, rtt, fresh
}
