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
	testDK   = NetworkKey{1}.DiscoveryKey()
	otherDK  = NetworkKey{2}.DiscoveryKey()
	testTime = time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
)

// TestQueryLayout checks every field of a query at its offset.
func TestQueryLayout(t *testing.T) {
	q := Query{Time: 0x0102030405060708, Nonce: [16]byte{0xa0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 0xaf}, MAC: [16]byte{0xb0, 15: 0xbf}}
	b, err := q.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	want := "49464c3f" + "01" + "000000" + "0102030405060708" + "a00102030405060708090a0b0c0d0eaf" +
		"00000000000000000000000000000000" + "b00000000000000000000000000000bf"
	if got := hex.EncodeToString(b); got != want {
		t.Errorf("query bytes\n got %s\nwant %s", got, want)
	}
	var back Query
	if err := back.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(q, back); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
}

// TestAnswerLayout checks every field of an answer at its offset.
func TestAnswerLayout(t *testing.T) {
	a := Answer{Port: 7440, Nonce: [16]byte{0xa0, 15: 0xaf}, Salt: [8]byte{0xc0, 7: 0xc7}, Identity: [16]byte{0xd0, 15: 0xdf}, MAC: [16]byte{0xe0, 15: 0xef}}
	b, err := a.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	want := "49464c21" + "01" + "00" + "1d10" + "a00000000000000000000000000000af" + "c0000000000000c7" +
		"d00000000000000000000000000000df" + "e00000000000000000000000000000ef"
	if got := hex.EncodeToString(b); got != want {
		t.Errorf("answer bytes\n got %s\nwant %s", got, want)
	}
	var back Answer
	if err := back.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(a, back); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
	if len(b) > QueryLen {
		t.Errorf("answer of %d bytes is larger than a query (%d)", len(b), QueryLen)
	}
}

// TestDiscoveryKeyDerivation pins the derivation the package
// documentation names, computed here from its definition.
func TestDiscoveryKeyDerivation(t *testing.T) {
	nk := NetworkKey{1, 2, 3}
	dk := nk.DiscoveryKey()
	if dk.mac != keyedSum(nk[:], []byte("ifl/1 discovery mac")) || dk.id != keyedSum(nk[:], []byte("ifl/1 discovery identity")) {
		t.Error("derived keys differ from BLAKE2s-256(key = network key, label)")
	}
	if dk.mac == dk.id || bytes.Equal(dk.mac[:], nk[:]) {
		t.Error("discovery keys must differ from each other and from the network key")
	}
}

func TestQueryCheck(t *testing.T) {
	q, err := NewQuery(&testDK, testTime)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := q.MarshalBinary()
	var got Query
	if err := got.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	if i, err := got.Check([]DiscoveryKey{otherDK, testDK}, testTime.Add(59*time.Second)); err != nil || i != 1 {
		t.Errorf("good query with the second key: %d, %v", i, err)
	}
	tests := []struct {
		name string
		keys []DiscoveryKey
		now  time.Time
		mod  func(*Query)
		want error
	}{
		{"wrong key", []DiscoveryKey{otherDK}, testTime, nil, errDiscoveryMAC},
		{"no key", nil, testTime, nil, errDiscoveryMAC},
		{"stale", []DiscoveryKey{testDK}, testTime.Add(61 * time.Second), nil, errQueryStale},
		{"from the future", []DiscoveryKey{testDK}, testTime.Add(-61 * time.Second), nil, errQueryStale},
		{"time changed", []DiscoveryKey{testDK}, testTime, func(q *Query) { q.Time++ }, errDiscoveryMAC},
		{"nonce changed", []DiscoveryKey{testDK}, testTime, func(q *Query) { q.Nonce[3] ^= 1 }, errDiscoveryMAC},
		{"MAC changed", []DiscoveryKey{testDK}, testTime, func(q *Query) { q.MAC[15] ^= 1 }, errDiscoveryMAC},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := got
			if tt.mod != nil {
				tt.mod(&q)
			}
			if _, err := q.Check(tt.keys, tt.now); !errors.Is(err, tt.want) {
				t.Errorf("Check: %v, want %v", err, tt.want)
			}
		})
	}
}

