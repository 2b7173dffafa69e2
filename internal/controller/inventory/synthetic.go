package inventory

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"path/filepath"
	"time"
)

// Synthetic returns a state of n hosts as a fleet's probes leave it: each
// with a role and a site label, the facts of a Debian host, one verified
// address in 198.18.0.0/15, and one host in ten with a move. It is the
// input of the benchmarks at scale, n up to 131,072.
func Synthetic(n int) *State {
	s := New()
	t0 := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	roles := []string{"web", "db", "cache", "queue", "batch", "bastion", "mail", "dns"}
	for i := range n {
		sum := sha256.Sum256(fmt.Appendf(nil, "host %d", i))
		id := hex.EncodeToString(sum[:16])
		ip := netip.AddrFrom4([4]byte{198, 18 + byte(i>>16), byte(i >> 8), byte(i)}).String()
		seen := t0.Add(time.Duration(i%3600) * time.Second)
		name := fmt.Sprintf("h%06d", i)
		h := &Host{
			Identity: id, Name: name, Hostname: name, MachineID: hex.EncodeToString(sum[16:]),
			IP: ip, Verified: []Verified{{Addr: ip, At: seen}}, Port: 7440,
			Addresses: []string{ip}, MACs: []string{fmt.Sprintf("52:54:00:%02x:%02x:%02x", byte(i>>16), byte(i>>8), byte(i))},
			OS: "Debian GNU/Linux 12 (bookworm)", Kernel: "6.1.0-28-amd64", AgentVersion: "1.4.0", Gateway: "198.18.0.1",
			Labels:    map[string]string{"role": roles[i%len(roles)], "site": fmt.Sprintf("site%d", i%10)},
			FirstSeen: t0.Add(-30 * 24 * time.Hour), LastSeen: seen, Rounds: 100,
		}
		if i%10 == 0 {
			h.History = []Move{{At: t0.Add(-24 * time.Hour), From: "198.19.255.1", To: ip}}
		}
		s.Hosts[id] = h
	}
	s.Updated = t0.Add(time.Hour)
	return s
}

// WriteFile writes s to path as the JSON store does, atomically, with
// the mode the JSON store gives files in path's folder.
func WriteFile(path string, s *State) error {
	return write(path, s, fileMode(filepath.Dir(path)))
}
