package inventory

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// checkSkim fails when File.LoadHost, for the state file b and the name,
// answers otherwise than Load then WriteHost would: it may leave the
// answer to Load (nil), never give another one. It may answer for a
// state that Load refuses for another host's record, never for one that
// is no JSON. It reports whether LoadHost answered.
func checkSkim(t *testing.T, b []byte, name string) bool {
	t.Helper()
	path := filepath.Join(t.TempDir(), "state.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	f := &File{Path: path}
	one, err := f.LoadHost(context.Background(), name)
	if err != nil {
		t.Fatalf("LoadHost %q: %v", name, err)
	}
	if one == nil {
		return false
	}
	all, err := f.Load(context.Background())
	if err != nil {
		if !json.Valid(b) || !errors.Is(err, ErrForeign) {
			t.Fatalf("LoadHost %q answered for a state Load refuses: %v\n%s", name, err, b)
		}
		// Another record is one ifl would not write: the answer is
		// the one the state without it would give.
		return true
	}
	for _, now := range []time.Time{t0, t0.Add(48 * time.Hour)} {
		var want, got bytes.Buffer
		okAll, err1 := all.WriteHost(&want, name, now, 24*time.Hour, PreferIPv4)
		okOne, err2 := one.WriteHost(&got, name, now, 24*time.Hour, PreferIPv4)
		if err1 != nil || err2 != nil || !okAll || !okOne {
			t.Fatalf("WriteHost %q: whole state %v, %v; one host %v, %v\n%s", name, okAll, err1, okOne, err2, b)
		}
		if !bytes.Equal(want.Bytes(), got.Bytes()) {
			t.Fatalf("LoadHost %q printed otherwise:\n%s\nwant:\n%s", name, got.Bytes(), want.Bytes())
		}
	}
	return true
}

// TestLoadHost: every host of states as ifl writes them is read alone,
// as the whole state reads it; a name no host holds is left to Load.
func TestLoadHost(t *testing.T) {
	states := map[string][]byte{"good": goodState(t)}
	for _, n := range []int{1, 50} {
		b, err := json.MarshalIndent(Synthetic(n), "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		states["synthetic"+string(rune('0'+n%10))] = b
	}
	for what, b := range states {
		s, err := parse(what, b)
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range s.Hosts {
			if !checkSkim(t, b, h.Name) {
				t.Errorf("%s: host %q left to Load", what, h.Name)
			}
		}
		for _, name := range []string{"nope", "", "db2", strings.ToUpper(firstName(s))} {
			if checkSkim(t, b, name) {
				t.Errorf("%s: LoadHost answered for %q", what, name)
			}
		}
	}
}

func firstName(s *State) string {
	for _, h := range s.Hosts {
		return h.Name
	}
	return ""
}

// TestLoadHostLeavesToLoad: documents that only a whole read settles,
// each with a host named web, are left to Load.
func TestLoadHostLeavesToLoad(t *testing.T) {
	good := string(goodState(t))
	s, err := parse("good", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	var web, db *Host
	for _, h := range s.Hosts {
		switch h.Name {
		case "web":
			web = h
		case "db1":
			db = h
		}
	}
	if web == nil || db == nil || !checkSkim(t, []byte(good), "web") {
		t.Fatal("the good state's web is not read alone")
	}
	tests := map[string]string{
		// Two names that are one name: which host keeps it is decided
		// by first sight, over the whole state.
		"a name in two cases": strings.Replace(good, `"name": "db1"`, `"name": "WEB"`, 1),
		"a name with escapes": strings.Replace(good, `"name": "web"`, `"name": "w\u0065b"`, 1),
		"a repeated host key": strings.Replace(good, `"`+db.Identity+`": {`, `"`+web.Identity+`": {"identity": "`+web.Identity+`", "name": "web2", "first_seen": "2026-11-01T12:00:00Z", "last_seen": "2026-11-01T12:00:00Z"}, "`+db.Identity+`": {`, 1),
		"a repeated name key": strings.Replace(good, `"name": "web",`, `"name": "web", "name": "web3",`, 1),
		"an unknown key":      strings.Replace(good, `"format":`, `"formats": 1, "format":`, 1),
		"a repeated key":      strings.Replace(good, `"format":`, `"version": 1, "format":`, 1),
		"another format":      strings.Replace(good, `"ifl-inventory"`, `"other"`, 1),
		"another version":     strings.Replace(good, `"version": 1`, `"version": 2`, 1),
		"cut short":           good[:len(good)-2],
		"more after it":       good + "{}",
		// encoding/json reads a key in any case and with escapes: db1
		// is then named web too, and keeps it, being the first seen.
		"another case of the name key": strings.Replace(good, `"name": "db1"`, `"Name": "web"`, 1),
		"an escaped name key":          strings.Replace(good, `"name": "db1"`, `"n\u0061me": "web"`, 1),
		// The last of two spellings of one key is the host.
		"an escaped repeated host key": strings.Replace(good, "\n  },\n  \"reserved\"", `, "\u0062`+web.Identity[1:]+`": {"identity": "`+web.Identity+`", "name": "other", "first_seen": "2026-11-01T12:00:00Z", "last_seen": "2026-11-01T12:00:00Z"}`+"\n  },\n  \"reserved\"", 1),
		"a host that is null":          strings.Replace(good, `"`+db.Identity+`": {`, `"`+idD+`": null, "`+db.Identity+`": {`, 1),
		"nested too deep":              strings.Replace(good, `"name": "db1",`, `"name": "db1", "x": `+strings.Repeat("[", 100)+strings.Repeat("]", 100)+",", 1),
	}
	for what, doc := range tests {
		t.Run(what, func(t *testing.T) {
			if doc == good {
				t.Fatal("the state is unchanged")
			}
			if checkSkim(t, []byte(doc), "web") {
				t.Errorf("read alone")
			}
		})
	}
	// White space as another writer puts it does not matter.
	var compact bytes.Buffer
	if err := json.Compact(&compact, []byte(good)); err != nil {
		t.Fatal(err)
	}
	if !checkSkim(t, compact.Bytes(), "web") {
		t.Error("a compact state: web left to Load")
	}
}

// FuzzSkim: whatever the state file, LoadHost answers as Load would, or
// leaves the answer to it.
func FuzzSkim(f *testing.F) {
	for _, s := range stateSeeds {
		f.Add([]byte(s), "web")
	}
	f.Add(goodState(f), "web")
	f.Add(goodState(f), "db1")
	f.Fuzz(func(t *testing.T, b []byte, name string) {
		checkSkim(t, b, name)
	})
}
