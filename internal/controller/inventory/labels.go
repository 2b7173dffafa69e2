package inventory

import (
	"regexp"
	"sort"
	"strings"
	"unicode/utf8"
)

// Label bounds. The key rule is the agent's own (agent/config.go); the
// controller checks it again because an agent may be hostile.
const (
	MaxLabels     = 64
	MaxLabelKey   = 64
	MaxLabelValue = 128
)

// groupUnsafe is what groupChars makes "_", as a pattern for the tests.
var groupUnsafe = regexp.MustCompile(`[^A-Za-z0-9_]`)

// validLabelKey is the agent's rule for a label key: 1 to 64 of
// [A-Za-z0-9_.-].
func validLabelKey(k string) bool {
	if k == "" || len(k) > MaxLabelKey {
		return false
	}
	for i := 0; i < len(k); i++ {
		if c := k[i]; !(groupChar(c) || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

func groupChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_'
}

// groupChars appends s to b with every rune (or invalid byte) but
// [A-Za-z0-9_] made "_".
func groupChars(b []byte, s string) []byte {
	for i := 0; i < len(s); {
		if groupChar(s[i]) {
			b = append(b, s[i])
			i++
			continue
		}
		_, n := utf8.DecodeRuneInString(s[i:])
		b = append(b, '_')
		i += n
	}
	return b
}

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
		case !validLabelKey(k):
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

// keptLabels is checkLabels' kept labels: m itself when it keeps them
// all, as it does for every state ifl wrote.
func keptLabels(m map[string]string) map[string]string {
	if allKept(m) {
		if len(m) == 0 {
			return nil
		}
		return m
	}
	kept, _ := checkLabels(m)
	return kept
}

// allKept reports whether checkLabels keeps every label of m as it is.
func allKept(m map[string]string) bool {
	if len(m) > MaxLabels {
		return false
	}
	for k, v := range m {
		if !validLabelKey(k) || reservedKey(k) || strings.HasPrefix(k, "__") || v == "" || len(v) > MaxLabelValue || !utf8.ValidString(v) {
			return false
		}
	}
	return true
}

func reservedKey(k string) bool {
	// A key is ifl's when its group name, in lower case, is ifl or
	// starts with ifl_: only the first four runes count.
	var buf [16]byte
	g := groupChars(buf[:0], k[:min(len(k), 16)])
	if len(g) < 3 || len(g) > 3 && g[3] != '_' {
		return false
	}
	return strings.EqualFold(string(g[:3]), "ifl")
}

// GroupName is the Ansible group of a label, as keyed_groups names it:
// key and value joined by "_", characters other than [A-Za-z0-9_] made
// "_", and a "_" in front of a leading digit (Ansible warns about group
// names that start with one). role: web is role_web, env: 123 env_123.
func GroupName(key, value string) string {
	b := make([]byte, 1, 1+len(key)+1+len(value))
	b[0] = '_'
	b = groupChars(b, key)
	b = append(b, '_')
	b = groupChars(b, value)
	if b[1] >= '0' && b[1] <= '9' {
		return string(b)
	}
	return string(b[1:])
}
