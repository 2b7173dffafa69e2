package testnet

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"regexp"
	"time"

	"github.com/ifl-project/ifl/proto"
)

// Role is what a host on the test LAN does on the agent port.
type Role string

// Roles.
const (
	Agent    Role = "agent"     // an ifl agent with the LAN's network key
	WrongKey Role = "wrong-key" // an ifl agent with another network key
	Impostor Role = "impostor"  // an HTTP server on the agent port
	Closed   Role = "closed"    // a host with nothing on the agent port
	Dropped  Role = "dropped"   // a host whose firewall drops the agent port silently
	Empty    Role = "empty"     // an address with no host at all
	// Hostile is a compromised managed host: it holds the LAN's network
	// key and answers pings with the facts of its HostSpec (HostileFacts
	// by default), whatever they say.
	Hostile Role = "hostile"
)

var roles = []Role{Agent, WrongKey, Impostor, Closed, Dropped, Empty, Hostile}

// TestRange is the only address range a test LAN may use: 198.18.0.0/15,
// reserved for benchmarking (RFC 2544).
var TestRange = netip.MustParsePrefix("198.18.0.0/15")

// TestRange6 is the only IPv6 range a test LAN may use: 2001:db8::/32,
// reserved for documentation (RFC 3849), which no network routes.
var TestRange6 = netip.MustParsePrefix("2001:db8::/32")

// HostSpec describes one host.
type HostSpec struct {
	Role Role `json:"role" yaml:"role"`
	// Name is the host's hostname; default h<index>, e.g. h007.
	Name string `json:"name,omitempty" yaml:"name,omitempty"`
	// Addr is the host's address; default: spread over the prefix.
	Addr netip.Addr `json:"addr,omitzero" yaml:"addr,omitempty"`
	// Loss is the percentage of incoming ARP and TCP packets the host
	// drops (nftables numgen random).
	Loss   int               `json:"loss,omitempty" yaml:"loss,omitempty"`
	Labels map[string]string `json:"labels,omitempty" yaml:"labels,omitempty"`
	// Duplicate lets Addr be another host's address on purpose: an
	// address conflict.
	Duplicate bool `json:"duplicate,omitempty" yaml:"duplicate,omitempty"`
	// Sandbox runs an agent as the systemd unit would, as far as that is
	// possible without systemd: as the user nobody, with no capability
	// (none in any set, bounding included) and no_new_privs.
	Sandbox bool `json:"sandbox,omitempty" yaml:"sandbox,omitempty"`
	// Facts are what a Hostile host answers; nil means HostileFacts.
	Facts *proto.Facts `json:"facts,omitempty" yaml:"facts,omitempty"`
	// DropUDP makes the host's firewall drop the agent port on UDP
	// silently: an agent there answers no discovery query.
	DropUDP bool `json:"drop_udp,omitempty" yaml:"drop_udp,omitempty"`
	// DropTCP makes an agent host's firewall drop the agent port on TCP
	// silently: the agent answers discovery, and no connection.
	DropTCP bool `json:"drop_tcp,omitempty" yaml:"drop_tcp,omitempty"`
	// Delay is the round trip the host's link adds: its frames go through
	// a relay that holds each for half of it, each way, as a distant or
	// sleepy host's would be (this kernel has no netem).
	Delay time.Duration `json:"delay,omitempty" yaml:"delay,omitempty"`
	// Churn makes a Hostile host use a new identity key for every
	// connection, as an agent that wants to flood an inventory would.
	Churn bool `json:"churn,omitempty" yaml:"churn,omitempty"`
	// IPv6 gives the host an address on the LAN's Prefix6 as well:
	// Addr6, by default the host's offset in Prefix put in Prefix6
	// (198.18.48.5 of a /24 is 2001:db8:48::5 of 2001:db8:48::/64).
	IPv6 bool `json:"ipv6,omitempty" yaml:"ipv6,omitempty"`
	// Addr6 is the host's IPv6 address; setting it implies IPv6.
	Addr6 netip.Addr `json:"addr6,omitzero" yaml:"addr6,omitempty"`
	// NoIPv4 makes an IPv6-only host (IPv6 implied): Addr stays unset,
	// and the host has no IPv4 address at all, only the IPv6 one and its
	// link-local address.
	NoIPv4 bool `json:"no_ipv4,omitempty" yaml:"no_ipv4,omitempty"`
}

