package proto

import (
	"encoding/binary"
	"encoding/json"
	"errors"
)

// PingRequest asks an agent for its facts. Its body is empty, or the
// UDP port where the controller listens for announcements (2 bytes, big
// endian); bytes after those are ignored, so later versions may add
// fields.
type PingRequest struct {
	// AnnouncePort, if not zero, tells the agent to announce its address
	// changes to the connection's source address at this UDP port.
	AnnouncePort uint16
}

// Type implements Message.
func (*PingRequest) Type() MessageType { return TypePingRequest }

// MarshalBinary implements Message.
func (p *PingRequest) MarshalBinary() ([]byte, error) {
	if p.AnnouncePort == 0 {
		return nil, nil
	}
	return binary.BigEndian.AppendUint16(nil, p.AnnouncePort), nil
}

// UnmarshalBinary implements Message. A body shorter than a port says
// none.
func (p *PingRequest) UnmarshalBinary(b []byte) error {
	p.AnnouncePort = 0
	if len(b) >= 2 {
		p.AnnouncePort = binary.BigEndian.Uint16(b)
	}
	return nil
}

// PingReply carries an agent's facts as a JSON object (see Facts).
type PingReply struct {
	Facts Facts
}

// Type implements Message.
func (*PingReply) Type() MessageType { return TypePingReply }

// MarshalBinary implements Message.
func (p *PingReply) MarshalBinary() ([]byte, error) { return json.Marshal(&p.Facts) }

// UnmarshalBinary implements Message.
func (p *PingReply) UnmarshalBinary(b []byte) error {
	var f Facts
	if err := json.Unmarshal(b, &f); err != nil {
		return err
	}
	if f.Hostname == "" {
		return errors.New("facts without a hostname")
	}
	p.Facts = f
	return nil
}
