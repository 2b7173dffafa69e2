package cli

import (
	"fmt"

	"github.com/ifl-project/ifl/agent"
	"github.com/ifl-project/ifl/proto"
)

// KeygenCmd writes a new key file.
type KeygenCmd struct {
	File  string `arg:"" optional:"" type:"path" help:"Where to write the key (default: ${network_key}, or ${identity_key} with --agent)."`
	Agent bool   `help:"Write an agent identity key instead of a network key, and print its fingerprint."`
	Force bool   `help:"Replace an existing key file. Every peer holding the old key must get the new one."`
}

// Help is shown by 'ifl keygen --help'.
func (c *KeygenCmd) Help() string {
	return `A network key is the secret every controller and agent of a fleet share:
create it once, copy it (mode 0600) to /etc/ifl/network.key on every host.
An agent key is one agent's identity, /etc/ifl/agent.key: the install script
and the .deb create it (the systemd unit hands it to the agent as a
credential), and an agent run by hand creates it on first start.

A key's folder is created (mode 0700) when its parent exists, as the agent
creates it for its key; a deeper path that does not exist is refused.

Examples:
  ifl keygen /etc/ifl/network.key
  ifl keygen --agent /etc/ifl/agent.key`
}

// Run writes the key.
func (c *KeygenCmd) Run(env *Env) error {
	path := c.File
	if path == "" {
		path = agent.DefaultNetworkKey
		if c.Agent {
			path = agent.DefaultIdentityKey
		}
	}
	dir, err := keyDir(path)
	if err != nil {
		return fmt.Errorf("keygen: %w", err)
	}
	if dir != "" {
		fmt.Fprintf(env.Stderr, "created directory %s (mode 0700)\n", dir)
	}
	if c.Agent {
		id, err := proto.NewIdentity()
		if err != nil {
			return err
		}
		if err := proto.WriteKeyFile(path, id, c.Force); err != nil {
			return fmt.Errorf("keygen: %w", err)
		}
		fmt.Fprintf(env.Stderr, "wrote agent key %s (mode 0600)\n", path)
		fmt.Fprintln(env.Stdout, id.Fingerprint())
		return nil
	}
	k, err := proto.NewNetworkKey()
	if err != nil {
		return err
	}
	if err := proto.WriteKeyFile(path, k, c.Force); err != nil {
		return fmt.Errorf("keygen: %w", err)
	}
	fmt.Fprintf(env.Stderr, "wrote network key %s (mode 0600); copy it to every agent and controller of this fleet\n", path)
	return nil
}
