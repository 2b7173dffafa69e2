package targets

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

type fakeResolver map[string][]netip.Addr

func (f fakeResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if a, ok := f[host]; ok {
		return a, nil
	}
	return nil, errors.New("no such host")
}

func addrs(ss ...string) []netip.Addr {
	out := make([]netip.Addr, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParseAddr(s)
	}
	return out
}

func TestExpand(t *testing.T) {
	r := fakeResolver{"web-1.lan": addrs("198.18.0.7")}
	tests := []struct {
		name  string
		words []string
		want  []netip.Addr
	}{
		{"single", []string{"198.18.0.5"}, addrs("198.18.0.5")},
		{"prefix without network and broadcast", []string{"198.18.0.0/30"}, addrs("198.18.0.1", "198.18.0.2")},
		{"unmasked prefix", []string{"198.18.0.3/30"}, addrs("198.18.0.1", "198.18.0.2")},
		{"/31 keeps both", []string{"198.18.0.0/31"}, addrs("198.18.0.0", "198.18.0.1")},
		{"/32", []string{"198.18.0.9/32"}, addrs("198.18.0.9")},
		{"range", []string{"198.18.0.254-198.18.1.1"}, addrs("198.18.0.254", "198.18.0.255", "198.18.1.0", "198.18.1.1")},
		{"short range", []string{"198.18.0.10-12"}, addrs("198.18.0.10", "198.18.0.11", "198.18.0.12")},
		{"sorted and deduplicated", []string{"198.18.0.9", "198.18.0.0/29", "198.18.0.1"},
			addrs("198.18.0.1", "198.18.0.2", "198.18.0.3", "198.18.0.4", "198.18.0.5", "198.18.0.6", "198.18.0.9")},
		{"host name", []string{"web-1.lan"}, addrs("198.18.0.7")},
		{"ipv6", []string{"2001:db8::1-2001:db8::2"}, addrs("2001:db8::1", "2001:db8::2")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Expand(context.Background(), tt.words, 0, r)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestExpandErrors(t *testing.T) {
	tests := []struct {
		words []string
		max   int
		want  string
	}{
		{[]string{"198.18.0.0/33"}, 0, `"198.18.0.0/33": bad CIDR prefix`},
		{[]string{"198.18.0.9-3"}, 0, `"198.18.0.9-3": the range ends before it starts`},
		{[]string{"198.18.0.1-x"}, 0, `"198.18.0.1-x": bad range`},
		{[]string{"no_such.lan"}, 0, `"no_such.lan": cannot resolve host name`},
		{[]string{"bad host!"}, 0, `"bad host!": not a target`},
		{[]string{"198.18.0.0/15"}, 0, "too many addresses: 131070 addresses, more than the limit of 65536"},
		{[]string{"198.18.0.0/24", "198.18.1.0/24"}, 300, "too many addresses: 508 addresses, more than the limit of 300"},
		{[]string{"::/0"}, 0, "too many addresses: 340282366920938463463374607431768211456 addresses"},
		{[]string{"127.0.0.256"}, 0, `"127.0.0.256": not an IP address`},
		{[]string{"198.18.0"}, 0, `"198.18.0": not an IP address`},
		{[]string{"fe80::zz"}, 0, `"fe80::zz": not an IP address`},
		{[]string{""}, 0, "empty target"},
	}
	for _, tt := range tests {
		_, err := Expand(context.Background(), tt.words, tt.max, fakeResolver{})
		if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
			t.Errorf("%v: got %v, want %s...", tt.words, err, tt.want)
		}
	}
	if _, err := Expand(context.Background(), []string{"198.18.0.0/15"}, 0, nil); !errors.Is(err, ErrTooMany) {
		t.Errorf("got %v, want ErrTooMany", err)
	}
}

func TestExpandExcept(t *testing.T) {
	r := fakeResolver{"gw.lan": addrs("198.18.0.1")}
	tests := []struct {
		name           string
		words, exclude []string
		want           []netip.Addr
	}{
		{"an address", []string{"198.18.0.0/29"}, []string{"198.18.0.3"}, addrs("198.18.0.1", "198.18.0.2", "198.18.0.4", "198.18.0.5", "198.18.0.6")},
		{"a range and a name", []string{"198.18.0.0/29"}, []string{"198.18.0.4-6", "gw.lan"}, addrs("198.18.0.2", "198.18.0.3")},
		{"a prefix, wholly", []string{"198.18.0.1", "198.18.0.9"}, []string{"198.18.0.0/29"}, addrs("198.18.0.9")},
		{"everything", []string{"198.18.0.5"}, []string{"198.18.0.5"}, []netip.Addr{}},
		{"IPv6", []string{"2001:db8::/126"}, []string{"2001:db8::2"}, addrs("2001:db8::", "2001:db8::1", "2001:db8::3")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ExpandExcept(context.Background(), tt.words, tt.exclude, 0, r)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
	// The limit applies to what is left: a /15 less most of it fits.
	got, err := ExpandExcept(context.Background(), []string{"198.18.0.0/15"}, []string{"198.18.0.0/16", "198.19.1.0/24"}, 0, r)
	if err != nil || len(got) != 65279 || got[0] != netip.MustParseAddr("198.19.0.0") || got[len(got)-1] != netip.MustParseAddr("198.19.255.254") {
		t.Errorf("got %d addresses (%v), err %v", len(got), got[:min(2, len(got))], err)
	}
	if _, err := ExpandExcept(context.Background(), []string{"198.18.0.1"}, []string{"198.18.0.0/33"}, 0, r); err == nil || !strings.HasPrefix(err.Error(), `exclude: "198.18.0.0/33": bad CIDR prefix`) {
		t.Errorf("bad exclude: %v", err)
	}
}

func TestReadList(t *testing.T) {
	in := "# the lab\n198.18.0.1 198.18.0.2,198.18.0.3\r\n\n  198.18.1.0/24\t# routers\nweb-1.lan\n"
	got, err := ReadList("list", strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"198.18.0.1", "198.18.0.2", "198.18.0.3", "198.18.1.0/24", "web-1.lan"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}
