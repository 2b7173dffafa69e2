package arpscan

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"net"
	"strings"
	"testing"
)

// TestLookupFindsEveryLine checks the search against every line of the
// table.
func TestLookupFindsEveryLine(t *testing.T) {
	sc := bufio.NewScanner(bytes.NewReader(ouiData))
	n := 0
	for sc.Scan() {
		p, name, _ := strings.Cut(sc.Text(), "\t")
		if got, ok := lookupOUI(ouiData, p); !ok || got != name {
			t.Fatalf("lookupOUI(%q) = %q, %v; want %q", p, got, ok, name)
		}
		n++
	}
	if n < 30000 {
		t.Fatalf("only %d registry entries", n)
	}
	if _, ok := lookupOUI(ouiData, "zzzzzz"); ok {
		t.Fatal("found a prefix that is not there")
	}
}

func BenchmarkVendor(b *testing.B) {
	mac, _ := hex.DecodeString("001b21010203")
	for b.Loop() {
		Vendor(net.HardwareAddr(mac))
	}
}
