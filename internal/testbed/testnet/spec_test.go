package testnet

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/ifl-project/ifl/internal/testbed/responder"
)

func TestResolveSpreadsHosts(t *testing.T) {
	s := Spec{Name: "t", Prefix: netip.MustParsePrefix("198.18.0.0/24"), Port: 7440,
		Hosts: Mix(map[Role]int{Agent: 4, Empty: 1}, 1)}
	router, ctl, err := s.resolve()
	if err != nil {
		t.Fatal(err)
	}
	if router != netip.MustParseAddr("198.18.0.1") || ctl != netip.MustParseAddr("198.18.0.2") {
		t.Fatalf("router %v, controller %v", router, ctl)
	}
	var got []string
	for _, h := range s.Hosts {
		got = append(got, h.Name+"="+h.Addr.String())
	}
	// 252 free addresses (.3 to .254) in five slices of about 50, each host
	// in the middle of its slice.
	want := "h001=198.18.0.28 h002=198.18.0.78 h003=198.18.0.129 h004=198.18.0.179 h005=198.18.0.229"
	if strings.Join(got, " ") != want {
		t.Errorf("addresses\n got %s\nwant %s", strings.Join(got, " "), want)
	}
	if m := mac(netip.MustParseAddr("198.18.0.28")); m != "02:18:c6:12:00:1c" {
		t.Errorf("mac %s", m)
	}
}

func TestResolveErrors(t *testing.T) {
	p := netip.MustParsePrefix("198.18.0.0/29")
	tests := []struct {
		spec Spec
		want string
	}{
		{Spec{Name: "Bad-Name", Prefix: p, Port: 7440}, `name "Bad-Name"`},
		{Spec{Name: "t", Prefix: netip.MustParsePrefix("10.0.0.0/24"), Port: 7440}, "inside 198.18.0.0/15"},
		{Spec{Name: "t", Prefix: netip.MustParsePrefix("198.18.0.0/14"), Port: 7440}, "inside 198.18.0.0/15"},
		{Spec{Name: "t", Prefix: p, Port: 80}, "port 80"},
		{Spec{Name: "t", Prefix: p, Port: 7440, Hosts: make([]HostSpec, 5)}, "5 hosts do not fit"},
		{Spec{Name: "t", Prefix: p, Port: 7440, Hosts: []HostSpec{{Role: "router"}}}, `role "router"`},
		{Spec{Name: "t", Prefix: p, Port: 7440, Hosts: []HostSpec{{Role: Agent, Addr: netip.MustParseAddr("198.18.0.2")}}}, "outside 198.18.0.0/29 or taken"},
		{Spec{Name: "t", Prefix: p, Port: 7440, Hosts: []HostSpec{{Role: Agent, Name: "a"}, {Role: Agent, Name: "a"}}}, `"a" used twice`},
		{Spec{Name: "t", Prefix: p, Port: 7440, Hosts: []HostSpec{{Role: WrongKey, Name: "wrong"}}}, `host name "wrong" is the name of one of the LAN's key files`},
	}
	for _, tt := range tests {
		if _, _, err := tt.spec.resolve(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%+v: got %v, want %q", tt.spec, err, tt.want)
		}
	}
}

