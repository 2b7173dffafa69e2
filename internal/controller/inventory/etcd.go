package inventory

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// The inventory in etcd, under a prefix (/ifl by default), one key per
// record so that controllers of several sites write at once:
//
//	PREFIX/format            {"format":"ifl-inventory","version":1}, made by the first write
//	PREFIX/hosts/IDENTITY    a host, as in the state file, with its sightings by site
//	PREFIX/names/NAME        the identity that holds the inventory name NAME (in lower case)
//	PREFIX/reserved/NAME     a reservation (names.go), by the name in lower case
//	PREFIX/sites/SITE        the site's last round: when, and how many it ran
//
// Every write is a transaction that compares each key it changes with the
// revision it read (or its absence), so that two controllers never lose
// each other's changes: the one that comes second reads again and redoes
// its change. A name is taken by creating its key, which only one
// identity can do; the host's record is written in the same
// transaction. Records are checked when they are read, as a state
// file's are: the store is as untrusted as the agents and the hosts that
// write it.

// A read starts with pages of pageSize keys and doubles them up to
// maxPage keys and maxPageBytes: etcd walks every key left in the range
// for each page it serves, so that a read of n keys in pages of a fixed
// size costs n²/size. Variables for the tests.
var (
	pageSize     int64 = 1000
	maxPage      int64 = 16384
	maxPageBytes       = 32 << 20
)

// Etcd is the inventory in etcd.
type Etcd struct {
	cfg   EtcdConfig
	c     *clientv3.Client
	stats EtcdStats
	mu    sync.Mutex // of stats
}

// EtcdStats count the requests of a store, for where its time goes.
type EtcdStats struct {
	Pages, Txns int
	// Ops and Bytes are of the transactions applied; Unsure counts the
	// operations of those whose outcome the store did not learn.
	Ops, Bytes, Unsure int
	Read, Write        time.Duration
}

func (s EtcdStats) String() string {
	return fmt.Sprintf("read %v in %d pages; wrote %d operations, %d bytes, in %d transactions, %v", s.Read.Round(time.Millisecond), s.Pages, s.Ops, s.Bytes, s.Txns, s.Write.Round(time.Millisecond))
}

// Since is what s counts beyond before.
func (s EtcdStats) Since(before EtcdStats) EtcdStats {
	return EtcdStats{Pages: s.Pages - before.Pages, Txns: s.Txns - before.Txns, Ops: s.Ops - before.Ops, Bytes: s.Bytes - before.Bytes, Unsure: s.Unsure - before.Unsure,
		Read: s.Read - before.Read, Write: s.Write - before.Write}
}

// Stats are the store's requests so far.
func (e *Etcd) Stats() EtcdStats {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.stats
}

func (e *Etcd) count(f func(*EtcdStats)) {
	e.mu.Lock()
	f(&e.stats)
	e.mu.Unlock()
}

// OpenEtcd connects to the store; the first request says whether it is
// up.
func OpenEtcd(cfg EtcdConfig) (*Etcd, error) {
	cc := clientv3.Config{Endpoints: cfg.Endpoints, DialTimeout: cfg.Dial, Username: cfg.User, Password: cfg.Password, Logger: zap.NewNop(),
		DialKeepAliveTime: 10 * time.Second, DialKeepAliveTimeout: 5 * time.Second, MaxCallSendMsgSize: 2 << 20, MaxCallRecvMsgSize: 64 << 20}
	if cfg.TLS {
		t := &tls.Config{MinVersion: tls.VersionTLS12}
		if cfg.CA != "" {
			pem, err := os.ReadFile(cfg.CA)
			if err != nil {
				return nil, fmt.Errorf("inventory: etcd ca: %w", err)
			}
			t.RootCAs = x509.NewCertPool()
			if !t.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("inventory: etcd ca %s: no PEM certificate in it", cfg.CA)
			}
		}
		if cfg.Cert != "" {
			c, err := tls.LoadX509KeyPair(cfg.Cert, cfg.Key)
			if err != nil {
				return nil, fmt.Errorf("inventory: etcd cert and key: %w", err)
			}
			t.Certificates = []tls.Certificate{c}
		}
		cc.TLS = t
	}
	c, err := clientv3.New(cc)
	if err != nil {
		return nil, fmt.Errorf("inventory: etcd at %s: %w", strings.Join(cfg.Endpoints, ","), err)
	}
	return &Etcd{cfg: cfg, c: c}, nil
}

func (e *Etcd) String() string {
	return "etcd " + strings.Join(e.cfg.Endpoints, ",") + e.cfg.Prefix
}

// Close closes the connections.
func (e *Etcd) Close() error { return e.c.Close() }

func (e *Etcd) key(kind, name string) string { return e.cfg.Prefix + "/" + kind + "/" + name }

