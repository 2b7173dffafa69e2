package clidoc

import (
	"strings"

	"github.com/alecthomas/kong"
)

// roff escapes text for a man page: backslashes, minus signs (so that
// options copied from the page work), and a leading dot or quote that
// roff would take for a request.
func roff(s string) string {
	s = strings.ReplaceAll(s, `\`, `\e`)
	s = strings.ReplaceAll(s, "-", `\-`)
	if strings.HasPrefix(s, ".") || strings.HasPrefix(s, "'") {
		s = `\&` + s
	}
	return s
}

// verbatim renders lines as they are (examples, configs), in a no-fill
// block; blank lines stay blank.
func verbatim(text string) string {
	var b strings.Builder
	b.WriteString(".nf\n")
	for _, l := range strings.Split(strings.TrimRight(text, "\n"), "\n") {
		if strings.TrimSpace(l) == "" {
			b.WriteString("\n")
			continue
		}
		b.WriteString(roff(l) + "\n")
	}
	b.WriteString(".fi\n")
	return b.String()
}

// detail renders a command's long help: its paragraphs filled, its
// indented lines (examples, config) as they are.
func detail(text string) string {
	var b strings.Builder
	var block []string
	flush := func() {
		if len(block) > 0 {
			b.WriteString(".RS 4\n" + verbatim(strings.Join(block, "\n")) + ".RE\n")
			block = nil
		}
	}
	for _, l := range strings.Split(strings.TrimRight(text, "\n"), "\n") {
		switch {
		case strings.TrimSpace(l) == "":
			flush()
			b.WriteString(".PP\n")
		case l[0] == ' ' || l[0] == '\t':
			block = append(block, l)
		default:
			flush()
			b.WriteString(roff(strings.TrimSpace(l)) + "\n")
		}
	}
	flush()
	return b.String()
}

func manFlag(f *kong.Flag) string {
	var names []string
	if f.Short != 0 {
		names = append(names, `\fB\-`+string(f.Short)+`\fR`)
	}
	for _, n := range append([]string{f.Name}, f.Aliases...) {
		long := `\fB\-\-` + roff(n) + `\fR`
		if takesValue(f) {
			long += `=\fI` + roff(f.FormatPlaceHolder()) + `\fR`
		}
		names = append(names, long)
	}
	help := oneLine(f.Help)
	if len(f.Envs) > 0 {
		help += " Environment: " + strings.Join(f.Envs, ", ") + "."
	}
	return ".TP\n" + strings.Join(names, ", ") + "\n" + roff(help) + "\n"
}

func manArg(a *kong.Value) string {
	return ".TP\n" + `\fI` + roff(a.Summary()) + `\fR` + "\n" + roff(oneLine(a.Help)) + "\n"
}

func synopsis(c *kong.Node) string {
	s := `\fBifl\fR [\fIglobal flags\fR] \fB` + roff(c.Name) + `\fR`
	if len(flags(c)) > 0 {
		s += ` [\fIflags\fR]`
	}
	for _, a := range c.Positional {
		s += ` \fI` + roff(a.Summary()) + `\fR`
	}
	return s
}

// Man returns the ifl(1) man page: the description, the global flags,
// then one section per command with its help, arguments and flags.
func Man(app *kong.Application) []byte {
	var b strings.Builder
	b.WriteString(manHead)
	b.WriteString(manDescription(app.Help))
	b.WriteString(".SH GLOBAL FLAGS\nEvery command takes these.\n")
	for _, f := range flags(app.Node) {
		b.WriteString(manFlag(f))
	}
	b.WriteString(".SH COMMANDS\n")
	for _, c := range commands(app) {
		b.WriteString(manCommand(c))
	}
	b.WriteString(manTail)
	return []byte(b.String())
}

// manHead is the page's header, name and synopsis, up to its
// description.
const manHead = `.\" Generated from ifl's command line by internal/clidoc (make docs); do not edit.
.TH IFL 1 "" "ifl" "ifl manual"
.SH NAME
ifl \- find the hosts of a fleet that run the ifl agent, and keep an Ansible inventory
.SH SYNOPSIS
\fBifl\fR [\fIglobal flags\fR] \fIcommand\fR [\fIflags\fR] [\fIarguments\fR]
.br
\fBifl\fR \fIcommand\fR \fB\-\-help\fR
.SH DESCRIPTION
`

// manDescription renders the application's help: its first paragraph,
// then the quick start that follows, its title filled and its lines as
// they are.
func manDescription(help string) string {
	var b strings.Builder
	desc, quick, _ := strings.Cut(help, "\n\n")
	b.WriteString(roff(oneLine(desc)) + "\n")
	if quick != "" {
		b.WriteString(".PP\n")
		title, body, _ := strings.Cut(quick, "\n")
		b.WriteString(roff(strings.TrimSpace(title)) + "\n")
		b.WriteString(".PP\n.RS 4\n" + verbatim(body) + ".RE\n")
	}
	return b.String()
}

// manCommand renders a command's section: its synopsis, help, arguments
// and flags.
func manCommand(c *kong.Node) string {
	var b strings.Builder
	b.WriteString(".SS \"" + strings.ReplaceAll(synopsis(c), `"`, `\(dq`) + "\"\n")
	b.WriteString(roff(oneLine(c.Help)) + "\n")
	if c.Detail != "" {
		b.WriteString(".PP\n" + detail(c.Detail))
	}
	if len(c.Positional) > 0 {
		b.WriteString(".PP\nArguments:\n.RS 4\n")
		for _, a := range c.Positional {
			b.WriteString(manArg(a))
		}
		b.WriteString(".RE\n")
	}
	if fl := flags(c); len(fl) > 0 {
		b.WriteString(".PP\nFlags:\n.RS 4\n")
		for _, f := range fl {
			b.WriteString(manFlag(f))
		}
		b.WriteString(".RE\n")
	}
	return b.String()
}