func TestResolveIPv6(t *testing.T) {
	s := Spec{Name: "t", Prefix: netip.MustParsePrefix("198.18.48.0/24"), Prefix6: netip.MustParsePrefix("2001:db8:48::/64"), Port: 7440,
		Hosts: []HostSpec{
			{Role: Agent, Name: "v4", Addr: netip.MustParseAddr("198.18.48.5")},
			{Role: Agent, Name: "dual", Addr: netip.MustParseAddr("198.18.48.6"), IPv6: true},
			{Role: Agent, Name: "only6", NoIPv4: true},
			{Role: Closed, Name: "own6", Addr6: netip.MustParseAddr("2001:db8:48::beef")},
		}}
	router, ctl, err := s.resolve()
	if err != nil {
		t.Fatal(err)
	}
	if got := s.addr6(router).String() + " " + s.addr6(ctl).String(); got != "2001:db8:48::1 2001:db8:48::2" {
		t.Errorf("router and controller: %s", got)
	}
	var got []string
	for _, h := range s.Hosts {
		got = append(got, fmt.Sprintf("%s=%v,%v,%v", h.Name, h.Addr, h.Addr6, h.IPv6))
	}
	// The IPv6-only host takes the slot it would have had (the third of
	// four slices, .160), for its IPv6 address (::a0), and no IPv4
	// address.
	want := "v4=198.18.48.5,invalid IP,false dual=198.18.48.6,2001:db8:48::6,true only6=invalid IP,2001:db8:48::a0,true own6=198.18.48.223,2001:db8:48::beef,true"
	if strings.Join(got, " ") != want {
		t.Errorf("addresses\n got %s\nwant %s", strings.Join(got, " "), want)
	}
	if m := mac(netip.MustParseAddr("2001:db8:48::81")); m != "02:20:00:00:00:81" {
		t.Errorf("mac %s", m)
	}
	if ll := linkLocal("02:18:c6:12:30:05"); ll != netip.MustParseAddr("fe80::18:c6ff:fe12:3005") {
		t.Errorf("link-local %v", ll)
	}
}

func TestResolveIPv6Errors(t *testing.T) {
	p := netip.MustParsePrefix("198.18.48.0/24")
	p6 := netip.MustParsePrefix("2001:db8:48::/64")
	a6 := netip.MustParseAddr
	tests := []struct {
		prefix6 string
		hosts   []HostSpec
		want    string
	}{
		// Nothing routable, nothing but a /64 of the documentation range.
		{"2001:db9::/64", nil, "prefix6 2001:db9::/64: want a /64 inside 2001:db8::/32"},
		{"2001:4860::/64", nil, "prefix6 2001:4860::/64: want a /64 inside 2001:db8::/32"},
		{"fd00::/64", nil, "prefix6 fd00::/64: want a /64 inside 2001:db8::/32"},
		{"2001:db8::/32", nil, "prefix6 2001:db8::/32: want a /64"},
		{"2001:db8:48::/120", nil, "prefix6 2001:db8:48::/120: want a /64"},
		{"::ffff:198.18.48.0/120", nil, "want a /64 inside 2001:db8::/32"},
		{"198.18.48.0/24", nil, "want a /64 inside 2001:db8::/32"},
		{"", []HostSpec{{Role: Agent, IPv6: true}}, "host h001: IPv6 needs the LAN's prefix6"},
		{"", []HostSpec{{Role: Agent, NoIPv4: true}}, "host h001: IPv6 needs the LAN's prefix6"},
		{"", []HostSpec{{Role: Agent, Addr6: a6("2001:db8:48::9")}}, "host h001: IPv6 needs the LAN's prefix6"},
		{p6.String(), []HostSpec{{Role: Agent, NoIPv4: true, Addr: a6("198.18.48.9")}}, "address 198.18.48.9 on an IPv6-only host"},
		{p6.String(), []HostSpec{{Role: Agent, Addr6: a6("2001:db8:49::9")}}, "IPv6 address 2001:db8:49::9 is outside 2001:db8:48::/64 or taken"},
		{p6.String(), []HostSpec{{Role: Agent, Addr6: a6("2001:db8:48::2")}}, "IPv6 address 2001:db8:48::2 is outside 2001:db8:48::/64 or taken"},
		{p6.String(), []HostSpec{{Role: Agent, Addr6: a6("2001:db8:48::")}}, "is outside 2001:db8:48::/64 or taken"},
		{p6.String(), []HostSpec{{Role: Agent, Name: "a", Addr6: a6("2001:db8:48::9")}, {Role: Agent, Name: "b", Addr6: a6("2001:db8:48::9")}}, "host b: IPv6 address 2001:db8:48::9 is outside"},
		{p6.String(), []HostSpec{{Role: Agent, Name: "a", Addr6: a6("2001:db8:48::9")}, {Role: Agent, Name: "b", Addr: a6("198.18.48.9"), IPv6: true}}, "host b: IPv6 address 2001:db8:48::9, from its IPv4 address, is taken: give it addr6"},
	}
	for _, tt := range tests {
		s := Spec{Name: "t", Prefix: p, Port: 7440, Hosts: tt.hosts}
		if tt.prefix6 != "" {
			s.Prefix6 = netip.MustParsePrefix(tt.prefix6)
		}
		if _, _, err := s.resolve(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("prefix6 %q, hosts %+v: got %v, want %q", tt.prefix6, tt.hosts, err, tt.want)
		}
	}
}

