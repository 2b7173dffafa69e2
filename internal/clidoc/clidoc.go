// Package clidoc writes ifl's man page and its bash and zsh completion
// from the kong model of the command line, so that they say what --help
// says. The files are committed under scripts/ for the packages and
// install.sh; 'make docs' regenerates them and a test fails when they are
// stale.
package clidoc

import (
	"io"
	"sort"
	"strings"

	"github.com/alecthomas/kong"

	"github.com/ifl-project/ifl/internal/cli"
)

// Model returns the kong model of ifl's command line, as 'ifl --help'
// builds it.
func Model() (*kong.Application, error) {
	var c cli.CLI
	p, err := cli.New(&c, &cli.Env{Stdout: io.Discard, Stderr: io.Discard}, func(int) {})
	if err != nil {
		return nil, err
	}
	return p.Model, nil
}

// commands returns the visible commands, in the order of --help.
func commands(app *kong.Application) []*kong.Node {
	var out []*kong.Node
	for _, c := range app.Children {
		if c.Type == kong.CommandNode && !c.Hidden {
			out = append(out, c)
		}
	}
	return out
}

// flags returns the visible flags of n itself (not its parents').
func flags(n *kong.Node) []*kong.Flag {
	var out []*kong.Flag
	for _, f := range n.Flags {
		if !f.Hidden {
			out = append(out, f)
		}
	}
	return out
}

// takesValue reports whether a flag needs a value after it.
func takesValue(f *kong.Flag) bool { return !f.IsBool() && !f.IsCounter() }

// completion says what to offer for a value: files, interface names,
// fixed words, or nothing.
type completion struct {
	kind  string // "file", "iface", "words" or ""
	words []string
}

func valueCompletion(v *kong.Value) completion {
	placeholder := ""
	if v.Flag != nil {
		placeholder = v.Flag.PlaceHolder
	}
	switch {
	case v.Enum != "":
		var words []string
		for _, w := range v.EnumSlice() {
			if w != "" {
				words = append(words, w)
			}
		}
		return completion{kind: "words", words: words}
	case v.Tag.Type == "path" || v.Tag.Type == "existingfile":
		return completion{kind: "file"}
	case strings.EqualFold(v.Name, "interface") || placeholder == "IFACE":
		return completion{kind: "iface"}
	}
	return completion{}
}

// flagNames returns "--name" and "-s" of a flag.
func flagNames(f *kong.Flag) []string {
	out := []string{"--" + f.Name}
	if f.Short != 0 {
		out = append(out, "-"+string(f.Short))
	}
	for _, a := range f.Aliases {
		out = append(out, "--"+a)
	}
	return out
}

// oneLine joins a help text's lines.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// sortedCopy sorts a copy of s.
func sortedCopy(s []string) []string {
	out := append([]string(nil), s...)
	sort.Strings(out)
	return out
}
