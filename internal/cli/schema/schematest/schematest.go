// Package schematest validates ifl's JSON and YAML output against the
// schemas of package schema, for tests.
package schematest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"sync"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"go.yaml.in/yaml/v3"

	"github.com/ifl-project/ifl/internal/cli/schema"
)

var (
	once     sync.Once
	compiler *jsonschema.Compiler
	loadErr  error
	mu       sync.Mutex
	compiled = map[string]*jsonschema.Schema{}
)

func load() {
	compiler = jsonschema.NewCompiler()
	compiler.DefaultDraft(jsonschema.Draft2020)
	compiler.AssertFormat()
	loadErr = fs.WalkDir(schema.FS, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := schema.FS.ReadFile(path)
		if err != nil {
			return err
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
		if err != nil {
			return err
		}
		return compiler.AddResource(schema.Base+path, doc)
	})
}

// Schema returns the compiled schema of a command: "probe", "scan",
// "arp-scan" or "ping".
func Schema(t testing.TB, command string) *jsonschema.Schema {
	t.Helper()
	once.Do(load)
	if loadErr != nil {
		t.Fatalf("loading schemas: %v", loadErr)
	}
	mu.Lock()
	defer mu.Unlock()
	if s := compiled[command]; s != nil {
		return s
	}
	s, err := compiler.Compile(schema.Base + command + ".schema.json")
	if err != nil {
		t.Fatalf("compiling the %s schema: %v", command, err)
	}
	compiled[command] = s
	return s
}

// ValidateJSON fails t unless doc, one JSON document, is valid output of
// command.
func ValidateJSON(t testing.TB, command string, doc []byte) {
	t.Helper()
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(doc))
	if err != nil {
		t.Fatalf("%s output is not JSON: %v\n%s", command, err, doc)
	}
	if err := Schema(t, command).Validate(v); err != nil {
		t.Errorf("%s output does not match %s.schema.json: %#v\n%s", command, command, err, doc)
	}
}

// ValidateYAML fails t unless doc, one YAML document, is valid output of
// command: the same schema as its JSON.
func ValidateYAML(t testing.TB, command string, doc []byte) {
	t.Helper()
	var v any
	if err := yaml.Unmarshal(doc, &v); err != nil {
		t.Fatalf("%s output is not YAML: %v\n%s", command, err, doc)
	}
	// Through JSON, so that numbers and maps are as the validator
	// takes them.
	b, err := json.Marshal(stringKeys(v))
	if err != nil {
		t.Fatalf("%s YAML output has no JSON form: %v\n%s", command, err, doc)
	}
	ValidateJSON(t, command, b)
}

// stringKeys turns the maps that YAML decodes with keys of any type (a key
// that is not valid UTF-8 is !!binary) into maps with string keys.
func stringKeys(v any) any {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			v[k] = stringKeys(e)
		}
	case map[any]any:
		m := make(map[string]any, len(v))
		for k, e := range v {
			m[fmt.Sprint(k)] = stringKeys(e)
		}
		return m
	case []any:
		for i, e := range v {
			v[i] = stringKeys(e)
		}
	}
	return v
}
