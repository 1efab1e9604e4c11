package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"

	"github.com/allot-io/allot/registry"
)

func init() {
	commandFactories = append(commandFactories, newExportCommand, newImportCommand)
}

// poolFile is the document `allot export` writes and `allot import` reads.
type poolFile struct {
	Groups []fileGroup `yaml:"groups" json:"groups"`
}

// fileGroup is one group of a poolFile: its settings, without the version,
// timestamps and holders. Omitted fields take their defaults (state active,
// weight 1, max_nodes 0, no quota, no config).
type fileGroup struct {
	Name       string            `yaml:"name" json:"name"`
	State      string            `yaml:"state,omitempty" json:"state,omitempty"`
	Weight     *float64          `yaml:"weight,omitempty" json:"weight,omitempty"`
	MaxNodes   *int              `yaml:"max_nodes,omitempty" json:"max_nodes,omitempty"`
	Quota      string            `yaml:"quota,omitempty" json:"quota,omitempty"`
	Config     map[string]string `yaml:"config,omitempty" json:"config,omitempty"`
	SecretKeys []string          `yaml:"secret_keys,omitempty" json:"secret_keys,omitempty"`
}

// exportFile builds the export document of groups; secret values are
// masked unless reveal.
func exportFile(groups []registry.Group, reveal bool) poolFile {
	f := poolFile{Groups: make([]fileGroup, 0, len(groups))}
	for _, g := range groups {
		if !reveal {
			g = g.Masked()
		}
		w, n := g.Weight, g.MaxNodes
		fg := fileGroup{
			Name: g.Name, State: string(g.State), Weight: &w, MaxNodes: &n, Quota: g.Quota,
			Config: g.Config, SecretKeys: sortedCopy(g.SecretKeys),
		}
		if len(fg.Config) == 0 {
			fg.Config = nil
		}
		f.Groups = append(f.Groups, fg)
	}
	return f
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
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			reg, err := a.registry(ctx)
			if err != nil {
				return err
			}
			groups, err := reg.List(ctx)
			if err != nil {
				return err
			}
			f := exportFile(groups, reveal)
			if !reveal && slices.ContainsFunc(groups, func(g registry.Group) bool { return len(g.SecretKeys) > 0 }) {
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
		},
	}
	cmd.Flags().BoolVar(&reveal, "reveal", false, "write secret values in clear")
	return cmd
}

// --- import ---

// importPlan is what an import changes; it is also its JSON/YAML output.
type importPlan struct {
	DryRun    bool           `json:"dry_run"`
	Added     []string       `json:"added"`
	Changed   []groupChanges `json:"changed"`
	Removed   []string       `json:"removed"`
	Unchanged int            `json:"unchanged"`
	// Kept are groups in Redis but not in the file, left alone without --prune.
	Kept []string `json:"kept"`

	steps   []importStep
	summary map[string]string // added group -> one-line description
}

// groupChanges is the field-level diff of one changed group.
type groupChanges struct {
	Name   string        `json:"name"`
	Fields []fieldChange `json:"fields"`
}

// stepOp is one kind of registry write of an import.
type stepOp int

const (
	stepAdd    stepOp = iota // Add the group
	stepUpdate               // Update it with IfVersion
	stepRetire               // Retire it (to draining)
	stepFinish               // FinishRetire it (to retired)
	stepDelete               // Delete it (--prune)
)

// reversible reports whether a step can be undone by a later write.
func (op stepOp) reversible() bool { return op == stepAdd || op == stepUpdate }

// importStep is one registry write of an import.
type importStep struct {
	op     stepOp
	name   string
	change registry.Change
	have   registry.Group // the stored group before the import (update, delete)
}

// parsePoolFile decodes an export document strictly: unknown fields,
// duplicate keys and wrong types fail naming the line. It also returns the
// line of each group.
func parsePoolFile(data []byte) (poolFile, []int, error) {
	var f poolFile
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		if errors.Is(err, io.EOF) {
			return f, nil, errors.New("the file is empty (want the output of 'allot export')")
		}
		return f, nil, yamlError(err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return f, nil, fmt.Errorf("line %d: a second YAML document; want one document with a groups list", extra.Line)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return f, nil, yamlError(err)
	}
	var seq *yaml.Node
	if len(root.Content) == 1 && root.Content[0].Kind == yaml.MappingNode {
		m := root.Content[0]
		for i := 0; i+1 < len(m.Content); i += 2 {
			if m.Content[i].Value == "groups" && m.Content[i+1].Kind == yaml.SequenceNode {
				seq = m.Content[i+1]
			}
		}
	}
	if seq == nil {
		return f, nil, errors.New(`no "groups" list (want the output of 'allot export'; an empty pool is "groups: []")`)
	}
	lines := make([]int, len(f.Groups))
	for i := range lines {
		if i < len(seq.Content) {
			lines[i] = seq.Content[i].Line
		}
	}
	return f, lines, nil
}

