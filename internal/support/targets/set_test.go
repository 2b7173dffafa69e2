package targets

import (
	"context"
	"math/big"
	"net/netip"
	"strings"
	"testing"

	"go4.org/netipx"
)

// TestSet: targets far larger than any limit are a set all the same, to
// count and to test addresses against, less what is excluded.
func TestSet(t *testing.T) {
	r := fakeResolver{"gw.lan": addrs("198.18.0.1")}
	for _, tt := range []struct {
		words, exclude []string
		count          string
		in, out        []string
	}{
		{[]string{"2001:db8:48::/64"}, nil, "18446744073709551616", []string{"2001:db8:48::", "2001:db8:48::ffff:ffff:ffff:ffff"}, []string{"2001:db8:49::1", "198.18.0.1"}},
		{[]string{"2001:db8:48::/64"}, []string{"2001:db8:48::/65"}, "9223372036854775808", []string{"2001:db8:48:0:8000::1"}, []string{"2001:db8:48::1"}},
		{[]string{"::/0", "0.0.0.0/0"}, nil, "340282366920938463463374607436063178750", []string{"::", "198.18.0.1"}, []string{"0.0.0.0", "255.255.255.255"}},
		{[]string{"198.18.0.0/30", "gw.lan", "198.18.0.9-10"}, []string{"198.18.0.2"}, "3", []string{"198.18.0.1", "198.18.0.10"}, []string{"198.18.0.0", "198.18.0.2", "198.18.0.3"}},
	} {
		s, err := Set(context.Background(), tt.words, tt.exclude, r)
		if err != nil {
			t.Fatalf("%v less %v: %v", tt.words, tt.exclude, err)
		}
		if got := Count(s); got.Cmp(mustBig(tt.count)) != 0 {
			t.Errorf("%v less %v: %s addresses, want %s", tt.words, tt.exclude, got, tt.count)
		}
		for _, a := range tt.in {
			if !s.Contains(netip.MustParseAddr(a)) {
				t.Errorf("%v less %v: %s is not in the set", tt.words, tt.exclude, a)
			}
		}
		for _, a := range tt.out {
			if s.Contains(netip.MustParseAddr(a)) {
				t.Errorf("%v less %v: %s is in the set", tt.words, tt.exclude, a)
			}
		}
	}
	if _, err := Set(context.Background(), []string{"2001:db8::/64"}, []string{"2001:db8::/129"}, r); err == nil || !strings.HasPrefix(err.Error(), `exclude: "2001:db8::/129": bad CIDR prefix`) {
		t.Errorf("bad exclude: %v", err)
	}
	if got := List(mustSet(t, "2001:db8::fe-2001:db8::101")); len(got) != 4 || got[0] != netip.MustParseAddr("2001:db8::fe") || got[3] != netip.MustParseAddr("2001:db8::101") {
		t.Errorf("List: %v", got)
	}
}

func mustBig(s string) *big.Int {
	n, ok := new(big.Int).SetString(s, 10)
	if !ok {
		panic(s)
	}
	return n
}

func mustSet(t *testing.T, words ...string) *netipx.IPSet {
	t.Helper()
	s, err := Set(context.Background(), words, nil, fakeResolver{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}
