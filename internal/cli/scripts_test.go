package cli

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestInventoryScriptWithoutIFL: the inventory script that cannot run
// ifl fails, with one line that says how to point it at ifl: Ansible
// would otherwise read an empty inventory among its warnings.
func TestInventoryScriptWithoutIFL(t *testing.T) {
	script, err := filepath.Abs("../../scripts/ifl-inventory")
	if err != nil {
		t.Fatal(err)
	}
	empty := t.TempDir()
	for _, tt := range []struct {
		env  []string
		want string
	}{
		{[]string{"PATH=" + empty}, "ifl-inventory: ifl is not on PATH (" + empty + "); set IFL to the path of the ifl binary\n"},
		{[]string{"PATH=" + empty, "IFL=/nonexistent/ifl"}, "ifl-inventory: IFL=/nonexistent/ifl: no such executable; set IFL to the path of the ifl binary\n"},
	} {
		cmd := exec.Command("/bin/sh", script, "--list")
		cmd.Env = tt.env
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 || stdout.Len() != 0 || stderr.String() != tt.want {
			t.Errorf("%v: %v, stdout %q, stderr %q; want exit 2 and %q", tt.env, err, stdout.String(), stderr.String(), tt.want)
		}
	}
}

// TestProbeUnitTargets: ifl-probe.service takes its targets, and other
// flags, from IFL_PROBE_ARGS (an environment file, or a drop-in), split
// at blanks as systemd splits an unbraced $VAR; without it, none.
func TestProbeUnitTargets(t *testing.T) {
	b, err := os.ReadFile("../../scripts/ifl-probe.service")
	if err != nil {
		t.Fatal(err)
	}
	unit := string(b)
	if !strings.Contains(unit, "\nEnvironmentFile=-/etc/ifl/probe.env\n") {
		t.Errorf("the unit reads no optional /etc/ifl/probe.env")
	}
	m := regexp.MustCompile(`(?m)^ExecStart=/usr/bin/ifl (.*)$`).FindStringSubmatch(unit)
	if m == nil {
		t.Fatal("no ExecStart")
	}
	// As systemd expands ExecStart: %d is the credentials folder, and
	// $VAR alone as a word becomes the variable's words.
	expand := func(vars string) []string {
		var args []string
		for _, w := range strings.Fields(strings.ReplaceAll(m[1], "%d", "/run/credentials/ifl-probe.service")) {
			if w == "$IFL_PROBE_ARGS" {
				args = append(args, strings.Fields(vars)...)
				continue
			}
			args = append(args, w)
		}
		return args
	}
	cli, err := parse(t, expand("198.18.0.0/22 198.18.8.0/24 --exclude 198.18.0.1")...)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"198.18.0.0/22", "198.18.8.0/24"}, cli.Probe.Targets); diff != "" || !slices.Equal(cli.Probe.Exclude, []string{"198.18.0.1"}) {
		t.Errorf("targets (-want +got):\n%s; exclude %v", diff, cli.Probe.Exclude)
	}
	if cli.Probe.State != "/var/lib/ifl/inventory.json" || cli.Probe.NetworkKey != "/run/credentials/ifl-probe.service/network.key" || cli.Probe.Watch.String() != "5m0s" {
		t.Errorf("the unit's own flags: %+v", cli.Probe)
	}
	if cli, err := parse(t, expand("")...); err != nil || len(cli.Probe.Targets) != 0 {
		t.Errorf("without IFL_PROBE_ARGS: %v, targets %v", err, cli.Probe.Targets)
	}
}
