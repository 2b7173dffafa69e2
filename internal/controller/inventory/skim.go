package inventory

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"runtime/debug"
	"strconv"

	"golang.org/x/sys/unix"
)

// Ansible asks --host NAME once per host it runs on (unless the --list
// answer has _meta, which ifl's has): a state file's every host decoded
// for one of them is work thrown away. skim walks the document's
// structure without decoding it, finds the host objects that hold a
// name, and leaves the one asked for to be decoded alone.

// HostLoader is a Store that reads the host holding an inventory name
// without reading every host: nil, and no error, when it cannot tell
// that way (Load's answer is then the reference).
type HostLoader interface {
	LoadHost(ctx context.Context, name string) (*State, error)
}

// LoadHost reads the state file for the host named name: the whole file
// is walked, its syntax checked, but only that host's record decoded and
// checked, as etcd's LoadHost reads only that host's key. The other
// records are not: a record ifl would not write makes Load, and so
// --list, refuse the state, not the answer for another host. Any
// document skim does not settle (no host or several hosts with that
// name, in any case; a name, or a key of the hosts or of a host, written
// with escapes; a "name" key in another case; a key ifl does not write;
// a syntax error) is left to Load.
func (f *File) LoadHost(_ context.Context, name string) (*State, error) {
	fh, err := openNoFollow(f.Path, 0, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	fi, err := fh.Stat()
	if err != nil || !fi.Mode().IsRegular() || fi.Size() == 0 || fi.Size() > maxSkim {
		return nil, nil
	}
	// Mapped, not read: a read copies the file into memory the kernel
	// must first clear, which costs more than the walk.
	b, err := unix.Mmap(int(fh.Fd()), 0, int(fi.Size()), unix.PROT_READ, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return nil, nil
	}
	defer unix.Munmap(b)
	id, rec, ok := skimMapped(b, name)
	if !ok {
		return nil, nil
	}
	h, err := decodeHost(rec, nil)
	if err != nil || h.check(id) != nil || h.Name != name {
		return nil, nil
	}
	s := New()
	s.Hosts[id] = h
	return s, nil
}

// maxSkim is the largest file LoadHost maps.
const maxSkim = 1 << 30

// skimMapped is skimHost on a mapped file, whose record it copies: a
// file cut short under the mapping (ifl replaces the state by rename,
// never in place, but another program may) faults, which then is no
// crash but a document not settled.
func skimMapped(b []byte, name string) (id string, rec []byte, ok bool) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			// Only a fault of the mapping (a runtime.Error with the
			// address) is a document not settled; anything else is a
			// bug, and stays a panic.
			if _, fault := r.(interface{ Addr() uintptr }); !fault {
				panic(r)
			}
			id, rec, ok = "", nil, false
		}
	}()
	id, rec, ok = skimHost(b, name)
	return id, bytes.Clone(rec), ok
}

// skimHost finds in the state document b the record of the one host
// named name, and its key; false when the document does not settle it
// by its structure alone.
func skimHost(b []byte, name string) (id string, rec []byte, ok bool) {
	w := &walker{b: b}
	want := []byte(`"` + name + `"`)
	if !w.byte('{') {
		return "", nil, false
	}
	var format, version []byte
	var key []byte // the named host's, quoted
	// Every host's key, to see that the named one is not repeated (a
	// repeated key is read as its last record).
	var keys [][]byte
	seen := map[string]bool{}
	found := 0
	for first := true; ; first = false {
		if w.byte('}') {
			break
		}
		if !first && !w.byte(',') {
			return "", nil, false
		}
		k0, ok := w.str()
		if !ok || !w.byte(':') {
			return "", nil, false
		}
		start := w.skipSpace()
		if seen[string(k0)] {
			return "", nil, false
		}
		seen[string(k0)] = true
		switch string(k0) {
		case `"format"`, `"version"`, `"updated"`, `"reserved"`, `"site_rounds"`:
			if !w.value() {
				return "", nil, false
			}
			switch string(k0) {
			case `"format"`:
				format = b[start:w.pos]
			case `"version"`:
				version = b[start:w.pos]
			}
		case `"hosts"`:
			if !w.byte('{') {
				if !w.literal("null") {
					return "", nil, false
				}
				continue
			}
			for first := true; ; first = false {
				if w.byte('}') {
					break
				}
				if !first && !w.byte(',') {
					return "", nil, false
				}
				k, ok := w.str()
				if !ok || !w.byte(':') {
					return "", nil, false
				}
				from := w.skipSpace()
				named, ok := w.hostNamed(want)
				if !ok {
					return "", nil, false
				}
				if bytes.IndexByte(k, '\\') >= 0 {
					// Two spellings of one key are one key.
					return "", nil, false
				}
				keys = append(keys, k)
				if named {
					found++
					key, rec = k, b[from:w.pos]
				}
			}
		default:
			return "", nil, false
		}
	}
	w.skipSpace()
	if w.pos != len(b) || found != 1 || string(format) != `"`+Format+`"` || string(version) != strconv.Itoa(Version) {
		return "", nil, false
	}
	n := 0
	for _, k := range keys {
		if bytes.Equal(k, key) {
			n++
		}
	}
	if n != 1 {
		return "", nil, false
	}
	return string(key[1 : len(key)-1]), rec, true
}

