package proto

import (
	"net/netip"
	"time"
)

// Facts describes an agent's host. Field names are the JSON (and YAML)
// keys on the wire; unknown keys are ignored by readers, so later versions
// can add facts.
type Facts struct {
	Hostname      string            `json:"hostname" yaml:"hostname"`
	MachineID     string            `json:"machine_id" yaml:"machine_id"`
	OS            OSRelease         `json:"os" yaml:"os"`
	Kernel        string            `json:"kernel" yaml:"kernel"`
	UptimeSeconds int64             `json:"uptime_seconds" yaml:"uptime_seconds"`
	AgentVersion  string            `json:"agent_version" yaml:"agent_version"`
	Interfaces    []Interface       `json:"interfaces" yaml:"interfaces"`
	DefaultRoutes []Route           `json:"default_routes" yaml:"default_routes"`
	Labels        map[string]string `json:"labels,omitempty" yaml:"labels,omitempty"`
	Time          time.Time         `json:"time" yaml:"time"` // the agent's clock when it answered
	// Truncated is set when the agent left facts out so that its answer
	// fits in one frame; nil means nothing is missing.
	Truncated *Truncated `json:"truncated,omitempty" yaml:"truncated,omitempty"`
}

// Truncated counts what an agent left out of its facts to fit them in one
// frame (MaxMessage). The lists that remain are in their usual order, with
// the left-out entries removed.
type Truncated struct {
	Interfaces int `json:"interfaces,omitempty" yaml:"interfaces,omitempty"` // interfaces left out
	Labels     int `json:"labels,omitempty" yaml:"labels,omitempty"`         // labels left out
}

// OSRelease holds the os-release(5) fields that identify a system.
type OSRelease struct {
	ID         string `json:"id" yaml:"id"`
	VersionID  string `json:"version_id,omitempty" yaml:"version_id,omitempty"`
	PrettyName string `json:"pretty_name" yaml:"pretty_name"`
}

// Interface is one network interface.
type Interface struct {
	Name  string   `json:"name" yaml:"name"`
	MAC   string   `json:"mac,omitempty" yaml:"mac,omitempty"`
	MTU   int      `json:"mtu" yaml:"mtu"`
	Flags []string `json:"flags" yaml:"flags"`
	Addrs []string `json:"addrs" yaml:"addrs"` // CIDR notation, e.g. 198.18.0.5/24
}

// Route is a default route.
type Route struct {
	Family    string `json:"family" yaml:"family"` // "inet" or "inet6"
	Gateway   string `json:"gateway,omitempty" yaml:"gateway,omitempty"`
	Interface string `json:"interface,omitempty" yaml:"interface,omitempty"`
}

// Gateway returns the IPv4 default gateway, or "" if there is none.
func (f *Facts) Gateway() string {
	for _, r := range f.DefaultRoutes {
		if r.Family == "inet" && r.Gateway != "" {
			return r.Gateway
		}
	}
	return ""
}

// Addresses returns every global-scope address of the host, without prefix
// length, loopback and link-local ones left out.
func (f *Facts) Addresses() []netip.Addr {
	var out []netip.Addr
	for _, ifc := range f.Interfaces {
		for _, a := range ifc.Addrs {
			p, err := netip.ParsePrefix(a)
			if err != nil {
				continue
			}
			ip := p.Addr()
			if ip.IsLoopback() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() {
				continue
			}
			out = append(out, ip)
		}
	}
	return out
}
