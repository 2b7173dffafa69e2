package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/ifl-project/ifl/internal/controller/inventory"
	"github.com/ifl-project/ifl/internal/support/untrusted"
)

// InventoryCmd shows the inventory, for people and for Ansible.
type InventoryCmd struct {
	Action   string `arg:"" optional:"" enum:",name,import,export" default:"" help:"name: give <name> to the host of <identity> (see Names above); import FILE: put the state file FILE in the store (--store), in place of what it holds; export [FILE]: write what the store holds as a state file, to FILE or standard output. Without it, show the inventory."`
	NewName  string `arg:"" optional:"" name:"name" help:"With name: the inventory name to give, a DNS host name. With import and export: the state file."`
	Identity string `arg:"" optional:"" help:"With name: the host's identity, or its first 8 or more hex digits."`
	Force    bool   `help:"With name: take <name> from the host that holds it (which gets another name by the rules), or from the identity it is reserved for. With import: replace a store that holds hosts."`

	List       bool   `help:"Print the Ansible dynamic inventory (groups, and every host's variables under _meta.hostvars)."`
	Host       string `placeholder:"NAME" help:"Print one host's variables, as Ansible asks with --host: by inventory name, or by the first 8 or more hex digits of its identity."`
	Output     string `short:"o" enum:"table,tsv,json,yaml" default:"table" help:"table (for people), tsv (tab-separated rows for scripts), json (same as --list) or yaml (a static Ansible inventory file)."`
	JSON       bool   `help:"Same as -o json."`
	NoHeader   bool   `name:"no-header" help:"With -o tsv, leave out the header line."`
	StoreFlags `embed:""`
	Watch      bool   `help:"With --store etcd: print each change of a host as it lands in the store, from any site (new, moved, renamed, unseen, removed), until stopped; -o json for JSON lines. Each carries the store's revision."`
	Since      int64  `placeholder:"REVISION" help:"With --watch: start after this revision (the last one printed), so that a watch restarted loses and repeats no change; default: from now on."`
	State      string `type:"path" env:"IFL_STATE" placeholder:"FILE" help:"Inventory state (default: /var/lib/ifl/inventory.json as root; else ~/.local/state/ifl/inventory.json, or the controller's /var/lib/ifl/inventory.json when the first does not exist)."`
	StaleAfter string `default:"24h" placeholder:"AGE" help:"A host not seen for this long is in the group ifl_stale (e.g. 90m, 24h, 7d)."`
	Prune      string `placeholder:"AGE" help:"Remove the hosts not seen for longer than AGE (e.g. 30d), then show what is left."`
	Prefer     string `enum:"ipv4,ipv6" default:"ipv4" env:"IFL_PREFER" placeholder:"FAMILY" help:"ansible_host (and the address shown) for a host verified on IPv4 and IPv6: ipv4 or ipv6; a host with one family uses it."`
}

