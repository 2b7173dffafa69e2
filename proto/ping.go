package proto

import (
	"encoding/json"
	"errors"
)

// PingRequest asks an agent for its facts. Its body is empty; bytes after
// the type are ignored, so later versions may add fields.
type PingRequest struct{}

// Type implements Message.
func (*PingRequest) Type() MessageType { return TypePingRequest }

// MarshalBinary implements Message.
func (*PingRequest) MarshalBinary() ([]byte, error) { return nil, nil }

// UnmarshalBinary implements Message.
func (*PingRequest) UnmarshalBinary([]byte) error { return nil }

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