// Spec describes a LAN.
type Spec struct {
	// Name is short ([a-z0-9]{1,8}); every namespace of the LAN is called
	// ifl-<name>-<host>, and a LAN is torn down by its name.
	Name   string       `json:"name" yaml:"name"`
	Prefix netip.Prefix `json:"prefix" yaml:"prefix"`
	// Prefix6, if set, is the LAN's IPv6 prefix: a /64 inside
	// TestRange6. The router and the controller get addresses on it
	// (::1 and ::2), and so do the hosts that ask for IPv6.
	Prefix6 netip.Prefix `json:"prefix6,omitzero" yaml:"prefix6,omitempty"`
	Port    int          `json:"port" yaml:"port"` // the agent port
	Hosts   []HostSpec   `json:"hosts" yaml:"hosts"`
	// Responder, if set, answers for many more hosts than namespaces
	// can be, from one process (see ResponderSpec).
	Responder *ResponderSpec `json:"responder,omitempty" yaml:"responder,omitempty"`
}

// Mix returns n hosts of each role in counts, in a fixed pseudo-random
// order, so that roles are mixed over the prefix the same way every run.
func Mix(counts map[Role]int, seed uint64) []HostSpec {
	var hosts []HostSpec
	for _, r := range roles {
		for range counts[r] {
			hosts = append(hosts, HostSpec{Role: r})
		}
	}
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	rng.Shuffle(len(hosts), func(i, j int) { hosts[i], hosts[j] = hosts[j], hosts[i] })
	return hosts
}

var nameRE = regexp.MustCompile(`^[a-z0-9]{1,8}$`)

// resolve checks the spec and fills in names and addresses. The router takes
// the first usable address and the controller the second; hosts without
// an address are spread evenly over the rest. With Prefix6, a host's IPv6
// address is by default its IPv4 address's offset put in Prefix6; an
// IPv6-only host takes a slot of the spread all the same, for that offset,
// and then gives its IPv4 address up.
func (s *Spec) resolve() (router, controller netip.Addr, err error) {
	free, err := s.checkLAN()
	if err != nil {
		return router, controller, err
	}
	r := s.startResolve(free)
	for i := range s.Hosts {
		if err := r.host(i); err != nil {
			return r.router, r.controller, err
		}
	}
	r.spread()
	if err := r.fill6(); err != nil {
		return r.router, r.controller, err
	}
	return r.router, r.controller, nil
}

// checkLAN checks the spec's name, prefixes, port and number of hosts,
// and returns how many addresses the hosts have to share.
func (s *Spec) checkLAN() (free int, err error) {
	if !nameRE.MatchString(s.Name) {
		return 0, fmt.Errorf("testnet: name %q: want 1 to 8 of [a-z0-9]", s.Name)
	}
	if !s.Prefix.IsValid() || !s.Prefix.Addr().Is4() || s.Prefix.Bits() < TestRange.Bits() || s.Prefix.Bits() > 29 || !TestRange.Contains(s.Prefix.Addr()) {
		return 0, fmt.Errorf("testnet: prefix %v: want an IPv4 prefix from /15 to /29 inside %v", s.Prefix, TestRange)
	}
	s.Prefix = s.Prefix.Masked()
	if s.Prefix6 != (netip.Prefix{}) {
		if !s.Prefix6.IsValid() || !s.Prefix6.Addr().Is6() || s.Prefix6.Addr().Is4In6() || s.Prefix6.Bits() != 64 || !TestRange6.Contains(s.Prefix6.Addr()) {
			return 0, fmt.Errorf("testnet: prefix6 %v: want a /64 inside %v (documentation addresses, which nothing routes)", s.Prefix6, TestRange6)
		}
		s.Prefix6 = s.Prefix6.Masked()
	}
	if s.Port < 1024 || s.Port > 65535 {
		return 0, fmt.Errorf("testnet: port %d: want 1024-65535", s.Port)
	}
	size := 1 << (32 - s.Prefix.Bits())
	usable := size - 2
	free = usable - 2
	if len(s.Hosts) > free {
		return 0, fmt.Errorf("testnet: %d hosts do not fit in %v (room for %d)", len(s.Hosts), s.Prefix, free)
	}
	if len(s.Hosts) > 1000 {
		// The kernel's neighbour table (gc_thresh3 = 1024) is shared by
		// every namespace.
		return 0, fmt.Errorf("testnet: %d hosts: at most 1000 fit in the kernel's neighbour table", len(s.Hosts))
	}
	return free, nil
}

