package clidoc

import (
	"fmt"
	"strings"

	"github.com/alecthomas/kong"
)

// bashValue is the bash code that fills COMPREPLY for a value.
func bashValue(c completion) string {
	switch c.kind {
	case "file":
		return `compopt -o filenames 2>/dev/null; COMPREPLY=($(compgen -f -- "$cur"))`
	case "iface":
		return `COMPREPLY=($(compgen -W "$(command ls /sys/class/net 2>/dev/null)" -- "$cur"))`
	case "words":
		return `COMPREPLY=($(compgen -W "` + strings.Join(c.words, " ") + `" -- "$cur"))`
	}
	return `COMPREPLY=()`
}

// valueCases returns bash case arms, one per flag that takes a value.
func valueCases(fl []*kong.Flag) string {
	var b strings.Builder
	for _, f := range fl {
		if !takesValue(f) {
			continue
		}
		fmt.Fprintf(&b, "\t\t%s) %s; return ;;\n", strings.Join(flagNames(f), "|"), bashValue(valueCompletion(f.Value)))
	}
	return b.String()
}

func flagWords(fl []*kong.Flag) []string {
	var out []string
	for _, f := range fl {
		out = append(out, flagNames(f)...)
	}
	return out
}

// Bash returns the bash completion script: commands, each command's flags
// and the global ones, enum values, files for paths, interfaces for
// arp-scan.
func Bash(app *kong.Application) []byte {
	var names []string
	for _, c := range commands(app) {
		names = append(names, c.Name)
	}
	global := flags(app.Node)
	var b strings.Builder
	b.WriteString(`# bash completion for ifl. Generated from ifl's command line by
# internal/clidoc (make docs); do not edit.

_ifl() {
	local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}
	local cmd="" i
	# --flag=value: bash splits at '=', so the flag is two words back.
	if [ "$cur" = "=" ]; then
		cur="" prev=${COMP_WORDS[COMP_CWORD-1]}
	elif [ "$prev" = "=" ] && [ "$COMP_CWORD" -ge 2 ]; then
		prev=${COMP_WORDS[COMP_CWORD-2]}
	fi
	for ((i = 1; i < COMP_CWORD; i++)); do
		case ${COMP_WORDS[i]} in
		` + strings.Join(names, "|") + `) cmd=${COMP_WORDS[i]}; break ;;
		esac
	done

	case $cmd in
`)
	for _, c := range append([]*kong.Node{nil}, commands(app)...) {
		name, fl := "''", global
		if c != nil {
			name, fl = c.Name, append(flags(c), global...)
		}
		fmt.Fprintf(&b, "\t%s)\n\t\tcase $prev in\n%s\t\tesac\n", name, valueCases(fl))
		fmt.Fprintf(&b, "\t\tif [[ $cur == -* ]]; then\n\t\t\tCOMPREPLY=($(compgen -W %q -- \"$cur\"))\n\t\t\treturn\n\t\tfi\n", strings.Join(flagWords(fl), " "))
		switch {
		case c == nil:
			fmt.Fprintf(&b, "\t\tCOMPREPLY=($(compgen -W %q -- \"$cur\"))\n", strings.Join(names, " "))
		case len(c.Positional) > 0:
			// Every positional of ifl completes alike: the first's kind.
			fmt.Fprintf(&b, "\t\t%s\n", bashValue(valueCompletion(c.Positional[0])))
		default:
			b.WriteString("\t\tCOMPREPLY=()\n")
		}
		b.WriteString("\t\t;;\n")
	}
	b.WriteString("\tesac\n}\ncomplete -F _ifl ifl\n")
	return []byte(b.String())
}

// zq quotes s for a single-quoted zsh _arguments spec: the description
// brackets and colons escaped, single quotes closed and reopened.
func zq(s string) string {
	s = strings.NewReplacer(`\`, `\\`, `[`, `\[`, `]`, `\]`, `:`, `\:`).Replace(s)
	return strings.ReplaceAll(s, `'`, `'\''`)
}

func zshAction(c completion) string {
	switch c.kind {
	case "file":
		return "_files"
	case "iface":
		return "_net_interfaces"
	case "words":
		return "(" + strings.Join(c.words, " ") + ")"
	}
	return " "
}

func zshFlag(f *kong.Flag) string {
	help := zq(oneLine(f.Help))
	value := ""
	if takesValue(f) {
		value = ":" + zq(f.FormatPlaceHolder()) + ":" + zshAction(valueCompletion(f.Value))
	}
	eq := ""
	if takesValue(f) {
		eq = "="
	}
	if f.Short == 0 && len(f.Aliases) == 0 {
		return "'--" + f.Name + eq + "[" + help + "]" + value + "'"
	}
	// One flag under several names: each excludes the others.
	var names, specs []string
	if f.Short != 0 {
		names = append(names, "-"+string(f.Short))
		specs = append(specs, "-"+string(f.Short))
	}
	for _, n := range append([]string{f.Name}, f.Aliases...) {
		names = append(names, "--"+n)
		specs = append(specs, "--"+n+eq)
	}
	return "'(" + strings.Join(names, " ") + ")'{" + strings.Join(specs, ",") + "}'[" + help + "]" + value + "'"
}

func zshArg(a *kong.Value) string {
	spec := ":"
	if !a.Required {
		spec = "::"
	}
	if a.IsCumulative() {
		spec = "*" + spec
	}
	return "'" + spec + zq(a.Name) + ":" + zshAction(valueCompletion(a)) + "'"
}

// Zsh returns the zsh completion function (_ifl).
func Zsh(app *kong.Application) []byte {
	var b strings.Builder
	b.WriteString(`#compdef ifl
# zsh completion for ifl. Generated from ifl's command line by
# internal/clidoc (make docs); do not edit.

_ifl() {
	local curcontext=$curcontext state line ret=1
	typeset -A opt_args
	local -a commands global
	commands=(
`)
	for _, c := range commands(app) {
		// _describe splits at colons and nothing else.
		desc := strings.ReplaceAll(strings.ReplaceAll(oneLine(c.Help), ":", `\:`), "'", `'\''`)
		fmt.Fprintf(&b, "\t\t'%s:%s'\n", c.Name, desc)
	}
	b.WriteString("\t)\n\tglobal=(\n")
	for _, f := range flags(app.Node) {
		fmt.Fprintf(&b, "\t\t%s\n", zshFlag(f))
	}
	b.WriteString(`	)
	_arguments -C $global '1: :->command' '*:: :->args' && ret=0
	case $state in
	command)
		_describe -t commands 'ifl command' commands && ret=0
		;;
	args)
		curcontext=${curcontext%:*:*}:ifl-$line[1]:
		case $line[1] in
`)
	for _, c := range commands(app) {
		fmt.Fprintf(&b, "\t\t%s)\n\t\t\t_arguments $global", c.Name)
		for _, f := range flags(c) {
			b.WriteString(" \\\n\t\t\t\t" + zshFlag(f))
		}
		for _, a := range c.Positional {
			b.WriteString(" \\\n\t\t\t\t" + zshArg(a))
		}
		b.WriteString(" && ret=0\n\t\t\t;;\n")
	}
	b.WriteString("\t\tesac\n\t\t;;\n\tesac\n\treturn ret\n}\n\n_ifl \"$@\"\n")
	return []byte(b.String())
}
