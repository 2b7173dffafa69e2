package inventory

import (
	"bufio"
	"io"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf16"
	"unicode/utf8"
)

// WriteList and WriteHost print the answers to --list and --host as
// BuildAnsible, List and an indented encoding/json Encoder behind
// untrusted.JSONWriter print them, byte for byte (TestListingAsBefore),
// but host by host, without a map of every host's variables: for
// 100,000 hosts that map took more memory than the state, and its
// encoding most of the time.

// listing is what WriteList needs of the state: each host once, by
// name, and each group's members.
type listing struct {
	hosts  []*Host             // by name
	labels []map[string]string // the labels each keeps (keptLabels)
	stale  []bool
	groups map[string][]string
}

func (s *State) listing(now time.Time, staleAfter time.Duration) *listing {
	s.assignNames()
	l := &listing{hosts: make([]*Host, 0, len(s.Hosts)), groups: map[string][]string{"ifl_all": {}, "ifl_stale": {}}}
	for _, h := range s.Hosts {
		l.hosts = append(l.hosts, h)
	}
	slices.SortFunc(l.hosts, func(a, b *Host) int { return strings.Compare(a.Name, b.Name) })
	all := make([]string, 0, len(l.hosts))
	// Hosts share their labels' groups: each name made once.
	type label struct{ k, v string }
	names := map[label]string{}
	l.labels = make([]map[string]string, len(l.hosts))
	l.stale = make([]bool, len(l.hosts))
	for i, h := range l.hosts {
		all = append(all, h.Name)
		if now.Sub(h.LastSeen) > staleAfter {
			l.stale[i] = true
			l.groups["ifl_stale"] = append(l.groups["ifl_stale"], h.Name)
		}
		lbl := keptLabels(h.Labels)
		l.labels[i] = lbl
		for k, v := range lbl {
			g, ok := names[label{k, v}]
			if !ok {
				g = GroupName(k, v)
				names[label{k, v}] = g
			}
			// By name: a host's two labels that make one group put
			// it there once, the last one added.
			if m := l.groups[g]; len(m) == 0 || m[len(m)-1] != h.Name {
				l.groups[g] = append(m, h.Name)
			}
		}
	}
	l.groups["ifl_all"] = all
	return l
}

// WriteList writes the answer to --list, as BuildAnsible's List would be
// written.
func (s *State) WriteList(w io.Writer, now time.Time, staleAfter time.Duration, prefer Prefer) error {
	l := s.listing(now, staleAfter)
	bw := bufio.NewWriterSize(w, 256<<10)
	var b []byte
	flush := func() {
		if len(b) >= 128<<10 {
			bw.Write(b)
			b = b[:0]
		}
	}
	groups := make([]string, 0, len(l.groups))
	for g := range l.groups {
		groups = append(groups, g)
	}
	slices.Sort(groups)
	// The keys at the top, sorted as encoding/json sorts a map's.
	top := append(slices.Clone(groups), "_meta", "all")
	slices.Sort(top)
	b = append(b, '{')
	for i, k := range top {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, "\n  "...)
		b = appendJSONString(b, k)
		b = append(b, ": {\n    "...)
		switch k {
		case "_meta":
			b = append(b, `"hostvars": {`...)
			bw.Write(b)
			b = b[:0]
			if err := l.writeHostVars(bw, prefer); err != nil {
				return err
			}
			if len(l.hosts) > 0 {
				b = append(b, "\n    "...)
			}
			b = append(b, '}')
		case "all":
			b = append(b, `"children": `...)
			b = appendStrings(b, groups, 2)
		default:
			b = append(b, `"hosts": `...)
			b = appendStrings(b, l.groups[k], 2)
		}
		b = append(b, "\n  }"...)
		flush()
	}
	b = append(b, "\n}\n"...)
	bw.Write(b)
	return bw.Flush()
}

// hostsPerChunk is how many hosts' variables one goroutine renders at a
// time: a few hundred KB.
const hostsPerChunk = 512