// resolving is the state of one resolve, once the LAN itself is checked.
type resolving struct {
	s                  *Spec
	router, controller netip.Addr
	free               int // addresses for the hosts
	// taken and taken6 are the addresses given so far.
	taken, taken6 map[netip.Addr]bool
	names         map[string]bool
}

// startResolve gives the router and the controller their addresses.
func (s *Spec) startResolve(free int) *resolving {
	first := s.Prefix.Addr().Next()
	r := &resolving{s: s, router: first, controller: first.Next(), free: free, names: map[string]bool{}}
	r.taken = map[netip.Addr]bool{r.router: true, r.controller: true}
	r.taken6 = map[netip.Addr]bool{}
	if s.Prefix6.IsValid() {
		r.taken6[s.Prefix6.Addr()] = true // the subnet-router anycast address
		r.taken6[s.addr6(r.router)] = true
		r.taken6[s.addr6(r.controller)] = true
	}
	return r
}

// host checks host i, names it, and takes the addresses it was given.
func (r *resolving) host(i int) error {
	h := &r.s.Hosts[i]
	if err := h.check(i); err != nil {
		return err
	}
	if err := r.name(i, h); err != nil {
		return err
	}
	return r.claim(h)
}

// check checks the role, loss and delay of host i.
func (h *HostSpec) check(i int) error {
	found := false
	for _, r := range roles {
		found = found || h.Role == r
	}
	if !found {
		return fmt.Errorf("testnet: host %d: role %q: want one of %v", i, h.Role, roles)
	}
	if h.Loss < 0 || h.Loss > 100 {
		return fmt.Errorf("testnet: host %d: loss %d%%: want 0-100", i, h.Loss)
	}
	if h.Delay < 0 || h.Delay > 2*time.Second || (h.Delay > 0 && h.Role == Empty) {
		return fmt.Errorf("testnet: host %d: delay %v: want 0 to 2s, on a host that is there", i, h.Delay)
	}
	return nil
}

// name gives host i its default name, and checks it is the only one of
// that name.
func (r *resolving) name(i int, h *HostSpec) error {
	if h.Name == "" {
		h.Name = fmt.Sprintf("h%03d", i+1)
	}
	if r.names[h.Name] {
		return fmt.Errorf("testnet: host name %q used twice", h.Name)
	}
	if h.Name == "network" || h.Name == "wrong" {
		// Its key file would be the LAN's key of that name.
		return fmt.Errorf("testnet: host name %q is the name of one of the LAN's key files", h.Name)
	}
	r.names[h.Name] = true
	return nil
}

