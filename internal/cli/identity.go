package cli

import (
	"fmt"
	"sort"
	"strings"

	"github.com/ifl-project/ifl/internal/controller/inventory"
)

// minIdentityPrefix is the shortest identity prefix ifl takes, as git
// takes abbreviated commits: 8 hex digits are 32 bits.
const minIdentityPrefix = 8

// identityPrefix checks an identity, or the start of one, as people copy
// it from a table (12 characters there), and returns it in lower case.
func identityPrefix(flag, s string) (string, error) {
	p := strings.ToLower(s)
	if len(p) < minIdentityPrefix || len(p) > 32 || strings.Trim(p, "0123456789abcdef") != "" {
		return "", fmt.Errorf("%s %q: want an identity, or its first %d to 32 hex digits", flag, s, minIdentityPrefix)
	}
	return p, nil
}

// hostByName finds a host of the inventory by its inventory name, or by
// the start of its identity (8 hex digits or more); a prefix that more
// than one identity starts with is an error that lists them.
func hostByName(st *inventory.State, q string) (*inventory.Host, error) {
	h, err := findHost(st, q)
	if h != nil || err != nil {
		return h, err
	}
	names := st.Names()
	known := make([]string, 0, len(names))
	for n := range names {
		known = append(known, n)
	}
	sort.Strings(known)
	// A fleet's every name would bury the message: the first few say
	// what names look like.
	if n := len(known) - maxKnownNames; n > 0 {
		known = append(known[:maxKnownNames], fmt.Sprintf("and %d more (ifl inventory lists them)", n))
	}
	return nil, fmt.Errorf("inventory: no host %q (known: %s; an identity's first %d hex digits or more also do)", q, strings.Join(known, ", "), minIdentityPrefix)
}

// maxKnownNames is the most names an error for a name that matches no
// host lists.
const maxKnownNames = 10

// findHost finds a host of the inventory by its inventory name, in any
// case, as the inventory compares names (web1 and WEB1 are one name), or
// by the start of its identity; nil and no error when none matches.
func findHost(st *inventory.State, q string) (*inventory.Host, error) {
	names := st.Names()
	if h, ok := names[q]; ok {
		return h, nil
	}
	for n, h := range names {
		if strings.EqualFold(n, q) {
			return h, nil
		}
	}
	p, err := identityPrefix("--host", q)
	if err != nil {
		return nil, nil
	}
	var found []*inventory.Host
	for _, h := range st.Hosts {
		if strings.HasPrefix(h.Identity, p) {
			found = append(found, h)
		}
	}
	switch len(found) {
	case 0:
		return nil, nil
	case 1:
		return found[0], nil
	}
	var c []string
	for _, h := range found {
		c = append(c, h.Identity+" ("+h.Name+")")
	}
	sort.Strings(c)
	return nil, fmt.Errorf("inventory: identity prefix %s is ambiguous: %s", p, strings.Join(c, ", "))
}