// manTail is the page's sections after the commands: exit status, files
// and see also.
const manTail = `.SH EXIT STATUS
.TP
0
Success; also a \fB\-\-watch\fR, and the agent, stopped by SIGTERM (\fBsystemctl stop\fR).
.TP
1
Problems found: a host that is not an agent (\fBping\fR), most open ports rejecting the handshake (a network key that is not the fleet's, or clocks apart), a silenced broadcast round, answers dropped by this host that may hide hosts, a host the inventory does not know (\fBinventory \-\-host\fR).
.TP
2
A usage or environment error: a bad flag or value, a missing or unreadable key file, a state that cannot be read or written.
.TP
130
Interrupted by Ctrl\-C (SIGINT), a \fB\-\-watch\fR included; what was found so far is printed.
.SH SYSTEMD UNITS
.TP
\fBifl\-agent.service\fR
Runs \fBifl agent\fR with no privilege, its keys handed in as credentials from \fI/etc/ifl\fR. Open TCP and UDP port 7440 in the host's firewall.
.TP
\fBifl\-probe.service\fR
Runs \fBifl probe \-\-watch 5m\fR as user ifl with CAP_NET_RAW alone, keeping \fI/var/lib/ifl/inventory.json\fR. Its targets, and any other flag, are \fBIFL_PROBE_ARGS\fR, split at blanks: a line \fBIFL_PROBE_ARGS=198.18.0.0/22 \-\-exclude 198.18.0.1\fR in \fI/etc/ifl/probe.env\fR, or \fBEnvironment="IFL_PROBE_ARGS=..."\fR in a drop\-in (\fBsystemctl edit ifl\-probe\fR). Without it, the subnets of the default route's interface.
.SH FILES
.TP
\fI/etc/ifl/network.key\fR
The fleet's pre\-shared network key (mode 0600), the same on every controller and agent.
.TP
\fI/etc/ifl/agent.key\fR
This host's agent identity (mode 0600).
.TP
\fI/etc/ifl/agent.yaml\fR
The agent's configuration.
.TP
\fI/etc/ifl/probe.env\fR
\fBIFL_PROBE_ARGS\fR for \fBifl\-probe.service\fR: its targets and flags (optional).
.TP
\fI/var/lib/ifl/inventory.json\fR
The inventory state that probes keep (as root, and for \fBifl\-probe.service\fR).
.TP
\fI/usr/share/ifl/ifl\-inventory\fR
The Ansible dynamic inventory script; \fBIFL\fR names the ifl binary if it is not on PATH.
.TP
\fI/usr/share/ieee\-data/oui.txt\fR
The IEEE registry of MAC prefixes, read for vendor names when installed; a copy built into ifl fills in what it lacks.
.SH SEE ALSO
\fBsystemctl\fR(1), \fBsystemd.exec\fR(5), \fBansible\-inventory\fR(1)
`
