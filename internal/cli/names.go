package cli

import (
	"context"
	"net/netip"

	"github.com/ifl-project/ifl/internal/controller/inventory"
)

// namesByIdentity returns the inventory name of every host of st, by
// identity: the names the inventory gives (State.Names), the ones
// Ansible uses.
func namesByIdentity(st *inventory.State) map[string]string {
	if st == nil {
		return nil
	}
	out := make(map[string]string, len(st.Hosts))
	for name, h := range st.Names() {
		out[h.Identity] = name
	}
	return out
}

// recordedNames reads the names of the store once a round is recorded
// there; nil if it cannot be read (the round is recorded: only the names
// are missing from the report).
func recordedNames(ctx context.Context, store inventory.Store) map[string]string {
	st, err := store.Load(context.WithoutCancel(ctx))
	if err != nil {
		return nil
	}
	return namesByIdentity(st)
}

// addrNames are the inventory names of the hosts last verified at each
// address: what a scan, which verifies nobody, can show.
type addrNames map[netip.Addr][]*inventory.Host

// namesByAddress indexes the hosts of st by the addresses where they
// were verified.
func namesByAddress(st *inventory.State) addrNames {
	if st == nil {
		return nil
	}
	out := addrNames{}
	for _, h := range st.Names() {
		seen := map[netip.Addr]bool{}
		for _, s := range append([]string{h.IP}, verifiedAddrs(h)...) {
			a, err := netip.ParseAddr(s)
			if err != nil || seen[a.WithZone("")] {
				continue
			}
			a = a.WithZone("")
			seen[a] = true
			out[a] = append(out[a], h)
		}
	}
	return out
}

func verifiedAddrs(h *inventory.Host) []string {
	out := make([]string, 0, len(h.Verified))
	for _, v := range h.Verified {
		out = append(out, v.Addr)
	}
	return out
}

// name is the name of the host at a and port: the one the inventory knows
// on that port, else the one seen last there (a scan of port 22 names the
// machine whose agent answered at the address); "" for none. Of two
// alike, the first by identity, so that the answer is the same each time.
func (n addrNames) name(a netip.Addr, port int) string {
	var best *inventory.Host
	better := func(h *inventory.Host) bool {
		if best == nil {
			return true
		}
		if (h.Port == port) != (best.Port == port) {
			return h.Port == port
		}
		if !h.LastSeen.Equal(best.LastSeen) {
			return h.LastSeen.After(best.LastSeen)
		}
		return h.Identity < best.Identity
	}
	for _, h := range n[a.WithZone("")] {
		if better(h) {
			best = h
		}
	}
	if best == nil {
		return ""
	}
	return best.Name
}
