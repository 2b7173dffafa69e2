// Package cli is the ifl command line: one kong command struct per file,
// each with a Run method. Main parses, runs and maps errors to exit codes:
// 0 ok, 1 found problems, 2 usage or environment error.
package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/netip"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/alecthomas/kong"
	"go4.org/netipx"
	"golang.org/x/term"

	"github.com/ifl-project/ifl/agent"
	"github.com/ifl-project/ifl/arpscan"
	"github.com/ifl-project/ifl/internal/controller/verify"
	"github.com/ifl-project/ifl/internal/support/targets"
	"github.com/ifl-project/ifl/internal/support/untrusted"
	"github.com/ifl-project/ifl/synscan"
)

// Version is set at build time with -ldflags "-X .../internal/cli.Version=...".
var Version = "dev"

// KeyFlag is the network key of the commands that talk to agents.
type KeyFlag struct {
	NetworkKey string `name:"network-key" type:"path" env:"IFL_NETWORK_KEY" default:"${network_key}" placeholder:"FILE" help:"Pre-shared network key file, the same on every controller and agent (${default}; create it with 'ifl keygen')."`
}

// CLI is the root command.
type CLI struct {
	Version kong.VersionFlag `short:"V" help:"Print the version and exit."`

	Probe      ProbeCmd     `cmd:"" help:"Find ifl agents on the network and report their addresses and facts."`
	ArpScan    ArpScanCmd   `cmd:"" name:"arp-scan" help:"Find the live hosts of the local segment with ARP (needs CAP_NET_RAW)."`
	Scan       ScanCmd      `cmd:"" help:"Find open TCP ports with SYN probes (or connect() without CAP_NET_RAW)."`
	Ping       PingCmd      `cmd:"" help:"Handshake with one agent and show its facts."`
	Inventory  InventoryCmd `cmd:"" help:"Show the inventory the probes keep: for people, or for Ansible (--list, --host, -o yaml)."`
	Agent      AgentCmd     `cmd:"" help:"Run the agent: answer authenticated pings from controllers."`
	Keygen     KeygenCmd    `cmd:"" help:"Create a network key, or an agent key with --agent."`
	Keycheck   KeycheckCmd  `cmd:"" help:"Check key files as ifl reads them, and print an id to compare them by."`
	VersionCmd VersionCmd   `cmd:"" name:"version" help:"Print the version."`
}

// Env is what commands get from their caller instead of reaching for
// globals: output streams and whether stderr is a terminal.
type Env struct {
	Stdin          io.Reader // for --input-list -
	Stdout, Stderr io.Writer
	// Terminal is true when stderr is a terminal: progress bars and
	// console-format logs only then.
	Terminal bool
	// Width is the terminal's width in columns (0 when unknown).
	Width int
	// given are the flags given on the command line, by name (not
	// their defaults, nor the environment's values).
	given map[string]bool
}

// Given reports whether the flag was given on the command line.
func (e *Env) Given(flag string) bool { return e.given[flag] }

const description = `ifl finds the machines of a fleet that run the ifl agent, proves that each
one is really one of ours (mutual authentication with a pre-shared network
key), and asks it for its current addresses and facts, so that an Ansible
inventory points at the right IPs even when DHCP moves hosts around.

Quick start:
  ifl keygen /etc/ifl/network.key        # once; copy the file to every host
  ifl agent                              # on each managed host (or the systemd unit)
  ifl probe 198.18.0.0/24                # on the controller
  sudo ifl arp-scan eth0                 # every live host on the segment
  ifl ping 198.18.0.5                    # one host, all its facts`

// exitError carries an exit code through kong's Run.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// ExitCode implements kong's exit code interface.
func (e *exitError) ExitCode() int { return e.code }

// problem marks err as "found problems": exit status 1.
func problem(err error) error { return &exitError{code: 1, err: err} }

// New returns the kong parser for the ifl command line, writing to env.
func New(cli *CLI, env *Env, exit func(int)) (*kong.Kong, error) {
	return kong.New(cli, append(mappers(),
		kong.Name("ifl"),
		kong.Description(description),
		kong.Writers(env.Stdout, env.Stderr),
		kong.Exit(exit),
		kong.ConfigureHelp(kong.HelpOptions{Compact: true}),
		kong.Vars{
			"version":           versionString(),
			"network_key":       agent.DefaultNetworkKey,
			"config":            agent.DefaultConfigPath,
			"identity_key":      agent.DefaultIdentityKey,
			"agent_port":        fmt.Sprint(agent.DefaultPort),
			"arp_rate":          fmt.Sprint(arpscan.DefaultRate),
			"arp_retries":       fmt.Sprint(arpscan.DefaultRetries),
			"arp_min_rate":      "0",
			"arp_min_retries":   fmt.Sprint(arpscan.DefaultMinRetries),
			"arp_timeout":       arpscan.DefaultTimeout.String(),
			"arp_patience":      arpscan.DefaultPatience.String(),
			"syn_rate":          fmt.Sprint(synscan.DefaultRate),
			"connect_rate":      fmt.Sprint(synscan.DefaultConnectRate),
			"syn_retries":       fmt.Sprint(synscan.DefaultRetries),
			"syn_timeout":       synscan.DefaultTimeout.String(),
			"probe_concurrency": fmt.Sprint(verify.DefaultConcurrency),
			"probe_rate":        fmt.Sprint(verify.DefaultRate),
			"probe_timeout":     verify.DefaultTimeout.String(),
			"probe_retries":     fmt.Sprint(verify.DefaultRetries),
		},
		kong.Bind(env),
	)...)
}