var yamlTypeSuffix = regexp.MustCompile(` in type main\.\w+`)

// yamlError renders a yaml.v3 error on one line, naming lines and fields.
func yamlError(err error) error {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs := make([]string, len(te.Errors))
		for i, m := range te.Errors {
			msgs[i] = yamlTypeSuffix.ReplaceAllString(m, "")
		}
		return errors.New(strings.Join(msgs, "; "))
	}
	return errors.New(strings.TrimPrefix(oneLine(err.Error()), "yaml: "))
}

// planImport validates every group of f against the registry rules and
// against have (the stored groups) and returns the writes that make the pool
// match f. It does no I/O: when it fails, nothing has been written.
func planImport(f poolFile, lines []int, have []registry.Group, prune bool) (importPlan, error) {
	p := importPlan{Added: []string{}, Changed: []groupChanges{}, Removed: []string{}, Kept: []string{}, summary: map[string]string{}}
	stored := make(map[string]registry.Group, len(have))
	for _, g := range have {
		stored[g.Name] = g
	}
	seen := map[string]int{}
	var adds, updates, states []importStep
	for i, fg := range f.Groups {
		line := 0
		if i < len(lines) {
			line = lines[i]
		}
		where := fmt.Sprintf("line %d: group %q", line, fg.Name)
		if prev, dup := seen[fg.Name]; dup {
			return p, fmt.Errorf("%s: listed twice (first at line %d)", where, prev)
		}
		seen[fg.Name] = line
		cur, exists := stored[fg.Name]
		want, err := desiredGroup(fg, cur, exists)
		if err != nil {
			return p, fmt.Errorf("%s: %w", where, err)
		}
		if !exists {
			c := registry.Change{Set: want.Config, Secret: want.SecretKeys, Weight: &want.Weight, MaxNodes: &want.MaxNodes}
			if want.Quota != "" {
				c.Quota = &want.Quota
			}
			adds = append(adds, importStep{op: stepAdd, name: want.Name, change: c})
			switch want.State {
			case registry.Draining:
				states = append(states, importStep{op: stepRetire, name: want.Name})
			case registry.Retired:
				states = append(states, importStep{op: stepRetire, name: want.Name}, importStep{op: stepFinish, name: want.Name})
			}
			p.Added = append(p.Added, want.Name)
			p.summary[want.Name] = addedSummary(want)
			continue
		}
		fields := diffGroups(cur, want)
		if len(fields) == 0 {
			p.Unchanged++
			continue
		}
		p.Changed = append(p.Changed, groupChanges{Name: want.Name, Fields: fields})
		if c := contentChange(cur, want); !c.IsZero() {
			c.IfVersion = cur.Version
			updates = append(updates, importStep{op: stepUpdate, name: want.Name, change: c, have: cur})
		}
		from, to := stateOrActive(cur.State), want.State
		if from == registry.Active && to != registry.Active {
			states = append(states, importStep{op: stepRetire, name: want.Name, have: cur})
		}
		if from != registry.Retired && to == registry.Retired {
			states = append(states, importStep{op: stepFinish, name: want.Name, have: cur})
		}
	}
	var deletes []importStep
	for _, g := range have {
		if _, ok := seen[g.Name]; ok {
			continue
		}
		if prune {
			p.Removed = append(p.Removed, g.Name)
			deletes = append(deletes, importStep{op: stepDelete, name: g.Name, have: g})
		} else {
			p.Kept = append(p.Kept, g.Name)
		}
	}
	// Reversible writes first, so a failure among them can be undone whole.
	p.steps = slices.Concat(adds, updates, states, deletes)
	return p, nil
}