func TestQueryForm(t *testing.T) {
	q, _ := NewQuery(&testDK, testTime)
	good, _ := q.MarshalBinary()
	tests := []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, errDatagramLen},
		{"truncated", good[:QueryLen-1], errDatagramLen},
		{"long", append(append([]byte{}, good...), 0), errDatagramLen},
		{"answer magic", append([]byte(AnswerMagic), good[4:]...), errNotQuery},
		{"frame magic", append([]byte(Magic), good[4:]...), errNotQuery},
		{"version 2", setByte(good, 4, 2), errNotQuery},
		{"reserved", setByte(good, 6, 1), errNotQuery},
		{"padding", setByte(good, 40, 1), errNotQuery},
		{"zeros", make([]byte, QueryLen), errNotQuery},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var q Query
			if err := q.UnmarshalBinary(tt.b); !errors.Is(err, tt.want) {
				t.Errorf("UnmarshalBinary: %v, want %v", err, tt.want)
			}
		})
	}
}

func setByte(b []byte, i int, v byte) []byte {
	c := append([]byte{}, b...)
	c[i] = v
	return c
}

func TestAnswerOpen(t *testing.T) {
	id, _ := identityFromPrivate([KeyLen]byte{9})
	q, _ := NewQuery(&testDK, testTime)
	a, err := q.Answer(&testDK, 7440, FingerprintBytes(id.Public[:]))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := a.MarshalBinary()
	var got Answer
	if err := got.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	fp, err := got.Open(&testDK, q.Nonce)
	if err != nil || fp != id.Fingerprint() || got.Port != 7440 {
		t.Fatalf("Open: %q port %d, %v; want %s port 7440", fp, got.Port, err, id.Fingerprint())
	}
	// The identity does not show in the clear, and differs between two
	// answers to one query.
	fpb := FingerprintBytes(id.Public[:])
	if bytes.Contains(b, fpb[:8]) || bytes.Contains(b, fpb[8:]) {
		t.Error("answer carries the fingerprint in the clear")
	}
	a2, _ := q.Answer(&testDK, 7440, fpb)
	if a2.Identity == a.Identity || a2.Salt == a.Salt {
		t.Error("two answers to one query carry the same sealed identity")
	}
	other, _ := NewQuery(&testDK, testTime)
	tests := []struct {
		name  string
		dk    *DiscoveryKey
		nonce [16]byte
		mod   func(*Answer)
		want  error
	}{
		{"wrong key", &otherDK, q.Nonce, nil, errDiscoveryMAC},
		{"another query", &testDK, other.Nonce, nil, errWrongNonce},
		{"port changed", &testDK, q.Nonce, func(a *Answer) { a.Port = 22 }, errDiscoveryMAC},
		{"identity changed", &testDK, q.Nonce, func(a *Answer) { a.Identity[0] ^= 1 }, errDiscoveryMAC},
		{"salt changed", &testDK, q.Nonce, func(a *Answer) { a.Salt[0] ^= 1 }, errDiscoveryMAC},
		{"MAC changed", &testDK, q.Nonce, func(a *Answer) { a.MAC[0] ^= 1 }, errDiscoveryMAC},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := got
			if tt.mod != nil {
				tt.mod(&a)
			}
			if _, err := a.Open(tt.dk, tt.nonce); !errors.Is(err, tt.want) {
				t.Errorf("Open: %v, want %v", err, tt.want)
			}
		})
	}
	// A query's bytes never decode as an answer, nor an answer's as a
	// query, nor either as a frame header.
	qb, _ := q.MarshalBinary()
	var h Header
	if (&Answer{}).UnmarshalBinary(qb) == nil || (&Query{}).UnmarshalBinary(b) == nil || h.UnmarshalBinary(qb) == nil || h.UnmarshalBinary(b) == nil {
		t.Error("a discovery datagram decodes as another type")
	}
}
