// Command ouigen writes oui.txt, the vendor table Vendor embeds, from the
// IEEE registries as Debian's ieee-data package ships them
// (apt-get install ieee-data):
//
//	go run ./arpscan/oui/internal/ouigen /usr/share/ieee-data > arpscan/oui/oui.txt
//
// Each line is a lowercase hex prefix (6, 7 or 9 digits: MA-L, MA-M,
// MA-S) and the organisation's name, separated by a tab, sorted, so that
// Vendor can search the embedded bytes without parsing them first.
package main

import (
	"bufio"
	"encoding/csv"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: ouigen DIR (e.g. /usr/share/ieee-data)")
		os.Exit(2)
	}
	if err := run(os.Args[1], os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "ouigen: %v\n", err)
		os.Exit(1)
	}
}

func run(dir string, w io.Writer) error {
	var lines []string
	for _, f := range []string{"oui.csv", "mam.csv", "oui36.csv"} {
		fh, err := os.Open(filepath.Join(dir, f))
		if err != nil {
			return err
		}
		rows, err := csv.NewReader(fh).ReadAll()
		fh.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		for _, r := range rows[1:] {
			if len(r) < 3 {
				continue
			}
			prefix := strings.ToLower(strings.TrimSpace(r[1]))
			name := strings.Join(strings.Fields(r[2]), " ")
			if prefix == "" || name == "" {
				continue
			}
			lines = append(lines, prefix+"\t"+name+"\n")
		}
	}
	sort.Strings(lines)
	bw := bufio.NewWriter(w)
	last := ""
	for _, l := range lines {
		// A few prefixes are registered twice: the first name wins, so
		// that every prefix has one line.
		p, _, _ := strings.Cut(l, "\t")
		if p == last {
			continue
		}
		last = p
		if _, err := bw.WriteString(l); err != nil {
			return err
		}
	}
	return bw.Flush()
}
