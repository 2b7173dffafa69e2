package inventory

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Unsafe is a string an agent chose, handed to Ansible marked unsafe so
// that Ansible never templates it: in JSON {"__ansible_unsafe": "..."},
// which Ansible's JSON loader reads back as an unsafe string, and in
// YAML with the !unsafe tag. Any managed host may be compromised, and
// "{{ lookup('pipe', ...) }}" in a fact would otherwise run on the
// control node as soon as a playbook used the variable.
type Unsafe string

// MarshalJSON wraps the string.
func (u Unsafe) MarshalJSON() ([]byte, error) {
	return json.Marshal(map[string]string{"__ansible_unsafe": string(u)})
}

func unsafeList(s []string) []Unsafe {
	out := make([]Unsafe, len(s))
	for i, v := range s {
		out[i] = Unsafe(v)
	}
	return out
}

// Ansible is the inventory in the shape of Ansible's dynamic inventory
// script protocol (ansible-inventory --list): groups with their hosts,
// and every host's variables under _meta.hostvars, so that Ansible runs
// the script once per run, never once per host.
type Ansible struct {
	Groups   map[string][]string       // group → inventory names, sorted
	HostVars map[string]map[string]any // inventory name → variables
}

// BuildAnsible renders the state. A host is in ifl_all, in a group
// <key>_<value> for each of its labels (GroupName), and in ifl_stale if
// it was last seen more than staleAfter before now. Its inventory name is
// the one ifl gave it (names.go). Its ansible_host is a verified address,
// of the family prefer names if it has one (Host.Address), never one it
// only reported; ifl_verified_addresses lists them all. The ansible_*
// variables and those ifl computed (identity, machine-id hash, verified
// addresses, port, times, stale) are plain; every string an agent chose
// is Unsafe, label keys excepted: they are checked (labels.go) and cannot
// hold a template. The state is input too (whoever may write the file
// may write anything in it): the values ifl computed are plain only when
// they are what ifl writes (an identity of hex digits, addresses that
// parse), and otherwise Unsafe as well.
func (s *State) BuildAnsible(now time.Time, staleAfter time.Duration, prefer Prefer) *Ansible {
	inv := &Ansible{Groups: map[string][]string{"ifl_all": {}, "ifl_stale": {}}, HostVars: map[string]map[string]any{}}
	// Members of each label group, to add each host to a group once
	// without a pass over the group.
	member := map[string]map[string]bool{}
	for name, h := range s.Names() {
		stale := now.Sub(h.LastSeen) > staleAfter
		// A state written before labels were checked may hold bad
		// ones; they were warned about when they were applied.
		lbl, _ := checkLabels(h.Labels)
		labels := make(map[string]Unsafe, len(lbl))
		for k, v := range lbl {
			labels[k] = Unsafe(v)
		}
		var host, identity, verified any = h.Address(prefer), h.Identity, nil
		if host == "" {
			host = Unsafe(h.IP)
		}
		if !hexOnly(h.Identity) {
			identity = Unsafe(h.Identity)
		}
		if vs, ok := h.VerifiedAddresses(); ok {
			verified = vs
		} else {
			verified = unsafeList(vs)
		}
		vars := map[string]any{
			"ansible_host":           host,
			"ifl_verified_addresses": verified,
			"ifl_identity":           identity,
			"ifl_hostname":           Unsafe(h.Hostname),
			"ifl_machine_id_hash":    h.MachineIDHash(),
			"ifl_addresses":          unsafeList(h.Addresses),
			"ifl_macs":               unsafeList(h.MACs),
			"ifl_os":                 Unsafe(h.OS),
			"ifl_kernel":             Unsafe(h.Kernel),
			"ifl_agent_version":      Unsafe(h.AgentVersion),
			"ifl_gateway":            Unsafe(h.Gateway),
			"ifl_labels":             labels,
			"ifl_port":               h.Port,
			"ifl_first_seen":         h.FirstSeen.UTC().Format(time.RFC3339),
			"ifl_last_seen":          h.LastSeen.UTC().Format(time.RFC3339),
			"ifl_stale":              stale,
		}
		inv.HostVars[name] = vars
		inv.Groups["ifl_all"] = append(inv.Groups["ifl_all"], name)
		if stale {
			inv.Groups["ifl_stale"] = append(inv.Groups["ifl_stale"], name)
		}
		for k, v := range lbl {
			g := GroupName(k, v)
			if member[g] == nil {
				member[g] = map[string]bool{}
			}
			if !member[g][name] {
				member[g][name] = true
				inv.Groups[g] = append(inv.Groups[g], name)
			}
		}
	}
	for g := range inv.Groups {
		sort.Strings(inv.Groups[g])
	}
	return inv
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
// 10:22:33:44:55:56 for a number, or "yes" for a boolean; what an agent
// chose is tagged !unsafe.
func (a *Ansible) YAML() ([]byte, error) {
	str := func(s string) *yaml.Node {
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s, Style: yaml.DoubleQuotedStyle}
	}
	// !unsafe marks what an agent chose, as Ansible's YAML loader reads
	// it. Invalid UTF-8 becomes U+FFFD, as in the JSON inventory: a YAML
	// stream is text.
	unsafe := func(s Unsafe) *yaml.Node {
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!unsafe", Value: strings.ToValidUTF8(string(s), "\uFFFD"), Style: yaml.DoubleQuotedStyle}
	}
	value := func(v any) *yaml.Node {
		switch v := v.(type) {
		case string:
			return str(v)
		case Unsafe:
			return unsafe(v)
		case bool:
			return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: fmt.Sprint(v)}
		case int:
			return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: fmt.Sprint(v)}
		case []Unsafe:
			n := &yaml.Node{Kind: yaml.SequenceNode, Style: yaml.FlowStyle}
			for _, s := range v {
				n.Content = append(n.Content, unsafe(s))
			}
			return n
		case []string:
			n := &yaml.Node{Kind: yaml.SequenceNode, Style: yaml.FlowStyle}
			for _, s := range v {
				n.Content = append(n.Content, str(s))
			}
			return n
		case map[string]Unsafe:
			n := &yaml.Node{Kind: yaml.MappingNode}
			keys := make([]string, 0, len(v))
			for k := range v {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				n.Content = append(n.Content, str(k), unsafe(v[k]))
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