// Main runs the command line in args and returns the exit status.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	env := &Env{Stdin: os.Stdin, Stdout: stdout, Stderr: stderr}
	if f, ok := stderr.(*os.File); ok {
		env.Terminal = term.IsTerminal(int(f.Fd()))
		if env.Terminal {
			env.Width, _, _ = term.GetSize(int(f.Fd()))
		}
	}
	return runEnv(ctx, args, env)
}

// runEnv is Main with its environment given.
func runEnv(ctx context.Context, args []string, env *Env) int {
	stderr := env.Stderr
	var cli CLI
	exited, code := false, 0
	parser, err := New(&cli, env, func(c int) { exited, code = true, c })
	if err != nil {
		fmt.Fprintf(stderr, "ifl: %v\n", err)
		return 2
	}
	kctx, err := parser.Parse(joinDashValues(parser.Model, nmapFlags(args)))
	if exited { // --help, or a usage error already printed by kong
		if code != 0 {
			code = 2
		}
		return code
	}
	if err != nil {
		fmt.Fprintf(stderr, "ifl: %v\n", err)
		var pe *kong.ParseError
		if errors.As(err, &pe) {
			fmt.Fprintf(stderr, "run '%s --help' for usage\n", strings.Join(append([]string{"ifl"}, commandPath(pe.Context)...), " "))
		}
		return 2
	}
	env.given = givenFlags(kctx)
	kctx.BindTo(ctx, (*context.Context)(nil))
	if _, err = dropAtStart(env, kctx); err == nil {
		err = kctx.Run()
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, context.Canceled):
		return 130
	}
	err = permissionHint(err)
	// An error may quote what a peer sent (an agent's error message, a
	// hostname): one line, with nothing a terminal would act on.
	fmt.Fprintf(stderr, "ifl: %s\n", untrusted.Text(err.Error()))
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return 2
}

func commandPath(kctx *kong.Context) []string {
	if kctx == nil {
		return nil
	}
	var out []string
	for _, p := range kctx.Path {
		if p.Command != nil {
			out = append(out, p.Command.Name)
		}
	}
	return out
}

// TargetFlags are how probe, scan and arp-scan take targets besides their
// arguments.
type TargetFlags struct {
	Exclude   []string `placeholder:"TARGET" help:"Leave these out: addresses, prefixes, ranges or host names (repeat the flag, or separate with commas), as nmap's --exclude."`
	InputList string   `name:"input-list" placeholder:"FILE" help:"Read targets from FILE too ('-' for standard input), as nmap's -iL (which ifl takes too): words separated by blanks, commas or lines; # starts a comment."`
	Force     bool     `help:"Allow more than 65536 addresses (up to 16777216)."`

	// set is the targets expandTargets read last, less the excluded ones.
	set *netipx.IPSet
	// unlisted has expandTargets keep the targets as set only, listing
	// no address and applying no limit: for probe --broadcast, which
	// tests answers against them and sweeps none, so that a /64 will do.
	unlisted bool
}

// maxForced is the most addresses a command takes with --force.
const maxForced = 1 << 24

// words returns the target words of the arguments and of --input-list,
// and whether there were any.
func (tf *TargetFlags) words(cmd string, args []string, env *Env) ([]string, error) {
	words := append([]string(nil), args...)
	if tf.InputList == "" {
		return words, nil
	}
	var r io.Reader = env.Stdin
	name := "standard input"
	if tf.InputList != "-" {
		f, err := os.Open(tf.InputList)
		if err != nil {
			return nil, fmt.Errorf("%s: --input-list: %w", cmd, err)
		}
		defer f.Close()
		r, name = f, tf.InputList
	}
	if r == nil {
		return nil, fmt.Errorf("%s: --input-list -: no standard input", cmd)
	}
	list, err := targets.ReadList(name, r)
	if err != nil {
		return nil, fmt.Errorf("%s: --input-list: %w", cmd, err)
	}
	if len(list) == 0 {
		return nil, fmt.Errorf("%s: --input-list %s holds no target", cmd, name)
	}
	return append(words, list...), nil
}

// expandTargets expands the target words of command cmd less those of
// --exclude, up to 65536 addresses, or 2^24 with --force; with unlisted,
// it keeps them in set and returns no address.
func expandTargets(ctx context.Context, cmd string, words []string, tf *TargetFlags) ([]netip.Addr, error) {
	set, err := targets.Set(ctx, words, tf.Exclude, nil)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cmd, err)
	}
	n := targets.Count(set)
	if n.Sign() == 0 {
		if len(tf.Exclude) > 0 {
			return nil, fmt.Errorf("%s: no addresses left once --exclude is applied", cmd)
		}
		return nil, fmt.Errorf("%s: no addresses", cmd)
	}
	tf.set = set
	if tf.unlisted {
		return nil, nil
	}
	max := targets.DefaultMax
	if tf.Force {
		max = maxForced
	}
	if n.Cmp(big.NewInt(int64(max))) > 0 {
		return nil, fmt.Errorf("%s: %w: %s addresses, more than the limit of %d%s", cmd, targets.ErrTooMany, n, max, tooManyHint(cmd, n, tf.Force))
	}
	return targets.List(set), nil
}

