package inventory

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// StoreChange is one change of one host as it landed in the store,
// whichever controller wrote it.
type StoreChange struct {
	// Revision is the store's revision of the write: a watch resumed
	// after it (WatchOptions.After) starts with the next write.
	Revision int64  `json:"revision"`
	Event    string `json:"event"` // new, moved, renamed, unseen or removed
	Identity string `json:"identity"`
	Name     string `json:"name"`
	Site     string `json:"site,omitempty"` // where the host is now (of the write's controller)
	// From and To: the addresses of a move ("SITE ADDRESS" when the host
	// has a site), the names of a rename; To, where a new host is;
	// From, where a host not seen or removed was.
	From string `json:"from,omitempty"`
	To   string `json:"to,omitempty"`
}

// Watch events.
const (
	EventNew     = "new"
	EventMoved   = "moved"
	EventRenamed = "renamed"
	EventUnseen  = "unseen"
	EventRemoved = "removed"
)

// ErrCompacted is returned by Watch when the store no longer holds the
// revision to resume after.
var ErrCompacted = errors.New("the store no longer holds that revision")

// Watch calls f with the changes of each revision of the store's hosts,
// a revision at a time, in order, from the one after after (0: from
// now on) until ctx is done or f fails. A watch cut off (a member lost,
// no leader) starts again after the last revision f was given: no change
// is lost or given twice. A host record that is not one ifl writes is
// passed to bad, and skipped.
func (e *Etcd) Watch(ctx context.Context, after int64, f func([]StoreChange) error, bad func(error)) error {
	if after == 0 {
		c, cancel := e.ctx(ctx)
		resp, err := e.c.Get(c, e.cfg.Prefix+"/format")
		cancel()
		if err != nil {
			return e.failed(err)
		}
		after = resp.Header.Revision
	}
	p := e.key("hosts", "")
	wait := 100 * time.Millisecond
	for {
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		ch := e.c.Watch(wctx, p, clientv3.WithPrefix(), clientv3.WithPrevKV(), clientv3.WithRev(after+1))
		for resp := range ch {
			if resp.CompactRevision != 0 {
				cancel()
				return fmt.Errorf("inventory: %s: %w: %d is compacted (the store keeps from %d): read the inventory whole, then watch from now", e, ErrCompacted, after+1, resp.CompactRevision)
			}
			if resp.Err() != nil {
				break
			}
			var out []StoreChange
			rev := int64(0)
			flush := func() error {
				if len(out) == 0 {
					return nil
				}
				err := f(out)
				out = out[:0]
				return err
			}
			for _, ev := range resp.Events {
				if ev.Kv.ModRevision != rev && rev != 0 {
					if err := flush(); err != nil {
						cancel()
						return err
					}
					after = rev
				}
				rev = ev.Kv.ModRevision
				id := strings.TrimPrefix(string(ev.Kv.Key), p)
				var prev, cur *Host
				var err error
				if ev.PrevKv != nil {
					if prev, err = watchedHost(id, ev.PrevKv.Value); err != nil {
						prev = nil // what it was is not known: report what it is
					}
				}
				if ev.Type == clientv3.EventTypePut {
					if cur, err = watchedHost(id, ev.Kv.Value); err != nil {
						bad(fmt.Errorf("inventory %s: %w: key %s: %v (ifl writes no such record; skipped)", e, ErrForeign, quoteKey(string(ev.Kv.Key)), err))
						continue
					}
				}
				out = append(out, hostChanges(rev, prev, cur)...)
			}
			if err := flush(); err != nil {
				cancel()
				return err
			}
			if rev != 0 {
				after = rev
			}
		}
		cancel()
		if ctx.Err() != nil {
			return nil
		}
		// Cut off: watch again after what was given, in a while.
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// watchedHost reads and checks a host record of the store.
func watchedHost(id string, v []byte) (*Host, error) {
	h, err := decodeHost(v, nil)
	if err != nil {
		return nil, err
	}
	if err := h.check(id); err != nil {
		return nil, err
	}
	return h, nil
}

// hostChanges are what a write made of prev (nil: none) into cur (nil:
// removed).
func hostChanges(rev int64, prev, cur *Host) []StoreChange {
	switch {
	case cur == nil && prev == nil:
		return nil
	case cur == nil:
		return []StoreChange{{Revision: rev, Event: EventRemoved, Identity: prev.Identity, Name: prev.Name, Site: prev.Site, From: prev.siteAddr()}}
	case prev == nil:
		return []StoreChange{{Revision: rev, Event: EventNew, Identity: cur.Identity, Name: cur.Name, Site: cur.Site, To: cur.IP}}
	}
	var out []StoreChange
	c := StoreChange{Revision: rev, Identity: cur.Identity, Name: cur.Name, Site: cur.Site}
	if prev.siteAddr() != cur.siteAddr() {
		m := c
		m.Event, m.From, m.To = EventMoved, prev.siteAddr(), cur.siteAddr()
		out = append(out, m)
	}
	if prev.Name != cur.Name {
		r := c
		r.Event, r.From, r.To = EventRenamed, prev.Name, cur.Name
		out = append(out, r)
	}
	sites := make([]string, 0, len(cur.Sites))
	for site := range cur.Sites {
		sites = append(sites, site)
	}
	slices.Sort(sites)
	for _, site := range sites {
		sg, was := cur.Sites[site], prev.Sites[site]
		if !sg.Missed.IsZero() && (was == nil || was.Missed.IsZero()) {
			u := c
			u.Event, u.Site, u.From = EventUnseen, site, sg.Addr
			out = append(out, u)
		}
	}
	return out
}
