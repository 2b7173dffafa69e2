package cli

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/ifl-project/ifl/internal/controller/engine"
	"github.com/ifl-project/ifl/internal/controller/inventory"
	"github.com/ifl-project/ifl/internal/controller/verify"
	"github.com/ifl-project/ifl/internal/support/caps"
	"github.com/ifl-project/ifl/internal/support/netinfo"
	"github.com/ifl-project/ifl/internal/support/progress"
	"github.com/ifl-project/ifl/proto"
	"github.com/ifl-project/ifl/synscan"

	"github.com/ifl-project/ifl/internal/support/defaults"
)

// engineConfig is how the fast path's stages are tuned for a probe.
func (c *ProbeCmd) engineConfig() engine.Config {
	return engine.Config{SYN: &synscan.Config{Retries: probeSYNRetries}, ARP: c.arpConfig()}
}

// probeSYNRetries are the extra SYNs a probe sends to a swept host's
// agent port: an agent whose port looks filtered is missing from the
// inventory, where a port scan (ifl scan, nmap) takes nmap's -T5 two.
// Five tries, one timeout apart: a host that drops a fifth of what it
// gets still answers 9,997 times in 10,000 (three tries: 9,920), for a
// few milliseconds more on a LAN.
const probeSYNRetries = 4

// ProbeCmd finds agents.
type ProbeCmd struct {
	Targets        []string      `arg:"" optional:"" placeholder:"TARGET" help:"Addresses, CIDR prefixes (198.18.0.0/24), ranges (198.18.0.1-50) or host names. Default: the subnets of the interface of the default route."`
	Port           int           `short:"p" type:"port" aliases:"ports" default:"${agent_port}" placeholder:"PORT" help:"Agent port, a number or a service name."`
	Fast           bool          `help:"Insist on the fast path: ARP sweep, then SYN probes, then handshakes; without CAP_NET_RAW an error rather than the connect() fallback (the fast path is the default with the capability)."`
	Connect        bool          `help:"connect() to every address: no ARP sweep (so no --patience or --arp-probes), no SYN probes (needs no privilege)."`
	Timeout        time.Duration `default:"${probe_timeout}" help:"Per-host time for one TCP connection attempt, and again for the handshake and ping."`
	SweepFlags     `embed:""`
	Retries        int `default:"${probe_retries}" help:"Extra connect() attempts, each --timeout long, for an address that did not answer; the fast path's SYN probes give the agent port 5 tries whatever this says."`
	Concurrency    int `default:"${probe_concurrency}" help:"Hosts probed at once."`
	Rate           int `default:"${probe_rate}" help:"New addresses dialled per second with connect() (each may cost an ARP broadcast); 0: the default."`
	OutputFlags    `embed:""`
	All            bool `help:"List every target address: closed, filtered and down ones too, on the ARP+SYN and connect() paths alike (default: open ports only)."`
	TargetFlags    `embed:""`
	KeyFlag        `embed:""`
	State          string `type:"path" env:"IFL_STATE" placeholder:"FILE" help:"Inventory state to update (default: /var/lib/ifl/inventory.json as root, else ~/.local/state/ifl/inventory.json)."`
	StoreFlags     `embed:""`
	Site           string        `env:"IFL_SITE" placeholder:"NAME" help:"This controller's site, one of several that share a store (default with --store etcd: the machine's hostname): the inventory keeps where each site saw each host, and a site reports unseen only the hosts it saw last."`
	NoState        bool          `help:"Do not read or update the inventory."`
	Watch          time.Duration `placeholder:"INTERVAL" help:"Probe again every INTERVAL (e.g. 5m, at least 1s) until stopped, logging each change; the inventory stays current. Refused with --arp-probes."`
	BroadcastFlags `embed:""`
	ServiceFlags   `embed:""`
}