// writeHostVars writes the members of _meta.hostvars, rendered in chunks
// by as many goroutines as there are CPUs and written in order, a few
// chunks in memory at a time.
func (l *listing) writeHostVars(w io.Writer, prefer Prefer) error {
	n := (len(l.hosts) + hostsPerChunk - 1) / hostsPerChunk
	workers := max(1, min(runtime.GOMAXPROCS(0), n))
	chunks := make([]chan []byte, n)
	for i := range chunks {
		chunks[i] = make(chan []byte, 1)
	}
	next := make(chan int)
	done := make(chan struct{})
	defer close(done)
	// The chunks' buffers go round: the whole output, rendered into new
	// ones, made the collector run all along (README: Benchmarks).
	free := make(chan []byte, 3*workers)
	for range workers {
		go func() {
			for i := range next {
				var b []byte
				select {
				case b = <-free:
				default:
				}
				b = b[:0]
				for j := i * hostsPerChunk; j < min(len(l.hosts), (i+1)*hostsPerChunk); j++ {
					if j > 0 {
						b = append(b, ',')
					}
					b = append(b, "\n      "...)
					b = appendJSONString(b, l.hosts[j].Name)
					b = append(b, ": "...)
					b = appendHostVars(b, l.hosts[j], l.labels[j], l.stale[j], prefer, 3)
				}
				chunks[i] <- b
			}
		}()
	}
	// Chunks are handed out no further than a few ahead of the one
	// written.
	slots := make(chan struct{}, 2*workers)
	go func() {
		defer close(next)
		for i := range n {
			select {
			case slots <- struct{}{}:
			case <-done:
				return
			}
			select {
			case next <- i:
			case <-done:
				return
			}
		}
	}()
	for i := range n {
		b := <-chunks[i]
		<-slots
		if _, err := w.Write(b); err != nil {
			return err
		}
		select {
		case free <- b:
		default:
		}
	}
	return nil
}

// WriteHost writes the answer to --host for the host named name; false
// when there is none.
func (s *State) WriteHost(w io.Writer, name string, now time.Time, staleAfter time.Duration, prefer Prefer) (bool, error) {
	s.assignNames()
	for _, h := range s.Hosts {
		if h.Name == name {
			b := appendHostVars(nil, h, keptLabels(h.Labels), now.Sub(h.LastSeen) > staleAfter, prefer, 0)
			_, err := w.Write(append(b, '\n'))
			return true, err
		}
	}
	return false, nil
}

// appendHostVars appends a host's variables, as BuildAnsible makes them,
// as an object indented at depth.
func appendHostVars(b []byte, h *Host, lbl map[string]string, stale bool, prefer Prefer, depth int) []byte {
	in := indent(depth + 1)
	key := func(k string) {
		b = append(b, in...)
		b = append(b, '"')
		b = append(b, k...)
		b = append(b, `": `...)
	}
	unsafe := func(k, v string) {
		key(k)
		b = appendUnsafe(b, v, depth+1)
		b = append(b, ',')
	}
	b = append(b, '{')
	key("ansible_host")
	if a := h.Address(prefer); a != "" {
		b = appendJSONString(b, a)
	} else {
		b = appendUnsafe(b, h.IP, depth+1)
	}
	b = append(b, ',')
	key("ifl_addresses")
	b = appendUnsafeList(b, h.Addresses, depth+1)
	b = append(b, ',')
	unsafe("ifl_agent_version", h.AgentVersion)
	key("ifl_first_seen")
	b = appendTime(b, h.FirstSeen)
	b = append(b, ',')
	unsafe("ifl_gateway", h.Gateway)
	unsafe("ifl_hostname", h.Hostname)
	key("ifl_identity")
	if hexOnly(h.Identity) {
		b = appendJSONString(b, h.Identity)
	} else {
		b = appendUnsafe(b, h.Identity, depth+1)
	}
	b = append(b, ',')
	unsafe("ifl_kernel", h.Kernel)
	key("ifl_labels")
	if len(lbl) == 0 {
		b = append(b, "{}"...)
	} else {
		keys := make([]string, 0, len(lbl))
		for k := range lbl {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		b = append(b, '{')
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, indent(depth+2)...)
			b = appendJSONString(b, k)
			b = append(b, ": "...)
			b = appendUnsafe(b, lbl[k], depth+2)
		}
		b = append(b, in...)
		b = append(b, '}')
	}
	b = append(b, ',')
	key("ifl_last_seen")
	b = appendTime(b, h.LastSeen)
	b = append(b, ',')
	key("ifl_machine_id_hash")
	b = appendJSONString(b, h.MachineIDHash())
	b = append(b, ',')
	key("ifl_macs")
	b = appendUnsafeList(b, h.MACs, depth+1)
	b = append(b, ',')
	unsafe("ifl_os", h.OS)
	key("ifl_port")
	b = strconv.AppendInt(b, int64(h.Port), 10)
	b = append(b, ',')
	key("ifl_stale")
	b = strconv.AppendBool(b, stale)
	b = append(b, ',')
	key("ifl_verified_addresses")
	if vs, ok := h.VerifiedAddresses(); ok {
		b = appendStrings(b, vs, depth+1)
	} else {
		b = appendUnsafeList(b, vs, depth+1)
	}
	b = append(b, indent(depth)...)
	return append(b, '}')
}

