package inventory

import (
	"errors"
	"io"
	"strconv"
	"time"
	"unicode/utf16"
	"unicode/utf8"
)

// A state of 100,000 hosts is a file of some 80 MB. encoding/json reads
// it through reflection, into memory as large again as the file it keeps
// whole; the decoder here reads the state's own shape from a window of
// the file, and copies out only the values, the ones hosts share (OS,
// kernel, labels) once. It takes the documents that ifl writes and, for
// anything else (an unknown or repeated key, a null, a number that is not
// an integer, invalid UTF-8, a syntax error), gives up with errSlow: the
// caller then reads the file with encoding/json, whose answer, and error,
// is the reference. FuzzDecode checks that both agree wherever this one
// answers.

// errSlow means: read this document with encoding/json.
var errSlow = errors.New("inventory: not a document the fast decoder reads")

// decoder reads one JSON document from r through a window buf[pos:].
type decoder struct {
	r   io.Reader
	buf []byte
	pos int
	eof bool
	// shared holds the short strings that repeat from host to host, so
	// that 100,000 hosts keep one copy of "Debian GNU/Linux 12".
	shared map[string]string
	key    []byte // scratch: the key object is reading
}

const (
	windowSize = 256 << 10
	// maxShared bounds the strings kept in decoder.shared, and sharedLen
	// the length of one: a state whose values never repeat costs the
	// table no more than that.
	maxShared = 4096
	sharedLen = 64
)

func newDecoder(r io.Reader) *decoder {
	return &decoder{r: r, buf: make([]byte, 0, windowSize), shared: map[string]string{}}
}

// more reads more of the document into the window, keeping buf[pos:];
// false at the end of the input.
func (d *decoder) more() bool {
	if d.eof {
		return false
	}
	if d.pos > 0 {
		n := copy(d.buf, d.buf[d.pos:])
		d.buf = d.buf[:n]
		d.pos = 0
	}
	if len(d.buf) == cap(d.buf) {
		nb := make([]byte, len(d.buf), 2*cap(d.buf))
		copy(nb, d.buf)
		d.buf = nb
	}
	for {
		n, err := d.r.Read(d.buf[len(d.buf):cap(d.buf)])
		d.buf = d.buf[:len(d.buf)+n]
		if err != nil {
			d.eof = true
			return n > 0
		}
		if n > 0 {
			return true
		}
	}
}

// peek returns the next byte that is not white space, without taking it.
func (d *decoder) peek() (byte, error) {
	for {
		for d.pos < len(d.buf) {
			switch c := d.buf[d.pos]; c {
			case ' ', '\t', '\n', '\r':
				d.pos++
			default:
				return c, nil
			}
		}
		if !d.more() {
			return 0, errSlow
		}
	}
}

// expect takes the next byte that is not white space, which must be c.
func (d *decoder) expect(c byte) error {
	got, err := d.peek()
	if err != nil || got != c {
		return errSlow
	}
	d.pos++
	return nil
}

// comma takes a "," and says true, or the closing byte end and says
// false.
func (d *decoder) comma(end byte) (bool, error) {
	c, err := d.peek()
	if err != nil {
		return false, err
	}
	d.pos++
	switch c {
	case ',':
		return true, nil
	case end:
		return false, nil
	}
	return false, errSlow
}

// raw returns the bytes of the next string token, quotes included, and
// whether it holds an escape; the slice is valid until the window moves.
func (d *decoder) raw() ([]byte, bool, error) {
	if err := d.expect('"'); err != nil {
		return nil, false, err
	}
	start := d.pos - 1
	i := d.pos
	escaped := false
	for {
		for i < len(d.buf) {
			c := d.buf[i]
			if c == '"' {
				d.pos = i + 1
				return d.buf[start : i+1], escaped, nil
			}
			if c == '\\' {
				if i+1 >= len(d.buf) {
					break // the escaped byte after a refill
				}
				escaped = true
				i += 2
				continue
			}
			if c < 0x20 {
				return nil, false, errSlow
			}
			i++
		}
		off := i - start
		d.pos = start
		if !d.more() {
			return nil, false, errSlow
		}
		start = d.pos
		i = start + off
	}
}

// str reads a string value that hosts may share (an OS, a label), kept
// once.
func (d *decoder) str() (string, error) { return d.strAs(true, "") }

// own reads a string value of one host's own (an identity, a MAC),
// shared with prev when it is the same (a hostname and its name, an
// address and the IP).
func (d *decoder) own(prev string) (string, error) { return d.strAs(false, prev) }

