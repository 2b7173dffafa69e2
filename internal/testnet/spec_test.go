package testnet

import (
	"net/netip"
	"strings"
	"testing"
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
	}
	for _, tt := range tests {
		if _, _, err := tt.spec.resolve(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%+v: got %v, want %q", tt.spec, err, tt.want)
		}
	}
}