func TestFirewallRulesCoverIPv6(t *testing.T) {
	for _, tt := range []struct {
		h    HostSpec
		want []string
	}{
		{HostSpec{Role: Dropped}, []string{"table inet ifltest ", "tcp dport 7440 drop"}},
		{HostSpec{Role: Agent, DropUDP: true}, []string{"table inet ifltestudp ", "udp dport 7440 drop"}},
		{HostSpec{Role: Agent, Loss: 20}, []string{"table inet ifltestloss ", "meta l4proto tcp numgen random mod 100 < 20 drop",
			"icmpv6 type nd-neighbor-solicit numgen random mod 100 < 20 drop", "table arp ifltestloss "}},
	} {
		got := firewallRules(tt.h, true, 7440)
		for _, w := range tt.want {
			if !strings.Contains(got, w) {
				t.Errorf("%+v: no %q in\n%s", tt.h, w, got)
			}
		}
		if strings.Contains(got, "table ip ") || strings.Contains(got, "table ip6 ") {
			t.Errorf("%+v: a table of one family only:\n%s", tt.h, got)
		}
	}
}

func TestResponderHosts(t *testing.T) {
	s := Spec{Name: "t", Prefix: netip.MustParsePrefix("198.18.0.0/28"), Port: 7440,
		Hosts:     []HostSpec{{Role: Agent, Addr: netip.MustParseAddr("198.18.0.5")}, {Role: Empty, Addr: netip.MustParseAddr("198.18.0.6")}},
		Responder: &ResponderSpec{Groups: []ResponderGroup{{Hosts: 2, Group: responder.Group{Open: []uint16{7440}}}, {Hosts: 1}}}}
	if _, _, err := s.resolve(); err != nil {
		t.Fatal(err)
	}
	hosts, err := s.responderHosts()
	if err != nil {
		t.Fatal(err)
	}
	// Ten free addresses (.3 to .14 less the agent's and the empty
	// one's): .3 .4 .7 .8 .9 .10 .11 .12 .13 .14, three hosts in the
	// middles of their thirds.
	var addrs []string
	groups := map[int]int{}
	for _, h := range hosts {
		addrs = append(addrs, h.Addr.String())
		groups[h.Group]++
	}
	if got, want := strings.Join(addrs, " "), "198.18.0.4 198.18.0.10 198.18.0.13"; got != want {
		t.Errorf("addresses %s, want %s", got, want)
	}
	if groups[0] != 2 || groups[1] != 1 || len(groups) != 2 {
		t.Errorf("hosts by group %v, want 2 of group 0 and 1 of group 1", groups)
	}
	if g := s.responderGroups(); len(g) != 2 || len(g[0].Open) != 1 || g[0].Open[0] != 7440 {
		t.Errorf("groups %+v", g)
	}
}

func TestResponderHostsErrors(t *testing.T) {
	p := netip.MustParsePrefix("198.18.0.0/29")
	tests := []struct {
		spec Spec
		want string
	}{
		{Spec{Name: "t", Prefix: p, Port: 7440, Responder: &ResponderSpec{Groups: []ResponderGroup{{Hosts: 5}}}},
			"testnet: responder: 5 hosts: 198.18.0.0/29 has room for 4 beside the others (and a responder answers for at most 131072)"},
		{Spec{Name: "t", Prefix: p, Port: 7440, Responder: &ResponderSpec{Groups: []ResponderGroup{{Hosts: 1}, {Hosts: -1}}}},
			"testnet: responder group 1: -1 hosts: want 0 or more"},
		{Spec{Name: "t", Prefix: p, Port: 7440, Hosts: []HostSpec{{Role: Closed, Name: "rsp"}}, Responder: &ResponderSpec{}},
			`testnet: host name "rsp" is the responder's namespace's`},
	}
	for _, tt := range tests {
		if _, _, err := tt.spec.resolve(); err != nil {
			t.Fatal(err)
		}
		if _, err := tt.spec.responderHosts(); err == nil || err.Error() != tt.want {
			t.Errorf("got %v, want %q", err, tt.want)
		}
	}
}