// Help is shown by 'ifl inventory --help'.
func (c *InventoryCmd) Help() string {
	return `The inventory is what 'ifl probe' learned: every agent by identity, with
its current address. Ansible reads it through the inventory plugin
ifl.fleet.ifl (the .deb installs the collection where Ansible finds it),
which runs 'ifl inventory --list':

  # ifl.yml
  plugin: ifl.fleet.ifl

  ansible-inventory -i ifl.yml --graph
  ansible -i ifl.yml role_web -m ping

or through the script, for one-liners (it runs 'ifl inventory "$@"'):

  ansible-inventory -i /usr/share/ifl/ifl-inventory --list

Point IFL_STATE at the state file if it is not in the default place.

Many sites: controllers of several segments share one inventory in etcd
with --store (IFL_STORE) etcd://HOST:2379,HOST:2379/PREFIX (default
prefix /ifl), each probe with a site of its own. Options after ?,
joined by &: ca=FILE, cert=FILE and key=FILE (TLS; etcds:// is TLS with
the system's CAs), user=NAME with password-file=FILE (never a password
on the command line), dial-timeout=5s, timeout=10s (each request).
'ifl inventory import FILE' and 'export [FILE]' move a state file in
and out; --watch prints each change as it lands, --since REVISION
resumes.

Agents are untrusted input: every string an agent chose (hostname, OS,
kernel, version, gateway, MACs, addresses, label values) reaches Ansible
marked unsafe, never templated. ansible_host is an address where the host
proved its identity with the handshake, never one it only reported, and,
like the other values ifl computes, is plain; ifl_verified_addresses
lists every such address (IPv4, IPv6, link-local with the controller's
interface). What one prefix or MAC adds in a probe is bounded (256 new
hosts per /24 or /64, 4 per MAC), and so is every string kept of a host
(hostname 253 bytes, OS and kernel 256, ...), cut short with a warning.

The state file is input too: a record that holds what ifl never writes
(an address that does not parse, an identity that is not 32 hex digits,
a name the host may not hold, a string past its bound, a port or a time
out of range) is refused, naming the host's key and the field.

Addresses: a host verified on both families gets its IPv4 address as
ansible_host, or its IPv6 one with --prefer ipv6 (IFL_PREFER=ipv6 for
the inventory script); a global address before a link-local one, the
most recently verified first. A host with one family uses it.

Names: a host is named by its hostname when that is a valid DNS host
name, not reserved (localhost, localhost.*, *.localhost, all, ungrouped,
anything that reads as an IP address), not held by another host in any
case (web1 and WEB1 are one name) and not reserved for another
identity; else by its hostname with "-" and the start of its identity
(16 hex digits, more if needed), or "ifl-" and the start of its identity
when the hostname is unusable. A hostname that ends in "-" and 8 or more
hex digits gets a suffix of its own unless they start its identity. A
name, once given, is kept in the state until the host's hostname
changes. When a host is pruned, or forgotten for too many identities at
its address after two probes or more, its name stays reserved for its
identity for 30 days: no other host gets it.

A re-imaged host has a new identity, so it gets a name of its own; give
it the old one once the old identity is pruned (the name is reserved
for that identity, hence --force):

  ifl inventory --prune 7d
  ifl inventory name db1 5d0c1e22 --force    # name, then identity (or its start)

name refuses a name that is not a DNS host name or that Ansible reads
as something else, and one held by another host or reserved for another
identity unless --force.

Groups: ifl_all, ifl_stale (not seen for --stale-after), and one group
<key>_<value> per label (role: web -> role_web; characters other than
[A-Za-z0-9_] become _). A label whose key is not 1 to 64 of
[A-Za-z0-9_.-], or is ifl or ifl_*, whose value is empty or longer than
128 bytes, or past the 64th, is dropped, with a warning at the probe.
Facts are under ifl_ variables (the machine-id only as a hash).

Ansible only warns when an inventory script fails; set
ANSIBLE_INVENTORY_UNPARSED_FAILED=true to make that an error.

Examples:
  ifl inventory                          # a table for people
  ifl inventory -o yaml > hosts.yaml     # a static inventory file
  ifl inventory --prefer ipv6 --list     # reach dual-stack hosts over IPv6
  ifl inventory --prune 30d
  ifl inventory name web2 5d0c1e22       # web2 for identity 5d0c1e22...`
}

// parseAge reads a duration that may also be in days ("7d").
func parseAge(s string) (time.Duration, error) {
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseFloat(d, 64)
		if err == nil && n > 0 {
			return time.Duration(n * float64(24*time.Hour)), nil
		}
	} else if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return d, nil
	}
	return 0, fmt.Errorf("bad age %q: want a positive duration such as 90m, 24h or 7d", s)
}

// stateFile is the state shown.
func (c *InventoryCmd) stateFile() string {
	if c.State != "" {
		return c.State
	}
	return inventory.ReadPath()
}

