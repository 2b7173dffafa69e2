package clidoc

import (
	"bytes"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/alecthomas/kong"
	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite the generated files under scripts/")

// generated are the committed files and what writes each.
var generated = []struct {
	path string
	gen  func(*kong.Application) []byte
}{
	{"../../scripts/ifl.1", Man},
	{"../../scripts/completion/ifl.bash", Bash},
	{"../../scripts/completion/_ifl", Zsh},
}

// TestGeneratedFilesAreCurrent fails when the command line changed and
// 'make docs' was not run: the packages would ship a stale page.
func TestGeneratedFilesAreCurrent(t *testing.T) {
	app := model(t)
	for _, g := range generated {
		want := g.gen(app)
		if *update {
			if err := os.WriteFile(g.path, want, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(g.path)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(string(want), string(got)); diff != "" {
			t.Errorf("%s is stale; run make docs (-generated +committed):\n%s", g.path, diff)
		}
	}
}

func model(t *testing.T) *kong.Application {
	t.Helper()
	app, err := Model()
	if err != nil {
		t.Fatal(err)
	}
	if len(commands(app)) < 5 {
		t.Fatalf("the model has %d commands", len(commands(app)))
	}
	return app
}

// TestEveryCommandAndFlag checks that each command, and each of its flags
// and the global ones, is in the man page and both completions.
func TestEveryCommandAndFlag(t *testing.T) {
	app := model(t)
	man := string(Man(app))
	// The page as man shows it: \- is -, fonts gone.
	plain := strings.NewReplacer(`\-`, "-", `\fB`, "", `\fI`, "", `\fR`, "", `\e`, `\`).Replace(man)
	docs := map[string]string{"man page": plain, "bash": string(Bash(app)), "zsh": string(Zsh(app))}
	check := func(what, word string) {
		for name, doc := range docs {
			if !strings.Contains(doc, word) {
				t.Errorf("%s: %s %q is missing", name, what, word)
			}
		}
	}
	for _, f := range flags(app.Node) {
		for _, n := range flagNames(f) {
			check("global flag", n)
		}
	}
	for _, c := range commands(app) {
		check("command", c.Name)
		if !strings.Contains(plain, "ifl [global flags] "+c.Name) {
			t.Errorf("man page: no section for %s", c.Name)
		}
		for _, f := range flags(c) {
			for _, n := range flagNames(f) {
				check(c.Name+" flag", n)
			}
		}
	}
}

// complete runs the bash completion for the words of a command line, the
// last one being completed, and returns what it offers.
func complete(t *testing.T, script string, words ...string) []string {
	t.Helper()
	var b strings.Builder
	b.WriteString(script + "\nCOMP_WORDS=(")
	for _, w := range words {
		b.WriteString(" '" + w + "'")
	}
	b.WriteString(" )\nCOMP_CWORD=" + strconv.Itoa(len(words)-1) + "\n_ifl\nprintf '%s\\n' \"${COMPREPLY[@]}\"\n")
	cmd := exec.Command("bash", "--norc", "--noprofile")
	cmd.Stdin = strings.NewReader(b.String())
	cmd.Dir = t.TempDir()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil || stderr.Len() > 0 {
		t.Fatalf("bash completion of %q: %v %s", words, err, stderr.String())
	}
	// bash sorts what it shows.
	return sortedCopy(strings.Fields(string(out)))
}

func TestBashCompletes(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("no bash")
	}
	script := string(Bash(model(t)))
	for _, tc := range []struct {
		words []string
		want  []string
	}{
		{[]string{"ifl", "p"}, []string{"ping", "probe"}},
		{[]string{"ifl", "key"}, []string{"keycheck", "keygen"}},
		{[]string{"ifl", "probe", "--wa"}, []string{"--watch"}},
		{[]string{"ifl", "probe", "--network-key", "x", "--net"}, []string{"--network-key"}},
		{[]string{"ifl", "agent", "--log-format", ""}, []string{"auto", "console", "json"}},
		{[]string{"ifl", "agent", "--log-format", "=", "c"}, []string{"console"}},
		{[]string{"ifl", "probe", "-o", "y"}, []string{"yaml"}},
		{[]string{"ifl", "arp-scan", "l"}, []string{"lo"}},
		{[]string{"ifl", "version", "--"}, []string{"--help", "--version"}},
	} {
		got := complete(t, script, tc.words...)
		if tc.words[1] == "arp-scan" {
			if _, err := os.Stat("/sys/class/net/lo"); err != nil {
				continue
			}
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("complete %q (-want +got):\n%s", tc.words, diff)
		}
	}
	// A path flag offers files.
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "fleet.key"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	got := complete(t, script, "ifl", "ping", "--network-key", filepath.Join(dir, "fl"))
	if diff := cmp.Diff([]string{filepath.Join(dir, "fleet.key")}, got); diff != "" {
		t.Errorf("complete --network-key FILE (-want +got):\n%s", diff)
	}
}

// TestZshParses checks the zsh function's syntax, where zsh is installed
// (CI installs it).
func TestZshParses(t *testing.T) {
	if _, err := exec.LookPath("zsh"); err != nil {
		t.Skip("no zsh (apt-get install zsh)")
	}
	f := filepath.Join(t.TempDir(), "_ifl")
	if err := os.WriteFile(f, Zsh(model(t)), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("zsh", "-n", f).CombinedOutput(); err != nil {
		t.Fatalf("zsh -n: %v\n%s", err, out)
	}
}

// TestManFormats runs the page through man as lintian does: any warning
// is a lintian warning.
func TestManFormats(t *testing.T) {
	if _, err := exec.LookPath("man"); err != nil {
		t.Skip("no man (apt-get install man-db)")
	}
	f := filepath.Join(t.TempDir(), "ifl.1")
	if err := os.WriteFile(f, Man(model(t)), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("man", "--warnings", "-E", "UTF-8", "-l", "-Tutf8", "-Z", f)
	cmd.Env = append(os.Environ(), "MANWIDTH=80", "LC_ALL=C.UTF-8")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil || stderr.Len() > 0 {
		t.Fatalf("man --warnings: %v\n%s", err, stderr.String())
	}
}
