package inventory

import (
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ifl-project/ifl/proto"
)

// goodState is a state as ifl writes it: two hosts, one reservation.
func goodState(t testing.TB) []byte {
	t.Helper()
	s := New()
	o := func(id, ip, host string) Observation {
		x := obs(id, ip, host, "m-"+host)
		x.Facts.Labels = map[string]string{"role": "web"}
		return x
	}
	s.Apply(t0, []Observation{o(idOld, "198.18.0.1", "db1"), o(idNew, "198.18.0.2", "web")}, all, true)
	s.Apply(t0.Add(time.Hour), []Observation{o(idOld, "198.18.0.1", "db1"), o(idNew, "198.18.0.3", "web")}, all, true)
	s.Reserved = []Reservation{{Name: "db2", Identity: idD, Since: t0, Why: ReservedPruned}}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestLoadRefusesBadRecords: each field of a state ifl would not write is
// refused, naming the host's key, the field and what is allowed; the
// state as ifl writes it loads.
func TestLoadRefusesBadRecords(t *testing.T) {
	good := goodState(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "inventory.json")
	if err := os.WriteFile(path, good, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); err != nil {
		t.Fatalf("the state ifl wrote: %v", err)
	}
	const tmpl = "{{ lookup('pipe', 'id') }}"
	set := func(field string, v any) func(map[string]any) {
		return func(doc map[string]any) { doc["hosts"].(map[string]any)[idOld].(map[string]any)[field] = v }
	}
	long := func(n int) string { return strings.Repeat("x", n) }
	host := `host "` + idOld + `": `
	for _, c := range []struct {
		name string
		edit func(map[string]any)
		want string
	}{
		{"key", func(doc map[string]any) {
			hs := doc["hosts"].(map[string]any)
			hs["\x1b[2J"+tmpl] = hs[idOld]
			delete(hs, idOld)
		}, `host "\x1b[2J{{ lookup('pipe', 'id') }}": the key is not an identity: want 32 hex digits in lower case`},
		{"upper-case key", func(doc map[string]any) {
			hs := doc["hosts"].(map[string]any)
			hs[strings.ToUpper(idOld)] = hs[idOld]
			delete(hs, idOld)
		}, `host "AAAAAAAA00000000000000000000000A": the key is not an identity: want 32 hex digits in lower case`},
		{"long key", func(doc map[string]any) {
			hs := doc["hosts"].(map[string]any)
			hs[long(100000)] = hs[idOld]
			delete(hs, idOld)
		}, `host "` + long(64) + `"...: the key is not an identity: want 32 hex digits in lower case`},
		{"null", set("", nil), ""}, // replaced below
		{"identity", set("identity", idNew), host + `field "identity": "` + idNew + `" is not the host's key`},
		{"name", set("name", tmpl), host + `field "name": "{{ lookup('pipe', 'id') }}" is not a name ifl gives this host: want a host name, not reserved, whose hex suffix, if any, starts the identity`},
		{"reserved name", set("name", "localhost"), host + `field "name": "localhost" is not a name ifl gives this host: want a host name, not reserved, whose hex suffix, if any, starts the identity`},
		{"another's suffix", set("name", "db1-bbbbbbbb"), host + `field "name": "db1-bbbbbbbb" is not a name ifl gives this host: want a host name, not reserved, whose hex suffix, if any, starts the identity`},
		{"hostname", set("hostname", long(254)), host + `field "hostname": 254 bytes, at most 253 allowed`},
		{"machine_id", set("machine_id", long(129)), host + `field "machine_id": 129 bytes, at most 128 allowed`},
		{"os", set("os", long(61440)), host + `field "os": 61440 bytes, at most 256 allowed`},
		{"kernel", set("kernel", long(257)), host + `field "kernel": 257 bytes, at most 256 allowed`},
		{"agent_version", set("agent_version", long(65)), host + `field "agent_version": 65 bytes, at most 64 allowed`},
		{"gateway", set("gateway", long(65)), host + `field "gateway": 65 bytes, at most 64 allowed`},
		{"ip", set("ip", tmpl), host + `field "ip": "{{ lookup('pipe', 'id') }}" is not an address as ifl writes one: want an IP address`},
		{"ip zone", set("ip", "fe80::1%{{x}}"), host + `field "ip": "fe80::1%{{x}}" is not an address as ifl writes one: want a zone only on a link-local address, and one that can name an interface (1 to 15 printable ASCII characters but / : { } % and space)`},
		{"global ip with a zone", set("ip", "198.18.0.1%eth0"), host + `field "ip": "198.18.0.1%eth0" is not an address as ifl writes one: want an IP address`},
		{"ip6 zone", set("ip", "2001:db8::1%eth0"), host + `field "ip": "2001:db8::1%eth0" is not an address as ifl writes one: want a zone only on a link-local address, and one that can name an interface (1 to 15 printable ASCII characters but / : { } % and space)`},
		{"verified", set("verified", []any{map[string]any{"addr": "198.18.0.1 ", "at": "2026-11-01T12:00:00Z"}}), host + `field "verified[0].addr": "198.18.0.1 " is not an address as ifl writes one: want an IP address`},
		{"verified at", set("verified", []any{map[string]any{"addr": "198.18.0.1", "at": "0001-01-01T00:00:00Z"}}), host + `field "verified[0].at": 0001-01-01T00:00:00Z: want a time from the year 2000 to 9999`},
		{"port", set("port", 70000), host + `field "port": 70000: want a port, 1 to 65535 (or 0: unknown)`},
		{"negative port", set("port", -1), host + `field "port": -1: want a port, 1 to 65535 (or 0: unknown)`},
		{"addresses", set("addresses", []any{"198.18.0.1", "\x1b[2J"}), host + `field "addresses[1]": "\x1b[2J" is not an address as ifl writes one: want an IP address`},
		{"macs", set("macs", []any{long(65)}), host + `field "macs[0]": 65 bytes, at most 64 allowed`},
		{"too many macs", set("macs", make([]any, 65)), host + `field "macs": 65 MACs, at most 64 allowed`},
		{"label key", set("labels", map[string]any{tmpl: "x"}), host + `field "labels": label "{{ lookup('pipe', 'id') }}": bad key: want 1 to 64 of A-Z a-z 0-9 _ . -`},
		{"label group", set("labels", map[string]any{"ifl": "stale"}), host + `field "labels": label "ifl": reserved key: groups ifl_* are ifl's`},
		{"first_seen", set("first_seen", "1999-12-31T23:59:59Z"), host + `field "first_seen": 1999-12-31T23:59:59Z: want a time from the year 2000 to 9999`},
		{"last before first", set("last_seen", "2026-01-01T00:00:00Z"), host + `field "last_seen": before first_seen`},
		{"probes", set("probes", -1), host + `field "probes": -1: want 0 or more`},
		{"history", set("history", []any{map[string]any{"at": "2026-11-01T12:00:00Z", "from": "198.18.0.1", "to": "x"}}), host + `field "history[0].to": "x" is not an address as ifl writes one: want an IP address`},
		{"updated", func(doc map[string]any) { doc["updated"] = "1970-01-01T00:00:00Z" }, `field "updated": 1970-01-01T00:00:00Z: want a time from the year 2000 to 9999`},
		{"reserved identity", func(doc map[string]any) { doc["reserved"].([]any)[0].(map[string]any)["identity"] = "x" },
			`field "reserved", entry 0: field "identity": "x": want 32 hex digits in lower case`},
		{"reserved name", func(doc map[string]any) { doc["reserved"].([]any)[0].(map[string]any)["name"] = "all" },
			`field "reserved", entry 0: field "name": "all" is not a name ifl gives that identity`},
		{"reserved why", func(doc map[string]any) { doc["reserved"].([]any)[0].(map[string]any)["why"] = "" },
			`field "reserved", entry 0: field "why": "": want pruned, evicted or named`},
	} {
		t.Run(c.name, func(t *testing.T) {
			var doc map[string]any
			if err := json.Unmarshal(good, &doc); err != nil {
				t.Fatal(err)
			}
			if c.name == "null" {
				doc["hosts"].(map[string]any)[idOld] = nil
				c.want = host + "no record: want an object"
			} else {
				c.edit(doc)
			}
			b, err := json.Marshal(doc)
			if err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(t.TempDir(), "inventory.json")
			if err := os.WriteFile(p, b, 0o600); err != nil {
				t.Fatal(err)
			}
			_, err = Load(p)
			want := "inventory " + p + ": not an ifl inventory: " + c.want + " (the file is left as it is: ifl writes no such record; fix or remove it)"
			if err == nil || err.Error() != want || !errors.Is(err, ErrForeign) {
				t.Errorf("got  %v\nwant %s", err, want)
			}
			// A probe refuses it too, and leaves it as it is.
			if err := Update(p, func(*State) error { return nil }); !errors.Is(err, ErrForeign) {
				t.Errorf("Update: %v", err)
			}
			if after, _ := os.ReadFile(p); string(after) != string(b) {
				t.Error("the file was changed")
			}
		})
	}
}

// TestOldDroppedKeysAreTrimmed: a state an older ifl wrote keeps every
// dropped label key, of any length; it loads with a bounded list.
func TestOldDroppedKeysAreTrimmed(t *testing.T) {
	var doc map[string]any
	json.Unmarshal(goodState(t), &doc)
	var keys []any
	for range 500 {
		keys = append(keys, strings.Repeat("k", 5000))
	}
	doc["hosts"].(map[string]any)[idOld].(map[string]any)["dropped_labels"] = keys
	b, _ := json.Marshal(doc)
	p := filepath.Join(t.TempDir(), "inventory.json")
	os.WriteFile(p, b, 0o600)
	s, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if d := s.Hosts[idOld].Dropped; len(d) != MaxLabels || len(d[0]) > MaxLabelKey {
		t.Errorf("%d keys kept, the first %d bytes", len(d), len(d[0]))
	}
}

// TestStateValuesAreUnsafeUnlessIfls: a state held in memory that ifl did
// not write (BuildAnsible is not only for loaded ones) gives Ansible its
// addresses and identity marked unsafe, and never a raw address as
// ansible_host.
func TestStateValuesAreUnsafeUnlessIfls(t *testing.T) {
	const tmpl = "{{ lookup('pipe', 'id') }}"
	s := New()
	s.Apply(t0, []Observation{{Identity: idOld, Addr: netip.MustParseAddr("198.18.0.1"), Port: 7440, Facts: &proto.Facts{Hostname: "web"}}}, all, true)
	h := s.Hosts[idOld]
	h.IP = tmpl
	h.Verified = []Verified{{Addr: tmpl, At: t0}, {Addr: "fe80::1%{{x}}", At: t0}}
	s.Hosts[tmpl] = h
	delete(s.Hosts, idOld)
	h.Identity = tmpl
	_, hv := decodedList(t, s.BuildAnsible(t0, time.Hour, PreferIPv4))
	for name, vars := range hv {
		for _, k := range []string{"ansible_host", "ifl_identity", "ifl_verified_addresses"} {
			got := checkWrapped(t, name+"."+k, vars[k])
			if len(got) == 0 {
				t.Errorf("%s: %s is not marked unsafe: %v", name, k, vars[k])
			}
		}
	}
	// The same with the address that answered kept as the state had
	// it: never returned raw by Address.
	h.Verified = nil
	if a := h.Address(PreferIPv4); a != "" {
		t.Errorf("Address = %q", a)
	}
	h.IP = "198.18.0.01"
	if a := h.Address(PreferIPv4); a != "" {
		t.Errorf("Address = %q", a)
	}
	h.Verified = []Verified{{Addr: "2001:DB8::1", At: t0}}
	if a := h.Address(PreferIPv4); a != "2001:db8::1" {
		t.Errorf("Address = %q, want it as ifl writes it", a)
	}
}
