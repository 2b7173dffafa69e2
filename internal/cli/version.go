package cli

import (
	"fmt"
	"runtime"

	"github.com/ifl-project/ifl/proto"
)

// VersionCmd prints the version.
type VersionCmd struct{}

// Run prints the version, the Go version and the platform.
func (c *VersionCmd) Run(env *Env) error {
	fmt.Fprintln(env.Stdout, versionString())
	return nil
}

// versionString is what 'ifl version' and 'ifl --version' print.
func versionString() string {
	return fmt.Sprintf("ifl %s (%s, %s/%s, protocol %s)", Version, runtime.Version(), runtime.GOOS, runtime.GOARCH, proto.Prologue)
}