// Run prints the inventory.
func (c *InventoryCmd) Run(ctx context.Context, env *Env) error {
	f, err := outputFormat(c.JSON, c.Output)
	if err != nil {
		return err
	}
	c.Output = f
	if err := c.checkOutput(); err != nil {
		return err
	}
	if err := c.StoreFlags.check(); err != nil {
		return err
	}
	stale, err := parseAge(c.StaleAfter)
	if err != nil {
		return fmt.Errorf("--stale-after: %w", err)
	}
	if c.List && c.Host != "" {
		return fmt.Errorf("--list and --host ask for two answers: give one (Ansible asks for one at a time)")
	}
	path := c.stateFile()
	if c.etcd() {
		path = ""
	}
	if err := becomeStateOwner(env, "inventory", path); err != nil {
		return err
	}
	now := time.Now().UTC()
	if err := c.checkAction(); err != nil {
		return err
	}
	store, err := c.StoreFlags.open(path)
	if err != nil {
		return err
	}
	defer store.Close()
	if c.Watch {
		return c.watch(ctx, env, store)
	}
	switch c.Action {
	case "name":
		return c.giveName(ctx, env, store, now)
	case "import":
		return c.importState(ctx, env, store)
	case "export":
		return c.exportState(ctx, env, store)
	}
	prefer, err := inventory.ParsePrefer(c.Prefer)
	if err != nil {
		return fmt.Errorf("--prefer %w", err)
	}
	// Ansible asks --host NAME for each host: the host alone is read
	// when the store can tell which it is that way.
	if hl, ok := store.(inventory.HostLoader); ok && c.Host != "" && c.Prune == "" {
		st, err := hl.LoadHost(ctx, c.Host)
		if err != nil {
			return c.stateError(err)
		}
		if st != nil {
			if ok, err := st.WriteHost(env.Stdout, c.Host, now, stale, prefer); ok || err != nil {
				return err
			}
		}
	}
	// A missing state is no fleet to show, not an empty fleet: Ansible
	// would run its plays against no host and say nothing.
	st, err := store.Load(ctx)
	if err != nil {
		return c.stateError(err)
	}
	if c.Prune != "" {
		if st, err = c.prune(ctx, env, store, now); err != nil {
			return c.storeError(err)
		}
	}
	path = store.String()
	// --list and --host print host by host, as BuildAnsible's answers
	// would be printed (inventory.WriteList), with no map of every
	// host's variables, which took more memory than the state.
	switch {
	case c.Host != "":
		h, err := hostByName(st, c.Host)
		if err != nil {
			return problem(err)
		}
		_, err = st.WriteHost(env.Stdout, h.Name, now, stale, prefer)
		return err
	case c.List || c.Output == "json":
		return st.WriteList(env.Stdout, now, stale, prefer)
	}
	inv := st.BuildAnsible(now, stale, prefer)
	if c.Output == formatTSV {
		err := writeInventoryTSV(env.Stdout, c.NoHeader, st, inv, now, prefer)
		fmt.Fprintf(env.Stderr, "%s in %s\n", plural(len(st.Hosts), "host"), path)
		return err
	}
	if c.Output == "yaml" {
		// Every string is double-quoted already.
		b, err := inv.YAML()
		if err != nil {
			return err
		}
		_, err = env.Stdout.Write(untrusted.YAML(b))
		return err
	}
	writeInventoryTable(env.Stdout, st, inv, now, prefer)
	fmt.Fprintf(env.Stderr, "%s in %s\n", plural(len(st.Hosts), "host"), path)
	return nil
}