// claim checks the addresses the host was given and takes them.
func (r *resolving) claim(h *HostSpec) error {
	s := r.s
	h.IPv6 = h.IPv6 || h.NoIPv4 || h.Addr6.IsValid()
	if h.IPv6 && !s.Prefix6.IsValid() {
		return fmt.Errorf("testnet: host %s: IPv6 needs the LAN's prefix6", h.Name)
	}
	if h.NoIPv4 && h.Addr.IsValid() {
		return fmt.Errorf("testnet: host %s: address %v on an IPv6-only host (no_ipv4)", h.Name, h.Addr)
	}
	if h.Addr.IsValid() {
		if !s.Prefix.Contains(h.Addr) || (r.taken[h.Addr] && !h.Duplicate) {
			return fmt.Errorf("testnet: host %s: address %v is outside %v or taken", h.Name, h.Addr, s.Prefix)
		}
		r.taken[h.Addr] = true
	}
	if h.Addr6.IsValid() {
		if !s.Prefix6.Contains(h.Addr6) || h.Addr6.Zone() != "" || (r.taken6[h.Addr6] && !h.Duplicate) {
			return fmt.Errorf("testnet: host %s: IPv6 address %v is outside %v or taken", h.Name, h.Addr6, s.Prefix6)
		}
		r.taken6[h.Addr6] = true
	}
	return nil
}

// spread gives the hosts without an address one. Spread: host i of n
// gets the middle of the i-th of n equal slices of the free addresses,
// skipping any taken explicitly.
func (r *resolving) spread() {
	s := r.s
	n := len(s.Hosts)
	for i := range s.Hosts {
		h := &s.Hosts[i]
		if h.Addr.IsValid() {
			continue
		}
		off := (2*i + 1) * r.free / (2 * n)
		a := nth(r.controller, off+1)
		for r.taken[a] {
			a = a.Next()
			if !s.Prefix.Contains(a) || a == last(s.Prefix) {
				a = r.controller.Next()
			}
		}
		h.Addr = a
		r.taken[a] = true
	}
}

// fill6 gives the IPv6 hosts without an IPv6 address the one at their
// IPv4 address's offset, and takes the IPv4 address of the IPv6-only
// ones back.
func (r *resolving) fill6() error {
	s := r.s
	for i := range s.Hosts {
		h := &s.Hosts[i]
		if h.IPv6 && !h.Addr6.IsValid() {
			a := s.addr6(h.Addr)
			if r.taken6[a] && !h.Duplicate {
				return fmt.Errorf("testnet: host %s: IPv6 address %v, from its IPv4 address, is taken: give it addr6", h.Name, a)
			}
			h.Addr6 = a
			r.taken6[a] = true
		}
		if h.NoIPv4 {
			h.Addr = netip.Addr{}
		}
	}
	return nil
}

// addr6 returns the address of Prefix6 at a's offset in Prefix.
func (s *Spec) addr6(a netip.Addr) netip.Addr {
	b := s.Prefix6.Addr().As16()
	binary.BigEndian.PutUint32(b[12:], u32(a)-u32(s.Prefix.Addr()))
	return netip.AddrFrom16(b)
}

func u32(a netip.Addr) uint32 {
	b := a.As4()
	return binary.BigEndian.Uint32(b[:])
}

func nth(a netip.Addr, n int) netip.Addr {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], u32(a)+uint32(n))
	return netip.AddrFrom4(b)
}

func last(p netip.Prefix) netip.Addr {
	return nth(p.Addr(), (1<<(32-p.Bits()))-1)
}

// mac returns the MAC address of the host at a: 02:18 followed by the four
// bytes of the address, so a MAC names its IP in every capture; for an
// IPv6 address, 02:20 followed by its last four bytes.
func mac(a netip.Addr) string {
	if a.Is6() {
		b := a.As16()
		return fmt.Sprintf("02:20:%02x:%02x:%02x:%02x", b[12], b[13], b[14], b[15])
	}
	b := a.As4()
	return fmt.Sprintf("02:18:%02x:%02x:%02x:%02x", b[0], b[1], b[2], b[3])
}

// linkLocal returns the link-local address the kernel makes from a MAC
// with EUI-64 (RFC 4291 appendix A), the mode the LAN's links are set to.
func linkLocal(mac string) netip.Addr {
	hw, err := net.ParseMAC(mac)
	if err != nil || len(hw) != 6 {
		return netip.Addr{}
	}
	b := [16]byte{0: 0xfe, 1: 0x80}
	copy(b[8:], []byte{hw[0] ^ 0x02, hw[1], hw[2], 0xff, 0xfe, hw[3], hw[4], hw[5]})
	return netip.AddrFrom16(b)
}
