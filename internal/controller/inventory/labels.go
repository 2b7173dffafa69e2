package inventory

import (
	"regexp"
	"sort"
	"strings"
)

// Label bounds. The key rule is the agent's own (agent/config.go); the
// controller checks it again because an agent may be hostile.
const (
	MaxLabels     = 64
	MaxLabelKey   = 64
	MaxLabelValue = 128
)

var (
	labelKey    = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)
	groupUnsafe = regexp.MustCompile(`[^A-Za-z0-9_]`)
)

// DroppedLabel is a label the inventory did not keep, and why.
type DroppedLabel struct {
	Key    string `json:"key" yaml:"key"`
	Reason string `json:"reason" yaml:"reason"`
}

// checkLabels returns the labels the inventory keeps and those it drops.
// A key must match the agent's rule ([A-Za-z0-9_.-], 1 to 64 characters)
// and must not make a group of ifl's own (ifl, ifl_*, in any case) nor
// start with "__" (Ansible's own markers, __ansible_vault and the like); a
// value must be 1 to 128 bytes once invalid UTF-8 is made U+FFFD (as the
// state's JSON would make it: a value must read back as it was kept);
// past MaxLabels, in key order, labels are
// dropped. Group names are then <key>_<value>, always with a "_", so a
// label can never make all, ungrouped, _meta or a host's name.
func checkLabels(m map[string]string) (map[string]string, []DroppedLabel) {
	if len(m) == 0 {
		return nil, nil
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	kept := map[string]string{}
	var dropped []DroppedLabel
	for _, k := range keys {
		v := strings.ToValidUTF8(m[k], "\uFFFD")
		var why string
		switch {
		case !labelKey.MatchString(k):
			why = "bad key: want 1 to 64 of A-Z a-z 0-9 _ . -"
		case reservedKey(k):
			why = "reserved key: groups ifl_* are ifl's"
		case strings.HasPrefix(k, "__"):
			// Ansible's JSON loader takes an object with a key such as
			// __ansible_vault or __ansible_unsafe for a value of its
			// own, and would read the labels as that.
			why = "reserved key: __* are Ansible's"
		case v == "":
			why = "empty value"
		case len(v) > MaxLabelValue:
			why = "value longer than 128 bytes"
		case len(kept) == MaxLabels:
			why = "more than 64 labels"
		}
		if why != "" {
			dropped = append(dropped, DroppedLabel{Key: k, Reason: why})
			continue
		}
		kept[k] = v
	}
	if len(kept) == 0 {
		kept = nil
	}
	return kept, dropped
}

func reservedKey(k string) bool {
	g := strings.ToLower(groupUnsafe.ReplaceAllString(k, "_"))
	return g == "ifl" || strings.HasPrefix(g, "ifl_")
}

// GroupName is the Ansible group of a label, as keyed_groups names it:
// key and value joined by "_", characters other than [A-Za-z0-9_] made
// "_", and a "_" in front of a leading digit (Ansible warns about group
// names that start with one). role: web is role_web, env: 123 env_123.
func GroupName(key, value string) string {
	g := groupUnsafe.ReplaceAllString(key, "_") + "_" + groupUnsafe.ReplaceAllString(value, "_")
	if g[0] >= '0' && g[0] <= '9' {
		g = "_" + g
	}
	return g
}
