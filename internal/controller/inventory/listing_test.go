package inventory

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/ifl-project/ifl/internal/support/untrusted"
)

// checkListing fails when WriteList or WriteHost print s otherwise than
// BuildAnsible's answers printed by an indented encoding/json Encoder
// through untrusted.JSONWriter, as ifl inventory printed them before.
func checkListing(t *testing.T, s *State) {
	t.Helper()
	for _, prefer := range []Prefer{PreferIPv4, PreferIPv6} {
		for _, now := range []time.Time{t0, t0.Add(48 * time.Hour)} {
			inv := s.BuildAnsible(now, 24*time.Hour, prefer)
			var want, got bytes.Buffer
			enc := json.NewEncoder(untrusted.JSONWriter(&want))
			enc.SetIndent("", "  ")
			if err := enc.Encode(inv.List()); err != nil {
				t.Fatal(err)
			}
			if err := s.WriteList(&got, now, 24*time.Hour, prefer); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(want.Bytes(), got.Bytes()) {
				t.Fatalf("WriteList printed otherwise:\n%s\nwant:\n%s", got.Bytes(), want.Bytes())
			}
			for name := range inv.HostVars {
				want.Reset()
				got.Reset()
				v, _ := inv.Host(name)
				if err := enc.Encode(v); err != nil {
					t.Fatal(err)
				}
				if ok, err := s.WriteHost(&got, name, now, 24*time.Hour, prefer); !ok || err != nil {
					t.Fatalf("WriteHost %q: %v, %v", name, ok, err)
				}
				if !bytes.Equal(want.Bytes(), got.Bytes()) {
					t.Fatalf("WriteHost %q printed otherwise:\n%s\nwant:\n%s", name, got.Bytes(), want.Bytes())
				}
			}
		}
	}
	if ok, err := s.WriteHost(&bytes.Buffer{}, "no such host", t0, time.Hour, PreferIPv4); ok || err != nil {
		t.Fatalf("WriteHost of no host: %v, %v", ok, err)
	}
}

func TestListingAsBefore(t *testing.T) {
	checkListing(t, New())
	checkListing(t, Synthetic(50))
	checkListing(t, Synthetic(3*hostsPerChunk+1))
	s, err := parse("good", goodState(t))
	if err != nil {
		t.Fatal(err)
	}
	checkListing(t, s)
	for _, c := range stateSeeds {
		if s, err := parse("seed", []byte(c)); err == nil {
			checkListing(t, s)
		}
	}
	// Every string an agent chose, and the escapes they need.
	s = New()
	s.Apply(t0, []Observation{obs(idA, "198.18.0.5", "web\x1b[2J", "m1")}, all, true)
	h := s.Hosts[idA]
	h.OS = "\u202e<b>&\u2028\u2029\x7f\x00\xff\U0001F600\U000E0001\u00a0\ufeff"
	h.Kernel = "\"\\\b\f\n\r\t"
	h.Labels = map[string]string{"role": "web", "Role": "web", "site": "{{ x }}", "9": "\x01"}
	h.MACs = nil
	h.Addresses = []string{}
	checkListing(t, s)
}