// prune removes the hosts not seen for --prune, says which, and returns
// the state left.
func (c *InventoryCmd) prune(ctx context.Context, env *Env, store inventory.Store, now time.Time) (*inventory.State, error) {
	age, err := parseAge(c.Prune)
	if err != nil {
		return nil, fmt.Errorf("--prune: %w", err)
	}
	var st *inventory.State
	err = store.Update(ctx, func(s *inventory.State) error {
		pruned, dropped := s.Prune(now, age)
		for _, h := range pruned {
			fmt.Fprintf(env.Stderr, "pruned: %s (%s), last seen %s at %s\n", untrusted.Text(h.Name), untrusted.Text(h.Identity), h.LastSeen.Format(time.RFC3339), untrusted.Text(h.IP))
		}
		for _, r := range dropped {
			fmt.Fprintf(env.Stderr, "warning: name %s is no longer reserved for identity %s: more than %d names reserved\n", untrusted.Text(r.Name), untrusted.Text(r.Identity), inventory.MaxReserved)
		}
		st = s
		return nil
	})
	return st, err
}

// writeInventoryTable prints the inventory for people.
func writeInventoryTable(w io.Writer, st *inventory.State, inv *inventory.Ansible, now time.Time, prefer inventory.Prefer) {
	tw := newTable(w)
	fmt.Fprintln(tw, "NAME\tADDRESS\tIDENTITY\tLAST SEEN\tMOVES\tGROUPS")
	groupsOf := map[string][]string{}
	for g, members := range inv.Groups {
		if g == "ifl_all" {
			continue
		}
		for _, m := range members {
			groupsOf[m] = append(groupsOf[m], g)
		}
	}
	for _, h := range st.Sorted() {
		// Names, addresses, identities and group names are ifl's
		// (checked, when the state was read, or made of
		// [A-Za-z0-9_.:-]); Cell guards the columns all the same: the
		// state is input too.
		name := h.Name
		groups := groupsOf[name]
		sortStrings(groups)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s ago\t%d\t%s\n", untrusted.Cell(name, 0), untrusted.Cell(dash(h.Address(prefer)), 0), untrusted.Cell(h.Identity[:min(12, len(h.Identity))], 0),
			age(now.Sub(h.LastSeen)), len(h.History), untrusted.Cell(dash(strings.Join(groups, ",")), 0))
	}
	tw.Flush()
}

// stateError is stateError for the store of c.
func (c *InventoryCmd) stateError(err error) error {
	if c.etcd() {
		if errors.Is(err, inventory.ErrNoState) {
			return problem(fmt.Errorf("%w: no probe has written one there; run 'ifl probe --store' with the same URL, or 'ifl inventory import FILE' to move a state file there", err))
		}
		return problem(err)
	}
	return stateError(err, c.State == "")
}

// storeError makes a failure of etcd exit 1.
func (c *InventoryCmd) storeError(err error) error {
	if c.etcd() {
		return storeError(err)
	}
	return err
}

// stateError says what to do about a state that cannot be read.
func stateError(err error, defaulted bool) error {
	switch {
	case errors.Is(err, inventory.ErrNoState) && defaulted && os.Geteuid() != 0:
		return fmt.Errorf("%w (nor at %s): no probe has written one; run 'ifl probe', or point --state or IFL_STATE at the controller's state file", err, inventory.SystemPath)
	case errors.Is(err, inventory.ErrNoState):
		return fmt.Errorf("%w: no probe has written one there; run 'ifl probe', or point --state or IFL_STATE at the controller's state file", err)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("%w (the controller's state is for root and its group: run as root, or as a member of the group that owns the file)", err)
	}
	return err
}

