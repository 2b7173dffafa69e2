package cli

import (
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/ifl-project/ifl/internal/controller/inventory"
)

// checkOutput refuses the output flags that contradict each other: --list
// and --host print Ansible's JSON whatever -o says.
func (c *InventoryCmd) checkOutput() error {
	switch {
	case c.Output != formatTable && c.Output != formatJSON && (c.List || c.Host != ""):
		flag := "--list"
		if c.Host != "" {
			flag = "--host"
		}
		return fmt.Errorf("%s prints Ansible's JSON; -o %s asks for another format: give one", flag, c.Output)
	case c.NoHeader && (c.List || c.Host != ""):
		return fmt.Errorf("--no-header: only -o tsv has a header line to leave out (the output is Ansible's JSON)")
	}
	return checkNoHeader(c.NoHeader, c.Output)
}

// writeInventoryTSV writes one row per host, as the table shows them:
// name, address (ansible_host, by prefer), full identity, when it was
// last seen (RFC 3339, UTC), how many times it moved, and its groups but
// ifl_all, comma-separated.
func writeInventoryTSV(w io.Writer, noHeader bool, st *inventory.State, inv *inventory.Ansible, now time.Time, prefer inventory.Prefer) error {
	t := newTSV(w, noHeader, "name", "address", "identity", "last_seen", "moves", "groups")
	groups := groupsByHost(inv)
	for _, h := range st.Sorted() {
		t.row(tsvText(h.Name), tsvText(h.Address(prefer)), h.Identity, h.LastSeen.UTC().Format(time.RFC3339), strconv.Itoa(len(h.History)), tsvList(groups[h.Name]))
	}
	return t.Flush()
}

// groupsByHost lists each host's groups but ifl_all, sorted.
func groupsByHost(inv *inventory.Ansible) map[string][]string {
	out := map[string][]string{}
	for g, members := range inv.Groups {
		if g == "ifl_all" {
			continue
		}
		for _, m := range members {
			out[m] = append(out[m], g)
		}
	}
	for _, gs := range out {
		sortStrings(gs)
	}
	return out
}