// Help is shown by 'ifl probe --help'.
func (c *ProbeCmd) Help() string {
	return `With CAP_NET_RAW (the fast path): targets on a directly attached segment
are swept with ARP, as 'ifl arp-scan' does; the live ones, and routed
targets, get a SYN on the agent port, as 'ifl scan' does; and only where it
is open does ifl connect, run the authenticated handshake and a ping. The
stages stream into each other. Without the capability (it says so), or with
--connect, every address gets a connect() and, where it opens, the
handshake. Hosts
whose port is open but fail the handshake are reported as "rejected" (wrong
network key, or clocks more than a minute apart) or "not-agent" (another
service), never as agents; an agent that proves its identity but has no room
for another connection is "busy" (try again later). When most of the open
ports reject the handshake, the probe says that the network key is likely
not the fleet's (or the clocks are off) and exits 1. Results are sorted by
address; progress shows on stderr when it is a terminal. Ctrl-C stops and
prints what was found.

Every probe updates the inventory (see 'ifl inventory'), keyed by each
agent's identity, and says what changed since the last one: new hosts,
hosts that moved (old IP -> new IP), renamed hosts, hosts not seen (on
addresses and the port this probe covered), and identity conflicts. Each
agent is listed with its inventory name (NAME, the one Ansible uses) and
the hostname it reports.

Exit status: 0 when the probe ran (whatever it found); 1 when most open
ports rejected the handshake, when a broadcast round heard no agent
although the inventory has agents on the links it queried, or when
answers this host dropped may have hidden hosts (unsure); 2 for usage and
environment errors (a key or state that cannot be read or written); 130
when interrupted by Ctrl-C (SIGINT), a --watch too. A --watch stopped by
SIGTERM (systemctl stop) exits 0.

Examples:
  ifl probe 198.18.0.0/24
  ifl probe --connect 198.18.0.1-50 198.18.4.7 -o json
  ifl probe                      # the subnets of the default-route interface
  ifl probe --watch 5m           # keep the inventory current
  ifl probe --broadcast          # agents that answer a UDP query, no privilege

` + broadcastHelp + "\n\n" + serviceHelp
}

// wantsRaw: the fast path needs raw sockets; --connect and --broadcast
// need no capability.
func (c *ProbeCmd) wantsRaw() bool { return !c.Connect && !c.Broadcast }

// stateFile is the state the probe updates, "" for none.
func (c *ProbeCmd) stateFile() string {
	switch {
	case c.NoState:
		return ""
	case c.State != "":
		return c.State
	}
	return inventory.DefaultPath()
}

// Run probes the targets, updates the inventory and prints the report; with
// --watch it does so on every interval until stopped.
func (c *ProbeCmd) Run(ctx context.Context, env *Env) error {
	if err := c.check(env); err != nil {
		return err
	}
	// A broadcast sweeps no target: it queries the links that hold them
	// and drops the answers from elsewhere, so they are kept as a set,
	// of any size, and never listed.
	c.TargetFlags.unlisted = c.Broadcast
	addrs, err := c.expand(ctx, env)
	if err != nil {
		return err
	}
	r, err := c.open(env, addrs)
	if err != nil {
		return err
	}
	if r.engine != nil {
		defer r.engine.Close()
	}
	if r.store != nil {
		defer r.store.Close()
	}
	if c.Watch > 0 {
		return r.watch(ctx)
	}
	res, err := r.once(ctx, env.Terminal)
	if res == nil {
		return err
	}
	if werr := writeReport(env.Stdout, &c.OutputFlags, res); werr != nil {
		return werr
	}
	fmt.Fprintln(env.Stderr, res.summary)
	printChanges(env, res.changes)
	for _, w := range res.round.Warnings {
		fmt.Fprintf(env.Stderr, "probe: %s\n", w)
	}
	switch {
	case res.stateErr != nil && c.etcd():
		return storeError(res.stateErr)
	case res.stateErr != nil:
		return res.stateErr
	case err != nil:
		return err
	case res.silent() != nil:
		return problem(res.silent())
	case res.rejected != nil:
		return problem(fmt.Errorf("probe: %w", res.rejected))
	}
	return unsureError("probe", res.summary.Dropped, res.summary.Unsure, "addresses down or ports filtered")
}

