package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"io/fs"
	"net"
	"net/netip"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ifl-project/ifl/internal/cli/schema"
	"github.com/ifl-project/ifl/internal/cli/schema/schematest"
	"github.com/ifl-project/ifl/internal/controller/engine"
	"github.com/ifl-project/ifl/internal/controller/inventory"
	"github.com/ifl-project/ifl/internal/controller/verify"
	"github.com/ifl-project/ifl/proto"
)

// closedPort returns a port on 127.0.0.1 that nothing listens on.
func closedPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return port
}

// TestOutputMatchesSchema validates the real JSON and YAML of every command
// that has a schema against it, on the paths that need no privilege.
func TestOutputMatchesSchema(t *testing.T) {
	keyFile, port, _ := startAgent(t)
	t.Setenv("IFL_STATE", filepath.Join(t.TempDir(), "inventory.json"))
	p, closed := strconv.Itoa(port), strconv.Itoa(closedPort(t))
	for _, tt := range []struct {
		command string
		args    []string
		code    int
	}{
		{"probe", []string{"probe", "--network-key", keyFile, "--connect", "--all", "-p", p, "127.0.0.1-3"}, 0},
		{"probe", []string{"probe", "--network-key", keyFile, "--connect", "--no-state", "-p", closed, "127.0.0.1"}, 0},
		{"ping", []string{"ping", "--network-key", keyFile, "127.0.0.1:" + p}, 0},
		{"ping", []string{"ping", "--network-key", keyFile, "127.0.0.1:" + closed}, 1},
		{"scan", []string{"scan", "--connect", "--all", "-p", p + "," + closed, "127.0.0.1"}, 0},
	} {
		for _, format := range []string{"json", "yaml"} {
			args := append(tt.args, "-o", format)
			code, stdout, stderr := run(t, args...)
			if code != tt.code {
				t.Errorf("%v: exit %d, want %d: %s", args, code, tt.code, stderr)
				continue
			}
			if format == "json" {
				schematest.ValidateJSON(t, tt.command, []byte(stdout))
			} else {
				schematest.ValidateYAML(t, tt.command, []byte(stdout))
			}
		}
	}
}

// TestFullReportsMatchSchema validates reports in which every field that
// may be left out is there: what real runs on loopback cannot show
// (warnings, renames, conflicting MACs, truncated facts).
func TestFullReportsMatchSchema(t *testing.T) {
	facts := hostileFacts()
	facts.Truncated = &proto.Truncated{Interfaces: 1, Labels: 2}
	rs := []verify.Result{
		{Addr: mustAddr("198.18.0.5"), Port: 7440, Status: verify.Agent, Identity: "0123456789abcdef", Facts: facts, Latency: time.Millisecond},
		{Addr: mustAddr("198.18.0.6"), Port: 7440, Status: verify.Rejected, Reason: verify.ReasonWrongKey, Err: proto.ErrRejected, Latency: time.Millisecond},
		{Addr: mustAddr("198.18.0.7"), Port: 7440, Status: verify.Down, Reason: verify.ReasonNoARP, Err: net.ErrClosed},
		{Addr: mustAddr("198.18.0.8"), Port: 7440, Status: verify.Busy, Reason: verify.ReasonBusy, Identity: "89abcdef01234567", Err: &proto.Error{Code: proto.CodeBusy, Message: "m"}, Latency: time.Millisecond},
	}
	hc := inventory.HostChange{Identity: "0123456789abcdef", Name: "web", Hostname: "web", OldName: "old", From: "198.18.0.4", To: "198.18.0.5", Unseen: time.Hour}
	ch := &inventory.Changes{New: []inventory.HostChange{hc}, Moved: []inventory.HostChange{hc}, Renamed: []inventory.HostChange{hc}, Unseen: []inventory.HostChange{hc},
		Warnings: []inventory.Warning{{Kind: inventory.KindLabels, Identity: "0123", Name: "web", Hostname: "web", Addr: "198.18.0.5",
			OtherIdentity: "4567", OtherName: "db", OtherHostname: "db", OtherAddr: "198.18.0.6",
			Dropped: []inventory.DroppedLabel{{Key: "ifl", Reason: "reserved"}}, DroppedCount: 1, Message: "m"}}}
	arp := arpReport{SchemaVersion: SchemaVersion, Interface: "eth0",
		Hosts: []arpHost{{Address: "198.18.0.5", MAC: "02:00:00:00:00:05", Vendor: "Intel Corporate", RTTMS: 0.5, Others: []string{"02:00:00:00:00:06"}}}}
	for _, tt := range []struct {
		command string
		report  any
	}{
		{"probe", newProbeReport(rs, summary{Method: engine.MethodRaw, Busy: 1}, ch, map[string]string{"0123456789abcdef": "web"})},
		{"ping", pingReport{SchemaVersion, newHostReport(rs[0], "web", true)}},
		{"ping", pingReport{SchemaVersion, newHostReport(rs[2], "web", true)}},
		{"ping", pingReport{SchemaVersion, newHostReport(rs[3], "web", true)}},
		{"arp-scan", arp},
		{"scan", scanReport{SchemaVersion: SchemaVersion, Ports: []scanRow{{Address: "198.18.0.5", Port: 22, Status: "open", RTTMS: msOrNil(time.Millisecond)}}, Summary: scanSummary{Method: engine.MethodRaw, Ports: 1}}},
	} {
		var j, y bytes.Buffer
		if err := writeJSON(&j, tt.report); err != nil {
			t.Fatal(err)
		}
		if err := writeYAML(&y, tt.report); err != nil {
			t.Fatal(err)
		}
		schematest.ValidateJSON(t, tt.command, j.Bytes())
		schematest.ValidateYAML(t, tt.command, y.Bytes())
	}
}

