package cli

import (
	"fmt"
	"runtime"
)

// VersionCmd prints the version.
type VersionCmd struct{}

// Run prints the version, the Go version and the platform.
func (c *VersionCmd) Run(env *Env) error {
	fmt.Fprintf(env.Stdout, "ifl %s (%s, %s/%s, protocol %s)\n", Version, runtime.Version(), runtime.GOOS, runtime.GOARCH, "ifl/1")
	return nil
}
