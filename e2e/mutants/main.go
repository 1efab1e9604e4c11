// Command mutants proves that allot's safety tests can fail: it plants each
// bug of its list (mutants.go) in a temporary copy of the module, one at a
// time, runs the tests meant to catch it, and fails if any mutant survives.
// It prints a table mutant → killing test → time.
//
// Run it from the module root with `make mutants` or `go run ./e2e/mutants`
// (flags: -list to check that every mutant still applies, -run REGEXP to
// pick mutants, -race, -timeout, -baseline=false to skip the first pass,
// which runs every targeted test on the unmodified copy so that a test that
// fails anyway cannot pass for a kill).
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "mutants:", err)
		os.Exit(1)
	}
}

// result is the outcome of one mutant.
type result struct {
	m      mutant
	killed bool
	broken bool   // the mutant could not be planted or built: an error, not a verdict
	by     string // failing tests, or why nothing could be run
	took   time.Duration
}

func (r result) status() string {
	switch {
	case r.broken:
		return "ERROR"
	case r.killed:
		return "KILLED"
	}
	return "SURVIVED"
}

func run() error {
	pick := flag.String("run", "", "only mutants whose name matches this regexp")
	race := flag.Bool("race", false, "run the tests with -race")
	timeout := flag.Duration("timeout", 5*time.Minute, "go test -timeout of each run")
	baseline := flag.Bool("baseline", true, "first run every targeted test on the unmodified copy")
	list := flag.Bool("list", false, "only check that every mutant applies to the code, and list them")
	flag.Parse()

	root, err := moduleRoot()
	if err != nil {
		return err
	}
	selected, err := selectMutants(*pick)
	if err != nil {
		return err
	}
	// Every mutant must apply to the code as it is now, before anything
	// runs: a stale description is an error, not a pass.
	for _, m := range selected {
		if err := check(root, m); err != nil {
			return err
		}
	}
	if *list {
		for _, m := range selected {
			fmt.Printf("%-24s %-30s %s\n", m.Name, m.File, m.Why)
		}
		return nil
	}

	tmp, err := os.MkdirTemp("", "allot-mutants-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	work := filepath.Join(tmp, "allot")
	if err := copyTree(root, work); err != nil {
		return fmt.Errorf("copy module: %w", err)
	}
	fmt.Printf("mutants: %d mutant(s), module copied to %s\n", len(selected), work)

	if *baseline {
		seen := map[string]bool{}
		for _, m := range selected {
			key := m.Run + " " + strings.Join(m.Pkgs, " ")
			if seen[key] {
				continue
			}
			seen[key] = true
			start := time.Now()
			out, err := goTest(work, m, *race, *timeout)
			if err != nil {
				return fmt.Errorf("baseline: the tests of %s fail without any mutant (%v):\n%s", m.Name, err, tail(out, 4000))
			}
			fmt.Printf("baseline ok  %-18s %v\n", m.Name, time.Since(start).Round(time.Millisecond))
		}
	}

	var results []result
	for _, m := range selected {
		r := runMutant(work, m, *race, *timeout)
		fmt.Printf("%-8s %-18s %-50s %v\n", r.status(), m.Name, r.by, r.took.Round(time.Millisecond))
		results = append(results, r)
	}
	printTable(os.Stdout, results)

	var survivors, broken []string
	for _, r := range results {
		switch {
		case r.broken:
			broken = append(broken, r.m.Name)
		case !r.killed:
			survivors = append(survivors, r.m.Name)
		}
	}
	if len(survivors)+len(broken) > 0 {
		return fmt.Errorf("%d mutant(s) survived: %s; %d could not be run: %s",
			len(survivors), strings.Join(survivors, ", "), len(broken), strings.Join(broken, ", "))
	}
	fmt.Printf("all %d mutants killed\n", len(results))
	return nil
}

func selectMutants(pattern string) ([]mutant, error) {
	re, err := regexp.Compile(pattern)
	if err != nil {
		return nil, fmt.Errorf("-run: %w", err)
	}
	names := map[string]bool{}
	var out []mutant
	for _, m := range mutants {
		if names[m.Name] {
			return nil, fmt.Errorf("mutant %s is listed twice", m.Name)
		}
		names[m.Name] = true
		if re.MatchString(m.Name) {
			out = append(out, m)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no mutant matches %q", pattern)
	}
	return out, nil
}

// runMutant plants m in work, runs its tests and restores the file.
func runMutant(work string, m mutant, race bool, timeout time.Duration) result {
	r := result{m: m}
	path := filepath.Join(work, m.File)
	orig, err := os.ReadFile(path)
	if err != nil {
		r.broken, r.by = true, "not applied: "+err.Error()
		return r
	}
	mutated, err := mutate(orig, m)
	if err == nil {
		err = os.WriteFile(path, mutated, 0o644)
	}
	if err != nil {
		r.broken, r.by = true, "not applied: "+err.Error()
		return r
	}
	defer func() {
		if err := os.WriteFile(path, orig, 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "mutants: restore", m.File, err)
			os.Exit(1)
		}
	}()
	start := time.Now()
	// A mutant that does not build proves nothing about the tests. One
	// retry: a build cache trimmed by a concurrent `go clean` looks the same.
	out, err := goTestBuild(work, m, race)
	if err != nil {
		out, err = goTestBuild(work, m, race)
	}
	if err != nil {
		r.took = time.Since(start)
		r.broken, r.by = true, "does not build: "+firstLine(out)
		return r
	}
	out, err = goTest(work, m, race, timeout)
	r.took = time.Since(start)
	if err == nil {
		r.by = "(no test failed)"
		return r
	}
	r.killed = true
	r.by = failedTests(out)
	if strings.Contains(out, "panic: test timed out") {
		r.by += " (timeout)"
	}
	return r
}

// mutate returns src with m planted; m's old text must occur exactly once.
func mutate(src []byte, m mutant) ([]byte, error) {
	if n := bytes.Count(src, []byte(m.Old)); n != 1 {
		return nil, fmt.Errorf("mutant %s: the old text %q occurs %d times in %s, want exactly once: update the mutant (e2e/mutants/mutants.go) with the code", m.Name, m.Old, n, m.File)
	}
	return bytes.Replace(src, []byte(m.Old), []byte(m.New), 1), nil
}

// check reports whether m applies to the module at root, writing nothing.
func check(root string, m mutant) error {
	src, err := os.ReadFile(filepath.Join(root, m.File))
	if err != nil {
		return fmt.Errorf("mutant %s: %w", m.Name, err)
	}
	_, err = mutate(src, m)
	return err
}

func goTestArgs(m mutant, race bool, run string, timeout time.Duration) []string {
	args := []string{"test", "-count=1", "-timeout", timeout.String(), "-run", run}
	if race {
		args = append(args, "-race")
	}
	return append(args, m.Pkgs...)
}

func goTestBuild(work string, m mutant, race bool) (string, error) {
	return goCmd(work, goTestArgs(m, race, "^$", time.Minute), 2*time.Minute)
}

func goTest(work string, m mutant, race bool, timeout time.Duration) (string, error) {
	return goCmd(work, goTestArgs(m, race, m.Run, timeout), timeout+time.Minute)
}

func goCmd(dir string, args []string, limit time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		return string(out), fmt.Errorf("go %s: killed after %v", strings.Join(args, " "), limit)
	}
	return string(out), err
}

