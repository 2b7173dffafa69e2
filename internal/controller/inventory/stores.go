package inventory

import (
	"context"
	"fmt"
	"strings"
)

// Store is where the inventory is kept: the JSON file (File, the
// default: one machine, nothing to install) or etcd (Etcd: the store of
// a fleet of several sites, each with its controller). Nothing above
// this package knows which.
type Store interface {
	// Load reads the whole inventory, every record checked as a state
	// file's are (validate.go); ErrNoState when there is none.
	Load(ctx context.Context) (*State, error)
	// Update runs fn on the inventory and keeps what it changed, or
	// nothing when fn fails. Concurrent updates never lose one
	// another's changes. fn may be run again on a fresher inventory
	// (etcd, after another controller changed it meanwhile): it must do
	// the same thing each time, and Apply with a site does (a round
	// already recorded for a host is not counted twice).
	Update(ctx context.Context, fn func(*State) error) error
	// String names the store in messages: the file, or etcd's
	// endpoints and prefix.
	String() string
	// Close lets go of the store's connections.
	Close() error
}

// File is the inventory in one JSON file, under a lock (store.go).
type File struct{ Path string }

// Load reads the file, which must exist.
func (f *File) Load(context.Context) (*State, error) { return LoadExisting(f.Path) }

// Update runs fn on the file's state under its lock; a missing file is an
// empty state.
func (f *File) Update(_ context.Context, fn func(*State) error) error { return Update(f.Path, fn) }

func (f *File) String() string { return f.Path }

// Close does nothing: the file is open only within Load and Update.
func (f *File) Close() error { return nil }

// IsEtcd reports whether spec names an etcd store rather than a file.
func IsEtcd(spec string) bool {
	return strings.HasPrefix(spec, "etcd://") || strings.HasPrefix(spec, "etcds://")
}

// Open opens the store that spec names: "" or "file" for the JSON file at
// path, etcd://HOST:PORT,.../PREFIX?options for etcd (ParseEtcd).
func Open(spec, path string) (Store, error) {
	switch {
	case spec == "" || spec == "file":
		return &File{Path: path}, nil
	case IsEtcd(spec):
		cfg, err := ParseEtcd(spec)
		if err != nil {
			return nil, err
		}
		return OpenEtcd(cfg)
	}
	return nil, fmt.Errorf("inventory: store %q: want file (the JSON file, the default) or etcd://HOST:2379,HOST:2379/PREFIX", spec)
}

// Import replaces what st holds with s: a state file moved into etcd, or
// back.
func Import(ctx context.Context, st Store, s *State) error {
	if err := s.validate(); err != nil {
		return fmt.Errorf("inventory: import: %w: %v", ErrForeign, err)
	}
	return st.Update(ctx, func(cur *State) error {
		*cur = State{Format: Format, Version: Version, Updated: s.Updated, Hosts: s.Hosts, Reserved: s.Reserved, Rounds: s.Rounds, onCommit: cur.onCommit}
		if cur.Hosts == nil {
			cur.Hosts = map[string]*Host{}
		}
		return nil
	})
}
