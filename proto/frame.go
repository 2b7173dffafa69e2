package proto

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Version is the wire protocol version carried in every frame header and,
// as "ifl/1", in the Noise prologue.
const Version = 1

// HeaderLen is the size of the fixed frame header.
const HeaderLen = 12

// MaxPayload is the largest frame payload either side sends or accepts. It
// is also the largest Noise message (65535 bytes), so a frame always holds
// exactly one Noise message.
const MaxPayload = 65535

// Magic opens every frame so that a peer speaking another protocol is told
// apart from an agent at the first bytes. Its newline makes a line-based
// server (HTTP, SMTP) answer a controller's hello with an error at once
// instead of waiting for the rest of a request line.
const Magic = "IFL\n"

// FrameType says what a frame carries.
type FrameType uint8

// Frame types, in the order they appear on a connection.
const (
	FrameHello     FrameType = 1 // handshake message 1, controller to agent
	FrameWelcome   FrameType = 2 // handshake message 2, agent to controller
	FrameTransport FrameType = 3 // an encrypted Message, either way
)

func (t FrameType) String() string {
	switch t {
	case FrameHello:
		return "hello"
	case FrameWelcome:
		return "welcome"
	case FrameTransport:
		return "transport"
	}
	return fmt.Sprintf("frame type %d", uint8(t))
}

// Errors returned by ReadFrame. Each is wrapped with detail; compare with
// errors.Is.
var (
	// ErrNotIFL means the peer sent bytes that do not start an ifl frame:
	// it speaks another protocol.
	ErrNotIFL = errors.New("not an ifl peer")
	// ErrFrameTooLarge means a header announced a payload over MaxPayload.
	ErrFrameTooLarge = errors.New("frame too large")
	// ErrVersion means the peer speaks another version of the protocol.
	ErrVersion = errors.New("unsupported protocol version")
)

// Header is the fixed 12-byte frame header:
//
//	0  4  magic "IFL\n" (49 46 4c 0a)
//	4  1  version (1)
//	5  1  frame type
//	6  2  reserved, zero
//	8  4  payload length, big endian, at most MaxPayload
type Header struct {
	Type   FrameType
	Length uint32
}

// MarshalBinary encodes h. It fails if the length is over MaxPayload.
func (h Header) MarshalBinary() ([]byte, error) {
	b := make([]byte, HeaderLen)
	return b, h.put(b)
}

func (h Header) put(b []byte) error {
	if h.Length > MaxPayload {
		return fmt.Errorf("proto: %w: %d bytes (maximum %d)", ErrFrameTooLarge, h.Length, MaxPayload)
	}
	copy(b, Magic)
	b[4] = Version
	b[5] = byte(h.Type)
	b[6], b[7] = 0, 0
	binary.BigEndian.PutUint32(b[8:12], h.Length)
	return nil
}

// UnmarshalBinary decodes a header and checks it: magic, version, a known
// frame type and a length within MaxPayload.
func (h *Header) UnmarshalBinary(b []byte) error {
	if len(b) < HeaderLen {
		return fmt.Errorf("proto: short header: %d bytes", len(b))
	}
	if string(b[:4]) != Magic {
		return fmt.Errorf("proto: %w (it answered %q)", ErrNotIFL, printable(b[:HeaderLen]))
	}
	if b[4] != Version {
		return fmt.Errorf("proto: %w %d (this side speaks %d)", ErrVersion, b[4], Version)
	}
	t := FrameType(b[5])
	if t < FrameHello || t > FrameTransport {
		return fmt.Errorf("proto: unknown %v", t)
	}
	if b[6] != 0 || b[7] != 0 {
		return fmt.Errorf("proto: reserved header bytes are not zero")
	}
	n := binary.BigEndian.Uint32(b[8:12])
	if n > MaxPayload {
		return fmt.Errorf("proto: %w: header announces %d bytes (maximum %d)", ErrFrameTooLarge, n, MaxPayload)
	}
	h.Type, h.Length = t, n
	return nil
}

// frameReader reads frames into one buffer that it reuses, so a connection
// never holds more than MaxPayload bytes whatever a header says. The
// buffer grows with the bytes that come, not with the length a header
// announces: a peer that announces the largest payload and sends it
// slowly, or never, costs what it sent.
type frameReader struct {
	r   io.Reader
	buf []byte
}

// minFrameBuf is the room a frameReader starts with: a hello, a welcome
// and a ping request fit.
const minFrameBuf = 512

// ReadFrame reads one frame. The returned payload is valid until the next
// call. A clean EOF before any header byte is returned as io.EOF.
func (fr *frameReader) ReadFrame() (FrameType, []byte, error) {
	var hb [HeaderLen]byte
	n, err := io.ReadFull(fr.r, hb[:])
	if err != nil {
		if err == io.ErrUnexpectedEOF {
			// A peer that answered a few bytes and hung up is judged by them.
			var h Header
			if herr := h.UnmarshalBinary(append(hb[:n:n], make([]byte, HeaderLen-n)...)); errors.Is(herr, ErrNotIFL) {
				return 0, nil, herr
			}
		}
		return 0, nil, err
	}
	var h Header
	if err := h.UnmarshalBinary(hb[:]); err != nil {
		return 0, nil, err
	}
	n = int(h.Length)
	p := fr.buf[:0]
	for len(p) < n {
		if len(p) == cap(p) {
			// Twice what came so far, so that copies cost no more than
			// the bytes read.
			grown := make([]byte, len(p), min(n, max(minFrameBuf, 2*cap(p))))
			copy(grown, p)
			p, fr.buf = grown, grown
		}
		m, err := fr.r.Read(p[len(p):min(n, cap(p))])
		p = p[:len(p)+m]
		if err != nil && len(p) < n {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return 0, nil, fmt.Errorf("proto: reading %d-byte %v payload: %w", h.Length, h.Type, err)
		}
	}
	return h.Type, p, nil
}

// appendFrame appends a header and payload to dst.
func appendFrame(dst []byte, t FrameType, payload []byte) ([]byte, error) {
	var hb [HeaderLen]byte
	if err := (Header{Type: t, Length: uint32(min(len(payload), MaxPayload+1))}).put(hb[:]); err != nil {
		return nil, err
	}
	dst = append(dst, hb[:]...)
	return append(dst, payload...), nil
}

// printable renders up to 16 bytes of a foreign answer for an error message.
func printable(b []byte) string {
	if len(b) > 16 {
		b = b[:16]
	}
	out := make([]byte, 0, len(b))
	for _, c := range b {
		if c >= 0x20 && c < 0x7f {
			out = append(out, c)
		} else {
			out = append(out, '.')
		}
	}
	return string(out)
}
