package proto

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"hash"

	"golang.org/x/crypto/blake2s"
)

// Discovery datagram sizes: both are fixed, and an answer is never larger
// than the query it answers.
const (
	QueryLen  = 64
	AnswerLen = 64
)

// DiscoveryHopLimit is the IPv4 TTL and the IPv6 hop limit a controller
// sends its queries with, and the only one an agent answers: every router
// lowers it, so a query that still has it was sent on the agent's own
// link (as NDP and GTSM, RFC 5082, check).
const DiscoveryHopLimit = 255

// Magics of the discovery datagrams; see the package documentation.
const (
	QueryMagic  = "IFL?"
	AnswerMagic = "IFL!"
)

const (
	macLen       = 16
	nonceLen     = 16
	saltLen      = 8
	fingerprintN = 16 // bytes of a fingerprint
	macLabel     = "ifl/1 discovery mac"
	idLabel      = "ifl/1 discovery identity"
)

// Errors of the discovery checks. The agent sends nothing whichever it
// is; they only say why, in its logs and in tests.
var (
	errDatagramLen  = errors.New("proto: discovery datagram of the wrong length")
	errNotQuery     = errors.New("proto: not an ifl query (magic, version or reserved bytes)")
	errNotAnswer    = errors.New("proto: not an ifl answer (magic, version or reserved byte)")
	errDiscoveryMAC = errors.New("proto: discovery datagram failed authentication (wrong network key)")
	errWrongNonce   = errors.New("proto: answer to another query")
	errQueryStale   = errors.New("proto: query timestamp out of range (clock skew or an old replay)")
)

// DiscoveryKey holds the keys derived from one network key for discovery
// (package documentation, Discovery). Derive it once: it costs two
// BLAKE2s computations.
type DiscoveryKey struct {
	mac [32]byte
	id  [32]byte
}

// DiscoveryKey derives k's discovery keys.
func (k NetworkKey) DiscoveryKey() DiscoveryKey {
	var dk DiscoveryKey
	dk.mac = keyedSum(k[:], []byte(macLabel))
	dk.id = keyedSum(k[:], []byte(idLabel))
	return dk
}

func keyedSum(key []byte, parts ...[]byte) [32]byte {
	h, err := blake2s.New256(key)
	if err != nil {
		panic(err) // only for a key longer than 32 bytes
	}
	return sum(h, parts...)
}

func sum(h hash.Hash, parts ...[]byte) [32]byte {
	for _, p := range parts {
		h.Write(p)
	}
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// macOf computes the MAC of the first 48 bytes of a datagram.
func (dk *DiscoveryKey) macOf(b []byte) [macLen]byte {
	s := keyedSum(dk.mac[:], b[:QueryLen-macLen])
	return [macLen]byte(s[:macLen])
}

// validMAC compares in constant time.
func (dk *DiscoveryKey) validMAC(b []byte, mac [macLen]byte) bool {
	want := dk.macOf(b)
	return subtle.ConstantTimeCompare(want[:], mac[:]) == 1
}

// sealIdentity XORs a fingerprint with the pad of (nonce, salt); it both
// seals and opens.
func (dk *DiscoveryKey) sealIdentity(fp [fingerprintN]byte, nonce [nonceLen]byte, salt [saltLen]byte) [fingerprintN]byte {
	pad := keyedSum(dk.id[:], nonce[:], salt[:])
	for i := range fp {
		fp[i] ^= pad[i]
	}
	return fp
}

// FingerprintBytes is Fingerprint before hex: the first 16 bytes of the
// SHA-256 of a static public key.
func FingerprintBytes(pub []byte) [16]byte {
	s := sha256.Sum256(pub)
	return [16]byte(s[:16])
}
