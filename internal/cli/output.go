package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/ifl-project/ifl/internal/support/untrusted"
)

// SchemaVersion is the version of every report's JSON and YAML layout
// (internal/cli/schema): it changes when a field is renamed or removed or
// changes meaning, not when one is added.
const SchemaVersion = 1

// Output formats.
const (
	formatTable = "table" // aligned columns, for people
	formatTSV   = "tsv"   // one header line, then tab-separated rows, for scripts
	formatJSON  = "json"
	formatYAML  = "yaml"
)

// OutputFlags choose the output format of a command that prints a report.
type OutputFlags struct {
	Output   string `short:"o" enum:"table,tsv,json,yaml" default:"table" help:"Output format: table (for people), tsv (tab-separated rows for scripts), json or yaml (see README: Output formats)."`
	JSON     bool   `help:"Same as -o json."`
	NoHeader bool   `name:"no-header" help:"With -o tsv, leave out the header line."`
}

// format returns the one format asked for, or a usage error when the
// flags contradict each other.
func (o *OutputFlags) format() (string, error) {
	f, err := outputFormat(o.JSON, o.Output)
	if err != nil {
		return "", err
	}
	if err := checkNoHeader(o.NoHeader, f); err != nil {
		return "", err
	}
	o.Output = f
	return f, nil
}

// checkNoHeader refuses --no-header where there is no header to drop:
// silently ignoring it would let a script believe it had a say.
func checkNoHeader(noHeader bool, format string) error {
	if noHeader && format != formatTSV {
		return fmt.Errorf("--no-header: only -o tsv has a header line to leave out (the output is %s)", format)
	}
	return nil
}

// writeJSON writes v as indented JSON, with every rune that is not
// printable escaped (untrusted.JSON): the decoded values are exact, and
// the text is as safe on a terminal as a table.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(untrusted.JSONWriter(w))
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// writeYAML writes v as YAML. yaml.v3 reads the yaml tags, which every
// report type gives with the same names as its json tags. A scalar that
// holds a rune that is not printable is double-quoted, and the rune
// escaped there (untrusted.YAML).
func writeYAML(w io.Writer, v any) error {
	var n yaml.Node
	if err := n.Encode(v); err != nil {
		return err
	}
	quoteUnprintable(&n)
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(&n); err != nil {
		return err
	}
	if err := enc.Close(); err != nil {
		return err
	}
	_, err := w.Write(untrusted.YAML(b.Bytes()))
	return err
}

// quoteUnprintable double-quotes every scalar of the tree that holds a
// rune untrusted.YAML escapes: only there is the escape read back as
// that rune.
func quoteUnprintable(n *yaml.Node) {
	if n.Kind == yaml.ScalarNode && untrusted.NeedsQuoting(n.Value) {
		n.Style = yaml.DoubleQuotedStyle
	}
	for _, c := range n.Content {
		quoteUnprintable(c)
	}
}

// writeMachine writes v in a machine format, and reports whether format
// was one.
func writeMachine(w io.Writer, format string, v any) (bool, error) {
	switch format {
	case formatJSON:
		return true, writeJSON(w, v)
	case formatYAML:
		return true, writeYAML(w, v)
	}
	return false, nil
}

// ms is a duration in milliseconds, to the microsecond.
func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// msOrNil is ms for a round trip that may not have been measured (no
// answer): nil then, so that JSON says nothing rather than 0.
func msOrNil(d time.Duration) *float64 {
	if d <= 0 {
		return nil
	}
	v := ms(d)
	return &v
}

// unsureError is the error of a run whose sockets dropped answers that its
// retries could not make up for: exit status 1, with what may be wrong
// and what to do.
func unsureError(cmd string, dropped, unsure int, what string) error {
	if unsure == 0 {
		return nil
	}
	return problem(fmt.Errorf("%s: this host dropped %d answers for want of room in its sockets (the scan outran its own reader), and %d %s after them may be wrong: run it again, with a lower --rate", cmd, dropped, unsure, what))
}
