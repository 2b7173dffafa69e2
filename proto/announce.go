package proto

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// AnnouncementLen is the size of an announcement datagram: fixed, as
// discovery's.
const AnnouncementLen = 64

// AnnouncementMagic starts an announcement; see the package
// documentation, Announcements.
const AnnouncementMagic = "IFL+"

// DefaultAnnouncePort is the UDP port a controller listens on for
// announcements when agent.yaml names a controller without one
// (ifl probe --watch --announcements :7441).
const DefaultAnnouncePort = 7441

const (
	announceMACLabel = "ifl/1 announcement mac"
	announceIDLabel  = "ifl/1 announcement identity"
)

// Errors of the announcement checks. A controller sends nothing back
// whichever it is; they say why, in its logs, metrics and tests.
var (
	ErrAnnouncementLen   = errors.New("proto: announcement of the wrong length")
	ErrNotAnnouncement   = errors.New("proto: not an ifl announcement (magic, version or reserved bytes)")
	ErrAnnouncementStale = errors.New("proto: announcement timestamp out of range (clock skew or an old replay)")
	ErrAnnouncementMAC   = errors.New("proto: announcement failed authentication (wrong network key)")
)

// AnnounceKey holds the keys derived from one network key for
// announcements (package documentation, Announcements). Derive it once.
type AnnounceKey struct {
	mac [32]byte
	id  [32]byte
}

// AnnounceKey derives k's announcement keys: other labels than
// discovery's, so that no MAC of one is valid for the other.
func (k NetworkKey) AnnounceKey() AnnounceKey {
	return AnnounceKey{mac: keyedSum(k[:], []byte(announceMACLabel)), id: keyedSum(k[:], []byte(announceIDLabel))}
}

// Announcement is an agent's word that it can be reached at the address
// the datagram comes from. Identity is sealed as on the wire; Open
// verifies and opens it.
type Announcement struct {
	Port     uint16 // the agent's TCP port
	Time     int64  // the agent's clock, Unix nanoseconds
	Nonce    [16]byte
	Identity [16]byte // sealed
	MAC      [16]byte
}

// NewAnnouncement returns an announcement of the agent with the given
// fingerprint (FingerprintBytes) and TCP port, stamped with now and a
// random nonce, sealed and authenticated with ak.
func NewAnnouncement(ak *AnnounceKey, port uint16, fingerprint [16]byte, now time.Time) (Announcement, error) {
	a := Announcement{Port: port, Time: now.UnixNano()}
	if _, err := rand.Read(a.Nonce[:]); err != nil {
		return Announcement{}, err
	}
	a.Identity = ak.seal(fingerprint, a.Nonce)
	var b [AnnouncementLen]byte
	a.put(b[:])
	a.MAC = ak.macOf(b[:])
	return a, nil
}

func (ak *AnnounceKey) macOf(b []byte) [macLen]byte {
	s := keyedSum(ak.mac[:], b[:AnnouncementLen-macLen])
	return [macLen]byte(s[:macLen])
}

// seal XORs a fingerprint with the pad of the nonce; it both seals and
// opens. The nonce is new for every datagram, so no two share a pad.
func (ak *AnnounceKey) seal(fp [fingerprintN]byte, nonce [nonceLen]byte) [fingerprintN]byte {
	pad := keyedSum(ak.id[:], nonce[:])
	for i := range fp {
		fp[i] ^= pad[i]
	}
	return fp
}

// MarshalBinary encodes a as it is, MAC included.
func (a *Announcement) MarshalBinary() ([]byte, error) {
	b := make([]byte, AnnouncementLen)
	a.put(b)
	return b, nil
}

func (a *Announcement) put(b []byte) {
	copy(b, AnnouncementMagic)
	b[4] = Version
	b[5] = 0
	binary.BigEndian.PutUint16(b[6:8], a.Port)
	binary.BigEndian.PutUint64(b[8:16], uint64(a.Time))
	copy(b[16:32], a.Nonce[:])
	copy(b[32:48], a.Identity[:])
	copy(b[48:64], a.MAC[:])
}

// UnmarshalBinary decodes an announcement and checks its form: length,
// magic, version and the reserved byte. It checks neither the time nor
// the MAC: see Open.
func (a *Announcement) UnmarshalBinary(b []byte) error {
	if len(b) != AnnouncementLen {
		return fmt.Errorf("%w: %d bytes, want %d", ErrAnnouncementLen, len(b), AnnouncementLen)
	}
	if string(b[:4]) != AnnouncementMagic || b[4] != Version || b[5] != 0 {
		return ErrNotAnnouncement
	}
	a.Port = binary.BigEndian.Uint16(b[6:8])
	a.Time = int64(binary.BigEndian.Uint64(b[8:16]))
	a.Nonce = [16]byte(b[16:32])
	a.Identity = [16]byte(b[32:48])
	a.MAC = [16]byte(b[48:64])
	return nil
}

// Open checks a decoded announcement as a controller must, after its
// form: the timestamp within MaxSkew of now, then the MAC under one of
// keys (compared in constant time). It returns the fingerprint the
// announcement claims, which only a handshake proves. It does not check
// for a replay: the caller records ReplayKey in a ReplayFilter, valid
// until Expires.
func (a *Announcement) Open(keys []AnnounceKey, now time.Time) ([16]byte, error) {
	if d := now.Sub(time.Unix(0, a.Time)); d > MaxSkew || d < -MaxSkew {
		return [16]byte{}, fmt.Errorf("%w: %v from the controller's clock", ErrAnnouncementStale, d.Round(time.Millisecond))
	}
	var b [AnnouncementLen]byte
	a.put(b[:])
	for i := range keys {
		want := keys[i].macOf(b[:])
		if subtle.ConstantTimeCompare(want[:], a.MAC[:]) == 1 {
			return keys[i].seal(a.Identity, a.Nonce), nil
		}
	}
	return [16]byte{}, ErrAnnouncementMAC
}

// Expires is when an announcement leaves the skew window: until then a
// replay filter must remember its nonce.
func (a *Announcement) Expires() time.Time { return time.Unix(0, a.Time).Add(MaxSkew) }

// ReplayKey is the key under which a ReplayFilter remembers the
// announcement: its magic and nonce, so that it never stands for a
// query's.
func (a *Announcement) ReplayKey() [32]byte {
	var k [32]byte
	copy(k[:], AnnouncementMagic)
	copy(k[16:], a.Nonce[:])
	return k
}