// walker reads the structure of a JSON document, b[pos:] still to read.
type walker struct {
	b     []byte
	pos   int
	depth int
}

func (w *walker) skipSpace() int {
	for w.pos < len(w.b) {
		switch w.b[w.pos] {
		case ' ', '\n', '\t', '\r':
			w.pos++
			continue
		}
		break
	}
	return w.pos
}

// byte takes c, after white space, if it comes next.
func (w *walker) byte(c byte) bool {
	if w.skipSpace() < len(w.b) && w.b[w.pos] == c {
		w.pos++
		return true
	}
	return false
}

func (w *walker) literal(s string) bool {
	if w.skipSpace(); bytes.HasPrefix(w.b[w.pos:], []byte(s)) {
		w.pos += len(s)
		return true
	}
	return false
}

// str takes a string, quotes and escapes as they are; false for one
// that encoding/json would refuse (a control character, a bad escape).
func (w *walker) str() ([]byte, bool) {
	if !w.byte('"') {
		return nil, false
	}
	start := w.pos - 1
	for {
		i := bytes.IndexByte(w.b[w.pos:], '"')
		if i < 0 {
			return nil, false
		}
		w.pos += i + 1
		// An odd run of backslashes before it escapes it.
		n := 0
		for j := w.pos - 2; j > start && w.b[j] == '\\'; j-- {
			n++
		}
		if n%2 == 0 {
			s := w.b[start:w.pos]
			return s, validString(s[1 : len(s)-1])
		}
	}
}

// validString reports whether s, between quotes, is a string as JSON
// has them (encoding/json takes invalid UTF-8, so it is no error).
func validString(s []byte) bool {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < 0x20:
			return false
		case c == '\\':
			i++
			if i == len(s) {
				return false
			}
			switch s[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if i+4 >= len(s) {
					return false
				}
				for _, h := range s[i+1 : i+5] {
					if !('0' <= h && h <= '9' || 'a' <= h && h <= 'f' || 'A' <= h && h <= 'F') {
						return false
					}
				}
				i += 4
			default:
				return false
			}
		}
	}
	return true
}

// scalar takes a number, true, false or null.
func (w *walker) scalar() bool {
	for _, lit := range []string{"true", "false", "null"} {
		if bytes.HasPrefix(w.b[w.pos:], []byte(lit)) {
			w.pos += len(lit)
			return true
		}
	}
	// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
	b, i := w.b, w.pos
	digits := func() bool {
		from := i
		for i < len(b) && '0' <= b[i] && b[i] <= '9' {
			i++
		}
		return i > from
	}
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case !digits():
		return false
	}
	if i < len(b) && b[i] == '.' {
		i++
		if !digits() {
			return false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if !digits() {
			return false
		}
	}
	w.pos = i
	return true
}

// maxDepth bounds the nesting value follows: ifl writes four levels.
const maxDepth = 16

// value skips one value, of any kind.
func (w *walker) value() bool {
	if w.skipSpace() >= len(w.b) || w.depth >= maxDepth {
		return false
	}
	switch c := w.b[w.pos]; c {
	case '"':
		_, ok := w.str()
		return ok
	case '{', '[':
		w.pos++
		w.depth++
		ok := w.members(c == '{')
		w.depth--
		return ok
	default:
		return w.scalar()
	}
}

// members skips the members of an object, or the elements of an array,
// and its end.
func (w *walker) members(object bool) bool {
	end := byte(']')
	if object {
		end = '}'
	}
	for first := true; ; first = false {
		if w.byte(end) {
			return true
		}
		if !first && !w.byte(',') {
			return false
		}
		if object {
			if _, ok := w.str(); !ok || !w.byte(':') {
				return false
			}
		}
		if !w.value() {
			return false
		}
	}
}

// hostNamed skips one host object and reports whether its "name" is
// want (a quoted name), in any case; a name with escapes, or a name
// that is want in another case, does not settle it.
func (w *walker) hostNamed(want []byte) (named, ok bool) {
	if !w.byte('{') {
		return false, false
	}
	for first := true; ; first = false {
		if w.byte('}') {
			return named, true
		}
		if !first && !w.byte(',') {
			return false, false
		}
		k, ok := w.str()
		if !ok || !w.byte(':') {
			return false, false
		}
		// encoding/json unescapes keys and matches them in any case:
		// "Name" and "n\u0061me" are the name too.
		if bytes.IndexByte(k, '\\') >= 0 || string(k) != `"name"` && bytes.EqualFold(k, []byte(`"name"`)) {
			return false, false
		}
		if string(k) != `"name"` {
			if !w.value() {
				return false, false
			}
			continue
		}
		v, ok := w.str()
		if !ok {
			return false, false
		}
		if bytes.EqualFold(v, want) {
			if !bytes.Equal(v, want) {
				return false, false
			}
			named = true
		} else if bytes.IndexByte(v, '\\') >= 0 {
			return false, false
		}
	}
}
