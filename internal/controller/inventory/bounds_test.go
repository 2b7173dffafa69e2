package inventory

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"

	"github.com/ifl-project/ifl/proto"
)

// fresh is an agent at ip whose facts list ip on an interface with mac,
// and carry os.
func fresh(id, ip, mac, os string) Observation {
	a := netip.MustParseAddr(ip)
	p := netip.PrefixFrom(a, 64)
	if a.Is4() {
		p = netip.PrefixFrom(a, 24)
	}
	return Observation{Identity: id, Addr: a, Port: 7440, Facts: &proto.Facts{
		Hostname: "h", OS: proto.OSRelease{PrettyName: os},
		Interfaces: []proto.Interface{{Name: "eth0", MAC: mac, Addrs: []string{p.String()}}},
	}}
}

func warningsOf(ch Changes, kind string) []Warning {
	var out []Warning
	for _, w := range ch.Warnings {
		if w.Kind == kind {
			out = append(out, w)
		}
	}
	return out
}

// TestNewIdentitiesPerPrefixAreBounded: one host with a /64 answering
// with a fresh key at a fresh address, and a fresh MAC in its facts, for
// every one of 200 identities a probe, five probes long, each fact 60 KB
// long. The state keeps at most MaxNewPerPrefix of them, within bounded
// bytes; past MaxNewPerPrefix in one probe, the others are refused.
func TestNewIdentitiesPerPrefixAreBounded(t *testing.T) {
	long := strings.Repeat("x", 60<<10)
	s := New()
	n := 0
	round := func(i, count int) Changes {
		var obs []Observation
		for range count {
			obs = append(obs, fresh(fmt.Sprintf("%032x", n), fmt.Sprintf("2001:db8:1::%x", n+1), fmt.Sprintf("02:00:00:00:%02x:%02x", n>>8, n&0xff), long))
			n++
		}
		return s.Apply(t0.Add(time.Duration(i)*time.Minute), obs, all, true)
	}
	wantForgotten := []int{0, 144, 200, 200, 200}
	for i := range 5 {
		ch := round(i, 200)
		if want := min(200*(i+1), MaxNewPerPrefix); len(s.Hosts) != want {
			t.Fatalf("probe %d: %d hosts, want %d", i, len(s.Hosts), want)
		}
		if r := warningsOf(ch, KindRefused); len(r) != 0 {
			t.Errorf("probe %d: refused %+v", i, r)
		}
		f := warningsOf(ch, KindForgotten)
		if wantForgotten[i] == 0 {
			if len(f) != 0 {
				t.Errorf("probe %d: forgotten %+v", i, f)
			}
			continue
		}
		if len(f) != 1 || f[0].Count != wantForgotten[i] || len(f[0].Identities) != 20 || !cmp.Equal(f[0].Prefixes, []string{"2001:db8:1::/64"}) ||
			!strings.HasPrefix(f[0].Message, fmt.Sprintf("%d hosts seen in one probe only forgotten, past 256 such hosts in 2001:db8:1::/64: ", wantForgotten[i])) {
			t.Errorf("probe %d: forgotten %+v", i, f)
		}
	}
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > 1<<20 {
		t.Errorf("the state is %d bytes after 1000 identities of 60 KB facts", len(b))
	}
	for _, h := range s.Hosts {
		if len(h.OS) != MaxOS {
			t.Fatalf("OS of %d bytes kept", len(h.OS))
		}
	}

	// 300 new ones in one probe: the first 256, by address, are added.
	first := n
	ch := round(5, 300)
	r := warningsOf(ch, KindRefused)
	var want []string
	for i := first + 256; i < first+276; i++ {
		want = append(want, fmt.Sprintf("%032x", i))
	}
	if len(r) != 1 || r[0].Count != 44 || !cmp.Equal(r[0].Identities, want) || !cmp.Equal(r[0].Prefixes, []string{"2001:db8:1::/64"}) || len(r[0].MACs) != 0 {
		t.Fatalf("refused: %+v", r)
	}
	wantMsg := fmt.Sprintf("44 new identities not added (more than 256 new hosts in 2001:db8:1::/64): %s, %s, %s, %s, %s and 39 more; they are added in a later probe, as the bounds allow",
		want[0], want[1], want[2], want[3], want[4])
	if r[0].Message != wantMsg {
		t.Errorf("message\n%s\nwant\n%s", r[0].Message, wantMsg)
	}
	if len(s.Hosts) != MaxNewPerPrefix || len(ch.New) != MaxNewPerPrefix {
		t.Errorf("%d hosts, %d new", len(s.Hosts), len(ch.New))
	}
	for i := first + 256; i < first+300; i++ {
		if s.Hosts[fmt.Sprintf("%032x", i)] != nil {
			t.Fatalf("refused identity %d is in the state", i)
		}
	}

	// Hosts that answer again are established, and leave room.
	var again []Observation
	for i := first; i < first+256; i++ {
		again = append(again, fresh(fmt.Sprintf("%032x", i), fmt.Sprintf("2001:db8:1::%x", i+1), fmt.Sprintf("02:00:00:00:%02x:%02x", i>>8, i&0xff), "os"))
	}
	for i := first + 256; i < first+300; i++ {
		again = append(again, fresh(fmt.Sprintf("%032x", i), fmt.Sprintf("2001:db8:1::%x", i+1), fmt.Sprintf("02:00:00:00:%02x:%02x", i>>8, i&0xff), "os"))
	}
	ch = s.Apply(t0.Add(time.Hour), again, all, true)
	if len(ch.New) != 44 || len(ch.Warnings) != 0 || len(s.Hosts) != 300 {
		t.Errorf("second sight: %d new, %d hosts, warnings %+v", len(ch.New), len(s.Hosts), ch.Warnings)
	}
}