// check checks the flags.
func (c *ProbeCmd) check(env *Env) error {
	if _, err := c.format(); err != nil {
		return err
	}
	if err := checkState(env, c.State, c.NoState); err != nil {
		return err
	}
	if err := c.StoreFlags.check(); err != nil {
		return err
	}
	if _, err := siteName(c.Site, c.etcd()); err != nil {
		return err
	}
	switch {
	case c.NoState && env.Given("store"):
		return fmt.Errorf("--store and --no-state ask for opposite things: give one")
	case c.Watch > 0 && (c.Output == formatYAML || c.Output == formatTSV):
		return fmt.Errorf("--watch with -o %s: a watch prints events as they come; -o json prints each round as one line of JSON", c.Output)
	case c.Port < 1 || c.Port > 65535:
		return fmt.Errorf("--port %d: want 1-65535", c.Port)
	case c.Retries < 0 || c.Retries > 10:
		return fmt.Errorf("--retries %d: want 0-10", c.Retries)
	case c.Concurrency < 1 || c.Concurrency > 4096:
		return fmt.Errorf("--concurrency %d: want 1-4096", c.Concurrency)
	case c.Rate < 0 || c.Rate > 1_000_000:
		return fmt.Errorf("--rate %d: want 1 to 1000000 new addresses per second, or 0 for the default (%d)", c.Rate, verify.DefaultRate)
	case c.Timeout <= 0:
		return fmt.Errorf("--timeout %v: want a positive duration such as 1s", c.Timeout)
	case c.Fast && c.Connect:
		return fmt.Errorf("probe: --fast and --connect exclude each other")
	case c.Watch < 0 || (c.Watch < time.Second && env.Given("watch")):
		return fmt.Errorf("--watch %v: want an interval of a second or more, such as 5m (without --watch, ifl probes once)", c.Watch)
	case c.ARPProbes && c.Watch > 0:
		return fmt.Errorf("probe: --arp-probes with --watch: a host checking an address before it takes it (DHCP conflict detection) gives the address up when probed for it, and a watch probes every address again and again; watch with requests (leave out --arp-probes)")
	}
	noSweep := ""
	switch {
	case c.Connect:
		noSweep = "--connect"
	case c.Broadcast:
		noSweep = "--broadcast"
	}
	if err := c.SweepFlags.check("probe", noSweep); err != nil {
		return err
	}
	if err := c.ServiceFlags.check(c.Watch); err != nil {
		return err
	}
	return c.checkBroadcast()
}

