package agent

import (
	"net/netip"
	"time"
)

// Admission: which connection gives way when the agent is full.
//
// Connections are counted by source address and by the network around it
// (a /24 for IPv4, a /64 for IPv6), which one site or one machine can fill
// with addresses of its own. When a cap is reached the connection that
// gives way is one of the network holding the most, and within it of the
// address holding the most: a source that floods the agent only ever
// drops its own connections while it holds more than the others.

// sourceNet returns the network a connection from addr is counted in.
func sourceNet(addr netip.Addr) netip.Prefix {
	bits := 64
	if addr.Is4() {
		bits = 24
	}
	p, _ := addr.Prefix(bits) // invalid (not an IP): all counted together
	return p
}

// tally counts a set of connections by network and by address. A counted
// connection points at its two counts, so that comparing two connections
// reads them without a map lookup.
type tally struct {
	nets  map[netip.Prefix]*int
	addrs map[netip.Addr]*int
}

func newTally() tally {
	return tally{nets: make(map[netip.Prefix]*int), addrs: make(map[netip.Addr]*int)}
}

func (t tally) add(cs *conn) {
	cs.netN = t.nets[cs.net]
	if cs.netN == nil {
		cs.netN = new(int)
		t.nets[cs.net] = cs.netN
	}
	cs.addrN = t.addrs[cs.src]
	if cs.addrN == nil {
		cs.addrN = new(int)
		t.addrs[cs.src] = cs.addrN
	}
	*cs.netN++
	*cs.addrN++
}

func (t tally) remove(cs *conn) {
	if *cs.netN--; *cs.netN == 0 {
		delete(t.nets, cs.net)
	}
	if *cs.addrN--; *cs.addrN == 0 {
		delete(t.addrs, cs.src)
	}
	cs.netN, cs.addrN = nil, nil
}

// fromBigger reports whether c comes from a network, or else an address,
// holding more connections than v's; 0 when they hold as many.
func fromBigger(c, v *conn) int {
	if *c.netN != *v.netN {
		return *c.netN - *v.netN
	}
	return *c.addrN - *v.addrN
}

// pendingVictim picks the connection still in the handshake to drop for a
// newcomer: of the biggest source, one whose hello has not been answered
// rather than a welcomed one (which only waits for its first request), the
// oldest. Called with a.mu held and the pending list not empty.
func (a *Agent) pendingVictim() *conn {
	var v *conn
	for e := a.pending.Front(); e != nil; e = e.Next() {
		c := e.Value.(*conn)
		if v == nil {
			v = c
			continue
		}
		d := fromBigger(c, v)
		if d > 0 || (d == 0 && v.welcomed && !c.welcomed) {
			v = c // the list is oldest first: a tie keeps the older
		}
	}
	return v
}

// evictable reports whether a verified connection may give way: it is
// waiting for its next request, or its reply has been stuck for longer
// than a controller takes to read one (a peer that does not read holds no
// place that way).
func (a *Agent) evictable(c *conn, now time.Time) bool {
	return c.serving.IsZero() || now.Sub(c.serving) >= a.opts.HandshakeTimeout
}

// makeRoom finds a place among the verified connections for cs, which has
// just been verified: room reports whether there is one, and victim is the
// connection that must give it up, if any. Over the cap of its own
// address, cs takes the place of that address's least recently active
// connection; over the total cap, the least recently active of the
// biggest source's. A connection serving a request does not give way, so
// when all of them are, there is no room. Called with a.mu held.
func (a *Agent) makeRoom(cs *conn, now time.Time) (victim *conn, room bool) {
	if n := a.verified.addrs[cs.src]; n != nil && *n >= a.opts.MaxConnsPerSource {
		for c := range a.active {
			if c.src == cs.src && a.evictable(c, now) && (victim == nil || c.last.Before(victim.last)) {
				victim = c
			}
		}
		return victim, victim != nil
	}
	if len(a.active) < a.opts.MaxConns {
		return nil, true
	}
	for c := range a.active {
		if !a.evictable(c, now) {
			continue
		}
		if victim == nil {
			victim = c
			continue
		}
		if d := fromBigger(c, victim); d > 0 || (d == 0 && c.last.Before(victim.last)) {
			victim = c
		}
	}
	return victim, victim != nil
}
