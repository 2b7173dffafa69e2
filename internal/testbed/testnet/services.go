package testnet

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/ifl-project/ifl/proto"
)

// start runs the services: agents (with the right or the wrong key) and
// impostors, each in its host's network namespace and a UTS namespace of
// its own with the host's name, so that an agent reports that hostname.
func (l *LAN) start(ctx context.Context, opts Options) error {
	if err := l.writeKeys(opts.NetworkKey); err != nil {
		return err
	}
	if err := l.startRelays(opts); err != nil {
		return err
	}
	if l.ResponderNode != nil {
		if err := l.startResponder(opts); err != nil {
			return err
		}
	}
	for i := range l.Hosts {
		h := &l.Hosts[i]
		args, err := l.serviceArgs(h, opts)
		if err != nil {
			return err
		}
		if args == nil {
			continue
		}
		if err := l.startService(h, opts, args); err != nil {
			return err
		}
	}
	if err := l.save(); err != nil {
		return err
	}
	return l.waitReady(ctx, opts.ReadyTimeout)
}

// writeKeys makes the LAN's network key, a copy of shared if given, and
// the wrong one.
func (l *LAN) writeKeys(shared string) error {
	l.NetworkKey = filepath.Join(l.Dir, "network.key")
	l.WrongKey = filepath.Join(l.Dir, "wrong.key")
	for _, f := range []string{l.NetworkKey, l.WrongKey} {
		if f == l.NetworkKey && shared != "" {
			b, err := os.ReadFile(shared)
			if err != nil {
				return fmt.Errorf("testnet: the shared network key: %w", err)
			}
			if err := os.WriteFile(f, b, 0o600); err != nil {
				return err
			}
			continue
		}
		k, err := proto.NewNetworkKey()
		if err != nil {
			return err
		}
		if err := proto.WriteKeyFile(f, k, true); err != nil {
			return err
		}
	}
	return nil
}

// startRelays starts the relays of the hosts with a delay.
func (l *LAN) startRelays(opts Options) error {
	for i := range l.Hosts {
		h := &l.Hosts[i]
		if h.Relay == "" {
			continue
		}
		// Half the round trip each way.
		args := []string{helperRelay, "host0", "lan0", (h.Delay / 2).String()}
		cmd, err := l.spawn(h.Relay, l.relayLogFile(h), opts.Helper, args, nil)
		if err != nil {
			return err
		}
		h.RelayPID = l.reap(cmd)
	}
	return nil
}

// serviceArgs writes the files of h's service and returns its command
// line, or nil for a host that runs none.
func (l *LAN) serviceArgs(h *Host, opts Options) ([]string, error) {
	switch h.Role {
	case Agent, WrongKey:
		return l.agentArgs(h, opts)
	case Hostile:
		return l.hostileArgs(h)
	case Impostor:
		return []string{helperHTTP, fmt.Sprintf(":%d", l.Port)}, nil
	}
	return nil, nil
}

// agentArgs writes an agent's identity and config, and returns its
// command line.
func (l *LAN) agentArgs(h *Host, opts Options) ([]string, error) {
	if opts.IFL == "" {
		return nil, errors.New("testnet: Options.IFL is required for agents")
	}
	key := l.NetworkKey
	if h.Role == WrongKey {
		key = l.WrongKey
	}
	id, err := proto.NewIdentity()
	if err != nil {
		return nil, err
	}
	dir := l.Dir
	if h.Sandbox {
		// Its own directory, which only nobody may read, as a
		// credentials directory would be.
		if dir, err = sandboxDir(l.Dir, h.Name, key); err != nil {
			return nil, err
		}
		key = filepath.Join(dir, "network.key")
	}
	idFile := filepath.Join(dir, h.Name+".key")
	if err := proto.WriteKeyFile(idFile, id, true); err != nil {
		return nil, err
	}
	h.Identity = id.Fingerprint()
	cfg := filepath.Join(dir, h.Name+".yaml")
	if err := writeAgentConfig(cfg, h.Labels); err != nil {
		return nil, err
	}
	args := []string{opts.IFL, "agent", "--config", cfg, "--network-key", key, "--identity-key", idFile,
		"--port", fmt.Sprint(l.Port), "--log-format", "json"}
	if h.Sandbox {
		return sandboxed(dir, args)
	}
	return args, nil
}

// sandboxed gives a sandboxed agent's directory to nobody, and returns
// args run as nobody with no capability and no_new_privs.
func sandboxed(dir string, args []string) ([]string, error) {
	if err := chownAll(dir, nobody); err != nil {
		return nil, err
	}
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		return nil, errors.New("testnet: a sandboxed agent needs setpriv (util-linux)")
	}
	return append([]string{setpriv, fmt.Sprintf("--reuid=%d", nobody), fmt.Sprintf("--regid=%d", nobody), "--clear-groups",
		"--inh-caps=-all", "--ambient-caps=-all", "--bounding-set=-all", "--no-new-privs"}, args...), nil
}

