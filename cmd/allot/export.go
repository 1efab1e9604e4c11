package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/allot-io/allot/internal/yamlguard"
	"github.com/allot-io/allot/registry"
)

func init() {
	commandFactories = append(commandFactories, newExportCommand, newImportCommand)
}

func newExportCommand(a *app) *cobra.Command {
	var reveal bool
	cmd := &cobra.Command{
		Use:   "export",
		Short: "Write every group as YAML or JSON, for backup and import",
		Long: `Export writes the settings of every group (name, state, weight, max_nodes,
quota, config, secret_keys) as YAML, or JSON with -o json. Secret values are
masked unless --reveal: such a file re-imports cleanly over the same pool
(masked values keep the stored secret) but cannot create those groups anew.`,
		Example: "  allot export > pool.yaml\n  allot export --reveal -o json > pool-with-secrets.json",
		Args:    exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withRegistry(cmd, func(ctx context.Context, reg *registry.Registry) error {
				f, err := reg.Export(ctx, reveal)
				if err != nil {
					return err
				}
				if !reveal && slices.ContainsFunc(f.Groups, func(g registry.PoolGroup) bool { return len(g.SecretKeys) > 0 }) {
					fmt.Fprintln(a.stderr, "allot: warning: secret values are masked, so this file cannot restore them; use --reveal to include them (and keep the file safe)")
				}
				if a.output == "json" {
					return writeJSON(a.stdout, f)
				}
				b, err := toYAML(f)
				if err != nil {
					return err
				}
				_, err = a.stdout.Write(b)
				return err
			})
		},
	}
	cmd.Flags().BoolVar(&reveal, "reveal", false, "write secret values in clear")
	return cmd
}

// --- import ---

// importReport is the output of an import: what it changes, and whether
// it was only a dry run.
type importReport struct {
	DryRun bool `json:"dry_run"`
	registry.ImportPlan
}

// parsePoolFile decodes an export document (registry.ParsePool) and words
// its errors for a file.
func parsePoolFile(data []byte) (registry.Pool, error) {
	f, err := registry.ParsePool(data)
	var de *registry.PoolDocumentError
	switch {
	case errors.Is(err, registry.ErrEmptyPool):
		return f, errors.New("the file is empty (want the output of 'allot export')")
	case errors.As(err, &de):
		return f, errors.New(de.Problem)
	}
	return f, err
}

// yamlError renders a yaml.v3 error on one line, naming lines and fields.
func yamlError(err error) error { return errors.New(yamlguard.Describe(err)) }

// poolProblems renders the problems of an import file on one line, each
// naming the line of its group and the way out.
func poolProblems(f registry.Pool, lines []int, pe *registry.PoolError) error {
	line := func(i int) int {
		if i < len(lines) {
			return lines[i]
		}
		return 0
	}
	msgs := make([]string, len(pe.Problems))
	for i, p := range pe.Problems {
		msg := p.Err.Error()
		switch {
		case errors.Is(p.Err, registry.ErrDuplicateGroup):
			msg = fmt.Sprintf("listed twice (first at line %d)", line(p.First))
		case errors.Is(p.Err, registry.ErrMaskedSecret):
			msg = fmt.Sprintf("config.%s holds a masked secret (%q) that matches no stored value; export with --reveal, or put the real value in the file",
				p.Key, f.Groups[p.Index].Config[p.Key])
		case errors.Is(p.Err, registry.ErrUnmarkSecret):
			msg += fmt.Sprintf(" (run 'allot group update %s --unset %s' first, then import)", p.Name, p.Key)
		}
		msgs[i] = fmt.Sprintf("line %d: group %q: %s", line(p.Index), p.Name, msg)
	}
	return errors.New(strings.Join(msgs, "; "))
}

// addedSummary describes a group to be added on one line, without values.
func addedSummary(g registry.Group) string {
	parts := []string{"weight " + num(g.Weight)}
	if g.State != registry.Active {
		parts = append(parts, "state "+string(g.State))
	}
	if g.MaxNodes > 0 {
		parts = append(parts, "max_nodes "+strconv.Itoa(g.MaxNodes))
	}
	if g.Quota != "" {
		parts = append(parts, "quota "+g.Quota)
	}
	parts = append(parts, fmt.Sprintf("%d config keys", len(g.Config)))
	if len(g.SecretKeys) > 0 {
		parts = append(parts, fmt.Sprintf("%d secret", len(g.SecretKeys)))
	}
	return strings.Join(parts, ", ")
}

// importLines renders a plan for the table output.
func importLines(p registry.ImportPlan) []string {
	var out []string
	for _, n := range p.Added {
		g, _ := p.AddedGroup(n)
		out = append(out, fmt.Sprintf("+ %s (%s)", n, addedSummary(g)))
	}
	for _, c := range p.Changed {
		out = append(out, "~ "+c.Name)
		for _, f := range c.Fields {
			out = append(out, "    "+describeChange(f))
		}
	}
	for _, n := range p.Removed {
		out = append(out, "- "+n)
	}
	if len(p.Added)+len(p.Changed)+len(p.Removed) == 0 {
		out = append(out, fmt.Sprintf("no changes (%d groups unchanged)", p.Unchanged))
	} else {
		out = append(out, fmt.Sprintf("%d added, %d changed, %d removed, %d unchanged",
			len(p.Added), len(p.Changed), len(p.Removed), p.Unchanged))
	}
	if sc := p.Schedules; sc.Added+sc.Pending+sc.Expired > 0 {
		out = append(out, fmt.Sprintf("scheduled changes: %d added, %d already pending, %d expired (skipped)", sc.Added, sc.Pending, sc.Expired))
	}
	return out
}