// TestSchemasCoverReports walks each report's Go type beside its schema:
// a field that one has and the other lacks fails, so that neither can
// drift from the other (a field added to a struct must be added to the
// schema, with its meaning).
func TestSchemasCoverReports(t *testing.T) {
	docs := map[string]map[string]any{}
	err := fs.WalkDir(schema.FS, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := schema.FS.ReadFile(path)
		if err != nil {
			return err
		}
		var doc map[string]any
		if err := json.Unmarshal(b, &doc); err != nil {
			t.Errorf("%s: %v", path, err)
		}
		docs[path] = doc
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for command, typ := range map[string]reflect.Type{
		"probe":    reflect.TypeFor[probeReport](),
		"ping":     reflect.TypeFor[pingReport](),
		"scan":     reflect.TypeFor[scanReport](),
		"arp-scan": reflect.TypeFor[arpReport](),
	} {
		file := command + ".schema.json"
		walkSchema(t, docs, file, docs[file], typ, command)
	}
	// The report's copies of the inventory's changes copy every field.
	for _, pair := range [][2]reflect.Type{
		{reflect.TypeFor[inventory.HostChange](), reflect.TypeFor[hostChangeReport]()},
		{reflect.TypeFor[inventory.Warning](), reflect.TypeFor[warningReport]()},
		{reflect.TypeFor[inventory.DroppedLabel](), reflect.TypeFor[droppedLabel]()},
		{reflect.TypeFor[inventory.Changes](), reflect.TypeFor[changesReport]()},
	} {
		if pair[0].NumField() != pair[1].NumField() {
			t.Errorf("%v has %d fields, %v %d: copy the new one into the report (newChangesReport) and the schema", pair[0], pair[0].NumField(), pair[1], pair[1].NumField())
		}
	}
}

// resolve follows node's $ref, in file or another one.
func resolve(t *testing.T, docs map[string]map[string]any, file string, node map[string]any) (string, map[string]any) {
	ref, ok := node["$ref"].(string)
	if !ok {
		return file, nil
	}
	target, frag, _ := strings.Cut(ref, "#")
	if target != "" {
		file = target
	}
	n := docs[file]
	if n == nil {
		t.Fatalf("%s: $ref %q: no such schema", file, ref)
	}
	for _, part := range strings.Split(strings.TrimPrefix(frag, "/"), "/") {
		if part == "" {
			continue
		}
		n, _ = n[part].(map[string]any)
	}
	if n == nil {
		t.Fatalf("%s: $ref %q leads nowhere", file, ref)
	}
	return file, n
}

// properties gathers node's properties and those of the schema it refers
// to, each with the file it is in.
func properties(t *testing.T, docs map[string]map[string]any, file string, node map[string]any) map[string]struct {
	file string
	node map[string]any
} {
	out := map[string]struct {
		file string
		node map[string]any
	}{}
	if f, ref := resolve(t, docs, file, node); ref != nil {
		for k, v := range properties(t, docs, f, ref) {
			out[k] = v
		}
	}
	props, _ := node["properties"].(map[string]any)
	for k, v := range props {
		m, _ := v.(map[string]any)
		out[k] = struct {
			file string
			node map[string]any
		}{file, m}
	}
	return out
}

var textMarshaler = reflect.TypeFor[interface{ MarshalText() ([]byte, error) }]()

func walkSchema(t *testing.T, docs map[string]map[string]any, file string, node map[string]any, typ reflect.Type, where string) {
	for typ.Kind() == reflect.Pointer {
		typ = typ.Elem()
	}
	if typ.Implements(textMarshaler) || reflect.PointerTo(typ).Implements(textMarshaler) {
		return // a string
	}
	switch typ.Kind() {
	case reflect.Slice:
		if f, ref := resolve(t, docs, file, node); ref != nil {
			file, node = f, ref
		}
		items, _ := node["items"].(map[string]any)
		if items == nil {
			t.Errorf("%s (%s): a list in Go, no items in the schema", where, file)
			return
		}
		walkSchema(t, docs, file, items, typ.Elem(), where+"[]")
		return
	case reflect.Map:
		return
	case reflect.Struct:
	default:
		return
	}
	props := properties(t, docs, file, node)
	seen := map[string]bool{}
	var fields func(typ reflect.Type)
	fields = func(typ reflect.Type) {
		for i := range typ.NumField() {
			f := typ.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "-" {
				continue
			}
			if f.Anonymous && name == "" {
				fields(f.Type)
				continue
			}
			if !f.IsExported() {
				continue
			}
			if name == "" {
				name = f.Name
			}
			seen[name] = true
			p, ok := props[name]
			if !ok {
				t.Errorf("%s: field %s (%s) is not in the schema (%s)", where, name, f.Name, file)
				continue
			}
			walkSchema(t, docs, p.file, p.node, f.Type, where+"."+name)
		}
	}
	fields(typ)
	for name := range props {
		if !seen[name] {
			t.Errorf("%s: the schema (%s) has %s, the Go type %v does not", where, file, name, typ)
		}
	}
}

// tsvRows splits TSV output into rows of fields, checking what every
// row must be: a line of tab-separated fields, none empty, none with a
// space or a control character.
func tsvRows(t *testing.T, out string, width int) [][]string {
	t.Helper()
	if !strings.HasSuffix(out, "\n") {
		t.Fatalf("not whole lines: %q", out)
	}
	var rows [][]string
	for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		fields := strings.Split(line, "\t")
		if len(fields) != width {
			t.Errorf("%d fields, want %d: %q", len(fields), width, line)
		}
		for _, f := range fields {
			if f == "" || strings.ContainsFunc(f, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
				t.Errorf("field %q of %q: empty, or a blank or a control character in it", f, line)
			}
		}
		rows = append(rows, fields)
	}
	return rows
}