// failed says which endpoints did not answer, and what to do.
func (e *Etcd) failed(err error) error {
	if errors.Is(err, ErrForeign) {
		return err
	}
	return fmt.Errorf("inventory: etcd at %s: %w (is a quorum of its members up and reachable?)", strings.Join(e.cfg.Endpoints, ","), err)
}

func (e *Etcd) ctx(ctx context.Context) (context.Context, context.CancelFunc) {
	// A member cut off from its quorum must not answer from its own
	// old copy, nor take a write it cannot commit.
	return context.WithTimeout(clientv3.WithRequireLeader(ctx), e.cfg.Request)
}

// snapshot is the inventory as read at one revision, with what each key
// held then.
type snapshot struct {
	st  *State
	rev int64
	// The raw value and mod revision of every key, by key.
	raw  map[string][]byte
	mods map[string]int64
	// shared is the decoder's table of strings hosts share.
	shared map[string]string
	// format: the format key is there.
	format bool
	// names are the name keys: the identity that holds each name.
	names map[string]string
}

// Load reads the inventory; ErrNoState when the prefix holds none.
func (e *Etcd) Load(ctx context.Context) (*State, error) {
	sn, err := e.readOnly(ctx)
	if err != nil {
		return nil, err
	}
	if !sn.format && len(sn.st.Hosts) == 0 {
		return nil, fmt.Errorf("inventory: %w at %s", ErrNoState, e)
	}
	return sn.st, nil
}

// read reads every key under the prefix at one revision, in pages, and
// checks each record; the snapshot keeps each key's value and revision,
// to write what changed.
func (e *Etcd) read(ctx context.Context) (*snapshot, error) {
	return e.readInto(ctx, &snapshot{st: New(), raw: map[string][]byte{}, mods: map[string]int64{}, shared: map[string]string{}})
}

// readOnly is read for a reader: the values are not kept, only the
// state (the values are about as large again).
func (e *Etcd) readOnly(ctx context.Context) (*snapshot, error) {
	return e.readInto(ctx, &snapshot{st: New(), shared: map[string]string{}})
}

