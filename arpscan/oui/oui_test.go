package oui

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

func TestVendor(t *testing.T) {
	for _, tt := range []struct {
		mac  string
		want string
	}{
		{"00:1b:21:01:02:03", "Intel Corporate"},
		{"02:18:c6:12:00:05", "(locally administered)"},
		{"00:00:00:00:00:00", "XEROX CORPORATION"},
	} {
		hw, _ := net.ParseMAC(tt.mac)
		if got := Vendor(hw); got != tt.want {
			t.Errorf("Vendor(%s) = %q, want %q", tt.mac, got, tt.want)
		}
	}
}