func TestProbeTSV(t *testing.T) {
	keyFile, port, id := startAgent(t)
	t.Setenv("IFL_STATE", filepath.Join(t.TempDir(), "inventory.json"))
	p := strconv.Itoa(port)
	code, stdout, stderr := run(t, "probe", "--network-key", keyFile, "--connect", "--all", "-p", p, "127.0.0.1", "127.0.0.2", "-o", "tsv")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	rows := tsvRows(t, stdout, 9)
	if len(rows) != 3 {
		t.Fatalf("%d rows, want a header and 2:\n%s", len(rows), stdout)
	}
	if diff := cmp.Diff([]string{"address", "port", "status", "reason", "identity", "hostname", "other_addresses", "rtt_ms", "name"}, rows[0]); diff != "" {
		t.Errorf("header (-want +got):\n%s", diff)
	}
	agent := rows[1]
	if agent[0] != "127.0.0.1" || agent[1] != p || agent[2] != "agent" || agent[3] != "-" || agent[4] != id.Fingerprint() || agent[5] == "-" || agent[8] != agent[5] {
		t.Errorf("agent row: %q", agent)
	}
	if _, err := strconv.ParseFloat(agent[7], 64); err != nil {
		t.Errorf("rtt_ms %q: %v", agent[7], err)
	}
	// 127.0.0.2 answers on loopback too: the same agent, or nothing.
	if other := rows[2]; other[0] != "127.0.0.2" || (other[2] != "agent" && (other[2] != "closed" || other[3] != "refused" || other[4] != "-" || other[7] != "-" || other[8] != "-")) {
		t.Errorf("second row: %q", other)
	}

	code, stdout, _ = run(t, "probe", "--network-key", keyFile, "--connect", "--no-state", "-p", p, "127.0.0.1", "-o", "tsv", "--no-header")
	if rows := tsvRows(t, stdout, 9); code != 0 || len(rows) != 1 || rows[0][0] != "127.0.0.1" || rows[0][8] != "-" {
		t.Errorf("--no-header: exit %d\n%s", code, stdout)
	}
}

