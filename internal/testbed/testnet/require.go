package testnet

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// EnvRequired, set to 1, turns Require's skips into failures: CI sets it so
// that the network tests always run there.
const EnvRequired = "IFL_NETNS_TESTS"

// Require skips the test unless this machine can build LANs (root, ip
// netns, and nft when needNft), or fails it when EnvRequired is set.
func Require(t testing.TB, needNft bool) {
	t.Helper()
	reason := ""
	switch {
	case testing.Short():
		reason = "-short"
	case os.Geteuid() != 0:
		reason = "needs root for network namespaces (run as root, or: sudo go test)"
	default:
		if _, err := exec.LookPath("ip"); err != nil {
			reason = "needs ip(8) from iproute2"
		} else if err := exec.Command("ip", "netns", "list").Run(); err != nil {
			reason = "ip netns does not work here: " + err.Error()
		} else if _, err := exec.LookPath("nft"); needNft && err != nil {
			reason = "needs nft(8) from nftables"
		}
	}
	if reason == "" {
		return
	}
	if os.Getenv(EnvRequired) == "1" {
		t.Fatalf("network test cannot run: %s (%s=1 requires it)", reason, EnvRequired)
	}
	t.Skipf("network test skipped: %s (set %s=1 to make this a failure)", reason, EnvRequired)
}

// RequireCommands skips the test unless every program in names is on
// PATH, or fails it when EnvRequired is set (CI installs them); pkg is the
// Debian package that brings them, for the message.
func RequireCommands(t testing.TB, pkg string, names ...string) {
	t.Helper()
	for _, name := range names {
		if _, err := exec.LookPath(name); err != nil {
			if os.Getenv(EnvRequired) == "1" {
				t.Fatalf("%s not found (apt-get install %s; %s=1 requires it)", name, pkg, EnvRequired)
			}
			t.Skipf("%s not found (apt-get install %s)", name, pkg)
		}
	}
}

// Start brings a LAN up for the test and tears it down when the test ends.
func Start(t testing.TB, spec Spec, ifl string) *LAN {
	t.Helper()
	lan, err := Up(context.Background(), spec, Options{IFL: ifl})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := lan.Down(); err != nil {
			t.Errorf("tearing down %s: %v", spec.Name, err)
		}
	})
	return lan
}

var (
	buildOnce sync.Once
	buildPath string
	buildErr  error
)

// BuildIFL builds the ifl binary once per test process and returns its
// path.
func BuildIFL(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "ifl-e2e-")
		if err != nil {
			buildErr = err
			return
		}
		buildPath = filepath.Join(dir, "ifl")
		// Static, as released: capabilities are dropped on every
		// thread only in a binary without cgo.
		cmd := exec.Command("go", "build", "-o", buildPath, "github.com/ifl-project/ifl/cmd/ifl")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = &buildError{err: err, out: string(out)}
		}
	})
	if buildErr != nil {
		t.Fatalf("building ifl: %v", buildErr)
	}
	return buildPath
}

type buildError struct {
	err error
	out string
}

func (e *buildError) Error() string { return e.err.Error() + "\n" + e.out }

// RemoveBuild removes what BuildIFL built; call it at the end of TestMain.
func RemoveBuild() {
	if buildPath != "" {
		os.RemoveAll(filepath.Dir(buildPath))
	}
}