// checkAction refuses arguments without their action, and the flags that
// show the inventory beside name, which changes it.
func (c *InventoryCmd) checkAction() error {
	switch c.Action {
	case "":
		if c.NewName != "" || c.Identity != "" || c.Force {
			return fmt.Errorf("<name>, <identity> and --force go with the action name: ifl inventory name NAME IDENTITY")
		}
		switch {
		case c.Since != 0 && !c.Watch:
			return fmt.Errorf("--since goes with --watch: ifl inventory --watch --since REVISION")
		case c.Since < 0:
			return fmt.Errorf("--since %d: want a revision the watch printed, 1 or more", c.Since)
		case c.Watch && !c.etcd():
			return fmt.Errorf("--watch needs --store etcd://...: the JSON file keeps no stream of changes ('ifl probe --watch' logs each change it makes)")
		case c.Watch && (c.List || c.Host != "" || c.Prune != "" || c.NoHeader || c.Output == formatTSV || c.Output == formatYAML):
			return fmt.Errorf("--watch prints changes as they come, as a table's rows or with -o json as JSON lines: leave out --list, --host, --prune, --no-header and -o tsv or yaml")
		}
		return nil
	case "import":
		if c.NewName == "" || c.Identity != "" {
			return fmt.Errorf("import takes one state file: ifl inventory --store etcd://HOST:2379/PREFIX import inventory.json")
		}
	case "export":
		if c.Identity != "" || c.Force {
			return fmt.Errorf("export takes at most a file to write, and no --force: ifl inventory --store etcd://HOST:2379/PREFIX export inventory.json")
		}
	case "name":
		if c.NewName == "" || c.Identity == "" {
			return fmt.Errorf("name takes a name and an identity: ifl inventory name db1 5d0c1e22 gives db1 to the host whose identity starts with 5d0c1e22")
		}
	}
	for _, f := range []struct {
		set  bool
		flag string
	}{{c.List, "--list"}, {c.Host != "", "--host"}, {c.Prune != "", "--prune"}, {c.Output != formatTable, "-o"}, {c.NoHeader, "--no-header"}, {c.Watch, "--watch"}, {c.Since != 0, "--since"}} {
		if f.set {
			if c.Action == "export" {
				return fmt.Errorf("export writes the inventory as a state file and shows nothing; %s is for showing it: run it on its own", f.flag)
			}
			return fmt.Errorf("%s changes the inventory and shows nothing; %s is for showing it: run it on its own", c.Action, f.flag)
		}
	}
	return nil
}

// giveName gives a name to a host at the operator's word.
func (c *InventoryCmd) giveName(ctx context.Context, env *Env, store inventory.Store, now time.Time) error {
	p, err := identityPrefix("identity", c.Identity)
	if err != nil {
		return err
	}
	if _, err := store.Load(ctx); err != nil {
		return c.stateError(err)
	}
	var done *inventory.Named
	err = store.Update(ctx, func(s *inventory.State) error {
		var found []*inventory.Host
		for _, h := range s.Hosts {
			if strings.HasPrefix(h.Identity, p) {
				found = append(found, h)
			}
		}
		switch len(found) {
		case 0:
			return fmt.Errorf("inventory: no host's identity starts with %s (ifl inventory lists them)", p)
		case 1:
		default:
			var ids []string
			for _, h := range found {
				ids = append(ids, h.Identity+" ("+h.Name+")")
			}
			sortStrings(ids)
			return fmt.Errorf("inventory: identity prefix %s is ambiguous: %s", p, strings.Join(ids, ", "))
		}
		done, err = s.GiveName(now, c.NewName, found[0].Identity, c.Force)
		switch {
		case errors.Is(err, inventory.ErrNameHeld):
			return fmt.Errorf("%w: --force takes it from that host, which gets another name by the rules", err)
		case errors.Is(err, inventory.ErrNameReserved):
			return fmt.Errorf("%w: --force gives it to %s anyway", err, found[0].Identity)
		}
		return err
	})
	if err != nil {
		return err
	}
	h := done.Host
	was := ""
	if done.OldName != h.Name {
		was = ", was " + untrusted.Text(done.OldName)
	}
	fmt.Fprintf(env.Stderr, "named:     %s (%s%s)\n", untrusted.Text(h.Name), h.Identity, was)
	if o := done.From; o != nil {
		fmt.Fprintf(env.Stderr, "renamed:   %s (%s), was %s\n", untrusted.Text(o.Name), o.Identity, untrusted.Text(h.Name))
	}
	if r := done.Unreserved; r != nil {
		fmt.Fprintf(env.Stderr, "warning:   %s was reserved for identity %s (%s on %s): no longer\n", untrusted.Text(r.Name), r.Identity, r.Why, r.Since.UTC().Format(time.RFC3339))
	}
	return nil
}

