package oui

import (
	"net"
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// testdata/oui.txt is IEEE's format as ieee-data ships it (CRLF, address
// lines, "(hex)" and "(base 16)" lines): a prefix the embedded table has
// under another name, one it lacks, registered twice, and the MA-L block
// that the embedded table splits into MA-M ranges.
func TestParseIEEE(t *testing.T) {
	f, err := os.Open("testdata/oui.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got := string(parseIEEE(f))
	want := "001b21\tIntel Corporation (renamed)\n" +
		"70b3d5\tIEEE Registration Authority\n" +
		"fcfffe\tRegistered After The Build\n"
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("parseIEEE (-want +got):\n%s", diff)
	}
}

func TestVendorPrefersTheSystemTable(t *testing.T) {
	f, err := os.Open("testdata/oui.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	system := parseIEEE(f)
	for _, tc := range []struct {
		name, mac, want string
	}{
		{"renamed since the build", "00:1b:21:01:02:03", "Intel Corporation (renamed)"},
		{"registered since the build", "fc:ff:fe:01:02:03", "Registered After The Build"},
		{"only in the embedded table", "00:00:00:01:02:03", "XEROX CORPORATION"},
		{"a longer embedded prefix wins", "70:b3:d5:00:10:00", "SOREDI touch systems GmbH"},
		{"locally administered", "02:00:00:00:00:01", "(locally administered)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mac, err := net.ParseMAC(tc.mac)
			if err != nil {
				t.Fatal(err)
			}
			if got := vendor(mac, system); got != tc.want {
				t.Errorf("vendor(%s) = %q, want %q", tc.mac, got, tc.want)
			}
		})
	}
	// Without ieee-data, the embedded table alone.
	mac, _ := net.ParseMAC("00:1b:21:01:02:03")
	if got := vendor(mac, nil); got != "Intel Corporate" {
		t.Errorf("vendor without a system table = %q, want the embedded name", got)
	}
}

// TestSystemTableParses reads this machine's ieee-data if it has it: the
// real file must give a table as large as the registry.
func TestSystemTableParses(t *testing.T) {
	if _, err := os.Stat(systemOUI); err != nil {
		t.Skipf("%s: %v (apt-get install ieee-data)", systemOUI, err)
	}
	table := systemTable()
	if n := len(table); n < 500_000 {
		t.Fatalf("%s gave %d bytes of table; want the whole registry", systemOUI, n)
	}
	if v, ok := lookupOUI(table, "002272"); !ok || v == "" {
		t.Fatalf("lookupOUI(system, 002272) = %q, %v", v, ok)
	}
}
