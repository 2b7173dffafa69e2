package cli

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/rs/zerolog"

	"github.com/ifl-project/ifl/internal/controller/inventory"
	"github.com/ifl-project/ifl/internal/support/untrusted"
)

// checkState refuses --state given on the command line beside
// --no-state: IFL_STATE, set for every command, gives way to --no-state,
// but two flags that ask for opposite things are a mistake.
func checkState(env *Env, state string, noState bool) error {
	if noState && env.Given("state") {
		return fmt.Errorf("--state %s and --no-state ask for opposite things: give one", state)
	}
	return nil
}

// stateHint is what to do about a state that cannot be written.
const stateHint = "give --state FILE in a folder you may write (IFL_STATE sets it for every command), or --no-state to leave the inventory alone"

// checkWritable makes sure, before a probe's work, that the state at path
// can be written when it is done: its folder is made as the inventory
// makes it, and a file is created there and removed.
func checkWritable(cmd, path string) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return stateWriteError(cmd, path, err)
	}
	f, err := os.CreateTemp(dir, ".inventory.json.check-*")
	if err != nil {
		return stateWriteError(cmd, path, err)
	}
	f.Close()
	os.Remove(f.Name())
	return nil
}

// stateWriteError says which state could not be written, and what to
// do; an error that names a state that is not an inventory is already
// clear, and its fix is not another folder.
func stateWriteError(cmd, path string, err error) error {
	if errors.Is(err, inventory.ErrForeign) {
		return err
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		// The path error names the file or folder, and the fault.
		err = pe
	}
	return fmt.Errorf("%s: cannot keep the inventory state %s: %w; %s", cmd, path, err, stateHint)
}

// readState reads the inventory for a command that only shows names
// (scan, ping): the state at path, nil when there is none. A state that
// is missing or cannot be read is an error when --state named it on the
// command line, else a warning where it exists (IFL_STATE, or the
// default path): the command goes on without names.
func readState(env *Env, cmd, path string, asked bool) (*inventory.State, error) {
	if path == "" {
		return nil, nil
	}
	st, err := inventory.LoadExisting(path)
	switch {
	case err == nil:
		return st, nil
	case errors.Is(err, inventory.ErrNoState) && !asked:
		return nil, nil
	case asked:
		return nil, fmt.Errorf("%s: %w (--no-state leaves the inventory out)", cmd, stateError(err, false))
	}
	fmt.Fprintf(env.Stderr, "%s: warning: no inventory names: %v (--state FILE reads another, --no-state silences this)\n", cmd, err)
	return nil, nil
}

// readStore is readState for an inventory in etcd: one out of reach,
// or refused, is an error when --store named it on the command line,
// else (IFL_STORE) a warning, and the command goes on without names.
func readStore(ctx context.Context, env *Env, cmd string, f *StoreFlags) (*inventory.State, error) {
	st, err := f.open("")
	if err == nil {
		defer st.Close()
		var s *inventory.State
		if s, err = st.Load(ctx); err == nil {
			return s, nil
		}
	}
	if env.Given("store") {
		return nil, problem(fmt.Errorf("%s: %w (--no-state leaves the inventory out)", cmd, err))
	}
	fmt.Fprintf(env.Stderr, "%s: warning: no inventory names: %v (--no-state silences this)\n", cmd, untrusted.Text(err.Error()))
	return nil, nil
}

// watchStopped ends a watch: with status 0 when a service manager
// stopped it (SIGTERM), else as interrupted (130).
func watchStopped(ctx context.Context, log zerolog.Logger) error {
	log.Info().Str("event", "stopped").Msg("stopped")
	if terminated(ctx) {
		return nil
	}
	return ctx.Err()
}

// since says how long ago t was, for people.
func since(now, t time.Time) string { return age(now.Sub(t)) + " ago" }
