package cli

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/ifl-project/ifl/agent"
	"github.com/ifl-project/ifl/internal/support/untrusted"
	"github.com/ifl-project/ifl/proto"
)

// AgentCmd runs the agent.
type AgentCmd struct {
	Config      string   `short:"c" type:"path" default:"${config}" placeholder:"FILE" help:"Config file (${default}; optional at the default path)."`
	NetworkKey  []string `name:"network-key" env:"IFL_NETWORK_KEY" placeholder:"FILE" help:"Network key file; repeat the flag (or separate with commas) to accept several during a key rotation (overrides network_keys: in the config; default $CREDENTIALS_DIRECTORY/network.key under systemd, else ${network_key})."`
	Port        *int     `short:"p" type:"port" aliases:"ports" placeholder:"PORT" help:"TCP port to listen on, 1024 or above (overrides the config; default ${agent_port})."`
	Listen      string   `placeholder:"ADDR" help:"Address to listen on (overrides the config; default: all addresses)."`
	IdentityKey string   `type:"path" placeholder:"FILE" help:"Agent key file, created on first start (overrides the config; default $CREDENTIALS_DIRECTORY/agent.key under systemd, else ${identity_key})."`
	LogLevel    string   `enum:"debug,info,warn,error," default:"" help:"Log level: debug, info, warn or error (overrides the config; default info)."`
	LogFormat   string   `enum:"auto,console,json" default:"auto" help:"Log format: auto (console on a terminal, JSON otherwise), console or json."`
}

// Help is shown by 'ifl agent --help'.
func (c *AgentCmd) Help() string {
	return `The agent listens on one TCP port and answers authenticated pings with this
host's facts (hostname, machine-id, OS, interfaces and addresses, default
route, labels). On the same port number over UDP it answers authenticated
discovery queries ('ifl probe --broadcast'); discovery: false turns that
off. It needs no privilege and no capability. Peers without the network
key get no answer at all, on TCP and UDP alike.

It follows this host's addresses (netlink) and, when one appears or goes,
announces it in one authenticated UDP datagram, from the new address, to
the controllers that verified it lately and asked for it (ifl probe
--watch --announcements) and to those under controllers: in the config;
again with back-off (9 datagrams in 64 s) until the controller verifies
it there. The controller only takes it as a hint to verify that address.

Flags override the config file, each of them: --network-key (repeat it to
accept several keys during a rotation) replaces network_keys:.

Signals: SIGTERM or SIGINT stop it gracefully; SIGHUP re-reads the config
file and the key files (labels and network keys) without closing the
listener.

Config (YAML, every key optional):
  port: 7440
  listen: 0.0.0.0
  network_keys: [/etc/ifl/network.key]     # more than one during a key rotation
  identity_key: /etc/ifl/agent.key
  labels: {role: web, site: paris}
  handshake_timeout: 5s
  idle_timeout: 30s
  max_connections: 64
  max_pending: 128
  max_failures_per_minute: 30
  controllers: [ctl.example.org, 198.18.0.2:7441]   # default port 7441
  log_level: info

Example:
  ifl agent --config /etc/ifl/agent.yaml
  ifl agent --network-key ./network.key --identity-key ./agent.key --port 7440`
}

// settings is the agent's effective configuration: file, then flags.
type settings struct {
	cfg         *agent.Config
	addr        string
	keyFiles    []string
	identityKey string
	level       zerolog.Level
}

func (c *AgentCmd) settings(log *zerolog.Logger) (*settings, error) {
	explicit := c.Config != agent.DefaultConfigPath
	cfg, err := agent.LoadConfig(c.Config, !explicit)
	if err != nil {
		return nil, err
	}
	s := &settings{cfg: cfg, keyFiles: cfg.NetworkKeys, identityKey: cfg.IdentityKey}
	host := cfg.Listen
	if c.Listen != "" {
		a, err := netip.ParseAddr(c.Listen)
		if err != nil || a.Zone() != "" {
			return nil, fmt.Errorf("--listen %q: want an IP address such as 0.0.0.0, :: or 198.18.0.5 (the port is --port)", c.Listen)
		}
		host = c.Listen
	}
	port := cfg.Port
	if c.Port != nil {
		if *c.Port < 1024 || *c.Port > 65535 {
			return nil, fmt.Errorf("--port %d: want a port from 1024 to 65535 (the agent runs without privileges)", *c.Port)
		}
		port = *c.Port
	}
	if port == 0 {
		port = agent.DefaultPort
		if log != nil {
			log.Warn().Str("event", "config").Int("port", port).Str("config", c.Config).Msg("no port configured; using the default port")
		}
	}
	s.addr = net.JoinHostPort(host, strconv.Itoa(port))
	// Flags override the file, the network keys too.
	if len(c.NetworkKey) > 0 {
		s.keyFiles = c.NetworkKey
	}
	if len(s.keyFiles) == 0 {
		s.keyFiles = []string{defaultKey("network.key", agent.DefaultNetworkKey)}
	}
	if c.IdentityKey != "" {
		s.identityKey = c.IdentityKey
	}
	if s.identityKey == "" {
		s.identityKey = defaultKey("agent.key", agent.DefaultIdentityKey)
	}
	lvl := cfg.LogLevel
	if c.LogLevel != "" {
		lvl = c.LogLevel
	}
	if lvl == "" {
		lvl = "info"
	}
	s.level, _ = zerolog.ParseLevel(lvl)
	return s, nil
}

