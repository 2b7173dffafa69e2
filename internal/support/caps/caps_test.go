package caps

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestHasMatchesProc compares capget with the kernel's own view in
// /proc/self/status.
func TestHasMatchesProc(t *testing.T) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skip("no /proc")
	}
	var eff uint64
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			for _, c := range strings.TrimSpace(v) {
				eff <<= 4
				switch {
				case c >= '0' && c <= '9':
					eff |= uint64(c - '0')
				default:
					eff |= uint64(c-'a') + 10
				}
			}
		}
	}
	got, err := Has(NetRaw)
	if err != nil {
		t.Fatal(err)
	}
	if want := eff&(1<<NetRaw) != 0; got != want {
		t.Errorf("Has(NetRaw) = %v, /proc says %v", got, want)
	}
}

// TestHasWithoutNetRaw runs this test binary without CAP_NET_RAW, as root
// if we are root, and checks that Has sees it gone.
func TestHasWithoutNetRaw(t *testing.T) {
	if os.Getenv("CAPS_CHILD") == "1" {
		if ok, err := Has(NetRaw); ok || err != nil {
			t.Fatalf("Has(NetRaw) = %v, %v without the capability", ok, err)
		}
		return
	}
	if _, err := exec.LookPath("setpriv"); err != nil || os.Geteuid() != 0 {
		t.Skip("needs root and setpriv")
	}
	cmd := exec.Command("setpriv", "--bounding-set=-net_raw", "--inh-caps=-net_raw", os.Args[0], "-test.run=^TestHasWithoutNetRaw$")
	cmd.Env = append(os.Environ(), "CAPS_CHILD=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
}
