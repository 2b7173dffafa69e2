// Package testnet builds throwaway virtual LANs of network namespaces for
// ifl's end-to-end tests, benchmarks and demo, and tears them down.
//
// A LAN is a bridge in its own namespace, a router (the default gateway), a
// controller namespace where the scanner under test runs, and one
// namespace per host, each with its role on the agent port (see Role).
// Addresses come from 198.18.0.0/15 only and exist only inside the LAN's
// namespaces: nothing is added to the caller's namespace, and every
// process started is recorded by PID and stopped by PID.
//
// From Go:
//
//	lan, err := testnet.Up(ctx, spec, testnet.Options{IFL: "/path/to/ifl"})
//	defer lan.Down()
//	out, err := lan.Controller.Command(ctx, lan.IFL, "probe", lan.Prefix.String()).Output()
//
// From the shell, scripts/testnet.sh wraps the same code.
//
// A LAN's state (its hosts, their roles, addresses, MACs, identities and
// PIDs) is kept in /run/ifl-testnet/<name>/lan.json; Down(name) works from
// it, and from the namespaces' names, after a crash too.
package testnet

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/ifl-project/ifl/proto"
)

// StateRoot holds one directory per LAN.
const StateRoot = "/run/ifl-testnet"

// Options say which binaries a LAN runs.
type Options struct {
	// IFL is the ifl binary the agents run. Required when the spec has
	// agents.
	IFL string
	// Helper is a binary that runs Helper when IFL_TESTNET_HELPER is set
	// (see RunHelper); default: this executable.
	Helper string
	// ReadyTimeout bounds the wait for every service to listen; default 20s.
	ReadyTimeout time.Duration
}

// Host is one machine of the LAN as it was set up: the truth tests compare
// results with.
type Host struct {
	HostSpec
	MAC       string `json:"mac"`
	Namespace string `json:"namespace,omitempty"` // empty for Empty
	// Identity is the agent's fingerprint, for Agent and WrongKey hosts.
	Identity string `json:"identity,omitempty"`
	// MachineID is the host's own /etc/machine-id, for hosts that run a
	// service.
	MachineID string `json:"machine_id,omitempty"`
	PID       int    `json:"pid,omitempty"`
}

// Node is a namespace of the LAN that is not a managed host.
type Node struct {
	Namespace string     `json:"namespace"`
	Addr      netip.Addr `json:"addr"`
	MAC       string     `json:"mac"`
}

// Command returns a command that runs inside n's namespace.
func (n Node) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.Namespace, name}, args...)...)
}

// LAN is a running test network.
type LAN struct {
	Spec
	Dir        string `json:"dir"`
	IFL        string `json:"ifl"`
	NetworkKey string `json:"network_key"` // key file of the Agent hosts
	WrongKey   string `json:"wrong_key"`   // key file of the WrongKey hosts
	Router     Node   `json:"router"`
	Controller Node   `json:"controller"`
	Bridge     string `json:"bridge_namespace"`
	Hosts      []Host `json:"hosts"`

	procs []*exec.Cmd
}

// Up builds the LAN, after tearing down any leftover of a LAN of the same
// name. On failure it tears down what it built.
func Up(ctx context.Context, spec Spec, opts Options) (lan *LAN, err error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("testnet: needs root (network namespaces)")
	}
	routerAddr, ctlAddr, err := spec.resolve()
	if err != nil {
		return nil, err
	}
	if opts.Helper == "" {
		if opts.Helper, err = os.Executable(); err != nil {
			return nil, err
		}
	}
	if opts.IFL != "" {
		// The helper execs it from another working directory.
		if opts.IFL, err = filepath.Abs(opts.IFL); err != nil {
			return nil, err
		}
	}
	if opts.ReadyTimeout <= 0 {
		opts.ReadyTimeout = 20 * time.Second
	}
	if err := Down(spec.Name); err != nil {
		return nil, fmt.Errorf("testnet: cleaning up a previous %s: %w", spec.Name, err)
	}
	prefix := "ifl-" + spec.Name + "-"
	lan = &LAN{
		Spec:       spec,
		Dir:        filepath.Join(StateRoot, spec.Name),
		IFL:        opts.IFL,
		Bridge:     prefix + "br",
		Router:     Node{Namespace: prefix + "gw", Addr: routerAddr, MAC: mac(routerAddr)},
		Controller: Node{Namespace: prefix + "ctl", Addr: ctlAddr, MAC: mac(ctlAddr)},
	}
	for _, h := range spec.Hosts {
		host := Host{HostSpec: h, MAC: mac(h.Addr)}
		if h.Duplicate {
			host.MAC = "02:19" + host.MAC[5:] // the address's owner has 02:18…
		}
		if h.Role != Empty {
			host.Namespace = prefix + h.Name
		}
		lan.Hosts = append(lan.Hosts, host)
	}
	defer func() {
		if err != nil {
			lan.Down()
			lan = nil
		}
	}()
	// Traversable, so that a sandboxed agent reaches its own directory;
	// every file in it is 0600.
	if err := os.MkdirAll(lan.Dir, 0o711); err != nil {
		return lan, err
	}
	for _, d := range []string{StateRoot, lan.Dir} {
		if err := os.Chmod(d, 0o711); err != nil {
			return lan, err
		}
	}
	// Saved before anything is created, so that Down finds it all.
	if err := lan.save(); err != nil {
		return lan, err
	}
	if err := lan.build(ctx); err != nil {
		return lan, err
	}
	if err := lan.start(ctx, opts); err != nil {
		return lan, err
	}
	return lan, lan.save()
}

