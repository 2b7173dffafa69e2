package inventory_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ifl-project/ifl/internal/controller/inventory"
	"github.com/ifl-project/ifl/internal/testbed/etcdtest"
)

// TestSoakEtcd runs when IFL_SOAK is a duration (scripts/soak-etcd.sh:
// 10m): three controllers write a round every IFL_SOAK_EVERY (5s) to a
// 3-member cluster while a member is killed and restarted every
// IFL_SOAK_KILL (1m),
// and two watches follow: ifl's and a raw one. At the end, no update is
// lost (every host's rounds are the sum of its sites'), no host is twice,
// no name is held twice, no change is lost or repeated by ifl's watch
// (each host's moves chain from where it was to where it is), and the
// raw watch saw every operation the controllers had applied once.
func TestSoakEtcd(t *testing.T) {
	total, err := time.ParseDuration(os.Getenv("IFL_SOAK"))
	if err != nil {
		t.Skip("IFL_SOAK is not a duration: the soak runs from scripts/soak-etcd.sh")
	}
	every := 5 * time.Second
	if e, err := time.ParseDuration(os.Getenv("IFL_SOAK_EVERY")); err == nil {
		every = e
	}
	c := etcdtest.Start(t, 3)
	spec := c.Spec("/soak", "timeout=3s&dial-timeout=3s")
	ctx, cancel := context.WithTimeout(context.Background(), total)
	defer cancel()
	wctx, wcancel := context.WithCancel(context.Background())
	defer wcancel()

	// ifl's watch, and a raw one, from the start.
	rev0 := int64(1)
	var changes []inventory.StoreChange
	var raw, repeated int
	markerID := fmt.Sprintf("%032x", 99)
	sawMarker, rawMarker := make(chan struct{}), make(chan struct{})
	var wg sync.WaitGroup
	watcher := openStore(t, spec).(*inventory.Etcd)
	wg.Add(2)
	go func() {
		defer wg.Done()
		if err := watcher.Watch(wctx, rev0, func(chs []inventory.StoreChange) error {
			changes = append(changes, chs...)
			if changes[len(changes)-1].Identity == markerID && changes[len(changes)-1].Event == inventory.EventNew {
				close(sawMarker)
			}
			return nil
		}, func(err error) { t.Error(err) }); err != nil {
			t.Error(err)
		}
	}()
	cl := c.Client()
	go func() {
		defer wg.Done()
		seen := map[string]bool{}
		after := rev0
		for wctx.Err() == nil {
			for resp := range cl.Watch(wctx, "/soak/", clientv3.WithPrefix(), clientv3.WithRev(after+1)) {
				for _, ev := range resp.Events {
					k := fmt.Sprintf("%s@%d", ev.Kv.Key, ev.Kv.ModRevision)
					if seen[k] {
						repeated++
					}
					seen[k] = true
					raw++
					after = ev.Kv.ModRevision
					if string(ev.Kv.Key) == "/soak/hosts/"+markerID {
						close(rawMarker)
					}
				}
			}
		}
	}()

	sites := []string{"lyon", "oslo", "rome"}
	rounds := make([]int, len(sites))
	stores := make([]*inventory.Etcd, len(sites))
	errs := make([]error, len(sites))
	var writers sync.WaitGroup
	for w, site := range sites {
		stores[w] = openStore(t, spec).(*inventory.Etcd)
		var obs []inventory.Observation
		for i := 20 * w; i < 20*w+30; i++ {
			obs = append(obs, siteObs(i, fmt.Sprintf("10.%d.0.%d", 1+8*w, i+1)))
		}
		writers.Add(1)
		go func() {
			defer writers.Done()
			tick := time.NewTicker(every)
			defer tick.Stop()
			for {
				now := time.Now().UTC()
				if err := record(context.Background(), stores[w], site, now, obs); err != nil {
					errs[w] = fmt.Errorf("%s, round %d: %w", site, rounds[w], err)
					return
				}
				rounds[w]++
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
			}
		}()
	}
	kills := 0
	killEvery := time.Minute
	if e, err := time.ParseDuration(os.Getenv("IFL_SOAK_KILL")); err == nil {
		killEvery = e
	}
	kill := time.NewTicker(killEvery)
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case <-kill.C:
			m := kills % 3
			c.Stop(m)
			c.Restart(m)
			kills++
		}
	}
	kill.Stop()
	writers.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}

	s, err := openStore(t, spec).Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Hosts) != 70 {
		t.Errorf("%d hosts, want 70", len(s.Hosts))
	}
	for i := range 70 {
		id := fmt.Sprintf("%032x", i)
		h := s.Hosts[id]
		want := 0
		for w := range sites {
			if i >= 20*w && i < 20*w+30 {
				want += rounds[w]
			}
		}
		if h == nil || h.Rounds != want {
			t.Errorf("host %d: %+v, want %d rounds", i, h, want)
		}
	}
	checkNameKeys(t, c, "/soak", s)
	for w, site := range sites {
		if s.Rounds[site].Rounds != rounds[w] {
			t.Errorf("site %s: %d rounds recorded, %d written", site, s.Rounds[site].Rounds, rounds[w])
		}
	}

	// A last write, after every controller's: once both watches have
	// it, they have all before it.
	marker := openStore(t, spec)
	if err := record(context.Background(), marker, "marker", time.Now().UTC(), []inventory.Observation{siteObs(99, "10.99.0.1")}); err != nil {
		t.Fatal(err)
	}
	for _, ch := range []chan struct{}{sawMarker, rawMarker} {
		select {
		case <-ch:
		case <-time.After(2 * time.Minute):
			t.Fatal("the watches did not see the last write in two minutes")
		}
	}
	wcancel()
	wg.Wait()

	where := map[string]string{}
	moves, news := 0, 0
	for _, ch := range changes {
		switch ch.Event {
		case inventory.EventNew:
			if where[ch.Identity] != "" {
				t.Errorf("host %s new twice", ch.Identity)
			}
			where[ch.Identity] = ch.Site + " " + ch.To
			news++
		case inventory.EventMoved:
			if where[ch.Identity] != ch.From {
				t.Errorf("revision %d: host %s moved from %s, but was at %s (a change lost or repeated)", ch.Revision, ch.Identity, ch.From, where[ch.Identity])
			}
			where[ch.Identity] = ch.To
			moves++
		}
	}
	for id, h := range s.Hosts {
		if where[id] != h.Site+" "+h.IP {
			t.Errorf("host %s: the watch has it at %s, the store at %s %s", id, where[id], h.Site, h.IP)
		}
	}
	var applied, unsure int
	for _, st := range append(stores, marker.(*inventory.Etcd)) {
		applied += st.Stats().Ops
		unsure += st.Stats().Unsure
	}
	t.Logf("%v, a round every %v: rounds %v, %d member kills; ifl's watch: %d new, %d moves; raw watch: %d events, %d repeated; the controllers applied %d operations (%d more unsure)",
		total, every, rounds, kills, news, moves, raw, repeated, applied, unsure)
	if repeated != 0 || raw < applied || raw > applied+unsure {
		t.Errorf("the raw watch saw %d events (%d repeated) of %d operations applied and %d unsure", raw, repeated, applied, unsure)
	}
}
