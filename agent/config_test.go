package agent

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func netipMust(s string) netip.Addr { return netip.MustParseAddr(s) }

func TestParseConfig(t *testing.T) {
	in := `
listen: 198.18.0.5
port: 7441
network_keys: [/etc/ifl/new.key, /etc/ifl/network.key]
identity_key: /var/lib/ifl/agent.key
labels: {role: web, site: paris}
handshake_timeout: 2s
idle_timeout: 1m
max_connections: 10
max_pending: 20
max_failures_per_minute: 5
controllers: [ctl.example.org, "198.18.0.2:7450"]
log_level: debug
`
	got, err := ParseConfig("agent.yaml", []byte(in))
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		Listen: "198.18.0.5", Port: 7441,
		NetworkKeys:      []string{"/etc/ifl/new.key", "/etc/ifl/network.key"},
		IdentityKey:      "/var/lib/ifl/agent.key",
		Labels:           map[string]string{"role": "web", "site": "paris"},
		HandshakeTimeout: 2 * time.Second, IdleTimeout: time.Minute,
		MaxConnections: 10, MaxPending: 20, MaxFailures: 5, LogLevel: "debug",
		Controllers: []string{"ctl.example.org", "198.18.0.2:7450"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestParseConfigErrors(t *testing.T) {
	const allowed = "controllers, discovery, handshake_timeout, identity_key, idle_timeout, labels, listen, log_level, max_connections, max_failures_per_minute, max_pending, network_keys, port"
	tests := []struct{ in, want string }{
		{"prot: 7440", `a.yaml: line 1: unknown key "prot" (allowed: ` + allowed + `)`},
		{"port: 80", `a.yaml: line 1: port: bad value "80" (allowed: a TCP port from 1024 to 65535)`},
		{"port: seven", `a.yaml: line 1: port: bad value "seven" (allowed: a TCP port from 1024 to 65535)`},
		{"listen: eth0", `a.yaml: line 1: listen: bad value "eth0" (allowed: an IP address such as 0.0.0.0, :: or 198.18.0.5)`},
		{"idle_timeout: 30", `a.yaml: line 1: idle_timeout: bad value "30" (allowed: a duration such as 30s)`},
		{"labels:\n  bad name: x", `a.yaml: line 2: labels: bad label name "bad name"; bad value "bad name: x" (allowed: a map of names ([A-Za-z0-9_.-]) to strings)`},
		{"port: 7440\nport: 7441", `a.yaml: line 2: key "port" given twice`},
		{"- a\n- b", `a.yaml: line 1: the file must be a map of keys (allowed: ` + allowed + `)`},
		{"port: [", `a.yaml: line 1: did not find expected node content`},
		{"discovery: maybe", `a.yaml: line 1: discovery: bad value "maybe" (allowed: true or false)`},
		{"controllers: [ctl:0]", `a.yaml: line 1: controllers: controller "ctl:0": port "0": want 1-65535; bad value "['ctl:0']" (allowed: a list of at most 16 host names or unicast addresses, each with a port or not (ctl.example.org, 198.18.0.2:7441, [2001:db8::2]:7441))`},
		{"controllers: [255.255.255.255]", `a.yaml: line 1: controllers: controller "255.255.255.255": 255.255.255.255 is not a unicast address: want the controller's own address, or its host name; bad value "[255.255.255.255]" (allowed: a list of at most 16 host names or unicast addresses, each with a port or not (ctl.example.org, 198.18.0.2:7441, [2001:db8::2]:7441))`},
		{"controllers: ctl", `a.yaml: line 1: controllers: bad value "ctl" (allowed: a list of at most 16 host names or unicast addresses, each with a port or not (ctl.example.org, 198.18.0.2:7441, [2001:db8::2]:7441))`},
	}
	for _, tt := range tests {
		_, err := ParseConfig("a.yaml", []byte(tt.in))
		if err == nil || err.Error() != tt.want {
			t.Errorf("%q:\n got %v\nwant %s", tt.in, err, tt.want)
		}
	}
}

func TestDiscoveryConfig(t *testing.T) {
	for in, off := range map[string]bool{"": false, "discovery: true": false, "discovery: false": true} {
		c, err := ParseConfig("a.yaml", []byte(in))
		if err != nil || c.NoDiscovery != off {
			t.Errorf("%q: NoDiscovery %v, %v; want %v", in, c.NoDiscovery, err, off)
		}
	}
}

func TestLoadConfigMissing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.yaml")
	if c, err := LoadConfig(path, true); err != nil || c.Port != 0 {
		t.Fatalf("optional missing file: %+v, %v", c, err)
	}
	if _, err := LoadConfig(path, false); err == nil {
		t.Fatal("a missing explicit config file is not an error")
	}
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadConfig(path, false); err != nil {
		t.Fatalf("empty file: %v", err)
	}
}

func TestParseOSRelease(t *testing.T) {
	in := "# comment\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nID=debian\n"
	want := struct{ ID, VersionID, PrettyName string }{"debian", "12", "Debian GNU/Linux 12 (bookworm)"}
	got := parseOSRelease([]byte(in))
	if got.ID != want.ID || got.VersionID != want.VersionID || got.PrettyName != want.PrettyName {
		t.Errorf("got %+v, want %+v", got, want)
	}
}
