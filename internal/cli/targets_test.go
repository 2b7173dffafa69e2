package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestTargetErrors(t *testing.T) {
	list := filepath.Join(t.TempDir(), "empty.txt")
	if err := os.WriteFile(list, []byte("# nothing yet\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"probe", "127.0.0.256"}, "ifl: probe: \"127.0.0.256\": not an IP address (want an address, a CIDR prefix such as 198.18.0.0/24, a range such as 198.18.0.1-198.18.0.50 or 198.18.0.1-50, or a host name)\n"},
		{[]string{"probe", "198.18.0.0/15"}, "ifl: probe: too many addresses: 131070 addresses, more than the limit of 65536 (--force allows up to 16777216; --broadcast finds the agents there without sweeping)\n"},
		{[]string{"probe", "--force", "0.0.0.0/0"}, "ifl: probe: too many addresses: 4294967294 addresses, more than the limit of 16777216 (--broadcast finds the agents there without sweeping)\n"},
		{[]string{"probe", "2001:db8:48::/64"}, "ifl: probe: too many addresses: 18446744073709551616 addresses, more than the limit of 65536 (--broadcast finds the agents there without sweeping)\n"},
		{[]string{"probe", "--connect", "2001:db8:48::/104", "--exclude", "2001:db8:48::/105"}, "ifl: probe: too many addresses: 8388608 addresses, more than the limit of 65536 (--force allows up to 16777216; --broadcast finds the agents there without sweeping)\n"},
		{[]string{"scan", "2001:db8:48::/64"}, "ifl: scan: too many addresses: 18446744073709551616 addresses, more than the limit of 65536 (ifl probe --broadcast finds the agents there without sweeping)\n"},
		{[]string{"probe", "--broadcast", "2001:db8:48::/64", "--exclude", "2001:db8:48::/64"}, "ifl: probe: no addresses left once --exclude is applied\n"},
		{[]string{"scan", "198.18.0.0/30", "--exclude", "198.18.0.0/29"}, "ifl: scan: no addresses left once --exclude is applied\n"},
		{[]string{"scan", "198.18.0.1", "--exclude", "198.18.0.0/33"}, "ifl: scan: exclude: \"198.18.0.0/33\": bad CIDR prefix (want an address, a CIDR prefix such as 198.18.0.0/24, a range such as 198.18.0.1-198.18.0.50 or 198.18.0.1-50, or a host name)\n"},
		{[]string{"scan"}, "ifl: scan: no targets: give addresses, prefixes, ranges or host names, or --input-list FILE\n"},
		{[]string{"scan", "-iL", "/nonexistent/list"}, "ifl: scan: --input-list: open /nonexistent/list: no such file or directory\n"},
		{[]string{"scan", "--input-list", list}, "ifl: scan: --input-list " + list + " holds no target\n"},
	} {
		code, _, stderr := run(t, tt.args...)
		if code != 2 || stderr != tt.want {
			t.Errorf("%v: exit %d, stderr %q; want exit 2, %q", tt.args, code, stderr, tt.want)
		}
	}
}

// TestTargetList scans targets read from a file and from standard input,
// less the excluded ones.
func TestTargetList(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	list := filepath.Join(t.TempDir(), "targets.txt")
	if err := os.WriteFile(list, []byte("# lab\n127.0.0.1-3, 127.0.0.9\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		args  []string
		stdin string
	}{
		{"file", []string{"--input-list", list}, ""},
		{"stdin, as nmap's -iL", []string{"-iL", "-"}, "127.0.0.1-3\n127.0.0.9\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			args := append([]string{"scan", "--connect", "-p", port, "--exclude", "127.0.0.2,127.0.0.9", "--json"}, tc.args...)
			code := runEnv(context.Background(), args, &Env{Stdin: strings.NewReader(tc.stdin), Stdout: &out, Stderr: &errb})
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errb.String())
			}
			var rep struct {
				Ports   []scanRow      `json:"ports"`
				Summary map[string]any `json:"summary"`
			}
			if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
				t.Fatalf("%v\n%s", err, out.String())
			}
			if rep.Summary["addresses"] != float64(2) || len(rep.Ports) != 1 || rep.Ports[0].Address != "127.0.0.1" {
				t.Errorf("want 127.0.0.1 and 127.0.0.3 scanned, the first open: %+v", rep)
			}
		})
	}
}