// desiredGroup is the group fg asks for, validated with the registry's
// rules. Masked secret values of a stored group keep the stored value.
func desiredGroup(fg fileGroup, cur registry.Group, exists bool) (registry.Group, error) {
	if err := registry.ValidateName(fg.Name); err != nil {
		return registry.Group{}, errors.New("invalid name: want ^[a-z0-9][a-z0-9._-]{0,62}$")
	}
	want := registry.Group{Name: fg.Name, State: registry.State(fg.State), Weight: 1, Quota: strings.TrimSpace(fg.Quota)}
	switch want.State {
	case "":
		want.State = registry.Active
	case registry.Active, registry.Draining, registry.Retired:
	default:
		return want, fmt.Errorf("invalid state %q: want active, draining or retired", fg.State)
	}
	if fg.Weight != nil {
		want.Weight = *fg.Weight
	}
	if math.IsNaN(want.Weight) || math.IsInf(want.Weight, 0) || want.Weight <= 0 {
		return want, fmt.Errorf("invalid weight %v: must be a number > 0", want.Weight)
	}
	if fg.MaxNodes != nil {
		want.MaxNodes = *fg.MaxNodes
	}
	if want.MaxNodes < 0 {
		return want, fmt.Errorf("invalid max_nodes %d: must be >= 0 (0 = unlimited)", want.MaxNodes)
	}
	if want.Quota != "" {
		q, err := registry.ParseQuota(want.Quota)
		if err != nil {
			return want, fmt.Errorf("invalid quota %q: want RATE/UNIT [burst N] with UNIT s, m or h, e.g. 600/m", fg.Quota)
		}
		want.Quota = q.String()
	}
	want.Config = map[string]string{}
	for k, v := range fg.Config {
		if k == "" {
			return want, errors.New("config has an empty key")
		}
		want.Config[k] = v
	}
	want.SecretKeys = []string{}
	for _, k := range fg.SecretKeys {
		if slices.Contains(want.SecretKeys, k) {
			return want, fmt.Errorf("secret key %q listed twice", k)
		}
		v, ok := want.Config[k]
		if !ok {
			return want, fmt.Errorf("secret key %q is not a config key", k)
		}
		if strings.HasPrefix(v, masked) {
			if !exists || !cur.IsSecret(k) || cur.Masked().Config[k] != v {
				return want, fmt.Errorf("config.%s holds a masked secret (%q) that matches no stored value; export with --reveal, or put the real value in the file", k, v)
			}
			want.Config[k] = cur.Config[k]
		}
		want.SecretKeys = append(want.SecretKeys, k)
	}
	slices.Sort(want.SecretKeys)
	if b, _ := json.Marshal(want.Config); len(b) > registry.MaxConfigBytes {
		return want, fmt.Errorf("config is %d bytes encoded; at most %d", len(b), registry.MaxConfigBytes)
	}
	if !exists {
		return want, nil
	}
	for _, k := range cur.SecretKeys {
		if _, kept := want.Config[k]; kept && !want.IsSecret(k) {
			return want, fmt.Errorf("config.%s is secret in the pool and import cannot un-mark it (run 'allot group update %s --unset %s' first, then import)", k, fg.Name, k)
		}
	}
	from := stateOrActive(cur.State)
	if from != want.State && (from == registry.Retired || want.State == registry.Active) {
		return want, fmt.Errorf("state %s cannot become %s (a retired or draining group never becomes active again; delete it and add it anew)", from, want.State)
	}
	return want, nil
}

