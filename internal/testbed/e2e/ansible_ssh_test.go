package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ifl-project/ifl/internal/testbed/testnet"
)

// sshd is an OpenSSH server started by a test in a host's namespace.
type sshd struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	log  strings.Builder
	done chan struct{}
}

func (s *sshd) logText() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log.String()
}

// startSSHD starts Debian's sshd in namespace ns, listening on addr:port
// with the host key and the authorized keys given, logging to stderr, and
// returns once it listens; the test's cleanup stops it by its PID.
func startSSHD(t *testing.T, ns string, addr netip.Addr, port int, hostKey, authorized string) *sshd {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), "sshd_config")
	conf := fmt.Sprintf(`ListenAddress %s
Port %d
HostKey %s
AuthorizedKeysFile %s
PidFile none
UsePAM no
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin prohibit-password
AllowUsers root
Subsystem sftp /usr/lib/openssh/sftp-server
`, addr, port, hostKey, authorized)
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	s := &sshd{cmd: exec.Command("ip", "netns", "exec", ns, "/usr/sbin/sshd", "-D", "-e", "-f", cfg), done: make(chan struct{})}
	stderr, err := s.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.cmd.Process.Signal(syscall.SIGTERM)
		<-s.done
		s.cmd.Wait()
	})
	listening := make(chan struct{})
	go func() {
		defer close(s.done)
		sc := bufio.NewScanner(stderr)
		once := sync.Once{}
		for sc.Scan() {
			s.mu.Lock()
			s.log.WriteString(sc.Text() + "\n")
			s.mu.Unlock()
			if strings.HasPrefix(sc.Text(), "Server listening on ") {
				once.Do(func() { close(listening) })
			}
		}
		io.Copy(io.Discard, stderr)
	}()
	select {
	case <-listening:
	case <-s.done:
		t.Fatalf("sshd in %s exited:\n%s", ns, s.logText())
	case <-time.After(20 * time.Second):
		t.Fatalf("sshd in %s not listening within 20s:\n%s", ns, s.logText())
	}
	return s
}

// TestAnsiblePluginSSH runs ansible -m ping over SSH to agents found
// through the plugin, as a user would: each agent's namespace runs
// Debian's sshd with a throwaway host key and the test's key authorized,
// the bastion on port 2222, which compose gives it from its role label;
// Ansible runs in the controller's namespace and checks host keys
// strictly against the agents' verified addresses. Every agent answers
// pong, over its own address and port, and nothing is warned.
func TestAnsiblePluginSSH(t *testing.T) {
	testnet.Require(t, true)
	testnet.RequireCommands(t, "ansible-core", "ansible")
	testnet.RequireCommands(t, "openssh-server", "/usr/sbin/sshd")
	testnet.RequireCommands(t, "openssh-client", "ssh", "ssh-keygen")
	spec := testnet.Spec{Name: "e2eplssh", Prefix: netip.MustParsePrefix("198.19.72.0/28"), Port: 7440, Hosts: []testnet.HostSpec{
		{Role: testnet.Agent, Name: "ssha", Labels: map[string]string{"site": "a", "role": "web"}},
		{Role: testnet.Closed},
		{Role: testnet.Agent, Name: "sshb", Labels: map[string]string{"site": "b", "role": "web"}},
		{Role: testnet.Agent, Name: "jump", Labels: map[string]string{"site": "a", "role": "bastion"}},
	}}
	lan := testnet.Start(t, spec, testnet.BuildIFL(t))
	state := filepath.Join(t.TempDir(), "inventory.json")
	if _, stderr, code := ifl(t, lan, "probe", "--state", state, lan.Prefix.String()); code != 0 {
		t.Fatalf("probe: exit %d: %s", code, stderr)
	}

	// sshd refuses to start without its privilege separation directory,
	// which Debian makes at boot.
	if _, err := os.Stat("/run/sshd"); errors.Is(err, os.ErrNotExist) {
		if err := os.Mkdir("/run/sshd", 0o755); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Remove("/run/sshd") })
	}
	dir := t.TempDir()
	keygen := func(path string) {
		t.Helper()
		if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "ifl-e2e", "-f", path).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen: %v\n%s", err, out)
		}
	}
	hostKey, userKey := filepath.Join(dir, "host_key"), filepath.Join(dir, "id_ed25519")
	keygen(hostKey)
	keygen(userKey)
	authorized := filepath.Join(dir, "authorized_keys")
	pub, err := os.ReadFile(userKey + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(authorized, pub, 0o600); err != nil {
		t.Fatal(err)
	}
	hostPub, err := os.ReadFile(hostKey + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	var knownHosts strings.Builder
	servers := map[string]*sshd{}
	var agents []string
	for _, h := range lan.Hosts {
		if h.Role != testnet.Agent {
			continue
		}
		port, host := 22, h.Addr.String()
		if h.Labels["role"] == "bastion" {
			port, host = 2222, fmt.Sprintf("[%s]:2222", h.Addr)
		}
		fields := strings.Fields(string(hostPub))
		fmt.Fprintf(&knownHosts, "%s %s %s\n", host, fields[0], fields[1])
		servers[h.Name] = startSSHD(t, h.Namespace, h.Addr, port, hostKey, authorized)
		agents = append(agents, h.Name)
	}
	sort.Strings(agents)
	known := filepath.Join(dir, "known_hosts")
	if err := os.WriteFile(known, []byte(knownHosts.String()), 0o600); err != nil {
		t.Fatal(err)
	}

	cfg := writeConfig(t, exampleConfig(lan.IFL, state, t.TempDir(), false))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := lan.Controller.Command(ctx, "ansible", "-i", cfg, "all", "-m", "ping", "-o")
	cmd.Env = ansibleEnv(t, "ANSIBLE_REMOTE_USER=root", "ANSIBLE_PRIVATE_KEY_FILE="+userKey,
		"ANSIBLE_SSH_ARGS=-o ControlMaster=no -o UserKnownHostsFile="+known+" -o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes -o BatchMode=yes",
		"ANSIBLE_HOST_KEY_CHECKING=True", "ANSIBLE_PYTHON_INTERPRETER=/usr/bin/python3",
		"ANSIBLE_REMOTE_TEMP="+filepath.Join(dir, "remote-tmp"), "ANSIBLE_TIMEOUT=20")
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("ansible all -m ping: %v\n%s\n%s", err, out.String(), errb.String())
	}
	noWarnings(t, "ansible all -m ping", errb.String())
	var pong []string
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		name, rest, _ := strings.Cut(line, " | ")
		if strings.HasPrefix(rest, "SUCCESS => ") && strings.Contains(rest, `"ping": "pong"`) {
			pong = append(pong, name)
		} else {
			t.Errorf("not a pong: %s", line)
		}
	}
	sort.Strings(pong)
	if !slices.Equal(pong, agents) {
		t.Errorf("pong from %v, want every agent %v", pong, agents)
	}
	// Each agent was reached on its own sshd, from the controller.
	for name, s := range servers {
		if want := "Accepted publickey for root from " + lan.Controller.Addr.String(); !strings.Contains(s.logText(), want) {
			t.Errorf("%s's sshd never accepted the controller's key:\n%s", name, s.logText())
		}
	}
}
