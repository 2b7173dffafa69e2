package inventory

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Group names Ansible accepts without a warning.
var groupUnsafe = regexp.MustCompile(`[^A-Za-z0-9_]`)

// GroupName turns a label value into an Ansible group name: characters
// other than [A-Za-z0-9_] become _, and a leading digit gets a _ before it.
func GroupName(s string) string {
	g := groupUnsafe.ReplaceAllString(s, "_")
	if g == "" || (g[0] >= '0' && g[0] <= '9') {
		g = "_" + g
	}
	return g
}

// Ansible is the inventory in the shape of Ansible's dynamic inventory
// script protocol (ansible-inventory --list): groups with their hosts,
// and every host's variables under _meta.hostvars, so that Ansible runs
// the script once per run, never once per host.
type Ansible struct {
	Groups   map[string][]string       // group → inventory names, sorted
	HostVars map[string]map[string]any // inventory name → variables
}

// BuildAnsible renders the state. A host is in ifl_all, in a group named
// after each of its label values, and in ifl_stale if it was last seen
// more than staleAfter before now. Its inventory name is its hostname; of
// hosts sharing a hostname, the one first seen keeps it and the others
// get "-" and the start of their identity appended, so names stay stable
// from run to run.
func (s *State) BuildAnsible(now time.Time, staleAfter time.Duration) *Ansible {
	inv := &Ansible{Groups: map[string][]string{"ifl_all": {}, "ifl_stale": {}}, HostVars: map[string]map[string]any{}}
	for name, h := range s.Names() {
		stale := now.Sub(h.LastSeen) > staleAfter
		vars := map[string]any{
			"ansible_host":        h.IP,
			"ifl_identity":        h.Identity,
			"ifl_hostname":        h.Hostname,
			"ifl_machine_id_hash": h.MachineIDHash(),
			"ifl_addresses":       nonNil(h.Addresses),
			"ifl_macs":            nonNil(h.MACs),
			"ifl_os":              h.OS,
			"ifl_kernel":          h.Kernel,
			"ifl_agent_version":   h.AgentVersion,
			"ifl_gateway":         h.Gateway,
			"ifl_labels":          labels(h.Labels),
			"ifl_port":            h.Port,
			"ifl_first_seen":      h.FirstSeen.UTC().Format(time.RFC3339),
			"ifl_last_seen":       h.LastSeen.UTC().Format(time.RFC3339),
			"ifl_stale":           stale,
		}
		inv.HostVars[name] = vars
		inv.Groups["ifl_all"] = append(inv.Groups["ifl_all"], name)
		if stale {
			inv.Groups["ifl_stale"] = append(inv.Groups["ifl_stale"], name)
		}
		for _, v := range h.Labels {
			g := GroupName(v)
			inv.Groups[g] = append(inv.Groups[g], name)
		}
	}
	for g := range inv.Groups {
		sort.Strings(inv.Groups[g])
	}
	return inv
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func labels(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

// Names returns every host under its inventory name.
func (s *State) Names() map[string]*Host {
	byName := map[string][]*Host{}
	for _, h := range s.Hosts {
		name := h.Hostname
		if name == "" {
			name = "ifl-" + h.Identity[:min(8, len(h.Identity))]
		}
		byName[name] = append(byName[name], h)
	}
	out := map[string]*Host{}
	for name, hs := range byName {
		sort.Slice(hs, func(i, j int) bool {
			if !hs[i].FirstSeen.Equal(hs[j].FirstSeen) {
				return hs[i].FirstSeen.Before(hs[j].FirstSeen)
			}
			return hs[i].Identity < hs[j].Identity
		})
		out[name] = hs[0]
		for _, h := range hs[1:] {
			out[name+"-"+h.Identity[:min(8, len(h.Identity))]] = h
		}
	}
	return out
}

// List is the answer to --list: {"group": {"hosts": [...]}, ...,
// "_meta": {"hostvars": {...}}}.
func (a *Ansible) List() map[string]any {
	out := map[string]any{}
	children := make([]string, 0, len(a.Groups))
	for g, hosts := range a.Groups {
		out[g] = map[string]any{"hosts": hosts}
		children = append(children, g)
	}
	sort.Strings(children)
	out["all"] = map[string]any{"children": children}
	out["_meta"] = map[string]any{"hostvars": a.HostVars}
	return out
}

// Host is the answer to --host NAME: its variables; an unknown name is an
// error.
func (a *Ansible) Host(name string) (map[string]any, error) {
	v, ok := a.HostVars[name]
	if !ok {
		return nil, fmt.Errorf("inventory: no host %q (known: %s)", name, strings.Join(a.Groups["ifl_all"], ", "))
	}
	return v, nil
}

// YAML renders a static YAML inventory for ansible -i FILE. Every string
// is quoted, so that YAML 1.1 readers (Ansible's) never take a MAC such as
// 10:22:33:44:55:56 for a number, or "yes" for a boolean.
func (a *Ansible) YAML() ([]byte, error) {
	str := func(s string) *yaml.Node {
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s, Style: yaml.DoubleQuotedStyle}
	}
	value := func(v any) *yaml.Node {
		switch v := v.(type) {
		case string:
			return str(v)
		case bool:
			return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: fmt.Sprint(v)}
		case int:
			return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: fmt.Sprint(v)}
		case []string:
			n := &yaml.Node{Kind: yaml.SequenceNode, Style: yaml.FlowStyle}
			for _, s := range v {
				n.Content = append(n.Content, str(s))
			}
			return n
		case map[string]string:
			n := &yaml.Node{Kind: yaml.MappingNode}
			keys := make([]string, 0, len(v))
			for k := range v {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				n.Content = append(n.Content, str(k), str(v[k]))
			}
			return n
		}
		return str(fmt.Sprint(v))
	}
	mapping := func(kv ...*yaml.Node) *yaml.Node { return &yaml.Node{Kind: yaml.MappingNode, Content: kv} }

	groups := make([]string, 0, len(a.Groups))
	for g := range a.Groups {
		groups = append(groups, g)
	}
	sort.Strings(groups)
	children := mapping()
	for _, g := range groups {
		hosts := mapping()
		for _, name := range a.Groups[g] {
			if g != "ifl_all" {
				hosts.Content = append(hosts.Content, str(name), mapping())
				continue
			}
			vars := a.HostVars[name]
			keys := make([]string, 0, len(vars))
			for k := range vars {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			hv := mapping()
			for _, k := range keys {
				hv.Content = append(hv.Content, str(k), value(vars[k]))
			}
			hosts.Content = append(hosts.Content, str(name), hv)
		}
		children.Content = append(children.Content, str(g), mapping(str("hosts"), hosts))
	}
	doc := mapping(str("all"), mapping(str("children"), children))
	return yaml.Marshal(&yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{doc}})
}