func loadNetworkKeys(files []string) ([]proto.NetworkKey, error) {
	keys := make([]proto.NetworkKey, 0, len(files))
	for _, f := range files {
		k, err := loadNetworkKey(f)
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// defaultKey is where a key is when neither a flag nor the config names
// it: the systemd credential of that name when the agent runs with
// credentials (the unit's LoadCredential=), which its transient user can
// read where it cannot read /etc/ifl; else the file in /etc/ifl. So the
// unit passes no key flag, and network_keys: in the config stays usable
// for a key rotation.
func defaultKey(credential, path string) string {
	if dir := os.Getenv("CREDENTIALS_DIRECTORY"); dir != "" {
		return filepath.Join(dir, credential)
	}
	return path
}

// agentMemoryLimit is the least of the agent's soft memory limit
// (debug.SetMemoryLimit) unless GOMEMLIMIT sets another. It covers the Go
// runtime's own memory (heap, stacks, its bookkeeping; not the binary's
// pages), and past it the collector runs more often, never on more than
// half the CPU. Without it the heap grows, between collections, to twice
// what is live and to 4 MiB at least, and what a flood's connections
// leave behind stays resident until then. The limit sits
// agentMemoryHeadroom above what the runtime holds once the agent has
// started (what the packages of the whole binary set up when it starts
// is in it: the controller's too), so that a few pings cost no
// collection, and what the agent's capped connections hold fits under
// it; below what the runtime already holds, the collector would run
// without end.
const (
	agentMemoryLimit    = 11 << 20
	agentMemoryHeadroom = 4 << 20
)

// limitMemory sets the agent's limit unless a limit is set already.
func limitMemory() {
	if debug.SetMemoryLimit(-1) == math.MaxInt64 {
		debug.SetMemoryLimit(max(agentMemoryLimit, runtimeHeld()+agentMemoryHeadroom))
	}
}

// runtimeHeld is the memory the Go runtime holds, as its soft limit
// counts it: all it mapped, less what it gave back.
func runtimeHeld() int64 {
	s := []metrics.Sample{{Name: "/memory/classes/total:bytes"}, {Name: "/memory/classes/heap/released:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 || s[1].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return int64(s[0].Value.Uint64() - s[1].Value.Uint64())
}

// Run runs the agent until ctx is cancelled (SIGINT/SIGTERM).
func (c *AgentCmd) Run(ctx context.Context, env *Env) error {
	log := newLogger(env, c.LogFormat)
	s, err := c.settings(&log)
	if err != nil {
		return err
	}
	log = log.Level(s.level)
	keys, err := loadNetworkKeys(s.keyFiles)
	if err != nil {
		return err
	}
	if _, err := os.Stat(s.identityKey); errors.Is(err, fs.ErrNotExist) {
		dir, err := keyDir(s.identityKey)
		if err != nil {
			return fmt.Errorf("agent key: %w", err)
		}
		if dir != "" {
			log.Info().Str("event", "key_dir_created").Str("dir", dir).Msg("created the agent key's directory (mode 0700)")
		}
	}
	id, created, err := proto.LoadOrCreateIdentity(s.identityKey)
	if err != nil {
		return fmt.Errorf("agent key: %w", err)
	}
	if created {
		log.Info().Str("event", "identity_created").Str("file", s.identityKey).Str("identity", id.Fingerprint()).Msg("created a new agent key")
	}
	cfg := s.cfg
	a, err := agent.New(agent.Options{
		NetworkKeys:      keys,
		Identity:         id,
		Labels:           cfg.Labels,
		Version:          Version,
		HandshakeTimeout: cfg.HandshakeTimeout,
		IdleTimeout:      cfg.IdleTimeout,
		MaxConns:         cfg.MaxConnections,
		MaxPending:       cfg.MaxPending,
		MaxFailures:      cfg.MaxFailures,
		Logger:           log,
	})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", s.addr)
	if errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("agent: %s is in use (another agent running? choose another with --port or port: in %s)", s.addr, c.Config)
	}
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	log.Info().Str("event", "start").Str("version", Version).Int("pid", os.Getpid()).Msg("ifl agent starting")

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				c.reload(a, &log)
			}
		}
	}()
	discovered := make(chan struct{})
	if cfg.NoDiscovery {
		close(discovered)
	} else {
		pc, err := listenDiscovery(s.addr, c.Config)
		if err != nil {
			ln.Close()
			return err
		}
		go func() {
			defer close(discovered)
			if err := a.ServeDiscovery(ctx, pc, ln.Addr().(*net.TCPAddr).Port); err != nil {
				log.Error().Str("event", "discovery_failed").Err(err).Msg("discovery stopped; TCP pings still work")
			}
		}()
	}
	announced := c.announce(ctx, a, ln, cfg, &log)
	limitMemory()
	err = a.Serve(ctx, ln)
	<-discovered
	<-announced
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	return nil
}

