package inventory

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// etcd's own limits on one transaction: operations (--max-txn-ops) and
// bytes (--max-request-bytes, 1.5 MiB), kept under with room to spare.
const (
	maxTxnOps   = 128
	maxTxnBytes = 1 << 20

	// maxAttempts bounds the reads and writes of one Update that keep
	// meeting other controllers' writes.
	maxAttempts = 16
)

// Update reads the inventory, runs fn on it, and writes what changed in
// transactions of at most maxTxnOps operations, each comparing every key
// it writes with the revision read. A transaction that finds a key
// changed is not applied; the inventory is read again and fn run again,
// and only what then differs is written. The transactions that were
// applied stay (etcd has no transaction across them): what a round
// recorded for a host is recorded once (ApplySite).
func (e *Etcd) Update(ctx context.Context, fn func(*State) error) error {
	for range maxAttempts {
		sn, err := e.read(ctx)
		if err != nil {
			return err
		}
		if err := fn(sn.st); err != nil {
			return err
		}
		committed, ok, err := e.write(ctx, sn)
		if err != nil {
			return err
		}
		if ok {
			sn.st.committed(nil)
			return nil
		}
		sn.st.committed(committed)
	}
	return fmt.Errorf("inventory: %s: other writers changed the inventory at each of %d attempts: try again", e, maxAttempts)
}

// txnOp is one write of a transaction, with the comparison it needs.
type txnOp struct {
	cmp  clientv3.Cmp
	op   clientv3.Op
	size int
}

// group is writes that go in one transaction: a host's record and its
// name's key.
type group struct {
	identity string
	ops      []txnOp
}

// write writes what differs from the snapshot. It returns whether every
// transaction was applied, and else the identities whose records were.
func (e *Etcd) write(ctx context.Context, sn *snapshot) (map[string]bool, bool, error) {
	groups, err := e.diff(sn)
	if err != nil {
		return nil, false, err
	}
	committed := map[string]bool{}
	var batch []group
	ops, size := 0, 0
	flush := func() (bool, error) {
		if len(batch) == 0 {
			return true, nil
		}
		var cmps []clientv3.Cmp
		var puts []clientv3.Op
		for _, g := range batch {
			for _, o := range g.ops {
				cmps = append(cmps, o.cmp)
				puts = append(puts, o.op)
			}
		}
		c, cancel := e.ctx(ctx)
		start := time.Now()
		resp, err := e.c.Txn(c).If(cmps...).Then(puts...).Commit()
		cancel()
		e.count(func(s *EtcdStats) {
			s.Txns++
			s.Write += time.Since(start)
			switch {
			case err != nil:
				s.Unsure += len(puts)
			case resp.Succeeded:
				s.Ops += len(puts)
				s.Bytes += size
			}
		})
		if err != nil {
			return false, e.failed(err)
		}
		if resp.Succeeded {
			for _, g := range batch {
				committed[g.identity] = true
			}
		}
		batch, ops, size = batch[:0], 0, 0
		return resp.Succeeded, nil
	}
	all := true
	for _, g := range groups {
		n, b := len(g.ops), 0
		for _, o := range g.ops {
			b += o.size
		}
		if ops+n > maxTxnOps || size+b > maxTxnBytes {
			ok, err := flush()
			if err != nil {
				return committed, false, err
			}
			all = all && ok
		}
		batch = append(batch, g)
		ops += n
		size += b
	}
	ok, err := flush()
	if err != nil {
		return committed, false, err
	}
	return committed, all && ok, nil
}

// diff lists the writes that make the store hold sn.st.
func (e *Etcd) diff(sn *snapshot) ([]group, error) {
	st := sn.st
	same := func(key string) clientv3.Cmp {
		return clientv3.Compare(clientv3.ModRevision(key), "=", sn.mods[key])
	}
	put := func(key string, v []byte) txnOp {
		return txnOp{cmp: same(key), op: clientv3.OpPut(key, string(v)), size: len(key) + len(v)}
	}
	del := func(key string) txnOp { return txnOp{cmp: same(key), op: clientv3.OpDelete(key), size: len(key)} }
	byID := map[string]*group{}
	var order []string
	var loose []group // writes of no host's: each on its own
	add := func(id string, o txnOp) {
		if id == "" {
			loose = append(loose, group{ops: []txnOp{o}})
			return
		}
		g := byID[id]
		if g == nil {
			g = &group{identity: id}
			byID[id] = g
			order = append(order, id)
		}
		g.ops = append(g.ops, o)
	}
	if sn.raw[e.cfg.Prefix+"/format"] == nil {
		b, _ := json.Marshal(map[string]any{"format": Format, "version": Version})
		add("", put(e.cfg.Prefix+"/format", b))
	}
	// Hosts, and the names they hold.
	names := map[string]string{}
	for id, h := range st.Hosts {
		b, err := json.Marshal(h)
		if err != nil {
			return nil, err
		}
		k := e.key("hosts", id)
		if !bytes.Equal(sn.raw[k], b) {
			add(id, put(k, b))
		}
		n := strings.ToLower(h.Name)
		names[n] = id
		nk := e.key("names", n)
		if string(sn.raw[nk]) != id {
			add(id, put(nk, []byte(id)))
		}
	}
	prefix := func(kind string) string { return e.cfg.Prefix + "/" + kind + "/" }
	for k, v := range sn.raw {
		switch {
		case strings.HasPrefix(k, prefix("hosts")):
			if id := strings.TrimPrefix(k, prefix("hosts")); st.Hosts[id] == nil {
				add(id, del(k))
			}
		case strings.HasPrefix(k, prefix("names")):
			if n := strings.TrimPrefix(k, prefix("names")); names[n] == "" {
				// A name its holder gave up goes with the holder's
				// record.
				add(string(v), del(k))
			}
		}
	}
	// Reservations and sites' rounds, each a key of its own.
	want := map[string][]byte{}
	for _, r := range st.Reserved {
		b, _ := json.Marshal(r)
		want[e.key("reserved", strings.ToLower(r.Name))] = b
	}
	for site, r := range st.Rounds {
		b, _ := json.Marshal(r)
		want[e.key("sites", site)] = b
	}
	for k, b := range want {
		if !bytes.Equal(sn.raw[k], b) {
			add("", put(k, b))
		}
	}
	for k := range sn.raw {
		if (strings.HasPrefix(k, prefix("reserved")) || strings.HasPrefix(k, prefix("sites"))) && want[k] == nil {
			add("", del(k))
		}
	}
	slices.Sort(order)
	out := make([]group, 0, len(order)+len(loose))
	for _, id := range order {
		out = append(out, *byID[id])
	}
	return append(out, loose...), nil
}