func (d *decoder) strAs(shared bool, prev string) (string, error) {
	b, escaped, err := d.raw()
	if err != nil {
		return "", err
	}
	b = b[1 : len(b)-1]
	if escaped {
		return unescape(b)
	}
	if !asciiOrValid(b) {
		return "", errSlow
	}
	if !shared {
		if string(b) == prev {
			return prev, nil
		}
		return string(b), nil
	}
	if len(b) <= sharedLen {
		if s, ok := d.shared[string(b)]; ok {
			return s, nil
		}
		s := string(b)
		if len(d.shared) < maxShared {
			d.shared[s] = s
		}
		return s, nil
	}
	return string(b), nil
}

// asciiOrValid reports whether b is valid UTF-8: encoding/json makes
// each invalid byte U+FFFD, which is its business.
func asciiOrValid(b []byte) bool {
	for _, c := range b {
		if c >= utf8.RuneSelf {
			return utf8.Valid(b)
		}
	}
	return true
}

// unescape decodes a string with escapes as encoding/json does.
func unescape(b []byte) (string, error) {
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); {
		c := b[i]
		if c != '\\' {
			if c >= utf8.RuneSelf {
				r, n := utf8.DecodeRune(b[i:])
				if r == utf8.RuneError && n == 1 {
					return "", errSlow
				}
				out = append(out, b[i:i+n]...)
				i += n
				continue
			}
			out = append(out, c)
			i++
			continue
		}
		if i+1 >= len(b) {
			return "", errSlow
		}
		switch b[i+1] {
		case '"', '\\', '/':
			out = append(out, b[i+1])
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r, ok := hex4(b[i+2:])
			if !ok {
				return "", errSlow
			}
			i += 6
			if utf16.IsSurrogate(r) {
				r2, ok := rune(-1), false
				if i+1 < len(b) && b[i] == '\\' && b[i+1] == 'u' {
					r2, ok = hex4(b[i+2:])
				}
				if ok {
					if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
						out = utf8.AppendRune(out, dec)
						i += 6
						continue
					}
				}
				r = utf8.RuneError
			}
			out = utf8.AppendRune(out, r)
			continue
		default:
			return "", errSlow
		}
		i += 2
	}
	return string(out), nil
}

func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// timeValue reads a time as time.Time's UnmarshalJSON does, from the raw
// token.
func (d *decoder) timeValue() (time.Time, error) {
	b, _, err := d.raw()
	if err != nil {
		return time.Time{}, err
	}
	var t time.Time
	if err := t.UnmarshalJSON(b); err != nil {
		return time.Time{}, errSlow
	}
	return t, nil
}

// integer reads a JSON integer (no fraction, no exponent) into an int.
func (d *decoder) integer() (int, error) {
	if _, err := d.peek(); err != nil {
		return 0, err
	}
	i := d.pos
	for {
		for i < len(d.buf) {
			c := d.buf[i]
			if c == '-' || c >= '0' && c <= '9' {
				i++
				continue
			}
			if c == '.' || c == 'e' || c == 'E' || c == '+' {
				return 0, errSlow
			}
			s := d.buf[d.pos:i]
			if len(s) == 0 || (s[0] == '0' && len(s) > 1) || (len(s) > 1 && s[0] == '-' && s[1] == '0') {
				return 0, errSlow
			}
			n, err := strconv.Atoi(string(s))
			if err != nil {
				return 0, errSlow
			}
			d.pos = i
			return n, nil
		}
		off := i - d.pos
		if !d.more() {
			return 0, errSlow
		}
		i = d.pos + off
	}
}

// null takes a null, if that is what comes next: ifl writes one for a
// list it has none of.
func (d *decoder) null() (bool, error) {
	c, err := d.peek()
	if err != nil || c != 'n' {
		return false, err
	}
	for len(d.buf)-d.pos < 4 {
		if !d.more() {
			return false, errSlow
		}
	}
	if string(d.buf[d.pos:d.pos+4]) != "null" {
		return false, errSlow
	}
	d.pos += 4
	return true, nil
}

// object reads an object whose keys are each read by field, with the
// keys it already saw.
func (d *decoder) object(field func(key []byte) error) error {
	if err := d.expect('{'); err != nil {
		return err
	}
	if c, err := d.peek(); err != nil {
		return err
	} else if c == '}' {
		d.pos++
		return nil
	}
	for {
		k, escaped, err := d.raw()
		if err != nil || escaped {
			return errSlow
		}
		if !asciiOrValid(k) {
			return errSlow
		}
		// The window may move before field reads the key: a copy, which
		// field uses before it reads on (a nested object has the scratch
		// next).
		d.key = append(d.key[:0], k[1:len(k)-1]...)
		k = d.key
		if err := d.expect(':'); err != nil {
			return err
		}
		if err := field(k); err != nil {
			return err
		}
		more, err := d.comma('}')
		if err != nil || !more {
			return err
		}
	}
}

