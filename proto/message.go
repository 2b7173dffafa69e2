package proto

import (
	"errors"
	"fmt"
)

// MessageType is the first byte of every decrypted transport payload.
type MessageType uint8

// Message types. Operations are a fixed, read-only set.
const (
	TypePingRequest MessageType = 1
	TypePingReply   MessageType = 2
	TypeError       MessageType = 3
)

func (t MessageType) String() string {
	switch t {
	case TypePingRequest:
		return "ping request"
	case TypePingReply:
		return "ping reply"
	case TypeError:
		return "error"
	}
	return fmt.Sprintf("message type %d", uint8(t))
}

// MaxMessage is the largest message, type byte included: a frame's payload
// less the 16-byte authentication tag of the Noise transport message.
const MaxMessage = MaxPayload - 16

// ErrUnknownMessage is returned by UnmarshalMessage for a type this version
// does not know. An agent answers it with an Error message.
var ErrUnknownMessage = errors.New("unknown message type")

// Message is one typed message carried in a transport frame. Its binary
// form is the body that follows the type byte.
type Message interface {
	Type() MessageType
	MarshalBinary() ([]byte, error)
	UnmarshalBinary([]byte) error
}

// MarshalMessage encodes m with its type byte.
func MarshalMessage(m Message) ([]byte, error) {
	body, err := m.MarshalBinary()
	if err != nil {
		return nil, err
	}
	return append([]byte{byte(m.Type())}, body...), nil
}

// UnmarshalMessage decodes a type byte and body.
func UnmarshalMessage(b []byte) (Message, error) {
	if len(b) == 0 {
		return nil, errors.New("proto: empty message")
	}
	var m Message
	switch t := MessageType(b[0]); t {
	case TypePingRequest:
		m = new(PingRequest)
	case TypePingReply:
		m = new(PingReply)
	case TypeError:
		m = new(Error)
	default:
		return nil, fmt.Errorf("proto: %w %d", ErrUnknownMessage, uint8(t))
	}
	if err := m.UnmarshalBinary(b[1:]); err != nil {
		return nil, fmt.Errorf("proto: decoding %v: %w", m.Type(), err)
	}
	return m, nil
}