// TestNewIdentitiesPerMACAreBounded: fresh keys at addresses of many
// prefixes, all on one MAC by their facts, are added MaxNewPerMAC a probe;
// a first probe of a whole /24 of distinct hosts is taken whole.
func TestNewIdentitiesPerMACAreBounded(t *testing.T) {
	s := New()
	n := 0
	for i := range 3 {
		var obs []Observation
		for range 10 {
			obs = append(obs, fresh(fmt.Sprintf("%032x", n), fmt.Sprintf("198.18.%d.5", n), "02:00:00:00:00:0A", ""))
			n++
		}
		ch := s.Apply(t0.Add(time.Duration(i)*time.Minute), obs, all, true)
		r := warningsOf(ch, KindRefused)
		if len(ch.New) != MaxNewPerMAC || len(r) != 1 || r[0].Count != 10-MaxNewPerMAC || !cmp.Equal(r[0].MACs, []string{"02:00:00:00:00:0a"}) || len(r[0].Prefixes) != 0 ||
			!strings.Contains(r[0].Message, "6 new identities not added (more than 4 new identities at MAC 02:00:00:00:00:0a): ") {
			t.Fatalf("probe %d: %d new, refused %+v", i, len(ch.New), r)
		}
	}
	if len(s.Hosts) != 3*MaxNewPerMAC {
		t.Errorf("%d hosts", len(s.Hosts))
	}

	s = New()
	var obs []Observation
	for i := 1; i < 255; i++ {
		obs = append(obs, fresh(fmt.Sprintf("%032x", i), fmt.Sprintf("198.18.5.%d", i), fmt.Sprintf("02:00:00:00:05:%02x", i), "Debian"))
	}
	if ch := s.Apply(t0, obs, all, true); len(ch.New) != 254 || len(ch.Warnings) != 0 {
		t.Errorf("a /24: %d new, warnings %+v", len(ch.New), ch.Warnings)
	}
}

