package proto

import (
	"encoding/json"
	"errors"
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
	// CodeBusy answers the first request of a connection the agent has
	// no room for, before it closes it: its verified connections are at
	// their cap and none can give way (see Verification in the package
	// documentation), or it dropped this connection after its welcome for
	// a newcomer.
	CodeBusy = "busy"
)

// ErrBusy matches, with errors.Is, an Error of code CodeBusy: the agent
// proved its identity but had no room for the connection. It says nothing
// about the network key; trying again later may succeed.
var ErrBusy = errors.New("agent busy")

// Type implements Message.
func (*Error) Type() MessageType { return TypeError }

// MarshalBinary implements Message.
func (e *Error) MarshalBinary() ([]byte, error) { return json.Marshal(e) }

// UnmarshalBinary implements Message.
func (e *Error) UnmarshalBinary(b []byte) error { return json.Unmarshal(b, e) }

// Error implements error, so a client can return the agent's answer as is.
func (e *Error) Error() string { return fmt.Sprintf("agent: %s: %s", e.Code, e.Message) }

// Is makes errors.Is(err, ErrBusy) true for a busy answer.
func (e *Error) Is(target error) bool { return target == ErrBusy && e.Code == CodeBusy }
