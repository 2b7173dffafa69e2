package testnet

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Down tears the LAN down: it stops every process it started and every
// process left in its namespaces, deletes the namespaces (and with them
// every link and address) and removes its state directory.
func (l *LAN) Down() error {
	err := Down(l.Name)
	for pid, pr := range l.procs {
		select {
		case <-pr.exited: // reaped; Down stopped it
		case <-time.After(5 * time.Second):
			syscall.Kill(pid, syscall.SIGKILL)
			<-pr.exited
		}
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
			for _, pid := range []int{h.PID, h.RelayPID} {
				if pid > 0 && inNamespaces(pid, nss) {
					pids[pid] = true
				}
			}
		}
		if r := l.ResponderNode; r != nil && r.PID > 0 && inNamespaces(r.PID, nss) {
			pids[r.PID] = true
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