// announce follows this host's addresses and announces their changes
// until ctx is done; the channel is closed when it has stopped. Without
// netlink the agent goes on without announcements, saying so.
func (c *AgentCmd) announce(ctx context.Context, a *agent.Agent, ln net.Listener, cfg *agent.Config, log *zerolog.Logger) <-chan struct{} {
	done := make(chan struct{})
	events, err := agent.FollowAddrs(ctx)
	if err != nil {
		log.Warn().Str("event", "announce_failed").Err(err).Msg("not announcing address changes: controllers learn of them at their next probe")
		close(done)
		return done
	}
	listen := ln.Addr().(*net.TCPAddr).AddrPort()
	go func() {
		defer close(done)
		if err := a.Announce(ctx, agent.AnnounceConfig{Listen: listen, Controllers: cfg.Controllers}, events); err != nil {
			log.Error().Str("event", "announce_failed").Err(err).Msg("announcements stopped: controllers learn of address changes at their next probe")
		}
	}()
	return done
}

// listenDiscovery opens the UDP socket for discovery queries on the TCP
// listener's address: on the wildcard address it takes IPv4 broadcasts and
// IPv6 multicast to all nodes alike.
func listenDiscovery(addr, config string) (net.PacketConn, error) {
	pc, err := agent.ListenDiscovery(addr)
	if errors.Is(err, syscall.EADDRINUSE) {
		return nil, fmt.Errorf("agent: UDP %s is in use (another agent running? choose another port with --port or port: in %s, or set discovery: false there)", addr, config)
	}
	if err != nil {
		return nil, fmt.Errorf("agent: discovery: %w (set discovery: false in %s to run without it)", err, config)
	}
	return pc, nil
}

// reload re-reads the config file and swaps in its labels and keys; a bad
// file is logged and the running values are kept.
func (c *AgentCmd) reload(a *agent.Agent, log *zerolog.Logger) {
	s, err := c.settings(nil)
	if err == nil {
		var keys []proto.NetworkKey
		if keys, err = loadNetworkKeys(s.keyFiles); err == nil {
			a.Reload(keys, s.cfg.Labels)
			log.Info().Str("event", "reload").Int("network_keys", len(keys)).Int("labels", len(s.cfg.Labels)).Msg("reloaded labels and network keys")
			return
		}
	}
	log.Error().Str("event", "reload").Err(err).Msg("reload failed; keeping the running configuration")
}

// newLogger returns a logger to stderr: console format on a terminal (or
// when forced), JSON otherwise. The console writer quotes field values
// that need it, but prints messages as they are, and a message may quote
// an agent (an identity conflict names hosts): untrusted.Text shows its
// control characters instead. JSON lines get every rune that is not
// printable escaped, for whoever reads the journal on a terminal.
func newLogger(env *Env, format string) zerolog.Logger {
	if format == "console" || (format == "auto" && env.Terminal) {
		w := zerolog.ConsoleWriter{Out: env.Stderr, TimeFormat: time.TimeOnly,
			FormatMessage: func(i any) string {
				if i == nil {
					return ""
				}
				return untrusted.Text(fmt.Sprint(i))
			}}
		return zerolog.New(w).With().Timestamp().Logger()
	}
	return zerolog.New(untrusted.JSONWriter(env.Stderr)).With().Timestamp().Logger()
}