// TestJoinCoreRefuses: a core's name, prefix and size are checked before
// anything is made.
func TestJoinCoreRefuses(t *testing.T) {
	lan := &LAN{Spec: Spec{Name: "x", Prefix: netip.MustParsePrefix("198.19.160.0/26")}}
	for _, c := range []struct {
		name     string
		prefix   string
		services int
		want     string
	}{
		{"Core", "198.19.160.192/26", 3, `testnet: core name "Core": want 1 to 8 of [a-z0-9]`},
		{"core", "10.0.0.0/24", 3, "testnet: core prefix 10.0.0.0/24: want an IPv4 /24 to /28 inside 198.18.0.0/15"},
		{"core", "198.19.160.0/29", 3, "testnet: core prefix 198.19.160.0/29: want an IPv4 /24 to /28 inside 198.18.0.0/15"},
		{"core", "198.19.160.192/28", 7, "testnet: core 198.19.160.192/28: room for 1 to 6 services and 1 to 2 LANs, not 7 and 1"},
		{"core", "198.19.160.0/24", 3, "testnet: core prefix 198.19.160.0/24 overlaps LAN x's 198.19.160.0/26"},
	} {
		_, err := JoinCore(context.Background(), c.name, netip.MustParsePrefix(c.prefix), c.services, lan)
		if err == nil || err.Error() != c.want {
			t.Errorf("JoinCore(%q, %s, %d): %v, want %s", c.name, c.prefix, c.services, err, c.want)
		}
	}
}

// TestMoveToRefuses: a host is carried only to a free address of the
// other LAN, and only a host that is there with IPv4 alone.
func TestMoveToRefuses(t *testing.T) {
	spec := func(name, prefix string, hosts ...HostSpec) *LAN {
		s := Spec{Name: name, Prefix: netip.MustParsePrefix(prefix), Prefix6: netip.MustParsePrefix("2001:db8:1::/64"), Port: 7440, Hosts: hosts}
		router, ctl, err := s.resolve()
		if err != nil {
			t.Fatal(err)
		}
		return newLAN(s, Options{}, router, ctl)
	}
	a := spec("a", "198.19.160.0/26", HostSpec{Role: Agent, Name: "laptop"}, HostSpec{Role: Agent, Name: "dual", IPv6: true}, HostSpec{Role: Empty, Name: "gone"})
	b := spec("b", "198.19.160.64/26", HostSpec{Role: Agent, Name: "desk", Addr: netip.MustParseAddr("198.19.160.70")})
	for _, c := range []struct {
		host, addr, want string
	}{
		{"laptop", "198.19.160.5", "testnet: move laptop to b: 198.19.160.5 is outside 198.19.160.64/26 or taken"},
		{"laptop", "198.19.160.65", "testnet: move laptop to b: 198.19.160.65 is outside 198.19.160.64/26 or taken"},
		{"laptop", "198.19.160.127", "testnet: move laptop to b: 198.19.160.127 is outside 198.19.160.64/26 or taken"},
		{"laptop", "198.19.160.70", "testnet: move laptop to b: 198.19.160.70 is taken by desk"},
		{"dual", "198.19.160.71", "testnet: move dual to b: only a host that is there, with an IPv4 address only and no delay, is carried"},
		{"gone", "198.19.160.71", "testnet: move gone to b: only a host that is there, with an IPv4 address only and no delay, is carried"},
		{"nobody", "198.19.160.71", `testnet: move nobody to b: no host "nobody" in a`},
	} {
		err := a.MoveTo(context.Background(), c.host, b, netip.MustParseAddr(c.addr))
		if err == nil || err.Error() != c.want {
			t.Errorf("MoveTo(%s, %s): %v, want %s", c.host, c.addr, err, c.want)
		}
	}
}