// contentChange is the Change that turns cur's settings into want's.
func contentChange(cur, want registry.Group) registry.Change {
	var c registry.Change
	for k, v := range want.Config {
		if old, ok := cur.Config[k]; !ok || old != v {
			if c.Set == nil {
				c.Set = map[string]string{}
			}
			c.Set[k] = v
		}
	}
	for k := range cur.Config {
		if _, ok := want.Config[k]; !ok {
			c.Unset = append(c.Unset, k)
		}
	}
	slices.Sort(c.Unset)
	for _, k := range want.SecretKeys {
		if !cur.IsSecret(k) {
			c.Secret = append(c.Secret, k)
		}
	}
	if weightOrDefault(cur.Weight) != want.Weight {
		c.Weight = &want.Weight
	}
	if cur.MaxNodes != want.MaxNodes {
		c.MaxNodes = &want.MaxNodes
	}
	if cur.Quota != want.Quota {
		c.Quota = &want.Quota
	}
	return c
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
func importLines(p importPlan) []string {
	var out []string
	for _, n := range p.Added {
		out = append(out, fmt.Sprintf("+ %s (%s)", n, p.summary[n]))
	}
	for _, c := range p.Changed {
		out = append(out, "~ "+c.Name)
		for _, f := range c.Fields {
			out = append(out, "    "+f.describe())
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
			var data []byte
			var err error
			if path == "-" {
				data, err = readAll(a.stdin)
			} else {
				data, err = os.ReadFile(path)
			}
			if err != nil {
				var pe *fs.PathError
				if errors.As(err, &pe) {
					err = pe.Err
				}
				return fmt.Errorf("read %s: %w", path, err)
			}
			f, lines, err := parsePoolFile(data)
			if err != nil {
				return fmt.Errorf("%s: %w; nothing written", path, err)
			}
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			reg, err := a.registry(ctx)
			if err != nil {
				return err
			}
			have, err := reg.List(ctx)
			if err != nil {
				return err
			}
			p, err := planImport(f, lines, have, prune)
			if err != nil {
				return fmt.Errorf("%s: %w; nothing written", path, err)
			}
			p.DryRun = dryRun
			if len(p.Kept) > 0 {
				fmt.Fprintf(a.stderr, "allot: note: %d groups not in %s are kept (use --prune to delete them): %s\n", len(p.Kept), path, strings.Join(p.Kept, ", "))
			}
			if !dryRun {
				if err := a.applyImport(ctx, reg, p.steps); err != nil {
					return err
				}
			}
			return a.print(p, func() table {
				t := table{title: importLines(p)}
				switch {
				case dryRun:
					t.footer = []string{"dry run: nothing written"}
				case len(p.steps) > 0:
					t.footer = []string{"applied"}
				}
				return t
			})
		},
	}
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print what would change and write nothing")
	cmd.Flags().BoolVar(&prune, "prune", false, "delete groups that are not in the file")
	return cmd
}

// applyImport runs the steps in order. When one fails, the reversible
// steps already done are undone in reverse order and the error says what
// could not be.
func (a *app) applyImport(ctx context.Context, reg *registry.Registry, steps []importStep) error {
	by := a.by()
	var done []importStep
	for _, s := range steps {
		var err error
		switch s.op {
		case stepAdd:
			_, err = reg.Add(ctx, s.name, s.change, by)
		case stepUpdate:
			_, err = reg.Update(ctx, s.name, s.change, by)
		case stepRetire:
			_, err = reg.Retire(ctx, s.name, 0, by)
		case stepFinish:
			_, err = reg.FinishRetire(ctx, s.name, by)
		case stepDelete:
			err = reg.Delete(ctx, s.name, by)
		}
		if err == nil {
			done = append(done, s)
			continue
		}
		failed := groupError(s.name, err)
		if errors.Is(err, registry.ErrNotFound) && s.op == stepAdd {
			failed = err
		}
		return a.undoImport(ctx, done, fmt.Errorf("import stopped at group %q: %w", s.name, failed))
	}
	return nil
}

// undoImport reverts done (newest first) after cause and returns the error
// to report.
func (a *app) undoImport(parent context.Context, done []importStep, cause error) error {
	// The command's context may be what failed; undo gets a fresh budget.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(parent), max(a.timeout, defaultTimeout))
	defer cancel()
	reg, err := a.registry(ctx)
	if err != nil {
		return fmt.Errorf("%w; could not undo the %d writes made before it: %v", cause, len(done), err)
	}
	by := a.by()
	var undone int
	var kept []string
	for i := len(done) - 1; i >= 0; i-- {
		s := done[i]
		var err error
		switch s.op {
		case stepAdd:
			err = reg.Delete(ctx, s.name, by)
		case stepUpdate:
			_, err = reg.Rollback(ctx, s.name, s.have.Version, by)
		default:
			kept = append(kept, fmt.Sprintf("%s %s", opVerb(s.op), s.name))
			continue
		}
		if err != nil {
			kept = append(kept, fmt.Sprintf("%s %s (undo failed: %v)", opVerb(s.op), s.name, err))
			continue
		}
		undone++
	}
	if len(kept) == 0 {
		return fmt.Errorf("%w; the %d writes before it were undone, the pool is as it was", cause, undone)
	}
	return fmt.Errorf("%w; %d writes undone, these remain: %s", cause, undone, strings.Join(kept, "; "))
}

func opVerb(op stepOp) string {
	switch op {
	case stepAdd:
		return "added"
	case stepUpdate:
		return "updated"
	case stepRetire:
		return "retiring"
	case stepFinish:
		return "retired"
	}
	return "deleted"
}

// readAll reads r up to a sane limit for a pool file.
func readAll(r io.Reader) ([]byte, error) {
	const limit = 64 << 20
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err == nil && len(b) > limit {
		return nil, fmt.Errorf("input larger than %d MiB", limit>>20)
	}
	return b, err
}
