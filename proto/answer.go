package proto

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
)

// Answer is an agent's answer to a discovery query (package documentation,
// Discovery). Its binary form is AnswerLen bytes. Identity is sealed as on
// the wire; Open verifies the answer and opens it.
type Answer struct {
	Port     uint16 // the agent's TCP port
	Nonce    [16]byte
	Salt     [8]byte
	Identity [16]byte // sealed
	MAC      [16]byte
}

// Answer returns the agent's answer to q, which dk verified: its TCP port
// and its identity (the fingerprint of its static public key, see
// FingerprintBytes).
func (q *Query) Answer(dk *DiscoveryKey, port uint16, fingerprint [16]byte) (Answer, error) {
	a := Answer{Port: port, Nonce: q.Nonce}
	if _, err := rand.Read(a.Salt[:]); err != nil {
		return Answer{}, err
	}
	a.Identity = dk.sealIdentity(fingerprint, a.Nonce, a.Salt)
	var b [AnswerLen]byte
	a.put(b[:])
	a.MAC = dk.macOf(b[:])
	return a, nil
}

// MarshalBinary encodes a as it is, MAC included.
func (a *Answer) MarshalBinary() ([]byte, error) {
	b := make([]byte, AnswerLen)
	a.put(b)
	return b, nil
}

// AppendBinary appends a's binary form to b.
func (a *Answer) AppendBinary(b []byte) ([]byte, error) {
	n := len(b)
	b = append(b, make([]byte, AnswerLen)...)
	a.put(b[n:])
	return b, nil
}

func (a *Answer) put(b []byte) {
	copy(b, AnswerMagic)
	b[4] = Version
	b[5] = 0
	binary.BigEndian.PutUint16(b[6:8], a.Port)
	copy(b[8:24], a.Nonce[:])
	copy(b[24:32], a.Salt[:])
	copy(b[32:48], a.Identity[:])
	copy(b[48:64], a.MAC[:])
}

// UnmarshalBinary decodes an answer and checks its form: length, magic,
// version, zero reserved byte. It does not check the MAC: see Open.
func (a *Answer) UnmarshalBinary(b []byte) error {
	if len(b) != AnswerLen {
		return fmt.Errorf("%w: %d bytes, want %d", errDatagramLen, len(b), AnswerLen)
	}
	if string(b[:4]) != AnswerMagic || b[4] != Version || b[5] != 0 {
		return errNotAnswer
	}
	a.Port = binary.BigEndian.Uint16(b[6:8])
	a.Nonce = [16]byte(b[8:24])
	a.Salt = [8]byte(b[24:32])
	a.Identity = [16]byte(b[32:48])
	a.MAC = [16]byte(b[48:64])
	return nil
}

// Open verifies that a answers the query whose nonce is given, under dk,
// and returns the fingerprint it claims (as Fingerprint writes it). The
// claim is a hint: only a handshake proves an identity.
func (a *Answer) Open(dk *DiscoveryKey, nonce [16]byte) (string, error) {
	if a.Nonce != nonce {
		return "", errWrongNonce
	}
	var b [AnswerLen]byte
	a.put(b[:])
	if !dk.validMAC(b[:], a.MAC) {
		return "", errDiscoveryMAC
	}
	fp := dk.sealIdentity(a.Identity, a.Nonce, a.Salt)
	return hex.EncodeToString(fp[:]), nil
}