// nodes returns every namespace with an interface on the bridge.
func (l *LAN) nodes() []Node {
	out := []Node{l.Router, l.Controller}
	for _, h := range l.Hosts {
		if h.Namespace != "" {
			out = append(out, Node{Namespace: h.Namespace, Addr: h.Addr, MAC: h.MAC})
		}
	}
	return out
}

// build creates the namespaces, links and addresses: one ip -batch in the
// caller's namespace that creates every namespace and creates each link
// directly inside its namespaces, then one ip -batch per namespace.
func (l *LAN) build(ctx context.Context) error {
	var b strings.Builder
	nodes := l.nodes()
	fmt.Fprintf(&b, "netns add %s\n", l.Bridge)
	for _, n := range nodes {
		fmt.Fprintf(&b, "netns add %s\n", n.Namespace)
	}
	fmt.Fprintf(&b, "link add br0 netns %s type bridge forward_delay 0\n", l.Bridge)
	for i, n := range nodes {
		fmt.Fprintf(&b, "link add eth0 netns %s address %s type veth peer name p%d netns %s\n", n.Namespace, n.MAC, i, l.Bridge)
	}
	if err := ipBatch(ctx, "", b.String()); err != nil {
		return err
	}

	b.Reset()
	b.WriteString("link set lo up\nlink set br0 up\n")
	for i := range nodes {
		fmt.Fprintf(&b, "link set p%d master br0\nlink set p%d up\n", i, i)
	}
	if err := ipBatch(ctx, l.Bridge, b.String()); err != nil {
		return err
	}

	bits := l.Prefix.Bits()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for _, n := range nodes {
		g.Go(func() error {
			cmds := fmt.Sprintf("link set lo up\naddr add %s/%d dev eth0\nlink set eth0 up\n", n.Addr, bits)
			if n.Namespace != l.Router.Namespace {
				cmds += fmt.Sprintf("route add default via %s\n", l.Router.Addr)
			} else {
				// The router's other side: an address on its loopback, so
				// that it routes like a gateway without reaching anything.
				cmds += fmt.Sprintf("addr add %s/32 dev lo\n", l.uplinkAddr())
			}
			return ipBatch(gctx, n.Namespace, cmds)
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	if err := run(ctx, nil, "ip", "netns", "exec", l.Router.Namespace, "sysctl", "-qw", "net.ipv4.ip_forward=1"); err != nil {
		return err
	}
	return l.firewall(ctx)
}

// uplinkAddr is the router's address beyond the LAN: in the test
// range, outside the LAN.
func (l *LAN) uplinkAddr() netip.Addr {
	for _, a := range []netip.Addr{netip.MustParseAddr("198.19.255.254"), netip.MustParseAddr("198.18.255.254")} {
		if !l.Prefix.Contains(a) {
			return a
		}
	}
	return netip.MustParseAddr("198.19.255.254") // unreachable: a /15 LAN is refused
}

// firewall installs the nftables rules of Dropped hosts and hosts with
// loss, inside their own namespaces.
func (l *LAN) firewall(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for _, h := range l.Hosts {
		var rules strings.Builder
		if h.Role == Dropped {
			fmt.Fprintf(&rules, "table inet ifltest {\n chain input {\n  type filter hook input priority 0; policy accept;\n  tcp dport %d drop\n }\n}\n", l.Port)
		}
		if h.Loss > 0 && h.Namespace != "" {
			fmt.Fprintf(&rules, "table inet ifltestloss {\n chain input {\n  type filter hook input priority 0; policy accept;\n  meta l4proto tcp numgen random mod 100 < %d drop\n }\n}\n", h.Loss)
			fmt.Fprintf(&rules, "table arp ifltestloss {\n chain input {\n  type filter hook input priority 0; policy accept;\n  numgen random mod 100 < %d drop\n }\n}\n", h.Loss)
		}
		if rules.Len() == 0 {
			continue
		}
		if _, err := exec.LookPath("nft"); err != nil {
			return errors.New("testnet: nft not found: dropped hosts and packet loss need nftables (apt-get install nftables)")
		}
		g.Go(func() error {
			return run(gctx, strings.NewReader(rules.String()), "ip", "netns", "exec", h.Namespace, "nft", "-f", "-")
		})
	}
	return g.Wait()
}

// start runs the services: agents (with the right or the wrong key) and
// impostors, each in its host's network namespace and a UTS namespace of
// its own with the host's name, so that an agent reports that hostname.
func (l *LAN) start(ctx context.Context, opts Options) error {
	l.NetworkKey = filepath.Join(l.Dir, "network.key")
	l.WrongKey = filepath.Join(l.Dir, "wrong.key")
	for _, f := range []string{l.NetworkKey, l.WrongKey} {
		k, err := proto.NewNetworkKey()
		if err != nil {
			return err
		}
		if err := proto.WriteKeyFile(f, k, true); err != nil {
			return err
		}
	}
	for i := range l.Hosts {
		h := &l.Hosts[i]
		var args []string
		switch h.Role {
		case Agent, WrongKey:
			if opts.IFL == "" {
				return errors.New("testnet: Options.IFL is required for agents")
			}
			key := l.NetworkKey
			if h.Role == WrongKey {
				key = l.WrongKey
			}
			id, err := proto.NewIdentity()
			if err != nil {
				return err
			}
			dir := l.Dir
			if h.Sandbox {
				// Its own directory, which only nobody may read, as a
				// credentials directory would be.
				if dir, err = sandboxDir(l.Dir, h.Name, key); err != nil {
					return err
				}
				key = filepath.Join(dir, "network.key")
			}
			idFile := filepath.Join(dir, h.Name+".key")
			if err := proto.WriteKeyFile(idFile, id, true); err != nil {
				return err
			}
			h.Identity = id.Fingerprint()
			cfg := filepath.Join(dir, h.Name+".yaml")
			if err := writeAgentConfig(cfg, h.Labels); err != nil {
				return err
			}
			args = []string{opts.IFL, "agent", "--config", cfg, "--network-key", key, "--identity-key", idFile,
				"--port", fmt.Sprint(l.Port), "--log-format", "json"}
			if h.Sandbox {
				if err := chownAll(dir, nobody); err != nil {
					return err
				}
				setpriv, err := exec.LookPath("setpriv")
				if err != nil {
					return errors.New("testnet: a sandboxed agent needs setpriv (util-linux)")
				}
				args = append([]string{setpriv, fmt.Sprintf("--reuid=%d", nobody), fmt.Sprintf("--regid=%d", nobody), "--clear-groups",
					"--inh-caps=-all", "--ambient-caps=-all", "--bounding-set=-all", "--no-new-privs"}, args...)
			}
		case Impostor:
			args = []string{helperHTTP, fmt.Sprintf(":%d", l.Port)}
		default:
			continue
		}
		h.MachineID = fmt.Sprintf("%016x%016x", rand.Uint64(), rand.Uint64())
		if err := os.WriteFile(l.machineIDFile(h), []byte(h.MachineID+"\n"), 0o644); err != nil {
			return err
		}
		cmd, err := l.spawn(h, opts.Helper, args)
		if err != nil {
			return err
		}
		h.PID = cmd.Process.Pid
		l.procs = append(l.procs, cmd)
	}
	if err := l.save(); err != nil {
		return err
	}
	return l.waitReady(ctx, opts.ReadyTimeout)
}

// nobody is the uid and gid a sandboxed agent runs as.
const nobody = 65534

// sandboxDir makes a directory for a sandboxed host's files, with a copy
// of the network key.
func sandboxDir(lanDir, name, key string) (string, error) {
	dir := filepath.Join(lanDir, name+".d")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	b, err := os.ReadFile(key)
	if err != nil {
		return "", err
	}
	return dir, os.WriteFile(filepath.Join(dir, "network.key"), b, 0o600)
}

func chownAll(dir string, id int) error {
	return filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Chown(p, id, id)
	})
}

func writeAgentConfig(path string, labels map[string]string) error {
	var b bytes.Buffer
	if len(labels) > 0 {
		b.WriteString("labels:\n")
		for k, v := range labels {
			fmt.Fprintf(&b, "  %q: %q\n", k, v)
		}
	}
	return os.WriteFile(path, b.Bytes(), 0o600)
}

func (l *LAN) logFile(h *Host) string { return filepath.Join(l.Dir, h.Name+".log") }

func (l *LAN) machineIDFile(h *Host) string { return filepath.Join(l.Dir, h.Name+".machine-id") }

// spawn starts args in h's namespaces through the helper, which sets the
// hostname and then execs args (so the PID is the service's own).
func (l *LAN) spawn(h *Host, helper string, args []string) (*exec.Cmd, error) {
	logf, err := os.OpenFile(l.logFile(h), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command("ip", append([]string{"netns", "exec", h.Namespace, helper}, args...)...)
	cmd.Env = append(os.Environ(), envHelper+"="+helperExec, envHostname+"="+h.Name, envMachineID+"="+l.machineIDFile(h))
	cmd.Stdout, cmd.Stderr = logf, logf
	// A session of its own keeps a terminal's Ctrl-C from the services;
	// a UTS namespace of its own gives it the host's name.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Cloneflags: syscall.CLONE_NEWUTS}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("testnet: starting %s on %s: %w", args[0], h.Name, err)
	}
	return cmd, nil
}

// waitReady waits until every service has logged that it listens, or
// has died, or the timeout passes.
func (l *LAN) waitReady(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	waiting := map[int]*Host{}
	for i := range l.Hosts {
		if l.Hosts[i].PID != 0 {
			waiting[i] = &l.Hosts[i]
		}
	}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for len(waiting) > 0 {
		for i, h := range waiting {
			b, _ := os.ReadFile(l.logFile(h))
			if bytes.Contains(b, []byte(`"event":"listening"`)) {
				delete(waiting, i)
				continue
			}
			if !alive(h.PID) {
				return fmt.Errorf("testnet: %s (%s) exited during start:\n%s", h.Name, h.Role, lastLines(b, 10))
			}
		}
		if len(waiting) == 0 {
			break
		}
		select {
		case <-ctx.Done():
			for _, h := range waiting {
				return fmt.Errorf("testnet: %s (%s) not listening after %v: %w", h.Name, h.Role, timeout, ctx.Err())
			}
		case <-tick.C:
		}
	}
	return nil
}

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func alive(pid int) bool {
	// A zombie still answers signal 0; /proc says whether it is one.
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	if i := bytes.LastIndexByte(b, ')'); i >= 0 && i+2 < len(b) {
		return b[i+2] != 'Z'
	}
	return true
}

func (l *LAN) save() error {
	b, err := json.MarshalIndent(l, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(l.Dir, "lan.json.tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(l.Dir, "lan.json"))
}

// Load reads the state of a running LAN.
func Load(name string) (*LAN, error) {
	b, err := os.ReadFile(filepath.Join(StateRoot, name, "lan.json"))
	if err != nil {
		return nil, err
	}
	var l LAN
	if err := json.Unmarshal(b, &l); err != nil {
		return nil, fmt.Errorf("testnet: %s: %w", name, err)
	}
	return &l, nil
}

// Down tears the LAN down: it stops every process it started and every
// process left in its namespaces, deletes the namespaces (and with them
// every link and address) and removes its state directory.
func (l *LAN) Down() error {
	err := Down(l.Name)
	for _, c := range l.procs {
		c.Wait() // reap; they were killed by Down
	}
	l.procs = nil
	return err
}

var downMu sync.Mutex

// Down tears down the LAN called name, whatever state it is in.
func Down(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("testnet: name %q: want 1 to 8 of [a-z0-9]", name)
	}
	downMu.Lock()
	defer downMu.Unlock()
	prefix := "ifl-" + name + "-"
	nss, err := namespaces(prefix)
	if err != nil {
		return err
	}
	// Every PID recorded, and every process found in the namespaces.
	pids := map[int]bool{}
	if l, err := Load(name); err == nil {
		for _, h := range l.Hosts {
			if h.PID > 0 && inNamespaces(h.PID, nss) {
				pids[h.PID] = true
			}
		}
	}
	for _, ns := range nss {
		out, _ := exec.Command("ip", "netns", "pids", ns).Output()
		for _, f := range strings.Fields(string(out)) {
			var pid int
			if _, err := fmt.Sscan(f, &pid); err == nil && pid > 1 {
				pids[pid] = true
			}
		}
	}
	stopAll(pids)
	if len(nss) > 0 {
		var b strings.Builder
		for _, ns := range nss {
			fmt.Fprintf(&b, "netns del %s\n", ns)
		}
		if err := ipBatch(context.Background(), "", b.String()); err != nil {
			return err
		}
	}
	return os.RemoveAll(filepath.Join(StateRoot, name))
}

// inNamespaces reports whether pid lives in one of the named network
// namespaces, so that a recycled PID of an unrelated process is never
// signalled.
func inNamespaces(pid int, nss []string) bool {
	link, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid))
	if err != nil {
		return false
	}
	for _, ns := range nss {
		var st syscall.Stat_t
		if syscall.Stat("/run/netns/"+ns, &st) == nil && link == fmt.Sprintf("net:[%d]", st.Ino) {
			return true
		}
	}
	return false
}

