package proto

import (
	"bytes"
	"encoding/hex"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var (
	testAK  = NetworkKey{1}.AnnounceKey()
	otherAK = NetworkKey{2}.AnnounceKey()
)

// TestAnnouncementLayout checks every field at its offset.
func TestAnnouncementLayout(t *testing.T) {
	a := Announcement{Port: 7440, Time: 0x0102030405060708, Nonce: [16]byte{0xa0, 15: 0xaf}, Identity: [16]byte{0xd0, 15: 0xdf}, MAC: [16]byte{0xe0, 15: 0xef}}
	b, err := a.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	want := "49464c2b" + "01" + "00" + "1d10" + "0102030405060708" + "a00000000000000000000000000000af" +
		"d00000000000000000000000000000df" + "e00000000000000000000000000000ef"
	if got := hex.EncodeToString(b); got != want {
		t.Errorf("announcement bytes\n got %s\nwant %s", got, want)
	}
	var back Announcement
	if err := back.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(a, back); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
}

// TestAnnounceKeyDerivation pins the derivation the package
// documentation names, and that it differs from discovery's.
func TestAnnounceKeyDerivation(t *testing.T) {
	nk := NetworkKey{1, 2, 3}
	ak := nk.AnnounceKey()
	if ak.mac != keyedSum(nk[:], []byte("ifl/1 announcement mac")) || ak.id != keyedSum(nk[:], []byte("ifl/1 announcement identity")) {
		t.Error("derived keys differ from BLAKE2s-256(key = network key, label)")
	}
	dk := nk.DiscoveryKey()
	for _, k := range [][32]byte{dk.mac, dk.id, [32]byte(nk)} {
		if k == ak.mac || k == ak.id {
			t.Error("announcement keys must differ from discovery's and from the network key")
		}
	}
}

func TestAnnouncementOpen(t *testing.T) {
	fp := [16]byte{0x11, 15: 0x99}
	a, err := NewAnnouncement(&testAK, 7440, fp, testTime)
	if err != nil {
		t.Fatal(err)
	}
	if a.Identity == fp {
		t.Fatal("the identity is not sealed")
	}
	b, _ := a.MarshalBinary()
	var got Announcement
	if err := got.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	opened, err := got.Open([]AnnounceKey{otherAK, testAK}, testTime.Add(MaxSkew))
	if err != nil || opened != fp {
		t.Fatalf("Open = %x, %v; want %x", opened, err, fp)
	}
	// A second announcement of the same agent looks unrelated.
	a2, _ := NewAnnouncement(&testAK, 7440, fp, testTime)
	if a2.Identity == a.Identity || a2.Nonce == a.Nonce {
		t.Error("two announcements share a sealed identity or a nonce")
	}
	for _, tc := range []struct {
		name string
		keys []AnnounceKey
		now  time.Time
		want error
	}{
		{"wrong key", []AnnounceKey{otherAK}, testTime, ErrAnnouncementMAC},
		{"no key", nil, testTime, ErrAnnouncementMAC},
		{"too old", []AnnounceKey{testAK}, testTime.Add(MaxSkew + time.Nanosecond), ErrAnnouncementStale},
		{"from the future", []AnnounceKey{testAK}, testTime.Add(-MaxSkew - time.Nanosecond), ErrAnnouncementStale},
	} {
		if _, err := got.Open(tc.keys, tc.now); !errors.Is(err, tc.want) {
			t.Errorf("%s: Open = %v, want %v", tc.name, err, tc.want)
		}
	}
	// Any bit changed in the bytes the MAC covers fails it, the port and
	// the sealed identity included.
	for i := 6; i < AnnouncementLen; i++ {
		c := bytes.Clone(b)
		c[i] ^= 1
		var m Announcement
		if err := m.UnmarshalBinary(c); err != nil {
			t.Fatalf("byte %d: %v", i, err)
		}
		if _, err := m.Open([]AnnounceKey{testAK}, time.Unix(0, m.Time)); !errors.Is(err, ErrAnnouncementMAC) {
			t.Errorf("byte %d flipped: Open = %v, want %v", i, err, ErrAnnouncementMAC)
		}
	}
	if !got.Expires().Equal(testTime.Add(MaxSkew)) {
		t.Errorf("Expires = %v", got.Expires())
	}
}

func TestAnnouncementForm(t *testing.T) {
	a, _ := NewAnnouncement(&testAK, 7440, [16]byte{1}, testTime)
	good, _ := a.MarshalBinary()
	q, _ := NewQuery(&testDK, testTime)
	query, _ := q.MarshalBinary()
	ans, _ := q.Answer(&testDK, 7440, [16]byte{1})
	answer, _ := ans.MarshalBinary()
	for _, tc := range []struct {
		name string
		b    []byte
		want error
	}{
		{"short", good[:AnnouncementLen-1], ErrAnnouncementLen},
		{"long", append(bytes.Clone(good), 0), ErrAnnouncementLen},
		{"query", query, ErrNotAnnouncement},
		{"answer", answer, ErrNotAnnouncement},
		{"version 2", func() []byte { c := bytes.Clone(good); c[4] = 2; return c }(), ErrNotAnnouncement},
		{"reserved", func() []byte { c := bytes.Clone(good); c[5] = 1; return c }(), ErrNotAnnouncement},
	} {
		var m Announcement
		if err := m.UnmarshalBinary(tc.b); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	if a.ReplayKey() == q.ReplayKey() {
		t.Error("an announcement and a query share a replay key")
	}
}

// TestPingRequestAnnouncePort: the port travels in the ping's body, and
// an empty body (a controller that does not listen, or of an earlier
// release) says none.
func TestPingRequestAnnouncePort(t *testing.T) {
	for _, tc := range []struct {
		body []byte
		want uint16
	}{
		{nil, 0},
		{[]byte{0x1d}, 0},
		{[]byte{0x1d, 0x11}, 7441},
		{[]byte{0x1d, 0x11, 9, 9}, 7441},
	} {
		var p PingRequest
		if err := p.UnmarshalBinary(tc.body); err != nil || p.AnnouncePort != tc.want {
			t.Errorf("%x: port %d, %v; want %d", tc.body, p.AnnouncePort, err, tc.want)
		}
	}
	b, _ := MarshalMessage(&PingRequest{AnnouncePort: 7441})
	if !bytes.Equal(b, []byte{byte(TypePingRequest), 0x1d, 0x11}) {
		t.Errorf("ping with a port encodes as %x", b)
	}
	b, _ = MarshalMessage(&PingRequest{})
	if !bytes.Equal(b, []byte{byte(TypePingRequest)}) {
		t.Errorf("ping without a port encodes as %x", b)
	}
}
