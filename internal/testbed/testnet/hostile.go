package testnet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/ifl-project/ifl/proto"
)

// helperHostile, given as the program to exec, makes the helper serve as a
// compromised agent: args PORT NETWORK-KEY IDENTITY-KEY FACTS-FILE, and
// "churn" for a new identity on every connection.
const helperHostile = "@hostile"

// HostileFacts are the facts a Hostile host answers with by default: the
// name of the control node, Jinja templates, terminal escapes and forged
// lines in the strings it chooses, and labels named after Ansible's
// reserved groups.
func HostileFacts() *proto.Facts {
	const jinja = "{{ lookup('pipe', 'id') }}"
	const escapes = "\x1b[2J\x1b]0;owned\a\r\nidentity 00000000000000000000000000000000"
	return &proto.Facts{
		Hostname:     "localhost",
		MachineID:    "0000000000000000000000000000000",
		OS:           proto.OSRelease{ID: "debian", PrettyName: jinja},
		Kernel:       "{% for x in range(3) %}" + escapes + "{% endfor %}",
		AgentVersion: escapes,
		Interfaces:   []proto.Interface{{Name: "eth0" + escapes, MAC: jinja, MTU: 1500, Flags: []string{"up"}}},
		Labels:       map[string]string{"group": "all", "meta": "_meta", "ungrouped": "ungrouped", "ifl": "all", jinja: jinja},
	}
}

// serveHostile runs a compromised agent until it is killed.
func serveHostile(args []string) error {
	if len(args) < 5 || len(args) > 6 || (len(args) == 6 && args[5] != "churn") {
		return fmt.Errorf("usage: %s PORT NETWORK-KEY IDENTITY-KEY FACTS-FILE [churn]", helperHostile)
	}
	port, err := strconv.Atoi(args[1])
	if err != nil {
		return fmt.Errorf("%s: port %q: %w", helperHostile, args[1], err)
	}
	key, err := proto.LoadNetworkKey(args[2])
	if err != nil {
		return err
	}
	id, err := proto.LoadIdentity(args[3])
	if err != nil {
		return err
	}
	b, err := os.ReadFile(args[4])
	if err != nil {
		return err
	}
	var facts proto.Facts
	if err := json.Unmarshal(b, &facts); err != nil {
		return fmt.Errorf("%s: %w", args[4], err)
	}
	churn := len(args) == 6
	ln, err := net.Listen("tcp", fmt.Sprintf(":%d", port))
	if err != nil {
		return err
	}
	// The same readiness line an agent logs.
	fmt.Printf("{\"event\":\"listening\",\"addr\":%q,\"identity\":%q}\n", ln.Addr().String(), id.Fingerprint())
	replay := proto.NewReplayFilter(0)
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		cid := id
		if churn {
			if cid, err = proto.NewIdentity(); err != nil {
				return err
			}
		}
		go answerHostile(c, &proto.ServerConfig{NetworkKeys: []proto.NetworkKey{key}, Identity: cid, Replay: replay}, facts)
	}
}

// answerHostile answers every request on c with facts.
func answerHostile(c net.Conn, cfg *proto.ServerConfig, facts proto.Facts) {
	defer c.Close()
	pc := proto.Server(c, cfg)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := pc.Receive(ctx)
		if err == nil || errors.Is(err, proto.ErrUnknownMessage) {
			f := facts
			f.Time = time.Now().UTC()
			err = pc.Send(ctx, &proto.PingReply{Facts: f})
		}
		cancel()
		if err != nil {
			return
		}
	}
}
