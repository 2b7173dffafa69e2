package cli

import (
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ifl-project/ifl/internal/controller/inventory"
	"github.com/ifl-project/ifl/proto"
)

// dualStackInventory writes a state with a dual-stack host, an IPv4-only
// one and an IPv6-only one, each verified at every address it has.
func dualStackInventory(t *testing.T) string {
	t.Helper()
	state := filepath.Join(t.TempDir(), "inventory.json")
	facts := func(host string, addrs ...string) *proto.Facts {
		ifc := proto.Interface{Name: "eth0", MTU: 1500}
		for _, a := range addrs {
			ifc.Addrs = append(ifc.Addrs, netip.PrefixFrom(netip.MustParseAddr(a), 24).String())
		}
		return &proto.Facts{Hostname: host, MachineID: "m-" + host, Interfaces: []proto.Interface{ifc}}
	}
	dual := facts("dual", "198.18.48.5", "2001:db8:48::5")
	obs := func(id, addr string, f *proto.Facts) inventory.Observation {
		return inventory.Observation{Identity: strings.Repeat(id, 32), Addr: netip.MustParseAddr(addr), Port: 7440, Facts: f}
	}
	err := inventory.Update(state, func(s *inventory.State) error {
		ch := s.Apply(time.Now().UTC(), []inventory.Observation{
			obs("d", "198.18.48.5", dual), obs("d", "2001:db8:48::5", dual),
			obs("4", "198.18.48.6", facts("v4", "198.18.48.6")),
			obs("6", "2001:db8:48::7", facts("v6", "2001:db8:48::7")),
		}, func(netip.Addr) bool { return true }, true)
		if len(ch.Warnings) != 0 {
			t.Errorf("warnings: %+v", ch.Warnings)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return state
}

// TestInventoryPrefer: --prefer (or IFL_PREFER, for the inventory script)
// decides the dual-stack host's ansible_host in every output, and only
// its; a bad value names the allowed ones.
func TestInventoryPrefer(t *testing.T) {
	state := dualStackInventory(t)
	hostsOf := func(args ...string) map[string]string {
		t.Helper()
		code, stdout, stderr := run(t, append([]string{"inventory", "--state", state}, args...)...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, stderr)
		}
		var list struct {
			Meta struct {
				HostVars map[string]map[string]any `json:"hostvars"`
			} `json:"_meta"`
		}
		if err := json.Unmarshal([]byte(stdout), &list); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, stdout)
		}
		out := map[string]string{}
		for name, v := range list.Meta.HostVars {
			out[name], _ = v["ansible_host"].(string)
		}
		return out
	}
	v4 := map[string]string{"dual": "198.18.48.5", "v4": "198.18.48.6", "v6": "2001:db8:48::7"}
	v6 := map[string]string{"dual": "2001:db8:48::5", "v4": "198.18.48.6", "v6": "2001:db8:48::7"}
	for _, tt := range []struct {
		args []string
		env  string
		want map[string]string
	}{
		{[]string{"--list"}, "", v4},
		{[]string{"--list", "--prefer", "ipv4"}, "", v4},
		{[]string{"--list", "--prefer", "ipv6"}, "", v6},
		{[]string{"-o", "json", "--prefer=ipv6"}, "", v6},
		{[]string{"--list"}, "ipv6", v6},
		{[]string{"--list", "--prefer", "ipv4"}, "ipv6", v4}, // the flag wins
	} {
		t.Setenv("IFL_PREFER", tt.env)
		if tt.env == "" {
			os.Unsetenv("IFL_PREFER")
		}
		if diff := cmp.Diff(tt.want, hostsOf(tt.args...)); diff != "" {
			t.Errorf("%v, IFL_PREFER=%q: ansible_host (-want +got):\n%s", tt.args, tt.env, diff)
		}
	}
	os.Unsetenv("IFL_PREFER")

	code, stdout, _ := run(t, "inventory", "--state", state, "--host", "dual", "--prefer", "ipv6")
	if code != 0 || !strings.Contains(stdout, `"ansible_host": "2001:db8:48::5"`) {
		t.Errorf("--host dual --prefer ipv6: exit %d\n%s", code, stdout)
	}
	code, stdout, _ = run(t, "inventory", "--state", state, "-o", "yaml", "--prefer", "ipv6")
	if code != 0 || !strings.Contains(stdout, `"ansible_host": "2001:db8:48::5"`) || !strings.Contains(stdout, `"ansible_host": "198.18.48.6"`) {
		t.Errorf("-o yaml --prefer ipv6: exit %d\n%s", code, stdout)
	}
	code, stdout, _ = run(t, "inventory", "--state", state, "-o", "tsv", "--no-header", "--prefer", "ipv6")
	if code != 0 || !strings.Contains(stdout, "dual\t2001:db8:48::5\t") || !strings.Contains(stdout, "v4\t198.18.48.6\t") {
		t.Errorf("-o tsv --prefer ipv6: exit %d\n%s", code, stdout)
	}
	code, stdout, _ = run(t, "inventory", "--state", state)
	if code != 0 || !strings.Contains(stdout, "dual  198.18.48.5 ") {
		t.Errorf("table: exit %d\n%s", code, stdout)
	}

	for _, args := range [][]string{{"--prefer", "ipv5"}, {"--prefer", "IPv6"}, {"--prefer", ""}} {
		code, _, stderr := run(t, append([]string{"inventory", "--state", state, "--list"}, args...)...)
		if code != 2 || !strings.Contains(stderr, `"ipv4","ipv6"`) || !strings.Contains(stderr, "--prefer") {
			t.Errorf("%v: exit %d, %q; want 2 and the allowed values", args, code, stderr)
		}
	}
	t.Setenv("IFL_PREFER", "ipv5")
	if code, _, stderr := run(t, "inventory", "--state", state, "--list"); code != 2 || !strings.Contains(stderr, `"ipv4","ipv6"`) {
		t.Errorf("IFL_PREFER=ipv5: exit %d, %q", code, stderr)
	}
}