// stopAll sends SIGTERM, waits up to 3 s for the processes to go, then
// sends SIGKILL to the rest.
func stopAll(pids map[int]bool) {
	for pid := range pids {
		syscall.Kill(pid, syscall.SIGTERM)
	}
	deadline := time.Now().Add(3 * time.Second)
	for len(pids) > 0 && time.Now().Before(deadline) {
		for pid := range pids {
			if !alive(pid) {
				delete(pids, pid)
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	for pid := range pids {
		syscall.Kill(pid, syscall.SIGKILL)
	}
}

// namespaces lists the named network namespaces that start with prefix.
func namespaces(prefix string) ([]string, error) {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return nil, fmt.Errorf("testnet: ip netns list: %w", err)
	}
	var nss []string
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && strings.HasPrefix(f[0], prefix) {
			nss = append(nss, f[0])
		}
	}
	return nss, nil
}

// ipBatch runs ip -batch, inside ns when it is not empty.
func ipBatch(ctx context.Context, ns, cmds string) error {
	args := []string{"-batch", "-"}
	if ns != "" {
		args = append([]string{"-n", ns}, args...)
	}
	return run(ctx, strings.NewReader(cmds), "ip", args...)
}

func run(ctx context.Context, stdin *strings.Reader, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	if stdin != nil {
		cmd.Stdin = stdin
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("testnet: %s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Move gives the host called name a new address on the LAN, as a DHCP
// server would, and keeps its MAC, processes and identity.
func (l *LAN) Move(ctx context.Context, name string, to netip.Addr) error {
	if !l.Prefix.Contains(to) || to == l.Router.Addr || to == l.Controller.Addr {
		return fmt.Errorf("testnet: move %s: %v is outside %v or taken", name, to, l.Prefix)
	}
	for i := range l.Hosts {
		if l.Hosts[i].Addr == to {
			return fmt.Errorf("testnet: move %s: %v is taken by %s", name, to, l.Hosts[i].Name)
		}
	}
	for i := range l.Hosts {
		h := &l.Hosts[i]
		if h.Name != name {
			continue
		}
		if h.Namespace == "" {
			return fmt.Errorf("testnet: move %s: an empty address has no host to move", name)
		}
		cmds := fmt.Sprintf("addr flush dev eth0\naddr add %s/%d dev eth0\nroute add default via %s\n", to, l.Prefix.Bits(), l.Router.Addr)
		if err := ipBatch(ctx, h.Namespace, cmds); err != nil {
			return err
		}
		h.Addr = to
		return l.save()
	}
	return fmt.Errorf("testnet: move: no host %q", name)
}
