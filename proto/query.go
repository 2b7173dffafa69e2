package proto

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"time"
)

// Query is a controller's discovery query (package documentation,
// Discovery). Its binary form is QueryLen bytes.
type Query struct {
	// Time is the controller's clock in Unix nanoseconds.
	Time  int64
	Nonce [16]byte
	MAC   [16]byte
}

// NewQuery returns a query stamped with now and a random nonce,
// authenticated with dk.
func NewQuery(dk *DiscoveryKey, now time.Time) (Query, error) {
	q := Query{Time: now.UnixNano()}
	if _, err := rand.Read(q.Nonce[:]); err != nil {
		return Query{}, err
	}
	var b [QueryLen]byte
	q.put(b[:])
	q.MAC = dk.macOf(b[:])
	return q, nil
}

// MarshalBinary encodes q as it is, MAC included.
func (q *Query) MarshalBinary() ([]byte, error) {
	b := make([]byte, QueryLen)
	q.put(b)
	return b, nil
}

func (q *Query) put(b []byte) {
	copy(b, QueryMagic)
	b[4] = Version
	b[5], b[6], b[7] = 0, 0, 0
	binary.BigEndian.PutUint64(b[8:16], uint64(q.Time))
	copy(b[16:32], q.Nonce[:])
	clear(b[32:48])
	copy(b[48:64], q.MAC[:])
}

// UnmarshalBinary decodes a query and checks its form: length, magic,
// version, zero reserved and padding bytes. It does not check the MAC or
// the time: see Check.
func (q *Query) UnmarshalBinary(b []byte) error {
	if len(b) != QueryLen {
		return fmt.Errorf("%w: %d bytes, want %d", errDatagramLen, len(b), QueryLen)
	}
	if string(b[:4]) != QueryMagic || b[4] != Version || b[5]|b[6]|b[7] != 0 || !allZero(b[32:48]) {
		return errNotQuery
	}
	q.Time = int64(binary.BigEndian.Uint64(b[8:16]))
	q.Nonce = [16]byte(b[16:32])
	q.MAC = [16]byte(b[48:64])
	return nil
}

func allZero(b []byte) bool {
	var or byte
	for _, c := range b {
		or |= c
	}
	return or == 0
}

// Check verifies a decoded query as an agent must, after its form: the
// timestamp within MaxSkew of now, then the MAC under one of keys. It
// returns the index of the key that verified it. It does not check for a
// replay: the caller records Nonce in a ReplayFilter, valid until Expires.
func (q *Query) Check(keys []DiscoveryKey, now time.Time) (int, error) {
	if d := now.Sub(time.Unix(0, q.Time)); d > MaxSkew || d < -MaxSkew {
		return -1, fmt.Errorf("%w: %v from the agent's clock", errQueryStale, d.Round(time.Millisecond))
	}
	var b [QueryLen]byte
	q.put(b[:])
	for i := range keys {
		if keys[i].validMAC(b[:], q.MAC) {
			return i, nil
		}
	}
	return -1, errDiscoveryMAC
}

// Expires is when a checked query leaves the skew window: until then a
// replay filter must remember its nonce.
func (q *Query) Expires() time.Time { return time.Unix(0, q.Time).Add(MaxSkew) }

// ReplayKey is the key under which a ReplayFilter remembers the query.
func (q *Query) ReplayKey() [32]byte {
	var k [32]byte
	copy(k[:], QueryMagic)
	copy(k[16:], q.Nonce[:])
	return k
}