// tooManyHint says what else to do with n target addresses, over the
// limit: --force where it is enough, and a broadcast, which finds agents
// in targets of any size because it sweeps none.
func tooManyHint(cmd string, n *big.Int, force bool) string {
	var hints []string
	if !force && n.Cmp(big.NewInt(maxForced)) <= 0 {
		hints = append(hints, fmt.Sprintf("--force allows up to %d", maxForced))
	}
	switch cmd {
	case "probe":
		hints = append(hints, "--broadcast finds the agents there without sweeping")
	case "scan":
		hints = append(hints, "ifl probe --broadcast finds the agents there without sweeping")
	}
	if len(hints) == 0 {
		return ""
	}
	return " (" + strings.Join(hints, "; ") + ")"
}

// outputFormat reconciles --json with -o: --json is -o json, and asking
// for both JSON and another format is a contradiction, not a choice.
func outputFormat(jsonFlag bool, output string) (string, error) {
	if !jsonFlag {
		return output, nil
	}
	if output != "table" && output != "json" {
		return "", fmt.Errorf("--json and -o %s ask for two formats: give one", output)
	}
	return "json", nil
}

// SweepFlags tune the ARP sweep of the commands that have one. Patience
// is how long it waits for an address after its first request, whatever
// the segment's round trips say; its zero value is the sweep's default,
// which a --timeout below it lowers. Their help is written for every
// command that has them: what only one command does with them is in
// that command's flags and help (arp-scan's tells the whole story once).
type SweepFlags struct {
	Patience  time.Duration `default:"0" help:"Least wait of the ARP sweep for an address after its first request, however fast the other hosts answer (0, the default: ${arp_patience}, or --timeout if less); raise it for hosts farther away, e.g. 400ms for one 300 ms away."`
	ARPProbes bool          `name:"arp-probes" help:"Sweep with ARP probes (RFC 5227, from 0.0.0.0) rather than requests: faster on virtual segments, but a host checking an address before it takes it (DHCP conflict detection) gives the address up (see ifl arp-scan --help)."`
}

// arpConfig is the sweep's configuration from the flags.
func (f SweepFlags) arpConfig() *arpscan.Config {
	return &arpscan.Config{Patience: f.Patience, FromZero: f.ARPProbes}
}

// check validates the flags of cmd; noSweep is the flag given that
// leaves out the sweep (--connect, --broadcast), if any.
func (f SweepFlags) check(cmd, noSweep string) error {
	if f.Patience < 0 || (f.Patience > 0 && f.Patience < time.Millisecond) || f.Patience > 10*time.Second {
		return fmt.Errorf("--patience %v: want 0 (the default, %v) or a duration from 1ms to 10s, such as 400ms", f.Patience, arpscan.DefaultPatience)
	}
	if f.ARPProbes && noSweep != "" {
		return fmt.Errorf("%s: --arp-probes with %s: no ARP sweep to send probes", cmd, noSweep)
	}
	return nil
}

// checkPacing checks the flags every sending command has: rate (what per
// second), retries (at most maxRetries) and timeout, with an example.
func checkPacing(rate int, what string, retries, maxRetries int, timeout time.Duration, example string) error {
	switch {
	case rate < 1 || rate > 1_000_000:
		return fmt.Errorf("--rate %d: want 1 to 1000000 %s per second, or 0 for the default", rate, what)
	case retries < 0 || retries > maxRetries:
		return fmt.Errorf("--retries %d: want 0-%d", retries, maxRetries)
	case timeout <= 0:
		return fmt.Errorf("--timeout %v: want a positive duration such as %s", timeout, example)
	}
	return nil
}

// table aligns columns for people. It writes through a buffer: tabwriter
// writes each cell on its own.
type table struct {
	*tabwriter.Writer
	buf *bufio.Writer
}

func newTable(w io.Writer) *table {
	buf := bufio.NewWriter(w)
	return &table{tabwriter.NewWriter(buf, 0, 4, 2, ' ', 0), buf}
}

// Flush writes out what is buffered.
func (t *table) Flush() error {
	if err := t.Writer.Flush(); err != nil {
		return err
	}
	return t.buf.Flush()
}

// nmapFlags lets nmap's -iL stand for --input-list: kong's short flags are
// one letter.
func nmapFlags(args []string) []string {
	out := make([]string, 0, len(args))
	for i, a := range args {
		if a == "--" {
			return append(out, args[i:]...)
		}
		if a == "-iL" {
			a = "--input-list"
		} else if v, ok := strings.CutPrefix(a, "-iL="); ok {
			a = "--input-list=" + v
		}
		out = append(out, a)
	}
	return out
}
