package cli

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"github.com/ifl-project/ifl/proto"
)

// KeycheckCmd checks key files with the parser the agent and the
// controller use, so that a script installs only keys ifl will accept.
type KeycheckCmd struct {
	Files []string `arg:"" type:"path" placeholder:"FILE" help:"Key files to check."`
	Agent bool     `help:"The files are agent keys, not network keys."`
}

// Help is shown by 'ifl keycheck --help'.
func (c *KeycheckCmd) Help() string {
	return `Reads each key file as ifl would (mode 0600, the right kind of key) and
prints one line per file: its name and an id. For a network key the id is
a hash of the key, the same for the same key on every host, from which the
key cannot be recovered: compare ids to see whether two hosts hold the same
network key without copying it. For an agent key it is the fingerprint
ifl probe and ifl ping show. Exit status 2 if a file is not a good key.

Examples:
  ifl keycheck /etc/ifl/network.key
  ifl keycheck --agent /etc/ifl/agent.key`
}

// Run checks the files, stopping at the first bad one.
func (c *KeycheckCmd) Run(env *Env) error {
	for _, f := range c.Files {
		var id string
		if c.Agent {
			k, err := proto.LoadIdentity(f)
			if err != nil {
				return fmt.Errorf("keycheck: %w", err)
			}
			id = k.Fingerprint()
		} else {
			k, err := loadNetworkKey(f)
			if err != nil {
				return fmt.Errorf("keycheck: %w", err)
			}
			id = networkKeyID(k)
		}
		fmt.Fprintf(env.Stdout, "%s\t%s\n", f, id)
	}
	return nil
}

// networkKeyID names a network key without revealing it: a hash with its
// own label, so that it matches no other hash of the key that ifl makes.
func networkKeyID(k proto.NetworkKey) string {
	h := sha256.New()
	h.Write([]byte("ifl network key id\x00"))
	h.Write(k[:])
	return hex.EncodeToString(h.Sum(nil)[:16])
}
