package agent

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"regexp"
	"sort"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// DefaultPort is the agent's TCP port when neither the config nor a flag
// names one. It is unassigned by IANA and clear of common services.
const DefaultPort = 7440

// Default paths.
const (
	DefaultConfigPath  = "/etc/ifl/agent.yaml"
	DefaultNetworkKey  = "/etc/ifl/network.key"
	DefaultIdentityKey = "/etc/ifl/agent.key" // beside the network key, where the unit's credentials come from
)

// Config is the agent's configuration file, /etc/ifl/agent.yaml:
//
//	listen: 0.0.0.0            # address to listen on; default: all
//	port: 7440                 # TCP port, 1024-65535
//	network_keys:              # accepted network keys; the first is current
//	  - /etc/ifl/network.key
//	identity_key: /etc/ifl/agent.key   # created on first start
//	labels: {role: web, site: paris}       # become Ansible groups
//	handshake_timeout: 5s
//	idle_timeout: 30s
//	max_connections: 64
//	max_pending: 128
//	max_failures_per_minute: 30
//	discovery: true            # answer broadcast queries on UDP at the port
//	controllers: [ctl.example.org, 198.18.0.2:7441]  # where to announce address changes
//	log_level: info            # debug, info, warn, error
type Config struct {
	Listen           string
	Port             int // 0: not set
	NetworkKeys      []string
	IdentityKey      string
	Labels           map[string]string
	HandshakeTimeout time.Duration
	IdleTimeout      time.Duration
	MaxConnections   int
	MaxPending       int
	MaxFailures      int
	// NoDiscovery turns off the UDP listener that answers discovery
	// queries (discovery: false).
	NoDiscovery bool
	// Controllers are where the agent announces its address changes,
	// besides the controllers that verified it recently: host names or
	// addresses, each with a UDP port or proto.DefaultAnnouncePort.
	Controllers []string
	LogLevel    string
}

// field describes one config key: its help for errors, and how to store it.
type field struct {
	allowed string
	set     func(c *Config, n *yaml.Node) error
}

var labelName = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

var fields = map[string]field{
	"listen": {"an IP address such as 0.0.0.0, :: or 198.18.0.5", func(c *Config, n *yaml.Node) error {
		if _, err := netip.ParseAddr(n.Value); err != nil || n.Kind != yaml.ScalarNode {
			return errors.New("bad")
		}
		c.Listen = n.Value
		return nil
	}},
	"port": {"a TCP port from 1024 to 65535", func(c *Config, n *yaml.Node) error {
		var p int
		if err := n.Decode(&p); err != nil || p < 1024 || p > 65535 {
			return errors.New("bad")
		}
		c.Port = p
		return nil
	}},
	"network_keys": {"a list of key file paths", func(c *Config, n *yaml.Node) error {
		var v []string
		if err := n.Decode(&v); err != nil || len(v) == 0 {
			return errors.New("bad")
		}
		c.NetworkKeys = v
		return nil
	}},
	"identity_key": {"a file path", func(c *Config, n *yaml.Node) error {
		if n.Kind != yaml.ScalarNode || n.Value == "" {
			return errors.New("bad")
		}
		c.IdentityKey = n.Value
		return nil
	}},
	"labels": {"a map of names ([A-Za-z0-9_.-]) to strings", func(c *Config, n *yaml.Node) error {
		var v map[string]string
		if err := n.Decode(&v); err != nil {
			return errors.New("bad")
		}
		for k := range v {
			if !labelName.MatchString(k) {
				return fmt.Errorf("bad label name %q", k)
			}
		}
		c.Labels = v
		return nil
	}},
	"handshake_timeout":       {"a duration such as 5s", durationField(func(c *Config) *time.Duration { return &c.HandshakeTimeout })},
	"idle_timeout":            {"a duration such as 30s", durationField(func(c *Config) *time.Duration { return &c.IdleTimeout })},
	"max_connections":         {"a number from 1 to 65536", intField(func(c *Config) *int { return &c.MaxConnections })},
	"max_pending":             {"a number from 1 to 65536", intField(func(c *Config) *int { return &c.MaxPending })},
	"max_failures_per_minute": {"a number from 1 to 65536", intField(func(c *Config) *int { return &c.MaxFailures })},
	"discovery": {"true or false", func(c *Config, n *yaml.Node) error {
		var v bool
		if n.Kind != yaml.ScalarNode || n.Decode(&v) != nil {
			return errors.New("bad")
		}
		c.NoDiscovery = !v
		return nil
	}},
	"controllers": {fmt.Sprintf("a list of at most %d host names or unicast addresses, each with a port or not (ctl.example.org, 198.18.0.2:7441, [2001:db8::2]:7441)", MaxControllers), func(c *Config, n *yaml.Node) error {
		var v []string
		if err := n.Decode(&v); err != nil || len(v) > MaxControllers {
			return errors.New("bad")
		}
		for _, s := range v {
			if _, _, err := SplitController(s); err != nil {
				return err
			}
		}
		c.Controllers = v
		return nil
	}},
	"log_level": {"debug, info, warn or error", func(c *Config, n *yaml.Node) error {
		switch n.Value {
		case "debug", "info", "warn", "error":
			c.LogLevel = n.Value
			return nil
		}
		return errors.New("bad")
	}},
}

func durationField(p func(*Config) *time.Duration) func(*Config, *yaml.Node) error {
	return func(c *Config, n *yaml.Node) error {
		d, err := time.ParseDuration(n.Value)
		if err != nil || d <= 0 || n.Kind != yaml.ScalarNode {
			return errors.New("bad")
		}
		*p(c) = d
		return nil
	}
}

func intField(p func(*Config) *int) func(*Config, *yaml.Node) error {
	return func(c *Config, n *yaml.Node) error {
		var v int
		if err := n.Decode(&v); err != nil || v < 1 || v > 65536 {
			return errors.New("bad")
		}
		*p(c) = v
		return nil
	}
}

func allowedKeys() string {
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return strings.Join(keys, ", ")
}

// LoadConfig reads a config file. A missing file is not an error when
// optional is set (the defaults apply); every other problem is, naming the
// file, the line, the key and what it allows.
func LoadConfig(path string, optional bool) (*Config, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) && optional {
		return &Config{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return ParseConfig(path, b)
}

// ParseConfig parses the YAML in b; name is used in errors.
func ParseConfig(name string, b []byte) (*Config, error) {
	c := &Config{}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("%s: %v", name, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	if len(doc.Content) == 0 {
		return c, nil // empty file
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%s: line %d: the file must be a map of keys (allowed: %s)", name, root.Line, allowedKeys())
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		f, ok := fields[k.Value]
		if !ok {
			return nil, fmt.Errorf("%s: line %d: unknown key %q (allowed: %s)", name, k.Line, k.Value, allowedKeys())
		}
		if seen[k.Value] {
			return nil, fmt.Errorf("%s: line %d: key %q given twice", name, k.Line, k.Value)
		}
		seen[k.Value] = true
		if err := f.set(c, v); err != nil {
			detail := ""
			if err.Error() != "bad" {
				detail = err.Error() + "; "
			}
			return nil, fmt.Errorf("%s: line %d: %s: %sbad value %q (allowed: %s)", name, v.Line, k.Value, detail, nodeText(v), f.allowed)
		}
	}
	return c, nil
}

func nodeText(n *yaml.Node) string {
	if n.Kind == yaml.ScalarNode {
		return n.Value
	}
	b, _ := yaml.Marshal(n)
	return strings.TrimSpace(string(b))
}
