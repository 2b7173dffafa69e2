// Package agenttest runs an ifl agent on 127.0.0.1 for the tests of the
// packages that talk to one.
package agenttest

import (
	"context"
	"net"
	"testing"

	"github.com/ifl-project/ifl/agent"
	"github.com/ifl-project/ifl/proto"
)

// Agent is a running agent.
type Agent struct {
	Port     int
	Key      proto.NetworkKey // the network key it accepts
	Identity proto.Identity
}

// Options change the agent Start serves. The zero value is an ordinary
// agent reporting this machine's facts.
type Options struct {
	// Key is the network key; zero means a new one.
	Key proto.NetworkKey
	// Facts, if not nil, are what the agent reports, as they are: a
	// hostile agent chooses every string. Each ping gets a copy.
	Facts *proto.Facts
}

// Start serves an agent with a new network key and identity on a free
// loopback port until the test ends.
func Start(t testing.TB) *Agent {
	t.Helper()
	return StartWith(t, Options{})
}

// StartWith is Start with options.
func StartWith(t testing.TB, o Options) *Agent {
	t.Helper()
	key := o.Key
	if key == (proto.NetworkKey{}) {
		var err error
		if key, err = proto.NewNetworkKey(); err != nil {
			t.Fatal(err)
		}
	}
	id, err := proto.NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	opts := agent.Options{NetworkKeys: []proto.NetworkKey{key}, Identity: id, Version: "test"}
	if o.Facts != nil {
		opts.Facts = func(string, map[string]string) (*proto.Facts, error) {
			f := *o.Facts
			return &f, nil
		}
	}
	a, err := agent.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("agent: %v", err)
		}
	})
	return &Agent{Port: ln.Addr().(*net.TCPAddr).Port, Key: key, Identity: id}
}