// array reads an array, each element by elem.
func (d *decoder) array(elem func() error) error {
	if err := d.expect('['); err != nil {
		return err
	}
	if c, err := d.peek(); err != nil {
		return err
	} else if c == ']' {
		d.pos++
		return nil
	}
	for {
		if err := elem(); err != nil {
			return err
		}
		more, err := d.comma(']')
		if err != nil || !more {
			return err
		}
	}
}

// once records field i as seen, and refuses a repeated one: encoding/json
// merges a repeated object or keeps the last value, which is its business.
func once(seen *uint32, i uint) error {
	if *seen&(1<<i) != 0 {
		return errSlow
	}
	*seen |= 1 << i
	return nil
}

// decodeState reads a state document.
func decodeState(r io.Reader) (*State, error) {
	d := newDecoder(r)
	s := &State{}
	var seen uint32
	err := d.object(func(k []byte) error {
		var err error
		switch string(k) {
		case "format":
			if err = once(&seen, 0); err == nil {
				s.Format, err = d.str()
			}
		case "version":
			if err = once(&seen, 1); err == nil {
				s.Version, err = d.integer()
			}
		case "updated":
			if err = once(&seen, 2); err == nil {
				s.Updated, err = d.timeValue()
			}
		case "hosts":
			if err = once(&seen, 3); err == nil {
				s.Hosts = map[string]*Host{}
				err = d.object(func(id []byte) error {
					key := string(id)
					if s.Hosts[key] != nil {
						return errSlow
					}
					h, err := d.host(key)
					s.Hosts[key] = h
					return err
				})
			}
		case "reserved":
			if err = once(&seen, 4); err == nil {
				s.Reserved = []Reservation{}
				err = d.array(func() error {
					r, err := d.reservation()
					s.Reserved = append(s.Reserved, r)
					return err
				})
			}
		case "site_rounds":
			if err = once(&seen, 5); err == nil {
				if null, err := d.null(); null || err != nil {
					return err
				}
				s.Rounds = map[string]SiteRound{}
				err = d.object(func(k []byte) error {
					site := string(k)
					if _, dup := s.Rounds[site]; dup {
						return errSlow
					}
					var r SiteRound
					var rs uint32
					err := d.object(func(k []byte) error {
						var err error
						switch string(k) {
						case "last":
							if err = once(&rs, 0); err == nil {
								r.Last, err = d.timeValue()
							}
						case "rounds":
							if err = once(&rs, 1); err == nil {
								r.Rounds, err = d.integer()
							}
						default:
							err = errSlow
						}
						return err
					})
					s.Rounds[site] = r
					return err
				})
			}
		default:
			return errSlow
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// firstAddr is an address the host's IP may repeat.
func (h *Host) firstAddr() string {
	if len(h.Verified) > 0 {
		return h.Verified[0].Addr
	}
	return ""
}

// host reads one host record, kept in the state as key.
func (d *decoder) host(key string) (*Host, error) {
	h := &Host{}
	var seen uint32
	err := d.object(func(k []byte) error {
		var err error
		field := func(i uint, read func() error) {
			if err = once(&seen, i); err == nil {
				err = read()
			}
		}
		str := func(i uint, dst *string) { field(i, func() (e error) { *dst, e = d.str(); return }) }
		own := func(i uint, dst *string, prev string) {
			field(i, func() (e error) { *dst, e = d.own(prev); return })
		}
		strs := func(i uint, dst *[]string, prev string) {
			field(i, func() error {
				if null, err := d.null(); null || err != nil {
					*dst = nil
					return err
				}
				*dst = []string{}
				return d.array(func() error {
					v, err := d.own(prev)
					*dst = append(*dst, v)
					return err
				})
			})
		}
		switch string(k) {
		case "identity":
			own(0, &h.Identity, key)
		case "name":
			own(1, &h.Name, h.Hostname)
		case "hostname":
			own(2, &h.Hostname, h.Name)
		case "machine_id":
			own(3, &h.MachineID, "")
		case "ip":
			own(4, &h.IP, h.firstAddr())
		case "verified":
			field(5, func() error {
				if null, err := d.null(); null || err != nil {
					return err
				}
				h.Verified = []Verified{}
				return d.array(func() error {
					var v Verified
					var vs uint32
					err := d.object(func(k []byte) error {
						switch string(k) {
						case "addr":
							if err := once(&vs, 0); err != nil {
								return err
							}
							var err error
							v.Addr, err = d.own(h.IP)
							return err
						case "at":
							if err := once(&vs, 1); err != nil {
								return err
							}
							var err error
							v.At, err = d.timeValue()
							return err
						}
						return errSlow
					})
					h.Verified = append(h.Verified, v)
					return err
				})
			})
		case "port":
			field(6, func() (e error) { h.Port, e = d.integer(); return })
		case "addresses":
			strs(7, &h.Addresses, h.IP)
		case "macs":
			strs(8, &h.MACs, "")
		case "os":
			str(9, &h.OS)
		case "kernel":
			str(10, &h.Kernel)
		case "agent_version":
			str(11, &h.AgentVersion)
		case "gateway":
			str(12, &h.Gateway)
		case "labels":
			field(13, func() error {
				if null, err := d.null(); null || err != nil {
					return err
				}
				h.Labels = map[string]string{}
				return d.object(func(k []byte) error {
					key := string(k)
					if _, dup := h.Labels[key]; dup {
						return errSlow
					}
					v, err := d.str()
					if s, ok := d.shared[key]; ok {
						key = s
					} else if len(d.shared) < maxShared {
						d.shared[key] = key
					}
					h.Labels[key] = v
					return err
				})
			})
		case "dropped_labels":
			strs(14, &h.Dropped, "")
		case "first_seen":
			field(15, func() (e error) { h.FirstSeen, e = d.timeValue(); return })
		case "last_seen":
			field(16, func() (e error) { h.LastSeen, e = d.timeValue(); return })
		case "probes":
			field(17, func() (e error) { h.Rounds, e = d.integer(); return })
		case "history":
			field(18, func() error {
				if null, err := d.null(); null || err != nil {
					return err
				}
				h.History = []Move{}
				return d.array(func() error {
					var m Move
					var ms uint32
					err := d.object(func(k []byte) error {
						var err error
						switch string(k) {
						case "at":
							if err = once(&ms, 0); err == nil {
								m.At, err = d.timeValue()
							}
						case "from":
							if err = once(&ms, 1); err == nil {
								m.From, err = d.str()
							}
						case "to":
							if err = once(&ms, 2); err == nil {
								m.To, err = d.str()
							}
						case "from_site":
							if err = once(&ms, 3); err == nil {
								m.FromSite, err = d.str()
							}
						case "to_site":
							if err = once(&ms, 4); err == nil {
								m.ToSite, err = d.str()
							}
						default:
							err = errSlow
						}
						return err
					})
					h.History = append(h.History, m)
					return err
				})
			})
		case "site":
			str(19, &h.Site)
		case "sites":
			field(20, func() error {
				if null, err := d.null(); null || err != nil {
					return err
				}
				h.Sites = map[string]*Sighting{}
				return d.object(func(k []byte) error {
					site := string(k)
					if _, dup := h.Sites[site]; dup {
						return errSlow
					}
					sg, err := d.sighting(h.IP)
					h.Sites[site] = sg
					return err
				})
			})
		default:
			err = errSlow
		}
		return err
	})
	return h, err
}

// sighting reads one site's sighting of a host.
func (d *decoder) sighting(ip string) (*Sighting, error) {
	sg := &Sighting{}
	var seen uint32
	err := d.object(func(k []byte) error {
		var err error
		switch string(k) {
		case "addr":
			if err = once(&seen, 0); err == nil {
				sg.Addr, err = d.own(ip)
			}
		case "mac":
			if err = once(&seen, 1); err == nil {
				sg.MAC, err = d.own("")
			}
		case "last_seen":
			if err = once(&seen, 2); err == nil {
				sg.LastSeen, err = d.timeValue()
			}
		case "missed":
			if err = once(&seen, 3); err == nil {
				sg.Missed, err = d.timeValue()
			}
		default:
			err = errSlow
		}
		return err
	})
	return sg, err
}

// reservation reads one reserved name.
func (d *decoder) reservation() (Reservation, error) {
	var r Reservation
	var seen uint32
	err := d.object(func(k []byte) error {
		var err error
		switch string(k) {
		case "name":
			if err = once(&seen, 0); err == nil {
				r.Name, err = d.str()
			}
		case "identity":
			if err = once(&seen, 1); err == nil {
				r.Identity, err = d.str()
			}
		case "since":
			if err = once(&seen, 2); err == nil {
				r.Since, err = d.timeValue()
			}
		case "why":
			if err = once(&seen, 3); err == nil {
				r.Why, err = d.str()
			}
		default:
			err = errSlow
		}
		return err
	})
	return r, err
}
