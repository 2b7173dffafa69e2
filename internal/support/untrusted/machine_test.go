package untrusted

import (
	"encoding/json"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

func TestJSONEscapes(t *testing.T) {
	in := map[string]string{"k\u202e": "a\u009b[2J\u200b\U0010fffd\x7f é 😀 \u00a0"}
	b, _ := json.Marshal(in)
	got := string(JSON(b))
	want := `{"k\u202e":"a\u009b[2J\u200b\udbff\udffd\u007f é 😀 \u00a0"}`
	if got != want {
		t.Errorf("JSON(%s) =\n%s, want\n%s", b, got, want)
	}
	var back map[string]string
	if err := json.Unmarshal([]byte(got), &back); err != nil || back["k\u202e"] != in["k\u202e"] {
		t.Errorf("decoded %q, %v; want %q", back, err, in)
	}
	if plain := []byte(`{"a":"b"}`); &JSON(plain)[0] != &plain[0] {
		t.Error("JSON copied a document with nothing to escape")
	}
}

func TestYAMLEscapes(t *testing.T) {
	n := &yaml.Node{Kind: yaml.ScalarNode, Value: "a\u202eb\U000e0001c é", Style: yaml.DoubleQuotedStyle}
	b, err := yaml.Marshal(n)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(YAML(b)), `"a\u202eb\U000E0001c é"`+"\n"; got != want {
		t.Errorf("YAML = %q, want %q", got, want)
	}
}

// FuzzMachineFormats: whatever the string, the escaped JSON and YAML
// documents decode to it exactly and hold no rune that needs escaping.
func FuzzMachineFormats(f *testing.F) {
	for _, s := range []string{"web", "\u009b2J", "a\u202eb\u200b", "\U0010fffd\x7f", "\xff\xfe", "é\u00a0😀", "\"\\\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		s = strings.ToValidUTF8(s, "\uFFFD")
		b, err := json.Marshal(map[string]string{s: s})
		if err != nil {
			t.Fatal(err)
		}
		out := JSON(b)
		var back map[string]string
		if err := json.Unmarshal(out, &back); err != nil || len(back) != 1 || back[s] != s {
			t.Fatalf("JSON of %q decodes to %q, %v", s, back, err)
		}
		checkNoRaw(t, "JSON", out)

		doc := &yaml.Node{Kind: yaml.MappingNode, Content: []*yaml.Node{
			{Kind: yaml.ScalarNode, Tag: "!!str", Value: s}, {Kind: yaml.ScalarNode, Tag: "!!str", Value: s},
		}}
		for _, c := range doc.Content {
			if NeedsQuoting(c.Value) {
				c.Style = yaml.DoubleQuotedStyle
			}
		}
		y, err := yaml.Marshal(doc)
		if err != nil {
			return // a string yaml.v3 cannot write at all
		}
		out = YAML(y)
		var ym map[string]string
		if err := yaml.Unmarshal(out, &ym); err != nil || len(ym) != 1 || ym[s] != s {
			t.Fatalf("YAML of %q decodes to %q, %v:\n%s", s, ym, err, out)
		}
		checkNoRaw(t, "YAML", out)
	})
}

func checkNoRaw(t *testing.T, format string, b []byte) {
	t.Helper()
	for _, r := range string(b) {
		if needsEscape(r) {
			t.Fatalf("%s left %U raw: %q", format, r, b)
		}
	}
}