func TestScanTSV(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	open, closed := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port), strconv.Itoa(closedPort(t))
	code, stdout, stderr := run(t, "scan", "--connect", "--all", "-p", open+","+closed, "127.0.0.1", "-o", "tsv")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	rows := tsvRows(t, stdout, 5)
	if len(rows) != 3 {
		t.Fatalf("%q", stdout)
	}
	if diff := cmp.Diff([]string{"address", "port", "status", "rtt_ms", "name"}, rows[0]); diff != "" {
		t.Errorf("header (-want +got):\n%s", diff)
	}
	byPort := map[string][]string{rows[1][1]: rows[1], rows[2][1]: rows[2]}
	if r := byPort[open]; r == nil || r[0] != "127.0.0.1" || r[2] != "open" {
		t.Errorf("open row: %q", r)
	}
	if r := byPort[closed]; r == nil || r[2] != "closed" {
		t.Errorf("closed row: %q", r)
	}
	// The connect() path speaks of connections, not of packets.
	if !strings.Contains(stderr, "1 open, 1 closed, 0 filtered; 1 address, 2 connections with connect(), in ") || strings.Contains(stderr, "packets") {
		t.Errorf("summary %q", stderr)
	}
}

func TestPingTSV(t *testing.T) {
	keyFile, port, id := startAgent(t)
	code, stdout, stderr := run(t, "ping", "--network-key", keyFile, "127.0.0.1:"+strconv.Itoa(port), "-o", "tsv")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	values := map[string]string{}
	for i, r := range tsvRows(t, stdout, 2) {
		if i == 0 {
			if r[0] != "key" || r[1] != "value" {
				t.Errorf("header %q", r)
			}
			continue
		}
		if _, dup := values[r[0]]; dup {
			t.Errorf("key %s twice", r[0])
		}
		values[r[0]] = r[1]
	}
	for k, want := range map[string]string{"address": "127.0.0.1", "port": strconv.Itoa(port), "status": "agent", "reason": "-", "identity": id.Fingerprint()} {
		if values[k] != want {
			t.Errorf("%s = %q, want %q", k, values[k], want)
		}
	}
	if values["kernel"] == "" || values["interfaces.0.name"] == "" {
		t.Errorf("facts missing:\n%s", stdout)
	}
}

// TestTSVHostileAgent: what a hostile agent chose cannot add a field or a
// row, nor put a space or a control character in one.
func TestTSVHostileAgent(t *testing.T) {
	facts := hostileFacts()
	facts.Hostname = "a b\tc\nd\re"
	r := verify.Result{Addr: mustAddr("198.18.0.5"), Port: 7440, Status: verify.Agent, Identity: "0123456789abcdef", Facts: facts, Latency: time.Millisecond}
	failed := verify.Result{Addr: mustAddr("198.18.0.6"), Port: 7440, Status: verify.Failed, Reason: verify.ReasonError,
		Err: &proto.Error{Code: "x", Message: "a\tb\nc d"}}
	var out bytes.Buffer
	if err := writeProbeTSV(&out, false, []verify.Result{r, failed}, map[string]string{r.Identity: "web-1"}); err != nil {
		t.Fatal(err)
	}
	rows := tsvRows(t, out.String(), 9)
	if len(rows) != 3 || rows[1][5] != `a\x20b\tc\nd\re` || rows[2][3] != "error" {
		t.Errorf("rows %q", rows)
	}
	out.Reset()
	if err := writePing(&out, &OutputFlags{Output: formatTSV}, r, "web-1"); err != nil {
		t.Fatal(err)
	}
	tsvRows(t, out.String(), 2)
	out.Reset()
	if err := writePing(&out, &OutputFlags{Output: formatTSV, NoHeader: true}, failed, ""); err != nil {
		t.Fatal(err)
	}
	if rows := tsvRows(t, out.String(), 2); rows[0][0] != "address" {
		t.Errorf("--no-header: %q", rows)
	}
	for in, want := range map[string]string{"": "-", "-": `\x2d`, "a b": `a\x20b`, `a\x20b`: `a\\x20b`, "\x1b[2J": `\x1b[2J`} {
		if got := tsvText(in); got != want {
			t.Errorf("tsvText(%q) = %q, want %q", in, got, want)
		}
	}
	if got := tsvList([]string{"a,b", "c"}); got != `a\x2cb,c` {
		t.Errorf("tsvList: %q", got)
	}
}

