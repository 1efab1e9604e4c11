package e2e

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
)

// report is one line a node wrote to its ALLOT_REPORT file: what it holds
// from time T on, as its OnChange callback saw it.
type report struct {
	T          int64    `json:"t"` // Unix nanoseconds, time.Now() in the node
	Node       string   `json:"node"`
	Epoch      int64    `json:"epoch"`
	Groups     []string `json:"groups"` // "name@vN", sorted by name
	Goroutines int      `json:"goroutines"`
	Final      bool     `json:"final,omitempty"` // written after Close returned

	proc *proc
}

// names returns the held group names.
func (r report) names() []string {
	out := make([]string, 0, len(r.Groups))
	for _, g := range r.Groups {
		name, _, _ := strings.Cut(g, "@v")
		out = append(out, name)
	}
	return out
}

// versions returns group name -> version.
func (r report) versions() map[string]int64 {
	out := make(map[string]int64, len(r.Groups))
	for _, g := range r.Groups {
		name, v, _ := strings.Cut(g, "@v")
		n, _ := strconv.ParseInt(v, 10, 64)
		out[name] = n
	}
	return out
}

func (r report) holds(g string) bool { return slices.Contains(r.names(), g) }

// readReports parses p's report file. A torn last line (the process was
// killed while writing it) is ignored; any other bad line is an error.
func readReports(p *proc) ([]report, error) {
	b, err := os.ReadFile(p.report)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []report
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	complete := len(b) == 0 || b[len(b)-1] == '\n'
	var lines []string
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	for i, line := range lines {
		var r report
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			if i == len(lines)-1 && !complete {
				break
			}
			return nil, fmt.Errorf("%s line %d: %w: %q", p.report, i+1, err, line)
		}
		if r.Node != p.id {
			return nil, fmt.Errorf("%s line %d: node %q, want %q", p.report, i+1, r.Node, p.id)
		}
		r.proc = p
		out = append(out, r)
	}
	slices.SortStableFunc(out, func(a, b report) int { return cmp.Compare(a.T, b.T) })
	return out, nil
}
