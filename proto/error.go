package proto

import (
	"encoding/json"
	"fmt"
)

// Error is an agent's answer to a request it cannot serve. The connection
// stays usable.
type Error struct {
	Code    string `json:"code"`    // machine-readable, e.g. "unsupported"
	Message string `json:"message"` // for people
}

// Error codes.
const (
	CodeUnsupported = "unsupported" // a request type the agent does not know
	CodeInternal    = "internal"    // the agent failed to build the answer
)

// Type implements Message.
func (*Error) Type() MessageType { return TypeError }

// MarshalBinary implements Message.
func (e *Error) MarshalBinary() ([]byte, error) { return json.Marshal(e) }

// UnmarshalBinary implements Message.
func (e *Error) UnmarshalBinary(b []byte) error { return json.Unmarshal(b, e) }

// Error implements error, so a client can return the agent's answer as is.
func (e *Error) Error() string { return fmt.Sprintf("agent: %s: %s", e.Code, e.Message) }