// hostileArgs writes a hostile host's identity and facts, and returns its
// command line.
func (l *LAN) hostileArgs(h *Host) ([]string, error) {
	id, err := proto.NewIdentity()
	if err != nil {
		return nil, err
	}
	idFile := filepath.Join(l.Dir, h.Name+".key")
	if err := proto.WriteKeyFile(idFile, id, true); err != nil {
		return nil, err
	}
	h.Identity = id.Fingerprint()
	facts := h.Facts
	if facts == nil {
		facts = HostileFacts()
	}
	b, err := json.Marshal(facts)
	if err != nil {
		return nil, err
	}
	factsFile := filepath.Join(l.Dir, h.Name+".facts.json")
	if err := os.WriteFile(factsFile, b, 0o600); err != nil {
		return nil, err
	}
	args := []string{helperHostile, fmt.Sprint(l.Port), l.NetworkKey, idFile, factsFile}
	if h.Churn {
		args = append(args, "churn")
	}
	return args, nil
}

// startService gives h a machine-id and starts its service, args.
func (l *LAN) startService(h *Host, opts Options, args []string) error {
	h.MachineID = fmt.Sprintf("%016x%016x", rand.Uint64(), rand.Uint64())
	if err := os.WriteFile(l.machineIDFile(h), []byte(h.MachineID+"\n"), 0o644); err != nil {
		return err
	}
	cmd, err := l.spawn(h.Namespace, l.logFile(h), opts.Helper, args, []string{envHostname + "=" + h.Name, envMachineID + "=" + l.machineIDFile(h)})
	if err != nil {
		return err
	}
	h.PID = l.reap(cmd)
	return nil
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

func (l *LAN) relayLogFile(h *Host) string { return filepath.Join(l.Dir, h.Name+".relay.log") }

// reap records a started process and reaps it when it exits; it returns
// its PID.
func (l *LAN) reap(cmd *exec.Cmd) int {
	if l.procs == nil {
		l.procs = map[int]*proc{}
	}
	pr := &proc{exited: make(chan struct{})}
	l.procs[cmd.Process.Pid] = pr
	go func() {
		cmd.Wait()
		pr.state = cmd.ProcessState
		close(pr.exited)
	}()
	return cmd.Process.Pid
}

func (l *LAN) machineIDFile(h *Host) string { return filepath.Join(l.Dir, h.Name+".machine-id") }

// spawn starts args in namespace ns through the helper, which sets up
// what env asks for (hostname, machine-id) and then execs args (so the
// PID is the service's own), or serves itself.
func (l *LAN) spawn(ns, logFile, helper string, args, env []string) (*exec.Cmd, error) {
	logf, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns, helper}, args...)...)
	cmd.Env = append(append(os.Environ(), envHelper+"="+helperExec), env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// A session of its own keeps a terminal's Ctrl-C from the services;
	// a UTS namespace of its own gives it the host's name.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Cloneflags: syscall.CLONE_NEWUTS}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("testnet: starting %s in %s: %w", args[0], ns, err)
	}
	return cmd, nil
}

// waitReady waits until every service has logged that it listens, or
// has died, or the timeout passes.
func (l *LAN) waitReady(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	type service struct {
		what, log string
		pid       int
	}
	waiting := map[int]service{}
	for i := range l.Hosts {
		h := &l.Hosts[i]
		if h.PID != 0 {
			waiting[2*i] = service{fmt.Sprintf("%s (%s)", h.Name, h.Role), l.logFile(h), h.PID}
		}
		if h.RelayPID != 0 {
			waiting[2*i+1] = service{h.Name + "'s relay", l.relayLogFile(h), h.RelayPID}
		}
	}
	if l.ResponderNode != nil {
		waiting[-1] = service{"the responder", l.ResponderLog(), l.ResponderNode.PID}
	}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for len(waiting) > 0 {
		for i, h := range waiting {
			b, _ := os.ReadFile(h.log)
			if bytes.Contains(b, []byte(`"event":"listening"`)) {
				delete(waiting, i)
				continue
			}
			// Told by the reaper, not by /proc: while a multithreaded
			// process execs from another thread than its first, /proc
			// briefly shows its PID as a zombie.
			if pr := l.procs[h.pid]; pr != nil {
				select {
				case <-pr.exited:
					return fmt.Errorf("testnet: %s exited during start (%v):\n%s", h.what, pr.state, lastLines(b, 10))
				default:
				}
			}
		}
		if len(waiting) == 0 {
			break
		}
		select {
		case <-ctx.Done():
			for _, h := range waiting {
				return fmt.Errorf("testnet: %s not listening after %v: %w", h.what, timeout, ctx.Err())
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

// alive reports whether pid runs. A zombie still answers signal 0; /proc
// says whether it is one (and, during an exec from a thread other than the
// first, may say so for a moment: use it only for settled processes).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	if i := bytes.LastIndexByte(b, ')'); i >= 0 && i+2 < len(b) {
		return b[i+2] != 'Z'
	}
	return true
}