// TestFactsAreBounded: every string of a host is kept within its bound,
// as valid UTF-8, cut short visibly, with one warning when a cut value
// changes.
func TestFactsAreBounded(t *testing.T) {
	long := func(c string) string { return "a" + strings.Repeat(c, 30000) + "\xff" }
	f := &proto.Facts{
		Hostname: long("é"), MachineID: long("m"), OS: proto.OSRelease{PrettyName: long("東")}, Kernel: long("k"), AgentVersion: long("v"),
		Interfaces:    []proto.Interface{{Name: "eth0", MAC: long("0"), Addrs: []string{"198.18.0.9/24"}}},
		DefaultRoutes: []proto.Route{{Family: "inet", Gateway: long("g")}},
		Labels:        map[string]string{},
	}
	for i := range 100 {
		f.Labels[fmt.Sprintf("bad key %d %s", i, strings.Repeat("k", 1000))] = "v"
	}
	const id = "0123456789abcdef0123456789abcdef"
	s := New()
	apply := func(i int) Changes {
		return s.Apply(t0.Add(time.Duration(i)*time.Minute), []Observation{{Identity: id, Addr: netip.MustParseAddr("198.18.0.9"), Port: 7440, Facts: f}}, all, true)
	}
	ch := apply(0)
	h := s.Hosts[id]
	for _, c := range []struct {
		field, v string
		max      int
	}{
		{"hostname", h.Hostname, MaxHostname}, {"machine_id", h.MachineID, MaxMachineID}, {"os", h.OS, MaxOS},
		{"kernel", h.Kernel, MaxKernel}, {"agent_version", h.AgentVersion, MaxAgentVersion}, {"gateway", h.Gateway, MaxGateway}, {"mac", h.MACs[0], MaxMAC},
	} {
		if len(c.v) > c.max || len(c.v) < c.max-3 || !utf8.ValidString(c.v) || !strings.HasSuffix(c.v, Truncated) || c.v[0] != 'a' {
			t.Errorf("%s: %d bytes kept (at most %d), valid UTF-8 %v: %.20q...%q", c.field, len(c.v), c.max, utf8.ValidString(c.v), c.v, c.v[max(0, len(c.v)-8):])
		}
	}
	if len(h.Dropped) != MaxLabels {
		t.Errorf("%d dropped label keys kept", len(h.Dropped))
	}
	for _, k := range h.Dropped {
		if len(k) > MaxLabelKey {
			t.Fatalf("a dropped key of %d bytes kept", len(k))
		}
	}
	tr := warningsOf(ch, KindTruncated)
	want := []Cut{
		{"hostname", 60002, MaxHostname}, {"machine_id", 30002, MaxMachineID}, {"os", 90002, MaxOS}, {"kernel", 30002, MaxKernel},
		{"agent_version", 30002, MaxAgentVersion}, {"gateway", 30002, MaxGateway}, {"macs", 30002, MaxMAC},
	}
	if len(tr) != 1 || !cmp.Equal(tr[0].Cuts, want) {
		t.Fatalf("truncated warnings %+v", tr)
	}
	if !strings.HasPrefix(tr[0].Message, "ifl-0123456789abcdef ("+id+"): cut short in the inventory (ending in …): hostname (60002 bytes, at most 253 kept), machine_id (30002 bytes, at most 128 kept), ") {
		t.Errorf("message %q", tr[0].Message)
	}
	if tr := warningsOf(apply(1), KindTruncated); len(tr) != 0 {
		t.Errorf("the same facts again: %+v", tr)
	}
	f.OS.PrettyName = long("x")
	if tr := warningsOf(apply(2), KindTruncated); len(tr) != 1 || !cmp.Equal(tr[0].Cuts, []Cut{{"os", 30002, MaxOS}}) {
		t.Errorf("a new OS: %+v", tr)
	}
	// Label values read back as they were kept: invalid UTF-8 is made
	// U+FFFD before they are measured.
	f.Labels = map[string]string{"ok": strings.Repeat("\xff", 128), "long": strings.Repeat("a\xff", 64)}
	apply(3)
	if got := s.Hosts[id].Labels; !cmp.Equal(got, map[string]string{"ok": "\uFFFD"}) {
		t.Errorf("labels %q", got)
	}
}

func TestBound(t *testing.T) {
	for _, c := range []struct {
		in   string
		max  int
		want string
		cut  bool
	}{
		{"web", 253, "web", false},
		{"abcdef", 6, "abcdef", false},
		{"abcdefg", 6, "abc…", true},
		{"aéééé", 6, "aé…", true},
		{"aéééé", 5, "a…", true}, // é is 2 bytes: the cut falls inside one
		{"a\xffb", 3, "…", true},
		{"\xff\xfe", 3, "\uFFFD", false},
	} {
		got, cut := bound(c.in, c.max)
		if got != c.want || cut != c.cut || len(got) > c.max {
			t.Errorf("bound(%q, %d) = %q, %v; want %q, %v", c.in, c.max, got, cut, c.want, c.cut)
		}
	}
}
