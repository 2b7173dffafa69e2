package netinfo

import (
	"net"
	"net/netip"
	"slices"
	"testing"
)

// TestLinks: the loopback link is listed, down from Up, with its
// address and prefix length.
func TestLinks(t *testing.T) {
	links, err := Links()
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(links, func(l Link) bool { return l.Flags&net.FlagLoopback != 0 })
	if i < 0 {
		t.Skip("no loopback link")
	}
	lo := links[i]
	if lo.Up() {
		t.Errorf("%s: Up() for a loopback link", lo.Name)
	}
	if !slices.Contains(lo.Prefixes, netip.MustParsePrefix("127.0.0.1/8")) {
		t.Errorf("%s: prefixes %v, want 127.0.0.1/8 among them", lo.Name, lo.Prefixes)
	}
}