func TestInventoryTSV(t *testing.T) {
	state := filepath.Join(t.TempDir(), "inventory.json")
	seen := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	err := inventory.Update(state, func(s *inventory.State) error {
		s.Apply(seen, []inventory.Observation{{
			Identity: "0123456789abcdef0123456789abcdef", Addr: netip.MustParseAddr("198.18.0.5"), Port: 7440,
			Facts: &proto.Facts{Hostname: "web-1", MachineID: "m", Labels: map[string]string{"role": "web", "tier": "front"}},
		}}, func(netip.Addr) bool { return true }, true)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := run(t, "inventory", "--state", state, "-o", "tsv")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	want := [][]string{
		{"name", "address", "identity", "last_seen", "moves", "groups"},
		{"web-1", "198.18.0.5", "0123456789abcdef0123456789abcdef", "2030-01-02T03:04:05Z", "0", "role_web,tier_front"},
	}
	if diff := cmp.Diff(want, tsvRows(t, stdout, 6)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	code, stdout, _ = run(t, "inventory", "--state", state, "-o", "tsv", "--no-header")
	if diff := cmp.Diff(want[1:], tsvRows(t, stdout, 6)); code != 0 || diff != "" {
		t.Errorf("--no-header: exit %d (-want +got):\n%s", code, diff)
	}
}

// TestOutputUsageErrors: the exact message and exit status of each
// contradiction between the output flags.
func TestOutputUsageErrors(t *testing.T) {
	state := filepath.Join(t.TempDir(), "inventory.json")
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"probe", "--no-header", "198.18.0.1"}, "ifl: --no-header: only -o tsv has a header line to leave out (the output is table)\n"},
		{[]string{"scan", "--no-header", "--json", "198.18.0.1"}, "ifl: --no-header: only -o tsv has a header line to leave out (the output is json)\n"},
		{[]string{"arp-scan", "eth0", "--no-header", "-o", "yaml"}, "ifl: --no-header: only -o tsv has a header line to leave out (the output is yaml)\n"},
		{[]string{"ping", "--no-header", "127.0.0.1"}, "ifl: --no-header: only -o tsv has a header line to leave out (the output is table)\n"},
		{[]string{"ping", "--json", "-o", "tsv", "127.0.0.1"}, "ifl: --json and -o tsv ask for two formats: give one\n"},
		{[]string{"scan", "--json", "-o", "yaml", "198.18.0.1"}, "ifl: --json and -o yaml ask for two formats: give one\n"},
		{[]string{"probe", "--watch", "1m", "-o", "tsv", "198.18.0.1"}, "ifl: --watch with -o tsv: a watch prints events as they come; -o json prints each round as one line of JSON\n"},
		{[]string{"inventory", "--state", state, "--no-header"}, "ifl: --no-header: only -o tsv has a header line to leave out (the output is table)\n"},
		{[]string{"inventory", "--state", state, "--list", "-o", "tsv"}, "ifl: --list prints Ansible's JSON; -o tsv asks for another format: give one\n"},
		{[]string{"inventory", "--state", state, "--host", "web", "-o", "yaml"}, "ifl: --host prints Ansible's JSON; -o yaml asks for another format: give one\n"},
		{[]string{"inventory", "--state", state, "--list", "--no-header"}, "ifl: --no-header: only -o tsv has a header line to leave out (the output is Ansible's JSON)\n"},
	} {
		code, stdout, stderr := run(t, tt.args...)
		if code != 2 || stderr != tt.want || stdout != "" {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit 2, %q", tt.args, code, stdout, stderr, tt.want)
		}
	}
}

// TestUnsureError: a run whose own drops may have hidden answers says so,
// with what to do, and exits 1; one that made up for them says nothing.
func TestUnsureError(t *testing.T) {
	if err := unsureError("scan", 500, 0, "ports filtered"); err != nil {
		t.Errorf("drops made up for: %v", err)
	}
	err := unsureError("scan", 500, 3, "addresses down or ports filtered")
	var ee *exitError
	if !errors.As(err, &ee) || ee.code != 1 {
		t.Fatalf("%v: want exit status 1", err)
	}
	if want := "scan: this host dropped 500 answers for want of room in its sockets (the scan outran its own reader), and 3 addresses down or ports filtered after them may be wrong: run it again, with a lower --rate"; err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
}
