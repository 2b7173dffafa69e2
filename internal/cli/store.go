package cli

import (
	"fmt"
	"os"

	"github.com/ifl-project/ifl/internal/controller/inventory"
)

// StoreFlags choose where the inventory is kept.
type StoreFlags struct {
	Store string `env:"IFL_STORE" placeholder:"URL" help:"Where the inventory is: file (the --state file, the default) or etcd://HOST:2379,HOST:2379/PREFIX?OPTIONS, shared by the controllers of several sites (see 'ifl inventory --help')."`
}

// etcd reports whether the inventory is in etcd.
func (f *StoreFlags) etcd() bool { return inventory.IsEtcd(f.Store) }

// check checks the store's URL before any work.
func (f *StoreFlags) check() error {
	switch {
	case f.Store == "" || f.Store == "file":
		return nil
	case f.etcd():
		_, err := inventory.ParseEtcd(f.Store)
		return err
	}
	return fmt.Errorf("--store %q: want file (the JSON file of --state, the default) or etcd://HOST:2379,HOST:2379/PREFIX", f.Store)
}

// open opens the store: the file at path, or etcd.
func (f *StoreFlags) open(path string) (inventory.Store, error) {
	return inventory.Open(f.Store, path)
}

// storeError makes a store's failure exit 1: etcd out of reach or
// refusing is a problem of the run, not of its command line.
func storeError(err error) error {
	if err == nil {
		return nil
	}
	return problem(err)
}

// siteName is a controller's site: the one given, else with etcd the
// machine's hostname, else none (one controller, one file).
func siteName(given string, etcd bool) (string, error) {
	site := given
	if site == "" && etcd {
		h, err := os.Hostname()
		if err != nil {
			return "", fmt.Errorf("--site: this machine has no hostname to name its site by (%v): give --site", err)
		}
		site = h
	}
	if site != "" && !inventory.ValidSite(site) {
		return "", fmt.Errorf("--site %q: want 1 to 64 of A-Z a-z 0-9 _ . - (the default is the machine's hostname, with --store etcd)", site)
	}
	return site, nil
}