func (e *Etcd) readInto(ctx context.Context, sn *snapshot) (*snapshot, error) {
	p := e.cfg.Prefix + "/"
	end := clientv3.GetPrefixRangeEnd(p)
	from := p
	limit := pageSize
	for {
		c, cancel := e.ctx(ctx)
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(limit)}
		if sn.rev != 0 {
			opts = append(opts, clientv3.WithRev(sn.rev))
		}
		start := time.Now()
		resp, err := e.c.Get(c, from, opts...)
		cancel()
		e.count(func(s *EtcdStats) { s.Pages++; s.Read += time.Since(start) })
		if err != nil {
			return nil, e.failed(err)
		}
		if sn.rev == 0 {
			sn.rev = resp.Header.Revision
		}
		size := 0
		for _, kv := range resp.Kvs {
			if err := e.take(sn, string(kv.Key), kv.Value, kv.ModRevision); err != nil {
				return nil, err
			}
			size += len(kv.Key) + len(kv.Value)
		}
		if n := len(resp.Kvs); n > 0 {
			limit = max(min(100, pageSize), min(maxPage, 2*limit, int64(maxPageBytes/(size/n+1))))
		}
		if !resp.More || len(resp.Kvs) == 0 {
			break
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
	if err := sn.st.validate(); err != nil {
		return nil, fmt.Errorf("inventory %s: %w: %v (ifl writes no such record; fix or remove it)", e, ErrForeign, err)
	}
	// A name's key says who holds it: it is taken by creating it, and
	// passed on only by a transaction that compares it. A record that
	// still says a name another identity's key holds (a write whose
	// transactions were not all applied: the taker's was, the giver's
	// not yet) gives it up here, as that write's retry does, and as
	// LoadHost reads it.
	for id, h := range sn.st.Hosts {
		if holder, ok := sn.names[strings.ToLower(h.Name)]; ok && h.Name != "" && holder != id {
			h.Name = ""
		}
	}
	sn.st.assignNames()
	return sn, nil
}

// take adds one key's record to the snapshot.
func (e *Etcd) take(sn *snapshot, key string, v []byte, mod int64) error {
	rest := strings.TrimPrefix(key, e.cfg.Prefix+"/")
	kind, name, _ := strings.Cut(rest, "/")
	foreign := func(why string) error {
		return fmt.Errorf("inventory %s: %w: key %s: %s (ifl writes no such record; fix or remove it)", e, ErrForeign, quoteKey(key), why)
	}
	if sn.raw != nil {
		sn.raw[key] = v
		sn.mods[key] = mod
	}
	switch kind {
	case "format":
		sn.format = true
		var f struct {
			Format  string `json:"format"`
			Version int    `json:"version"`
		}
		if name != "" || json.Unmarshal(v, &f) != nil || f.Format != Format {
			return foreign("not an ifl inventory's format record")
		}
		if f.Version != Version {
			return fmt.Errorf("inventory %s: version %d, this ifl reads version %d", e, f.Version, Version)
		}
	case "hosts":
		h, err := decodeHost(v, sn.shared)
		if err != nil {
			return foreign(err.Error())
		}
		sn.st.Hosts[name] = h
	case "names":
		if !validIdentity(string(v)) {
			return foreign("want an identity")
		}
		if sn.names == nil {
			sn.names = map[string]string{}
		}
		sn.names[name] = string(v)
	case "reserved":
		var r Reservation
		if err := json.Unmarshal(v, &r); err != nil {
			return foreign(err.Error())
		}
		if strings.ToLower(r.Name) != name {
			return foreign("the name is not the key's")
		}
		sn.st.Reserved = append(sn.st.Reserved, r)
	case "sites":
		var r SiteRound
		if err := json.Unmarshal(v, &r); err != nil || !validSite(name) || checkTime(r.Last) != nil || r.Rounds < 0 {
			return foreign("not a site's round record")
		}
		if sn.st.Rounds == nil {
			sn.st.Rounds = map[string]SiteRound{}
		}
		sn.st.Rounds[name] = r
	default:
		return foreign("not a key ifl writes")
	}
	return nil
}

// decodeHost reads one host record: by the fast decoder, else by
// encoding/json. shared, if not nil, keeps one copy of the short strings
// hosts share, across the records of one read.
func decodeHost(v []byte, shared map[string]string) (*Host, error) {
	if shared == nil {
		shared = map[string]string{}
	}
	// The record is in memory whole: the decoder reads it in place.
	d := &decoder{buf: v, eof: true, shared: shared}
	if h, err := d.host(""); err == nil && len(bytes.TrimSpace(d.buf[d.pos:])) == 0 {
		return h, nil
	}
	var h Host
	if err := json.Unmarshal(v, &h); err != nil {
		return nil, err
	}
	return &h, nil
}

// LoadHost reads the host that holds the inventory name name, and only
// it: the name's key says which identity holds it, and that identity's
// record is read in a transaction that finds the name's key unchanged,
// two keys whatever the size of the fleet. The state it returns holds
// that host alone, checked as Load checks it; nil, and no error, when
// the keys do not settle it (no such name key, a name asked in another
// case, a record without that name): Load then reads the whole
// inventory, and its answer is the reference.
func (e *Etcd) LoadHost(ctx context.Context, name string) (*State, error) {
	p := e.cfg.Prefix + "/"
	c, cancel := e.ctx(ctx)
	resp, err := e.c.Txn(c).Then(clientv3.OpGet(p+"format"), clientv3.OpGet(p+"names/"+strings.ToLower(name))).Commit()
	cancel()
	e.count(func(s *EtcdStats) { s.Pages++ })
	if err != nil {
		return nil, e.failed(err)
	}
	sn := &snapshot{st: New(), shared: map[string]string{}}
	format, held := resp.Responses[0].GetResponseRange().Kvs, resp.Responses[1].GetResponseRange().Kvs
	if len(format) == 0 {
		return nil, nil
	}
	if err := e.take(sn, string(format[0].Key), format[0].Value, format[0].ModRevision); err != nil {
		return nil, err
	}
	if len(held) == 0 || !validIdentity(string(held[0].Value)) {
		return nil, nil
	}
	id := string(held[0].Value)
	// The record, if the name's key has not changed meanwhile: a
	// compare, not a read at the first revision, which compaction may
	// have taken.
	c, cancel = e.ctx(ctx)
	nk := string(held[0].Key)
	got, err := e.c.Txn(c).If(clientv3.Compare(clientv3.ModRevision(nk), "=", held[0].ModRevision)).Then(clientv3.OpGet(p + "hosts/" + id)).Commit()
	cancel()
	e.count(func(s *EtcdStats) { s.Pages++ })
	if err != nil {
		return nil, e.failed(err)
	}
	if !got.Succeeded {
		return nil, nil
	}
	rec := got.Responses[0].GetResponseRange().Kvs
	if len(rec) == 0 {
		return nil, nil
	}
	if err := e.take(sn, string(rec[0].Key), rec[0].Value, rec[0].ModRevision); err != nil {
		return nil, err
	}
	h := sn.st.Hosts[id]
	if h == nil || h.Name != name {
		return nil, nil
	}
	if err := sn.st.validate(); err != nil {
		return nil, fmt.Errorf("inventory %s: %w: %v (ifl writes no such record; fix or remove it)", e, ErrForeign, err)
	}
	return sn.st, nil
}