var failLine = regexp.MustCompile(`(?m)^\s*--- FAIL: (\S+)`)

// failedTests names the innermost failing tests of go test output.
func failedTests(out string) string {
	var names []string
	for _, m := range failLine.FindAllStringSubmatch(out, -1) {
		if !slices.Contains(names, m[1]) {
			names = append(names, m[1])
		}
	}
	var leaves []string
	for _, n := range names {
		if !slices.ContainsFunc(names, func(o string) bool { return strings.HasPrefix(o, n+"/") }) {
			leaves = append(leaves, n)
		}
	}
	if len(leaves) == 0 {
		return "go test failed: " + firstLine(out)
	}
	return strings.Join(leaves, ", ")
}

func firstLine(s string) string {
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			return l
		}
	}
	return strings.TrimSpace(s)
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}

func printTable(w io.Writer, results []result) {
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| mutant | planted bug | killed by | time |")
	fmt.Fprintln(w, "|---|---|---|---|")
	for _, r := range results {
		by := r.by
		if !r.killed {
			by = "**" + r.status() + "** " + by
		}
		fmt.Fprintf(w, "| %s | %s (`%s`) | %s | %.1f s |\n", r.m.Name, r.m.Why, r.m.File, by, r.took.Seconds())
	}
}

// moduleRoot finds the directory of go.mod from the working directory up.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && bytes.Contains(b, []byte("module github.com/allot-io/allot\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("run from inside the allot module (no go.mod of github.com/allot-io/allot found)")
		}
		dir = parent
	}
}

// copyTree copies the module's regular files, without .git and build output.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		if d.IsDir() {
			if rel != "." && (d.Name() == ".git" || d.Name() == "bin") {
				return filepath.SkipDir
			}
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		if !d.Type().IsRegular() || d.Name() == ".git" { // a worktree's .git is a file
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, info.Mode().Perm())
	})
}
