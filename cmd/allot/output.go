package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// table is what a command shows with -o table: optional lines before, an
// aligned table (header may be nil for key/value lists), optional lines after.
type table struct {
	title  []string
	header []string
	rows   [][]string
	footer []string
	// fit truncates the last column so that rows fit tableWidth columns.
	fit bool
}

// tableWidth is the terminal width tables are made to fit.
const tableWidth = 80

// print writes v as JSON or YAML (v's JSON field names in both), or t() as
// a table, following --output.
func (a *app) print(v any, t func() table) error {
	switch a.output {
	case "json":
		return writeJSON(a.stdout, v)
	case "yaml":
		return writeYAML(a.stdout, v)
	}
	return writeTable(a.stdout, t())
}

// writeTable renders t with columns two spaces apart. Every text is
// passed through escapeControl first, so a stored value cannot forge lines
// or columns of the table or send escape sequences to the terminal.
func writeTable(w io.Writer, t table) error {
	t = t.escaped()
	var b bytes.Buffer
	for _, l := range t.title {
		b.WriteString(l + "\n")
	}
	if t.fit {
		t.rows = fitLastColumn(t.header, t.rows, tableWidth)
	}
	if len(t.header) > 0 || len(t.rows) > 0 {
		tw := tabwriter.NewWriter(&b, 0, 0, colGap, ' ', 0)
		if len(t.header) > 0 {
			fmt.Fprintln(tw, strings.Join(t.header, "\t"))
		}
		for _, r := range t.rows {
			fmt.Fprintln(tw, strings.Join(r, "\t"))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	for _, l := range t.footer {
		b.WriteString(l + "\n")
	}
	// tabwriter pads the last column too when a row is shorter; trim it.
	out := b.String()
	lines := strings.Split(out, "\n")
	for i := range lines {
		lines[i] = strings.TrimRight(lines[i], " ")
	}
	_, err := io.WriteString(w, strings.Join(lines, "\n"))
	return err
}

// escaped returns t with escapeControl applied to every text.
func (t table) escaped() table {
	esc := func(xs []string) []string {
		out := make([]string, len(xs))
		for i, x := range xs {
			out[i] = escapeControl(x)
		}
		return out
	}
	t.title, t.header, t.footer = esc(t.title), esc(t.header), esc(t.footer)
	rows := make([][]string, len(t.rows))
	for i, r := range t.rows {
		rows[i] = esc(r)
	}
	t.rows = rows
	return t
}

// escapeControl writes the characters of s that a terminal would act on —
// control characters (line breaks and tabs included), DEL, C1 controls,
// bidirectional overrides — and bytes that are not UTF-8 as Go escapes
// (\n, \t, \x1b, \u202e), leaving everything else as it is.
func escapeControl(s string) string {
	clean := true
	for _, r := range s {
		if unsafeRune(r) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size <= 1:
			fmt.Fprintf(&b, "\\x%02x", s[i])
		case r == '\n':
			b.WriteString("\\n")
		case r == '\r':
			b.WriteString("\\r")
		case r == '\t':
			b.WriteString("\\t")
		case r < 0x80 && unsafeRune(r):
			fmt.Fprintf(&b, "\\x%02x", r)
		case unsafeRune(r):
			fmt.Fprintf(&b, "\\u%04x", r)
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

// unsafeRune reports whether r must not reach a terminal as it is.
func unsafeRune(r rune) bool {
	switch {
	case r == utf8.RuneError:
		return true // also what an invalid byte decodes to
	case r < 0x20, r == 0x7f, r >= 0x80 && r < 0xa0:
		return true
	case r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069, r == 0x200e, r == 0x200f, r == 0x061c:
		return true // bidirectional overrides can reorder what is shown
	}
	return false
}

// colGap is the space between table columns.
const colGap = 2

// fitLastColumn returns rows with the last cell shortened (ending in "…")
// where the row would be wider than width, keeping at least 16 characters.
func fitLastColumn(header []string, rows [][]string, width int) [][]string {
	var widths []int
	for _, r := range append([][]string{header}, rows...) {
		for i, c := range r[:max(len(r)-1, 0)] {
			if i >= len(widths) {
				widths = append(widths, 0)
			}
			widths[i] = max(widths[i], utf8.RuneCountInString(c))
		}
	}
	out := make([][]string, len(rows))
	for i, r := range rows {
		out[i] = r
		if len(r) == 0 {
			continue
		}
		used := 0
		for j := range len(r) - 1 {
			used += widths[j] + colGap
		}
		room := max(width-used, 16)
		last := []rune(r[len(r)-1])
		if len(last) > room {
			out[i] = append(slices.Clone(r[:len(r)-1]), string(last[:room-1])+"…")
		}
	}
	return out
}

// writeJSON writes v indented, with a trailing newline.
func writeJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// writeYAML writes v as YAML with the same field names and order as its JSON.
func writeYAML(w io.Writer, v any) error {
	b, err := toYAML(v)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

// toYAML converts v through its JSON encoding, so the JSON tags are the
// contract for both formats and field order is kept.
func toYAML(v any) ([]byte, error) {
	j, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var n yaml.Node
	if err := yaml.Unmarshal(j, &n); err != nil {
		return nil, err
	}
	blockStyle(&n)
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(&n); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// blockStyle clears the flow and quoting styles JSON input leaves on n, so
// the encoder writes plain block YAML (still quoting where needed). Empty
// maps and lists keep flow style ({} and []).
func blockStyle(n *yaml.Node) {
	switch n.Kind {
	case yaml.MappingNode, yaml.SequenceNode:
		if len(n.Content) > 0 {
			n.Style = 0
		}
	case yaml.ScalarNode:
		n.Style = 0
	}
	for _, c := range n.Content {
		blockStyle(c)
	}
}

// age renders how long ago t was relative to now ("12s ago", "in 5m"), or
// "-" for the zero time.
func age(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := now.Sub(t)
	if d < 0 {
		// A change due in 10m is read a few ms later: round, not truncate.
		return "in " + shortDuration((-d).Round(time.Second))
	}
	if d < time.Second {
		return "now"
	}
	return shortDuration(d) + " ago"
}

// shortDuration renders d in its largest unit: 45s, 12m, 3h, 2d.
func shortDuration(d time.Duration) string {
	switch {
	case d < time.Minute:
		return strconv.Itoa(int(d.Seconds())) + "s"
	case d < time.Hour:
		return strconv.Itoa(int(d.Minutes())) + "m"
	case d < 48*time.Hour:
		return strconv.Itoa(int(d.Hours())) + "h"
	}
	return strconv.Itoa(int(d.Hours()/24)) + "d"
}

// num renders a float without trailing zeros: 1, 2.5, 0.333.
func num(f float64) string {
	return strconv.FormatFloat(f, 'f', -1, 64)
}

// list joins names with ",", or "-" when there are none.
func list(xs []string) string {
	if len(xs) == 0 {
		return "-"
	}
	return strings.Join(xs, ",")
}

// dash returns s, or "-" when empty.
func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// yesNo renders a bool for tables.
func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