// watch prints each change of the store's hosts as it lands.
func (c *InventoryCmd) watch(ctx context.Context, env *Env, store inventory.Store) error {
	e, ok := store.(*inventory.Etcd)
	if !ok {
		return fmt.Errorf("--watch needs --store etcd://HOST:2379/PREFIX")
	}
	var enc *json.Encoder
	if c.Output == "json" {
		enc = json.NewEncoder(untrusted.JSONWriter(env.Stdout))
	} else {
		fmt.Fprintf(env.Stderr, "watching %s\n", store)
	}
	err := e.Watch(ctx, c.Since, func(chs []inventory.StoreChange) error {
		for _, ch := range chs {
			if enc != nil {
				if err := enc.Encode(ch); err != nil {
					return err
				}
				continue
			}
			what := ""
			switch ch.Event {
			case inventory.EventNew:
				what = "at " + ch.Site + " " + ch.To
			case inventory.EventMoved, inventory.EventRenamed:
				what = ch.From + " -> " + ch.To
			case inventory.EventUnseen:
				what = "by " + ch.Site + " at " + ch.From
			case inventory.EventRemoved:
				what = "was at " + ch.From
			}
			if _, err := fmt.Fprintf(env.Stdout, "%d %-8s %s (%s) %s\n", ch.Revision, ch.Event, untrusted.Text(ch.Name), untrusted.Text(ch.Identity), untrusted.Text(strings.TrimSpace(strings.Replace(what, "at  ", "at ", 1)))); err != nil {
				return err
			}
		}
		return nil
	}, func(err error) { fmt.Fprintf(env.Stderr, "warning: %s\n", untrusted.Text(err.Error())) })
	if err == nil && ctx.Err() != nil && !terminated(ctx) {
		return ctx.Err() // interrupted, as a probe's watch
	}
	return storeError(err)
}

// importState puts a state file in the store, in place of what it holds.
func (c *InventoryCmd) importState(ctx context.Context, env *Env, store inventory.Store) error {
	st, err := inventory.LoadExisting(c.NewName)
	if err != nil {
		return err
	}
	if !c.Force {
		old, err := store.Load(ctx)
		switch {
		case errors.Is(err, inventory.ErrNoState):
		case err != nil:
			return c.storeError(err)
		case len(old.Hosts) > 0:
			return problem(fmt.Errorf("inventory: %s holds %s already: --force replaces them with the %s of %s", store, plural(len(old.Hosts), "host"), plural(len(st.Hosts), "host"), c.NewName))
		}
	}
	if err := inventory.Import(ctx, store, st); err != nil {
		return c.storeError(err)
	}
	fmt.Fprintf(env.Stderr, "imported %s from %s into %s\n", plural(len(st.Hosts), "host"), c.NewName, store)
	return nil
}

// exportState writes what the store holds as a state file.
func (c *InventoryCmd) exportState(ctx context.Context, env *Env, store inventory.Store) error {
	st, err := store.Load(ctx)
	if err != nil {
		return c.stateError(err)
	}
	if c.NewName != "" {
		if err := inventory.WriteFile(c.NewName, st); err != nil {
			return err
		}
		fmt.Fprintf(env.Stderr, "exported %s from %s to %s\n", plural(len(st.Hosts), "host"), store, c.NewName)
		return nil
	}
	enc := json.NewEncoder(untrusted.JSONWriter(env.Stdout))
	enc.SetIndent("", "  ")
	return enc.Encode(st)
}