func newImportCommand(a *app) *cobra.Command {
	var dryRun, prune bool
	cmd := &cobra.Command{
		Use:   "import FILE",
		Short: "Make the pool match an export file, all or nothing",
		Long: `Import reads FILE (YAML or JSON; "-" is stdin) strictly, validates every group
against the registry's rules and the stored pool, and only then writes: new
groups are added, changed groups updated (each only if nobody changed it since
it was read), state changes and --prune deletions come last.

If a write fails midway, the adds and updates already made are undone (added
groups deleted, updated groups rolled back). Retires and deletions cannot be
undone; they run last, so they only happen once every other write succeeded.

Masked secret values ("****…", as written by export without --reveal) keep the
stored secret of an existing group and are refused for a new one.`,
		Example: "  allot import pool.yaml --dry-run\n  allot import pool.yaml --prune",
		Args:    exactArgs("FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := args[0]
			data, err := a.readInput(path)
			if err != nil {
				var pe *fs.PathError
				if errors.As(err, &pe) {
					err = pe.Err
				}
				return fmt.Errorf("read %s: %w", path, err)
			}
			f, err := parsePoolFile(data)
			if err != nil {
				return fmt.Errorf("%s: %w; nothing written", path, err)
			}
			return a.withRegistry(cmd, func(ctx context.Context, reg *registry.Registry) error {
				have, err := reg.List(ctx)
				if err != nil {
					return err
				}
				pending, err := reg.Schedules(ctx)
				if err != nil {
					return err
				}
				p, err := registry.PlanImport(f, have, prune, registry.WithPending(pending, a.now()))
				var pe *registry.PoolError
				if errors.As(err, &pe) {
					err = poolProblems(f, registry.PoolGroupLines(data), pe)
				}
				if err != nil {
					return fmt.Errorf("%s: %w; nothing written", path, err)
				}
				if len(p.Kept) > 0 {
					fmt.Fprintf(a.stderr, "allot: note: %d groups not in %s are kept (use --prune to delete them): %s\n", len(p.Kept), path, strings.Join(p.Kept, ", "))
				}
				if !dryRun {
					if err := a.applyImport(ctx, reg, p); err != nil {
						return err
					}
				}
				return a.print(importReport{DryRun: dryRun, ImportPlan: p}, func() table {
					t := table{title: importLines(p)}
					switch {
					case dryRun:
						t.footer = []string{"dry run: nothing written"}
					case p.Writes() > 0:
						t.footer = []string{"applied"}
					}
					return t
				})
			})
		},
	}
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print what would change and write nothing")
	cmd.Flags().BoolVar(&prune, "prune", false, "delete groups that are not in the file")
	return cmd
}

// applyImport writes p, all or nothing: when a write fails, the writes
// before it are undone, and the error says which failed and what remains.
func (a *app) applyImport(ctx context.Context, reg *registry.Registry, p registry.ImportPlan) error {
	err := p.Apply(ctx, reg, a.by(), registry.WithUndoTimeout(max(a.timeout, defaultTimeout)))
	var ae *registry.ApplyError
	if !errors.As(err, &ae) {
		return err
	}
	cause := fmt.Errorf("import stopped at group %q: %w", ae.Group, groupError(ae.Group, ae.Err))
	if len(ae.Standing) == 0 {
		return fmt.Errorf("%w; the %d writes before it were undone, the pool is as it was", cause, ae.Undone)
	}
	kept := make([]string, len(ae.Standing))
	for i, w := range ae.Standing {
		kept[i] = w.String()
	}
	return fmt.Errorf("%w; %d writes undone, these remain: %s", cause, ae.Undone, strings.Join(kept, "; "))
}

// readInput reads the file at path, or stdin for "-", refusing more than
// yamlguard.MaxBytes before reading it (a file's size is checked first).
func (a *app) readInput(path string) ([]byte, error) {
	if path == "-" {
		return readAll(a.stdin)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Mode().IsRegular() && st.Size() > yamlguard.MaxBytes {
		return nil, fmt.Errorf("%w (%d MiB)", errInputTooLarge, st.Size()>>20)
	}
	return readAll(f)
}

// errInputTooLarge means an input file or stdin is over the import limit.
var errInputTooLarge = fmt.Errorf("larger than the %d MiB limit of a pool or group file", yamlguard.MaxBytes>>20)

// readAll reads r up to the import limit, and no further.
func readAll(r io.Reader) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, yamlguard.MaxBytes+1))
	if err == nil && len(b) > yamlguard.MaxBytes {
		return nil, errInputTooLarge
	}
	return b, err
}
