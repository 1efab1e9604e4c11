package main

import (
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"time"

	"github.com/allot-io/allot/client"
)

// envReport, when set, names a file the node appends one JSON line to per
// assignment change — {"t": Unix ns, "node", "epoch", "groups":
// ["alpha@v3"], "goroutines"} — so a test (the chaos suite in e2e/) can
// check from the nodes' own view who held what when.
const envReport = "ALLOT_REPORT"

// reportLine is one line of the report file.
type reportLine struct {
	T          int64    `json:"t"`
	Node       string   `json:"node"`
	Epoch      int64    `json:"epoch"`
	Groups     []string `json:"groups"`
	Goroutines int      `json:"goroutines"`
}

// openReport returns the OnChange callback writing the report file named
// by ALLOT_REPORT and a func closing it; both nil when it is unset.
func openReport(node string) (onChange func(old, new client.Assignment), closeFn func() error, err error) {
	path := os.Getenv(envReport)
	if path == "" {
		return nil, nil, nil
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", envReport, err)
	}
	onChange = func(_, now client.Assignment) {
		l := reportLine{T: time.Now().UnixNano(), Node: node, Epoch: now.Epoch,
			Groups: make([]string, 0, len(now.Groups)), Goroutines: runtime.NumGoroutine()}
		for _, g := range now.Groups {
			l.Groups = append(l.Groups, fmt.Sprintf("%s@v%d", g.Name, g.Version))
		}
		b, _ := json.Marshal(l)
		// One write per line: O_APPEND keeps lines whole, and a line written
		// is in the file even if the process is killed right after.
		_, _ = f.Write(append(b, '\n'))
	}
	return onChange, f.Close, nil
}
