package inventory

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// decodeSeeds are documents the fast decoder must read as encoding/json
// does, or leave to it.
var decodeSeeds = []string{
	`{"format":"ifl-inventory","version":1,"hosts":{}}`,
	`{"format":"ifl-inventory","version":1,"hosts":{},"reserved":[]}`,
	`  {"format" : "ifl-inventory" , "version" : 1 , "hosts" : { } } trailing`,
	`{"format":"ifl-inventory","version":1,"hosts":{"a":{"identity":"a","labels":{}, "verified":[], "history":[]}}}`,
	`{"format":"ifl-inventory","version":1,"hosts":{"a":{"hostname":"\u00e9\ud83d\ude00\ud800x\"\\\/\b\f\n\r\t","os":"é"}}}`,
	`{"format":"ifl-inventory","version":1,"hosts":{"a":{"hostname":"\xff"}}}`,
	`{"format":"ifl-inventory","version":1,"hosts":{"a":{"port":-0,"probes":01}}}`,
	`{"format":"ifl-inventory","version":1,"hosts":{"a":{"port":7440.0}}}`,
	`{"format":"ifl-inventory","version":1,"hosts":{"a":{"port":99999999999999999999}}}`,
	`{"format":"ifl-inventory","version":1,"hosts":{"a":null}}`,
	`{"format":"ifl-inventory","version":1,"hosts":{"a":{"addresses":null,"macs":null,"labels":null,"verified":null,"history":null,"dropped_labels":null,"os":null}}}`,
	`{"format":"ifl-inventory","version":1,"hosts":{"a":{"addresses":nul}}}`,
	`{"format":"ifl-inventory","version":1,"hosts":{"a":{"labels":{"x":"1"},"labels":{"y":"2"}}}}`,
	`{"format":"ifl-inventory","version":1,"hosts":{"a":{"Identity":"a"}}}`,
	`{"format":"ifl-inventory","version":1,"hosts":{"a":{"first_seen":"2026-11-01T12:00:00+01:00","last_seen":"2026-11-01T12:00:00.5Z"}}}`,
	`{"format":"ifl-inventory","version":1,"hosts":{"a":{"first_seen":"2026-11-01 12:00:00Z"}}}`,
	`{"format":"ifl-inventory","version":1,"hosts":{"a":{}},"hosts":{}}`,
	`{"format":"ifl-inventory","version":1,"reserved":[{"name":"db1","identity":"a","since":"2026-11-01T12:00:00Z","why":"pruned"}]}`,
	`{"format":"ifl-inventory","version":1,"hosts":{"a":{"history":[{"at":"2026-11-01T12:00:00Z","from":"1","to":"2"}]}}`,
	`{"format":"ifl-inventory","version":1,"unknown":1}`,
	`{"format":"ifl-inventory","version":1,"hosts":{"a":{"macs":["a","b"],"addresses":["c"],"dropped_labels":["d"]}}}`,
	`{"format":"ifl-inventory","version":1,"site_rounds":{"a":{"last":"2026-11-01T12:00:00Z","rounds":3}},"hosts":{"a":{"site":"a","sites":{"a":{"addr":"1","mac":"m","last_seen":"2026-11-01T12:00:00Z","missed":"2026-11-01T12:00:00Z"},"b":{}},"history":[{"at":"2026-11-01T12:00:00Z","from":"1","to":"2","from_site":"a","to_site":"b"}]}}}`,
	`{"format":"ifl-inventory","version":1,"site_rounds":null,"hosts":{"a":{"sites":null}}}`,
	`{"format":"ifl-inventory","version":1,"hosts":{"a":{"sites":{"a":null}}}}`,
	``,
	`[]`,
}

// checkDecode fails when the fast decoder reads b otherwise than
// encoding/json: every document it answers for must be the same state.
// It reads b a byte at a time too, so that every value crosses the edge
// of the decoder's window.
func checkDecode(t *testing.T, b []byte) {
	t.Helper()
	fast, err := decodeState(bytes.NewReader(b))
	if err != nil {
		if err != errSlow {
			t.Fatalf("decodeState: %v, want errSlow or an answer", err)
		}
		return
	}
	var ref State
	if err := json.NewDecoder(bytes.NewReader(b)).Decode(&ref); err != nil {
		t.Fatalf("the fast decoder read what encoding/json refuses (%v):\n%q", err, b)
	}
	if diff := cmp.Diff(&ref, fast, cmpopts.IgnoreUnexported(State{})); diff != "" {
		t.Fatalf("read otherwise than encoding/json (-json +fast):\n%s\n%q", diff, b)
	}
	slow, err := decodeState(iotest.OneByteReader(bytes.NewReader(b)))
	if err != nil {
		t.Fatalf("read a byte at a time: %v", err)
	}
	if diff := cmp.Diff(fast, slow, cmpopts.IgnoreUnexported(State{})); diff != "" {
		t.Fatalf("a byte at a time (-whole +bytes):\n%s", diff)
	}
}

func TestDecodeAsEncodingJSON(t *testing.T) {
	for _, s := range decodeSeeds {
		checkDecode(t, []byte(s))
	}
	for _, s := range stateSeeds {
		checkDecode(t, []byte(s))
	}
	b, err := json.MarshalIndent(Synthetic(300), "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	checkDecode(t, b)
	checkDecode(t, goodState(t))
}

// TestDecodeAnswers checks that the fast decoder reads what ifl writes
// itself, rather than leaving it to encoding/json.
func TestDecodeAnswers(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.json")
	s := Synthetic(1000)
	s.Reserved = []Reservation{{Name: "db1", Identity: strings.Repeat("a", 32), Since: t0, Why: ReservedPruned}}
	s.Hosts[strings.Repeat("0", 32)] = &Host{Identity: strings.Repeat("0", 32), Hostname: "\x1b[2J\u202e{{ x }}", IP: "198.18.0.1", Labels: map[string]string{"a": "\u2028"}, FirstSeen: t0, LastSeen: t0}
	if err := WriteFile(path, s); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := decodeState(f); err != nil {
		t.Fatalf("the fast decoder left a state ifl wrote to encoding/json: %v", err)
	}
}

func FuzzDecode(f *testing.F) {
	for _, s := range decodeSeeds {
		f.Add([]byte(s))
	}
	f.Add(goodState(f))
	f.Fuzz(func(t *testing.T, b []byte) { checkDecode(t, b) })
}

// TestDecodeHost: a store's host record reads as encoding/json reads it,
// and one with more after the object is refused as encoding/json
// refuses it.
func TestDecodeHost(t *testing.T) {
	shared := map[string]string{}
	for id, h := range Synthetic(50).Hosts {
		h.Site = "lyon"
		h.Sites = map[string]*Sighting{"lyon": {Addr: h.IP, LastSeen: h.LastSeen}}
		b, err := json.Marshal(h)
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodeHost(b, shared)
		if err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		if diff := cmp.Diff(h, got); diff != "" {
			t.Fatalf("%s (-want +got):\n%s", id, diff)
		}
	}
	if _, err := decodeHost([]byte(`{"identity":"a"} x`), nil); err == nil {
		t.Error("a record with more after it: read")
	}
}
