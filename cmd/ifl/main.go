// Command ifl finds the machines of a fleet that run the ifl agent and
// reports their current addresses and facts; run 'ifl --help'.
package main

import (
	"context"
	"os"

	"github.com/ifl-project/ifl/internal/cli"
)

func main() {
	ctx, stop := cli.SignalContext(context.Background())
	code := cli.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