// appendTime appends t quoted, in RFC 3339 and UTC: nothing to escape.
func appendTime(b []byte, t time.Time) []byte {
	b = append(b, '"')
	b = t.UTC().AppendFormat(b, time.RFC3339)
	return append(b, '"')
}

// indentation: a new line and two spaces a level, up to a depth.
const spaces = "\n                    "

func indent(depth int) string { return spaces[:1+2*depth] }

// appendUnsafe appends {"__ansible_unsafe": s} as an object at depth.
func appendUnsafe(b []byte, s string, depth int) []byte {
	b = append(b, '{')
	b = append(b, indent(depth+1)...)
	b = append(b, `"__ansible_unsafe": `...)
	b = appendJSONString(b, s)
	b = append(b, indent(depth)...)
	return append(b, '}')
}

// appendUnsafeList appends vs as a list of {"__ansible_unsafe": v}.
func appendUnsafeList(b []byte, vs []string, depth int) []byte {
	return appendList(b, vs, depth, appendUnsafe)
}

// appendStrings appends vs as a list of plain strings.
func appendStrings(b []byte, vs []string, depth int) []byte {
	return appendList(b, vs, depth, func(b []byte, v string, _ int) []byte { return appendJSONString(b, v) })
}

// appendList appends vs as a JSON list at depth, each element by elem.
func appendList(b []byte, vs []string, depth int, elem func([]byte, string, int) []byte) []byte {
	if len(vs) == 0 {
		return append(b, "[]"...)
	}
	b = append(b, '[')
	for i, v := range vs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, indent(depth+1)...)
		b = elem(b, v, depth+1)
	}
	b = append(b, indent(depth)...)
	return append(b, ']')
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s quoted as encoding/json quotes it (with its
// HTML escapes, U+2028 and U+2029 escaped, each invalid byte U+FFFD),
// then with every rune escaped that untrusted.JSON escapes: what is not
// printable from DEL on.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' && c != 0x7f {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' || !strconv.IsPrint(r) {
			b = append(b, s[start:i]...)
			if r > 0xffff {
				r1, r2 := utf16.EncodeRune(r)
				b = appendU(appendU(b, r1), r2)
			} else {
				b = appendU(b, r)
			}
			i += n
			start = i
			continue
		}
		i += n
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

func appendU(b []byte, r rune) []byte {
	return append(b, '\\', 'u', hexDigits[r>>12&0xf], hexDigits[r>>8&0xf], hexDigits[r>>4&0xf], hexDigits[r&0xf])
}
