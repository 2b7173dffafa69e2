package cli

import (
	"errors"
	"fmt"
	"net"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/alecthomas/kong"
)

// givenFlags are the flags given on the command line itself, by name:
// not their defaults, nor what the environment (IFL_STATE, ...) set.
func givenFlags(kctx *kong.Context) map[string]bool {
	out := map[string]bool{}
	for _, p := range kctx.Path {
		if p.Flag != nil {
			out[p.Flag.Name] = true
		}
	}
	return out
}

// valueFlags returns the spellings (--name, its aliases, -x) of every
// flag of app that takes a value, each with the long form to write it in.
func valueFlags(app *kong.Application) map[string]string {
	out := map[string]string{}
	var walk func(n *kong.Node)
	walk = func(n *kong.Node) {
		for _, f := range n.Flags {
			if f.IsBool() || f.IsCounter() {
				continue
			}
			long := "--" + f.Name
			out[long] = long
			for _, a := range f.Aliases {
				out["--"+a] = long
			}
			if f.Short != 0 {
				out["-"+string(f.Short)] = long
			}
		}
		for _, c := range n.Children {
			walk(c)
		}
	}
	walk(app.Node)
	return out
}

// joinDashValues writes a flag that takes a value and a value that starts
// with a dash as one word, --flag=value: kong reads "-p -1", "--rate -5"
// and "scan -p -1024" as two flags, and would report a short flag where
// the value is what is wrong. Only a dash alone ("-", every port) or a
// dash and a digit join; "--state --no-state" stays two flags.
func joinDashValues(app *kong.Application, args []string) []string {
	takes := valueFlags(app)
	out := make([]string, 0, len(args))
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return append(out, args[i:]...)
		}
		if long, ok := takes[a]; ok && i+1 < len(args) && dashValue(args[i+1]) {
			out = append(out, long+"="+args[i+1])
			i++
			continue
		}
		out = append(out, a)
	}
	return out
}

func dashValue(s string) bool {
	return s == "-" || len(s) > 1 && s[0] == '-' && s[1] >= '0' && s[1] <= '9'
}

// mappers replace kong's messages for numbers and durations, which name
// neither what is allowed nor an example, with ones that do; and read
// type:"port" flags: a port number or a service name.
func mappers() []kong.Option {
	return []kong.Option{
		kong.TypeMapper(reflect.TypeFor[int](), kong.MapperFunc(decodeInt)),
		kong.TypeMapper(reflect.TypeFor[time.Duration](), kong.MapperFunc(decodeDuration)),
		kong.NamedMapper("port", kong.MapperFunc(decodePort)),
	}
}

// example is the flag's default as an example of a good value, if it has
// a useful one.
func example(ctx *kong.DecodeContext) string {
	if ctx.Value == nil || ctx.Value.Default == "" || ctx.Value.Default == "0" || ctx.Value.Default == "0s" {
		return ""
	}
	return ctx.Value.Default
}

func popString(ctx *kong.DecodeContext, what string) (string, error) {
	t, err := ctx.Scan.PopValue(what)
	if err != nil {
		return "", err
	}
	return fmt.Sprint(t.Value), nil
}

func decodeInt(ctx *kong.DecodeContext, target reflect.Value) error {
	s, err := popString(ctx, "int")
	if err != nil {
		return err
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		msg := fmt.Sprintf("%q is not a whole number", s)
		if ex := example(ctx); ex != "" {
			msg += " (the default is " + ex + ")"
		}
		return errors.New(msg)
	}
	if target.Kind() == reflect.Ptr {
		target = target.Elem()
	}
	target.SetInt(n)
	return nil
}

func decodeDuration(ctx *kong.DecodeContext, target reflect.Value) error {
	s, err := popString(ctx, "duration")
	if err != nil {
		return err
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		ex := "such as 5m, 30s or 500ms"
		if e := example(ctx); e != "" {
			ex = "such as " + e + ", the default"
		}
		return fmt.Errorf("%q is not a duration: want a number with its unit, %s", s, ex)
	}
	if target.Kind() == reflect.Ptr {
		target = target.Elem()
	}
	target.SetInt(int64(d))
	return nil
}

// decodePort reads one port: a number, whose range each command checks
// (the agent's starts at 1024), or a service name.
func decodePort(ctx *kong.DecodeContext, target reflect.Value) error {
	s, err := popString(ctx, "port")
	if err != nil {
		return err
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		p, perr := parseOnePort(s)
		if perr != nil {
			return perr
		}
		n = int(p)
	}
	if target.Kind() == reflect.Ptr {
		target = target.Elem()
	}
	target.SetInt(int64(n))
	return nil
}

// portsHelp says what a port list may hold.
const portsHelp = "want port numbers (1-65535), ranges such as 7000-7010, 1024- (to 65535) or - (every port), or service names from /etc/services such as ssh, separated by commas"

// parseOnePort reads one port, by number or by service name.
func parseOnePort(s string) (uint16, error) {
	if strings.ContainsAny(s, ",-") {
		return 0, fmt.Errorf("%q: want one port: a number from 1 to 65535 or a service name such as ssh", s)
	}
	return portOrService(s)
}

// portOrService is a port number, or the TCP port of a service name as
// /etc/services lists it (as nmap reads -p ssh).
func portOrService(s string) (uint16, error) {
	if s == "" {
		return 0, fmt.Errorf("empty port: want a number from 1 to 65535 or a service name such as ssh")
	}
	if strings.Trim(s, "0123456789") == "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 65535 {
			return 0, fmt.Errorf("port %s: want 1-65535", s)
		}
		return uint16(n), nil
	}
	n, err := net.LookupPort("tcp", s)
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("%q is neither a port number nor a TCP service in /etc/services (want 1-65535, or a name such as ssh)", s)
	}
	return uint16(n), nil
}

// parsePorts reads a port list as nmap's -p does: numbers, ranges, open
// ranges ("1024-" to 65535, "-1024" from 1, "-" every port) and service
// names, separated by commas; the ports sorted, each once.
func parsePorts(s string) ([]uint16, error) {
	if strings.TrimSpace(s) == "" {
		return nil, fmt.Errorf("no ports: %s", portsHelp)
	}
	var set [65536]bool
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		lo, hi, isRange := strings.Cut(part, "-")
		var a, b uint16
		var err error
		switch {
		case !isRange:
			a, err = portOrService(part)
			b = a
		case lo == "" && hi == "":
			a, b = 1, 65535
		default:
			a, b = 1, 65535
			if lo != "" {
				a, err = portOrService(lo)
			}
			if err == nil && hi != "" {
				b, err = portOrService(hi)
			}
			if err == nil && b < a {
				err = fmt.Errorf("range %s ends before it starts (%d > %d)", part, a, b)
			}
		}
		if err != nil {
			return nil, fmt.Errorf("%w; %s", err, portsHelp)
		}
		for p := int(a); p <= int(b); p++ {
			set[p] = true
		}
	}
	var out []uint16
	for p := 1; p <= 65535; p++ {
		if set[p] {
			out = append(out, uint16(p))
		}
	}
	return out, nil
}
