// Command invgen writes an inventory state of N hosts, each with a role
// and a site label, as a fleet's probes would leave it: the input of the
// inventory benchmarks (scripts/bench-inventory.sh).
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/ifl-project/ifl/internal/controller/inventory"
)

func main() {
	n := flag.Int("hosts", 100000, "hosts in the state")
	out := flag.String("o", "inventory.json", "the state file to write")
	flag.Parse()
	if err := inventory.WriteFile(*out, inventory.Synthetic(*n)); err != nil {
		fmt.Fprintln(os.Stderr, "invgen:", err)
		os.Exit(2)
	}
}
