package inventory_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ifl-project/ifl/internal/controller/inventory"
	"github.com/ifl-project/ifl/internal/testbed/etcdtest"
	"github.com/ifl-project/ifl/proto"
)

// siteObs is what a site's controller verified of host i at addr.
func siteObs(i int, addr string) inventory.Observation {
	return inventory.Observation{Identity: fmt.Sprintf("%032x", i), Addr: netip.MustParseAddr(addr), Port: 7440, Facts: &proto.Facts{
		Hostname: fmt.Sprintf("web%d", i%7), MachineID: fmt.Sprintf("%032x", 1000+i),
		Interfaces: []proto.Interface{{Name: "eth0", MAC: fmt.Sprintf("52:54:00:00:%02x:%02x", i>>8, i&0xff), Addrs: []string{addr + "/24"}}},
		Labels:     map[string]string{"role": "web"},
	}}
}

func everywhere(netip.Addr) bool { return true }

var t0 = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

func openStore(t *testing.T, spec string) inventory.Store {
	t.Helper()
	st, err := inventory.Open(spec, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// record applies one site's round to st, at now, again until it is
// kept: as a watch controller does with a round it could not write.
func record(ctx context.Context, st inventory.Store, site string, now time.Time, obs []inventory.Observation) error {
	var err error
	for range 40 {
		err = st.Update(ctx, func(s *inventory.State) error {
			s.ApplySite(site, now, obs, everywhere, true)
			return nil
		})
		if err == nil || ctx.Err() != nil {
			return err
		}
	}
	return err
}

// comparable leaves out what a store does not keep the same way: the
// time of the last write (etcd's is that of its latest record) and the
// order of the reservations.
var comparable = cmp.Options{cmpopts.IgnoreFields(inventory.State{}, "Updated"), cmpopts.IgnoreUnexported(inventory.State{}),
	cmpopts.SortSlices(func(a, b inventory.Reservation) bool { return a.Name < b.Name }), cmpopts.EquateEmpty()}

// TestEtcdStoreAsFile: the same rounds of two sites leave the same
// inventory in etcd as in the JSON file, and import and export move it
// between them whole.
func TestEtcdStoreAsFile(t *testing.T) {
	c := etcdtest.Start(t, 1)
	ctx := context.Background()
	file := &inventory.File{Path: filepath.Join(t.TempDir(), "inventory.json")}
	etcd := openStore(t, c.Spec("/fleet", "timeout=5s"))
	if _, err := etcd.Load(ctx); !errors.Is(err, inventory.ErrNoState) {
		t.Fatalf("an empty prefix: %v, want ErrNoState", err)
	}
	rounds := [][]inventory.Observation{
		{siteObs(1, "10.1.2.3"), siteObs(2, "10.1.2.4"), siteObs(8, "10.1.2.5")},
		{siteObs(3, "10.1.2.3"), siteObs(4, "10.1.2.9")},
		{siteObs(1, "10.1.2.30"), siteObs(2, "10.1.2.4")},
	}
	for _, st := range []inventory.Store{file, etcd} {
		for r, obs := range rounds {
			site := []string{"lyon", "oslo"}[r%2]
			if err := record(ctx, st, site, t0.Add(time.Duration(r)*time.Minute), obs); err != nil {
				t.Fatal(err)
			}
		}
		// A prune and a name given by hand: deletions and reservations.
		err := st.Update(ctx, func(s *inventory.State) error {
			s.Prune(t0.Add(90*time.Minute), 88*time.Minute+30*time.Second)
			_, err := s.GiveName(t0.Add(90*time.Minute), "db1", fmt.Sprintf("%032x", 2), false)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	want, err := file.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got, err := etcd.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got, comparable); diff != "" {
		t.Fatalf("etcd holds otherwise than the file (-file +etcd):\n%s", diff)
	}
	if len(want.Reserved) == 0 || len(want.Hosts) != 2 {
		t.Fatalf("the rounds left %d hosts and %d reservations: want 2 and some", len(want.Hosts), len(want.Reserved))
	}
	checkNameKeys(t, c, "/fleet", got)
	for _, st := range []inventory.Store{file, etcd} {
		checkLoadHost(t, st, got)
	}
	// A name key that a record does not confirm is left to Load.
	var some *inventory.Host
	for _, h := range got.Hosts {
		some = h
	}
	if _, err := c.Client().Put(ctx, "/fleet/names/stray", some.Identity); err != nil {
		t.Fatal(err)
	}
	if one, err := etcd.(inventory.HostLoader).LoadHost(ctx, "stray"); one != nil || err != nil {
		t.Fatalf("LoadHost of a name key the record does not hold: %v, %v", one, err)
	}
	if _, err := c.Client().Delete(ctx, "/fleet/names/stray"); err != nil {
		t.Fatal(err)
	}

	// Import into another prefix, export back.
	other := openStore(t, c.Spec("/copy", ""))
	if err := inventory.Import(ctx, other, want); err != nil {
		t.Fatal(err)
	}
	back, err := other.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, back, comparable); diff != "" {
		t.Fatalf("export after import (-file +export):\n%s", diff)
	}
	// An import replaces what the prefix held.
	if err := inventory.Import(ctx, other, inventory.New()); err != nil {
		t.Fatal(err)
	}
	resp, err := c.Client().Get(ctx, "/copy/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, kv := range resp.Kvs {
		keys = append(keys, string(kv.Key))
	}
	if diff := cmp.Diff([]string{"/copy/format"}, keys); diff != "" {
		t.Fatalf("keys after importing an empty inventory (-want +got):\n%s", diff)
	}
}

// TestEtcdNameKeyRules: while two records claim one name (a write whose
// taker's transaction was applied and whose giver's was not yet), the
// name's key says who holds it, to Load as to LoadHost.
func TestEtcdNameKeyRules(t *testing.T) {
	c := etcdtest.Start(t, 1)
	ctx := context.Background()
	etcd := openStore(t, c.Spec("/fleet", "timeout=5s"))
	// Host 1 is seen first: by first sight it would keep a name both
	// records claim.
	if err := record(ctx, etcd, "lyon", t0, []inventory.Observation{siteObs(1, "10.1.2.3")}); err != nil {
		t.Fatal(err)
	}
	if err := record(ctx, etcd, "lyon", t0.Add(time.Minute), []inventory.Observation{siteObs(1, "10.1.2.3"), siteObs(2, "10.1.2.4")}); err != nil {
		t.Fatal(err)
	}
	st, err := etcd.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	first, second := st.Hosts[fmt.Sprintf("%032x", 1)], st.Hosts[fmt.Sprintf("%032x", 2)]
	taken, given := first.Name, second.Name
	// The second host takes the first's name, its key with it; the
	// first host's record is not rewritten yet.
	second.Name = taken
	b, err := json.Marshal(second)
	if err != nil {
		t.Fatal(err)
	}
	cl := c.Client()
	if _, err := cl.Put(ctx, "/fleet/hosts/"+second.Identity, string(b)); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Put(ctx, "/fleet/names/"+strings.ToLower(taken), second.Identity); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Delete(ctx, "/fleet/names/"+strings.ToLower(given)); err != nil {
		t.Fatal(err)
	}
	got, err := etcd.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if h := got.Hosts[second.Identity]; h.Name != taken {
		t.Fatalf("%s held by %s's record and key: Load gave it %q", taken, second.Identity, h.Name)
	}
	if h := got.Hosts[first.Identity]; h.Name == taken || h.Name == "" {
		t.Fatalf("the first host kept %q or no name: %q", taken, h.Name)
	}
	hl := etcd.(inventory.HostLoader)
	one, err := hl.LoadHost(ctx, taken)
	if err != nil || one == nil || one.Hosts[second.Identity] == nil {
		t.Fatalf("LoadHost %q: %v, %v; want the second host", taken, one, err)
	}
	var want, gotOne bytes.Buffer
	got.WriteHost(&want, taken, t0, time.Hour, inventory.PreferIPv4)
	one.WriteHost(&gotOne, taken, t0, time.Hour, inventory.PreferIPv4)
	if !bytes.Equal(want.Bytes(), gotOne.Bytes()) {
		t.Fatalf("LoadHost %q printed otherwise:\n%s\nwant:\n%s", taken, gotOne.Bytes(), want.Bytes())
	}
	// The name the first host gets meanwhile has no key: left to Load.
	if one, err := hl.LoadHost(ctx, got.Hosts[first.Identity].Name); one != nil || err != nil {
		t.Fatalf("LoadHost of a name without a key: %v, %v", one, err)
	}
}

// checkLoadHost checks that st's LoadHost reads each host of the state
// full (st's, read whole) as Load does, and leaves to Load a name no
// host holds, or one asked in another case.
func checkLoadHost(t *testing.T, st inventory.Store, full *inventory.State) {
	t.Helper()
	ctx := context.Background()
	hl, ok := st.(inventory.HostLoader)
	if !ok {
		t.Fatalf("%s: no LoadHost", st)
	}
	for _, h := range full.Hosts {
		one, err := hl.LoadHost(ctx, h.Name)
		if err != nil || one == nil || len(one.Hosts) != 1 {
			t.Fatalf("%s: LoadHost %q: %v, %v", st, h.Name, one, err)
		}
		var want, got bytes.Buffer
		now := t0.Add(time.Hour)
		if ok, err := full.WriteHost(&want, h.Name, now, time.Hour, inventory.PreferIPv4); !ok || err != nil {
			t.Fatal(ok, err)
		}
		if ok, err := one.WriteHost(&got, h.Name, now, time.Hour, inventory.PreferIPv4); !ok || err != nil {
			t.Fatal(ok, err)
		}
		if !bytes.Equal(want.Bytes(), got.Bytes()) {
			t.Fatalf("%s: LoadHost %q printed otherwise:\n%s\nwant:\n%s", st, h.Name, got.Bytes(), want.Bytes())
		}
		if upper := strings.ToUpper(h.Name); upper != h.Name {
			if one, err := hl.LoadHost(ctx, upper); one != nil || err != nil {
				t.Fatalf("%s: LoadHost %q: %v, %v; want it left to Load", st, upper, one, err)
			}
		}
	}
	if one, err := hl.LoadHost(ctx, "no-such-host"); one != nil || err != nil {
		t.Fatalf("%s: LoadHost of no host: %v, %v", st, one, err)
	}
}

// checkNameKeys checks that the store's name keys are exactly the hosts'
// names, each held by its host.
func checkNameKeys(t *testing.T, c *etcdtest.Cluster, prefix string, s *inventory.State) {
	t.Helper()
	resp, err := c.Client().Get(context.Background(), prefix+"/names/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, kv := range resp.Kvs {
		got[strings.TrimPrefix(string(kv.Key), prefix+"/names/")] = string(kv.Value)
	}
	want := map[string]string{}
	for id, h := range s.Hosts {
		if other, dup := want[strings.ToLower(h.Name)]; dup {
			t.Fatalf("name %s held by %s and %s", h.Name, other, id)
		}
		want[strings.ToLower(h.Name)] = id
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("name keys (-hosts +keys):\n%s", diff)
	}
}

// TestEtcdFindsForeignRecords: a record ifl does not write is refused,
// naming its key.
func TestEtcdFindsForeignRecords(t *testing.T) {
	c := etcdtest.Start(t, 1)
	ctx := context.Background()
	st := openStore(t, c.Spec("/x", ""))
	if err := record(ctx, st, "lyon", t0, []inventory.Observation{siteObs(1, "10.1.2.3")}); err != nil {
		t.Fatal(err)
	}
	id := fmt.Sprintf("%032x", 1)
	for _, tc := range []struct{ key, value, want string }{
		{"/x/hosts/" + id, `{"identity":"` + id + `","name":"localhost","ip":"10.1.2.3"}`, `host "` + id + `": field "name"`},
		{"/x/hosts/" + id, `[`, `key "/x/hosts/` + id + `"`},
		{"/x/other/k", `1`, `key "/x/other/k": not a key ifl writes`},
		{"/x/names/web1", `$(reboot)`, `key "/x/names/web1": want an identity`},
	} {
		if _, err := c.Client().Put(ctx, tc.key, tc.value); err != nil {
			t.Fatal(err)
		}
		_, err := st.Load(ctx)
		if !errors.Is(err, inventory.ErrForeign) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s = %s: %v, want ErrForeign naming %s", tc.key, tc.value, err, tc.want)
		}
		if _, err := c.Client().Delete(ctx, tc.key); err != nil {
			t.Fatal(err)
		}
	}
}

// writers runs two sites' controllers at once, each recording rounds:
// lyon sees hosts 0-29, oslo hosts 20-49 (20-29 at both, moving between
// them every round), their hostnames shared by several hosts so that
// names collide. between, if set, runs after lyon's round r.
func writers(t *testing.T, spec string, rounds int, between func(r int)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for w, site := range []string{"lyon", "oslo"} {
		st := openStore(t, spec)
		var obs []inventory.Observation
		for i := 20 * w; i < 20*w+30; i++ {
			obs = append(obs, siteObs(i, fmt.Sprintf("10.%d.0.%d", 1+8*w, i+1)))
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range rounds {
				if err := record(ctx, st, site, t0.Add(time.Duration(r)*time.Second), obs); err != nil {
					errs[w] = fmt.Errorf("%s, round %d: %w", site, r, err)
					return
				}
				if between != nil && w == 0 {
					between(r)
				}
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
}

// checkWriters checks what writers left: every host once, every round
// of each site counted once for every host it saw, names unique.
func checkWriters(t *testing.T, c *etcdtest.Cluster, spec, prefix string, rounds int) {
	t.Helper()
	s, err := openStore(t, spec).Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for id := range s.Hosts {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	var want []string
	for i := range 50 {
		want = append(want, fmt.Sprintf("%032x", i))
	}
	if diff := cmp.Diff(want, ids); diff != "" {
		t.Fatalf("hosts (-want +got):\n%s", diff)
	}
	for i := range 50 {
		h := s.Hosts[fmt.Sprintf("%032x", i)]
		n, sites := rounds, []string{"lyon"}
		switch {
		case i >= 30:
			sites = []string{"oslo"}
		case i >= 20:
			n, sites = 2*rounds, []string{"lyon", "oslo"}
		}
		var got []string
		for site, sg := range h.Sites {
			got = append(got, site)
			if !sg.LastSeen.Equal(t0.Add(time.Duration(rounds-1) * time.Second)) {
				t.Errorf("host %d: %s saw it last at %v, want its last round's time", i, site, sg.LastSeen)
			}
		}
		slices.Sort(got)
		if h.Rounds != n || !slices.Equal(got, sites) {
			t.Errorf("host %d: %d rounds, sightings %v; want %d, %v (an update lost or counted twice)", i, h.Rounds, got, n, sites)
		}
	}
	for _, site := range []string{"lyon", "oslo"} {
		if r := s.Rounds[site]; r.Rounds != rounds {
			t.Errorf("site %s: %d rounds recorded, want %d", site, r.Rounds, rounds)
		}
	}
	checkNameKeys(t, c, prefix, s)
}

// TestEtcdConcurrentWriters: two controllers writing at once lose
// nothing and duplicate nothing.
func TestEtcdConcurrentWriters(t *testing.T) {
	c := etcdtest.Start(t, 1)
	spec := c.Spec("/fleet", "timeout=5s")
	writers(t, spec, 12, nil)
	checkWriters(t, c, spec, "/fleet", 12)
}

// TestEtcdLeaderKilled: the leader of a 3-member cluster killed while
// two controllers write: after the election nothing is lost or counted
// twice.
func TestEtcdLeaderKilled(t *testing.T) {
	c := etcdtest.Start(t, 3)
	spec := c.Spec("/fleet", "timeout=2s&dial-timeout=2s")
	killed := -1
	writers(t, spec, 12, func(r int) {
		if r == 3 {
			killed = c.Leader()
			c.Stop(killed)
			t.Logf("killed the leader, member %d, after lyon's round %d", killed, r)
		}
	})
	if killed < 0 {
		t.Fatal("the leader was never killed")
	}
	if l := c.Leader(); l == killed {
		t.Fatalf("member %d leads, but was killed", l)
	}
	checkWriters(t, c, spec, "/fleet", 12)
	c.Restart(killed)
}

// TestEtcdTLSAndUsers: a store over TLS with a client certificate, and
// users whose passwords are read from files: the probes' role writes the
// prefix, Ansible's only reads it.
func TestEtcdTLSAndUsers(t *testing.T) {
	c := etcdtest.StartTLS(t, 1)
	ctx := context.Background()
	cl := c.Client()
	for _, step := range []func() error{
		func() error { _, err := cl.RoleAdd(ctx, "ifl-probe"); return err },
		func() error {
			_, err := cl.RoleGrantPermission(ctx, "ifl-probe", "/fleet/", clientv3.GetPrefixRangeEnd("/fleet/"), clientv3.PermissionType(clientv3.PermReadWrite))
			return err
		},
		func() error { _, err := cl.RoleAdd(ctx, "ifl-read"); return err },
		func() error {
			_, err := cl.RoleGrantPermission(ctx, "ifl-read", "/fleet/", clientv3.GetPrefixRangeEnd("/fleet/"), clientv3.PermissionType(clientv3.PermRead))
			return err
		},
		func() error { _, err := cl.UserAdd(ctx, "probe", "probe-pw"); return err },
		func() error { _, err := cl.UserGrantRole(ctx, "probe", "ifl-probe"); return err },
		func() error { _, err := cl.UserAdd(ctx, "ansible", "ansible-pw"); return err },
		func() error { _, err := cl.UserGrantRole(ctx, "ansible", "ifl-read"); return err },
		func() error { _, err := cl.UserAdd(ctx, "root", "root-pw"); return err },
		func() error { _, err := cl.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := cl.AuthEnable(ctx); return err },
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	spec := func(user, pw string) string {
		f := filepath.Join(dir, user)
		if err := os.WriteFile(f, []byte(pw+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return c.Spec("/fleet", "ca="+c.CA+"&cert="+c.Cert+"&key="+c.Key+"&user="+user+"&password-file="+f+"&timeout=5s")
	}
	probe := openStore(t, spec("probe", "probe-pw"))
	if err := record(ctx, probe, "lyon", t0, []inventory.Observation{siteObs(1, "10.1.2.3")}); err != nil {
		t.Fatalf("the probes' user: %v", err)
	}
	ansible := openStore(t, spec("ansible", "ansible-pw"))
	s, err := ansible.Load(ctx)
	if err != nil || len(s.Hosts) != 1 {
		t.Fatalf("Ansible's user reads: %v", err)
	}
	err = ansible.Update(ctx, func(s *inventory.State) error {
		s.ApplySite("oslo", t0, []inventory.Observation{siteObs(2, "10.9.2.3")}, everywhere, true)
		return nil
	})
	if err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Fatalf("Ansible's user wrote: %v, want permission denied", err)
	}
	// The client logs in when it connects.
	if st, err := inventory.Open(spec("probe", "wrong"), ""); err == nil || !strings.Contains(err.Error(), "authentication failed") {
		if err == nil {
			st.Close()
		}
		t.Fatalf("a wrong password: %v, want authentication failed", err)
	}
	plain := openStore(t, c.Spec("/fleet", "dial-timeout=1s&timeout=1s"))
	if _, err := plain.Load(ctx); err == nil {
		t.Fatal("read without TLS")
	}
}

// BenchmarkEtcdRecord10000 is a site's round of 10,000 hosts recorded
// in a 3-member cluster on this machine: the first creates them (a
// record and a name key each), the others update their sightings.
func BenchmarkEtcdRecord10000(b *testing.B) {
	c := etcdtest.Start(b, 3)
	ctx := context.Background()
	st, err := inventory.Open(c.Spec("/bench", "timeout=60s"), "")
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	obs := make([]inventory.Observation, 10000)
	for i := range obs {
		obs[i] = siteObs(i, fmt.Sprintf("10.1.%d.%d", i/200, i%200+1))
		obs[i].Facts.Hostname = fmt.Sprintf("h%05d", i)
	}
	apply := func(r int) {
		err := st.Update(ctx, func(s *inventory.State) error {
			s.ApplySite("lyon", t0.Add(time.Duration(r)*time.Minute), obs, everywhere, true)
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	start := time.Now()
	apply(0)
	b.Logf("the first round, 10,000 new hosts: %v; %s", time.Since(start), st.(*inventory.Etcd).Stats())
	b.ResetTimer()
	for r := 1; r <= b.N; r++ {
		before := st.(*inventory.Etcd).Stats()
		start := time.Now()
		apply(r)
		if r == 1 {
			b.Logf("a round of 10,000 sightings: %v; %s", time.Since(start), st.(*inventory.Etcd).Stats().Since(before))
		}
	}
}

// BenchmarkEtcdLoad reads 20,000 hosts (IFL_BENCH_HOSTS) from etcd.
func BenchmarkEtcdLoad(b *testing.B) {
	c := etcdtest.Start(b, 1)
	ctx := context.Background()
	st, err := inventory.Open(c.Spec("/bench", "timeout=60s"), "")
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	if err := inventory.Import(ctx, st, inventory.Synthetic(benchLoadHosts())); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		if _, err := st.Load(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

func benchLoadHosts() int {
	if n, err := strconv.Atoi(os.Getenv("IFL_BENCH_HOSTS")); err == nil && n > 0 {
		return n
	}
	return 20000
}
