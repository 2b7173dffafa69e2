// Package schema holds the JSON Schemas (draft 2020-12) of the reports that
// ifl's commands print with -o json and -o yaml: one file per command
// (probe, scan, arp-scan, ping) and the parts they share (host, facts,
// changes). Tests validate real output against them (see schematest).
package schema

import "embed"

// FS holds the *.schema.json files.
//
//go:embed *.schema.json
var FS embed.FS

// Base is the URI the schemas' $id values start with.
const Base = "https://github.com/ifl-project/ifl/schema/"