// open reads the key and the state, as the state's owner where root
// probes another user's state, and opens what the rounds need: the
// broadcast plan, and the engine unless every round is a broadcast one.
func (c *ProbeCmd) open(env *Env, addrs []netip.Addr) (*rounds, error) {
	key, err := loadNetworkKey(c.NetworkKey)
	if err != nil {
		return nil, err
	}
	statePath := c.stateFile()
	if c.etcd() {
		statePath = ""
	}
	var keep []int
	if c.wantsRaw() {
		keep = append(keep, caps.NetRaw)
	}
	if err := becomeStateOwner(env, "probe", statePath, keep...); err != nil {
		return nil, err
	}
	// Refuse a foreign or damaged state, or one that cannot be
	// written, before any work, not after it. etcd is not read now: one
	// out of reach fails the probe after its findings are printed, and a
	// watch keeps them until it is back.
	if statePath != "" {
		if err := checkWritable("probe", statePath); err != nil {
			return nil, err
		}
		if _, err := inventory.Load(statePath); err != nil {
			return nil, err
		}
	}
	var store inventory.Store
	if !c.NoState {
		if store, err = c.StoreFlags.open(statePath); err != nil {
			return nil, err
		}
	}
	site, err := siteName(c.Site, c.etcd())
	if err != nil {
		return nil, err
	}
	if c.Fast {
		if ok, _ := caps.Has(caps.NetRaw); !ok {
			return nil, fmt.Errorf("probe: --fast needs CAP_NET_RAW for its raw ARP and SYN probes: %s (plain 'ifl probe' uses connect() instead)", grantHint)
		}
	}
	r := &rounds{cmd: c, v: c.verifier(key), addrs: addrs, env: env, store: store, site: site}
	if err := r.planBroadcast(env); err != nil {
		return nil, err
	}
	if !c.Broadcast {
		if r.engine, err = openEngine(env, "probe", addrs, c.engineConfig(), c.Connect); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// verifier is how the probe's handshakes are made: --retries 0 is none,
// --rate 0 the default rate, as with every command.
func (c *ProbeCmd) verifier(key proto.NetworkKey) *verify.Verifier {
	return &verify.Verifier{Key: key, Port: c.Port, Timeout: c.Timeout, Retries: defaults.None(c.Retries), Concurrency: c.Concurrency, Rate: c.Rate}
}

// rounds runs probe rounds: once, or every interval.
type rounds struct {
	cmd    *ProbeCmd
	v      *verify.Verifier
	addrs  []netip.Addr
	env    *Env
	store  inventory.Store // nil with --no-state
	site   string
	engine *engine.Engine        // nil with --broadcast
	bcast  *engine.BroadcastPlan // nil: no broadcast rounds
	svc    *service              // nil but in a watch
	// pending are a watch's rounds not yet in the store, oldest first:
	// written before the next round's, once the store is back.
	pending []pendingRound
}

// pendingRound is a round the store did not take, and when it ran.
type pendingRound struct {
	round *engine.Round
	at    time.Time
}

// maxPending bounds the rounds a watch keeps while its store is out of
// reach: past it the oldest go (a later round has seen their hosts
// again, or they are gone).
const maxPending = 100

// probeRun is one round, and what recording it in the inventory changed.
type probeRun struct {
	round    *engine.Round
	summary  summary
	changes  *inventory.Changes
	stateErr error
	// names are the inventory names of the hosts, by identity, once
	// the round is recorded; nil without a state.
	names map[string]string
	// rejected says that most open ports refused the handshake: the
	// likely causes, and what to check.
	rejected error
}

// once runs one round, by broadcast with --broadcast, and records it.
func (r *rounds) once(ctx context.Context, showProgress bool) (*probeRun, error) {
	return r.run(ctx, r.cmd.Broadcast, showProgress)
}

// run runs one round, a broadcast one or a sweep, and records it in the
// inventory.
func (r *rounds) run(ctx context.Context, broadcast, showProgress bool) (*probeRun, error) {
	r.svc.starting()
	opts := engine.RoundOptions{All: r.cmd.All}
	var round *engine.Round
	var err error
	if broadcast {
		if r.store != nil {
			// A failure now only means no help from what the
			// inventory knows.
			opts.Known, _ = r.store.Load(ctx)
		}
		round, err = engine.Broadcast(ctx, r.bcast, r.v, opts)
	} else {
		bar := progress.New(r.env.Stderr, len(r.addrs), "addresses", showProgress)
		bar.Width = r.env.Width
		opts.Progress = func(p engine.Progress) { bar.Set(p.Settled, plural(p.Agents, "agent")) }
		round, err = r.engine.Probe(ctx, r.v, opts)
		bar.Done()
	}
	run := &probeRun{round: round, summary: newSummary(round)}
	run.rejected = rejectedMost(run.summary, r.cmd.NetworkKey, r.v)
	if r.store != nil {
		release := r.svc.hold()
		run.changes, run.stateErr = r.record(ctx, round, time.Now().UTC())
		release()
		if f, ok := r.store.(*inventory.File); ok && run.stateErr != nil {
			run.stateErr = stateWriteError("probe", f.Path, run.stateErr)
		} else if run.stateErr == nil {
			run.names = recordedNames(ctx, r.store)
		}
	}
	r.svc.roundDone(run, broadcast)
	return run, err
}

// record writes the rounds a watch kept, oldest first, then round; with
// --watch, a round the store does not take is kept for the next time.
// What the rounds written changed is reported together.
func (r *rounds) record(ctx context.Context, round *engine.Round, now time.Time) (*inventory.Changes, error) {
	// An interrupted round is recorded all the same: what it found is
	// true. The store bounds each request's time.
	ctx = context.WithoutCancel(ctx)
	r.pending = append(r.pending, pendingRound{round: round, at: now})
	all := &inventory.Changes{}
	all.Keep(inventory.Changes{}, nil)
	for len(r.pending) > 0 {
		p := r.pending[0]
		ch, err := p.round.Record(ctx, r.store, r.site, p.at)
		if err != nil {
			if r.cmd.Watch == 0 {
				r.pending = nil
			} else if len(r.pending) > maxPending {
				r.pending = slices.Delete(r.pending, 0, len(r.pending)-maxPending)
			}
			return all, fmt.Errorf("%w (%s kept to write when it is back)", err, plural(len(r.pending), "round"))
		}
		all.Keep(*ch, nil)
		r.pending = r.pending[1:]
	}
	r.pending = nil
	return all, nil
}

// silent is the problem of a broadcast round that heard no agent where
// the inventory has some.
func (run *probeRun) silent() error {
	if run.round.Silent == nil {
		return nil
	}
	return fmt.Errorf("probe --broadcast: %w; a probe without --broadcast tries every address", run.round.Silent)
}

// watch probes every interval until ctx is done, logging each change as
// one event.
func (r *rounds) watch(ctx context.Context) error {
	log := newLogger(r.env, "auto")
	ev := log.Info().Str("event", "watch").Float64("interval_seconds", r.cmd.Watch.Seconds()).Str("state", r.storeName())
	if !r.cmd.Broadcast {
		ev = ev.Int("addresses", len(r.addrs)) // a broadcast's targets are a set, never listed
	}
	ev.Msg("watching")
	svc, err := r.startService(ctx, log)
	if err != nil {
		return err
	}
	r.svc = svc
	defer svc.stop()
	for {
		res, err := r.once(ctx, false)
		if ctx.Err() != nil {
			return watchStopped(ctx, log)
		}
		if r.cmd.Output == "json" && res != nil {
			// One round, one line: JSON lines, for a reader that
			// follows the stream.
			if werr := writeJSONLine(r.env.Stdout, res); werr != nil {
				return werr
			}
		}
		switch {
		case err != nil:
			log.Error().Str("event", "probe_failed").Err(err).Msg("probe failed")
		case res.stateErr != nil:
			logChanges(log, res.changes) // of the kept rounds written before the failure
			log.Error().Str("event", "state_failed").Err(res.stateErr).Msg("updating the inventory failed")
		default:
			logChanges(log, res.changes)
			log.Info().Str("event", "probed").Int("agents", res.summary.Agents).Int("rejected", res.summary.Rejected).
				Int("not_agents", res.summary.NotAgents).Float64("seconds", res.summary.Seconds).Msg("probed")
			if err := unsureError("probe", res.summary.Dropped, res.summary.Unsure, "addresses down or ports filtered"); err != nil {
				log.Warn().Str("event", "answers_dropped").Int("dropped", res.summary.Dropped).Int("unsure", res.summary.Unsure).Msg(err.Error())
			}
		}
		res.logWarnings(log)
		if !r.waitWatch(ctx, log) {
			return watchStopped(ctx, log)
		}
	}
}

// storeName names the store in the log.
func (r *rounds) storeName() string {
	if r.store == nil {
		return ""
	}
	return r.store.String()
}

func (c *ProbeCmd) expand(ctx context.Context, env *Env) ([]netip.Addr, error) {
	words, err := c.TargetFlags.words("probe", c.Targets, env)
	if err != nil {
		return nil, err
	}
	if len(words) == 0 {
		ifname, err := netinfo.DefaultInterface()
		if err != nil {
			return nil, fmt.Errorf("probe: %w", err)
		}
		prefixes, err := netinfo.InterfacePrefixes(ifname)
		if err != nil {
			return nil, fmt.Errorf("probe: %w", err)
		}
		for _, p := range prefixes {
			words = append(words, p.String())
		}
	}
	return expandTargets(ctx, "probe", words, &c.TargetFlags)
}
