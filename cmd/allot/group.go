package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"

	"github.com/allot-io/allot/allocator"
	"github.com/allot-io/allot/registry"
)

func init() { commandFactories = append(commandFactories, newGroupCommand) }

// Poll interval and slack of `group retire --wait`.
const (
	retirePoll  = 500 * time.Millisecond
	retireSlack = 30 * time.Second
)

func newGroupCommand(a *app) *cobra.Command {
	cmd := noun(&cobra.Command{
		Use:     "group",
		Aliases: []string{"groups"},
		Short:   "Add, change, inspect, roll back, retire and delete groups",
	})
	cmd.AddCommand(
		newGroupAddCommand(a),
		newGroupUpdateCommand(a),
		newGroupGetCommand(a),
		newGroupListCommand(a),
		newGroupHistoryCommand(a),
		newGroupRollbackCommand(a),
		newGroupRetireCommand(a),
		newGroupDeleteCommand(a),
		newGroupUsageCommand(a),
	)
	return cmd
}

// changeFlags are the flags that describe a registry.Change.
type changeFlags struct {
	set, unset, secret []string
	weight             weightFlag
	maxNodes           int
	quota              string
}

func (f *changeFlags) register(cmd *cobra.Command, withUnset bool) {
	fs := cmd.Flags()
	fs.StringArrayVar(&f.set, "set", nil, "set config key to value, `k=v` (repeatable)")
	if withUnset {
		fs.StringArrayVar(&f.unset, "unset", nil, "remove config `key` (repeatable)")
	}
	fs.StringArrayVar(&f.secret, "secret", nil, "mark config key as secret, `k` or k=v to set it too (repeatable); secret values are masked in every output")
	f.weight.w = 1
	fs.Var(&f.weight, "weight", "the group's share of the pool (> 0), or auto: from the quota (requests/min; tokens/min ÷ 1000 without a request limit)")
	fs.IntVar(&f.maxNodes, "max-nodes", 0, "most nodes that may hold the group at once (0 = unlimited, 1 = exclusive)")
	fs.StringVar(&f.quota, "quota", "", `limits shared by all holders, comma-separated: N/UNIT (requests) or N tokens/UNIT, UNIT s|m|h|d, each optionally "burst B", e.g. "600/m, 90000 tokens/m, 10000/d" ("" clears)`)
}

// change builds the Change the flags ask for; unset flags change nothing.
func (f *changeFlags) change(cmd *cobra.Command) (registry.Change, error) {
	var c registry.Change
	for _, kv := range f.set {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return c, usageErrorf("invalid --set %q: want key=value", kv)
		}
		if c.Set == nil {
			c.Set = map[string]string{}
		}
		c.Set[k] = v
	}
	for _, kv := range f.secret {
		k, v, hasValue := strings.Cut(kv, "=")
		if k == "" {
			return c, usageErrorf("invalid --secret %q: want key or key=value", kv)
		}
		if hasValue {
			if c.Set == nil {
				c.Set = map[string]string{}
			}
			c.Set[k] = v
		}
		if !slices.Contains(c.Secret, k) {
			c.Secret = append(c.Secret, k)
		}
	}
	for _, k := range f.unset {
		if k == "" || strings.Contains(k, "=") {
			return c, usageErrorf("invalid --unset %q: want a config key", k)
		}
		if _, ok := c.Set[k]; ok {
			return c, usageErrorf("config key %q is both set and unset", k)
		}
		c.Unset = append(c.Unset, k)
	}
	fs := cmd.Flags()
	if fs.Changed("weight") {
		if f.weight.auto {
			c.WeightAuto = true
		} else {
			w := f.weight.w
			c.Weight = &w
		}
	}
	if fs.Changed("max-nodes") {
		n := f.maxNodes
		c.MaxNodes = &n
	}
	if fs.Changed("quota") {
		q := strings.TrimSpace(f.quota)
		if q != "" {
			p, err := registry.ParseQuota(q)
			if err != nil {
				return c, usageErrorf("invalid --quota %q: %s", f.quota, registry.QuotaDetail(err))
			}
			q = p.String()
		}
		c.Quota = &q
	}
	return c, nil
}

// checkName rejects an invalid group name before any I/O.
func checkName(name string) error {
	if err := registry.ValidateName(name); err != nil {
		return usageErrorf("invalid group name %q: want lowercase letters, digits, '.', '_' or '-', starting with a letter or digit, at most 63 long", name)
	}
	return nil
}

// groupView is a group as shown: masked unless reveal.
func groupView(g registry.Group, nodes []string, reveal bool) allocator.GroupView {
	if !reveal {
		g = g.Masked()
	}
	if nodes == nil {
		nodes = []string{}
	}
	return allocator.GroupView{Group: g, Nodes: nodes}
}

// holders returns the nodes holding each group according to the live status.
func (a *app) holders(ctx context.Context) (map[string][]string, error) {
	st, err := a.inspect(ctx)
	if err != nil {
		return nil, err
	}
	h := make(map[string][]string, len(st.Groups))
	for _, g := range st.Groups {
		h[g.Name] = g.Nodes
	}
	return h, nil
}

// completeGroups completes a group name argument from the pool (shell
// completion); it stays silent when Redis cannot be reached quickly.
func (a *app) completeGroups(cmd *cobra.Command, args []string, prefix string) ([]cobra.Completion, cobra.ShellCompDirective) {
	if len(args) > 0 || a.resolveGlobals(cmd, nil) != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), 2*time.Second)
	defer cancel()
	reg, err := a.registry(ctx)
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	groups, err := reg.List(ctx)
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var out []cobra.Completion
	for _, g := range groups {
		if strings.HasPrefix(g.Name, prefix) {
			out = append(out, cobra.CompletionWithDesc(g.Name, string(g.State)))
		}
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}

// --- add ---

func newGroupAddCommand(a *app) *cobra.Command {
	var f changeFlags
	var fromFile string
	cmd := &cobra.Command{
		Use:   "add NAME",
		Short: "Add a group to the pool",
		Example: `  allot group add openai-1 --set api_key=sk-... --secret api_key --quota 600/m --weight 2
  allot group add openai-2 --secret api_key=sk-... --max-nodes 1
  allot group add openai-3 --from-file openai-3.yaml`,
		Args:              exactArgs("NAME"),
		ValidArgsFunction: a.completeGroups,
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if err := checkName(name); err != nil {
				return err
			}
			c, err := f.change(cmd)
			if err != nil {
				return err
			}
			if fromFile != "" {
				base, err := readGroupFile(a, fromFile, name)
				if err != nil {
					return err
				}
				c = mergeChange(base, c)
			}
			for _, k := range c.Secret {
				if strings.HasPrefix(c.Set[k], "****") {
					return usageErrorf("config key %q holds a masked secret value; give the real one with --secret %s=VALUE", k, k)
				}
			}
			return a.withRegistry(cmd, func(ctx context.Context, reg *registry.Registry) error {
				g, err := reg.Add(ctx, name, c, a.by())
				if err != nil {
					return groupError(name, err)
				}
				return a.print(groupView(g, nil, false), func() table {
					return table{title: []string{fmt.Sprintf("group %q added (version %d)", g.Name, g.Version)}}
				})
			})
		},
	}
	f.register(cmd, false)
	cmd.Flags().StringVar(&fromFile, "from-file", "", "read the group from a YAML/JSON `file`: a map of config values, or a group document (flags override it)")
	return cmd
}

// mergeChange returns base with every field over sets overridden.
func mergeChange(base, over registry.Change) registry.Change {
	out := base
	if len(over.Set) > 0 {
		out.Set = maps.Clone(base.Set)
		if out.Set == nil {
			out.Set = map[string]string{}
		}
		maps.Copy(out.Set, over.Set)
	}
	for _, k := range over.Secret {
		if !slices.Contains(out.Secret, k) {
			out.Secret = append(out.Secret, k)
		}
	}
	if over.Weight != nil {
		out.Weight = over.Weight
	}
	if over.MaxNodes != nil {
		out.MaxNodes = over.MaxNodes
	}
	if over.Quota != nil {
		out.Quota = over.Quota
	}
	return out
}

// groupDoc is a group document read by `group add --from-file`: what
// `group get -o yaml|json` and `export` write. Read-only fields are accepted
// and ignored, so a document can be copied from one group to another.
type groupDoc struct {
	Name       string            `yaml:"name"`
	State      string            `yaml:"state"`
	Weight     *float64          `yaml:"weight"`
	MaxNodes   *int              `yaml:"max_nodes"`
	Quota      string            `yaml:"quota"`
	Config     map[string]string `yaml:"config"`
	SecretKeys []string          `yaml:"secret_keys"`

	Version   any `yaml:"version"`
	Limits    any `yaml:"limits"` // derived from quota
	Nodes     any `yaml:"nodes"`
	Created   any `yaml:"created"`
	Updated   any `yaml:"updated"`
	UpdatedBy any `yaml:"updated_by"`
	DrainBy   any `yaml:"drain_by"`
}

// readGroupFile reads --from-file: "-" is stdin.
func readGroupFile(a *app, path, name string) (registry.Change, error) {
	data, err := a.readInput(path)
	if err != nil {
		return registry.Change{}, fmt.Errorf("read --from-file: %w", err)
	}
	c, err := parseGroupFile(data, name)
	if err != nil {
		return registry.Change{}, usageErrorf("--from-file %s: %w", path, err)
	}
	return c, nil
}

// parseGroupFile turns a YAML or JSON document into a Change: either a
// group document (it has a "config" map) or a plain map of config values.
func parseGroupFile(data []byte, name string) (registry.Change, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return registry.Change{}, yamlError(err)
	}
	if root.Kind != yaml.DocumentNode || len(root.Content) == 0 || root.Content[0].Kind != yaml.MappingNode {
		return registry.Change{}, errors.New("want a map of config values or a group document")
	}
	top := root.Content[0]
	isDoc := false
	for i := 0; i+1 < len(top.Content); i += 2 {
		if top.Content[i].Value == "config" && top.Content[i+1].Kind == yaml.MappingNode {
			isDoc = true
		}
	}
	var c registry.Change
	if !isDoc {
		c.Set = map[string]string{}
		for i := 0; i+1 < len(top.Content); i += 2 {
			k, v := top.Content[i], top.Content[i+1]
			if v.Kind != yaml.ScalarNode {
				return c, fmt.Errorf("line %d: config value of %q must be a string, number or bool", v.Line, k.Value)
			}
			c.Set[k.Value] = v.Value
		}
		return c, nil
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var d groupDoc
	if err := dec.Decode(&d); err != nil {
		return c, yamlError(err)
	}
	if d.Name != "" && d.Name != name {
		return c, fmt.Errorf("the document is group %q, not %q (remove its name or use that name)", d.Name, name)
	}
	if d.State != "" && d.State != string(registry.Active) {
		return c, fmt.Errorf("state %q: a new group is always active (retire it afterwards)", d.State)
	}
	c.Set = d.Config
	c.Secret = d.SecretKeys
	c.Weight = d.Weight
	c.MaxNodes = d.MaxNodes
	if d.Quota != "" {
		q := d.Quota
		c.Quota = &q
	}
	return c, nil
}

// --- update ---

func newGroupUpdateCommand(a *app) *cobra.Command {
	var f changeFlags
	var at string
	cmd := &cobra.Command{
		Use:   "update NAME",
		Short: "Change a group now or at a later time",
		Example: `  allot group update openai-1 --set model=gpt-5 --unset old_key
  allot group update openai-1 --secret api_key=sk-new... --at +10m
  allot group update openai-1 --quota 1200/m --at 2026-03-01T09:00:00Z`,
		Args:              exactArgs("NAME"),
		ValidArgsFunction: a.completeGroups,
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if err := checkName(name); err != nil {
				return err
			}
			c, err := f.change(cmd)
			if err != nil {
				return err
			}
			if c.IsZero() {
				return usage(errNothingToChange)
			}
			var when time.Time
			if cmd.Flags().Changed("at") {
				if when, err = parseAt(at, a.now()); err != nil {
					return err
				}
			}
			return a.withRegistry(cmd, func(ctx context.Context, reg *registry.Registry) error {
				if !when.IsZero() {
					return a.schedule(ctx, reg, registry.Scheduled{At: when, Group: name, Op: registry.OpUpdate, Change: c, By: a.by()})
				}
				g, err := reg.Update(ctx, name, c, a.by())
				if err != nil {
					return groupError(name, err)
				}
				return a.print(groupView(g, nil, false), func() table {
					return table{title: []string{fmt.Sprintf("group %q updated (version %d)", g.Name, g.Version)}}
				})
			})
		},
	}
	f.register(cmd, true)
	cmd.Flags().StringVar(&at, "at", "", "apply the change at `TIME` (RFC 3339, or +DURATION like +10m) instead of now")
	return cmd
}

// schedule stores s and reports it.
func (a *app) schedule(ctx context.Context, reg *registry.Registry, s registry.Scheduled) error {
	got, err := reg.Schedule(ctx, s)
	if err != nil {
		return groupError(s.Group, err)
	}
	return a.print(maskSchedule(got, nil, false), func() table {
		return table{title: []string{fmt.Sprintf("scheduled %s of group %q at %s (%s), id %s (cancel with 'allot schedule cancel %s')",
			got.Op, got.Group, got.At.Local().Format(time.RFC3339), age(a.now(), got.At), got.ID, got.ID)}}
	})
}

// parseAt reads --at: RFC 3339, or "+" and a Go duration relative to now.
// Times not in the future are usage errors.
func parseAt(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if rel, ok := strings.CutPrefix(s, "+"); ok {
		d, err := time.ParseDuration(rel)
		if err != nil {
			return time.Time{}, usageErrorf("invalid --at %q: want RFC 3339 (2026-03-01T09:00:00Z) or +DURATION (+10m, +1h30m)", s)
		}
		if d <= 0 {
			return time.Time{}, usageErrorf("--at %q is not in the future", s)
		}
		return now.Add(d), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, usageErrorf("invalid --at %q: want RFC 3339 (2026-03-01T09:00:00Z) or +DURATION (+10m, +1h30m)", s)
	}
	if !t.After(now) {
		return time.Time{}, usageErrorf("--at %s is in the past (now is %s)", s, now.Format(time.RFC3339))
	}
	return t, nil
}

// --- get ---

func newGroupGetCommand(a *app) *cobra.Command {
	var reveal bool
	cmd := &cobra.Command{
		Use:               "get NAME",
		Short:             "Show one group, its config and the nodes holding it",
		Args:              exactArgs("NAME"),
		ValidArgsFunction: a.completeGroups,
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if err := checkName(name); err != nil {
				return err
			}
			return a.withRegistry(cmd, func(ctx context.Context, reg *registry.Registry) error {
				g, err := reg.Get(ctx, name)
				if err != nil {
					return groupError(name, err)
				}
				h, err := a.holders(ctx)
				if err != nil {
					return err
				}
				v := groupView(g, h[name], reveal)
				return a.print(v, func() table { return table{rows: groupDetailRows(v, a.now())} })
			})
		},
	}
	cmd.Flags().BoolVar(&reveal, "reveal", false, "show secret config values")
	return cmd
}

// groupDetailRows is the key/value table of `group get`.
func groupDetailRows(g allocator.GroupView, now time.Time) [][]string {
	maxNodes := strconv.Itoa(g.MaxNodes)
	switch g.MaxNodes {
	case 0:
		maxNodes = "0 (unlimited)"
	case 1:
		maxNodes = "1 (exclusive)"
	}
	rows := [][]string{
		{"name:", g.Name},
		{"version:", strconv.FormatInt(g.Version, 10)},
		{"state:", string(g.State)},
		{"weight:", num(g.Weight)},
		{"max_nodes:", maxNodes},
		{"quota:", dash(g.Quota)},
		{"nodes:", nodeCount(g.Nodes)},
		{"updated:", fmt.Sprintf("%s (%s) by %s", g.Updated.Local().Format(time.RFC3339), age(now, g.Updated), dash(g.UpdatedBy))},
		{"created:", g.Created.Local().Format(time.RFC3339)},
	}
	if !g.DrainBy.IsZero() {
		rows = append(rows, []string{"drain_by:", fmt.Sprintf("%s (%s)", g.DrainBy.Local().Format(time.RFC3339), age(now, g.DrainBy))})
	}
	if len(g.Config) == 0 {
		return append(rows, []string{"config:", "-"})
	}
	rows = append(rows, []string{"config:", ""})
	for _, k := range slices.Sorted(maps.Keys(g.Config)) {
		v := g.Config[k]
		if g.IsSecret(k) {
			v += "  (secret)"
		}
		rows = append(rows, []string{"  " + k, v})
	}
	return rows
}

// nodeCount renders a holder list as "2 (n1,n2)", or "0".
func nodeCount(nodes []string) string {
	if len(nodes) == 0 {
		return "0"
	}
	return fmt.Sprintf("%d (%s)", len(nodes), strings.Join(nodes, ","))
}

// --- list ---

func newGroupListCommand(a *app) *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List every group of the pool",
		Args:    exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withRegistry(cmd, func(ctx context.Context, reg *registry.Registry) error {
				groups, err := reg.List(ctx)
				if err != nil {
					return err
				}
				h, err := a.holders(ctx)
				if err != nil {
					return err
				}
				views := make([]allocator.GroupView, 0, len(groups))
				for _, g := range groups {
					views = append(views, groupView(g, h[g.Name], false))
				}
				return a.print(views, func() table {
					t := table{header: groupHeader, rows: groupRows(views, a.now())}
					if len(views) == 0 {
						t = table{title: []string{"no groups (add one with 'allot group add NAME')"}}
					}
					return t
				})
			})
		},
	}
}

var groupHeader = []string{"NAME", "STATE", "VER", "WEIGHT", "MAX", "QUOTA", "NODES", "UPDATED"}

// groupRows is the table of `group list`.
func groupRows(groups []allocator.GroupView, now time.Time) [][]string {
	rows := make([][]string, 0, len(groups))
	for _, g := range groups {
		maxNodes := "-"
		if g.MaxNodes > 0 {
			maxNodes = strconv.Itoa(g.MaxNodes)
		}
		rows = append(rows, []string{
			g.Name, string(g.State), strconv.FormatInt(g.Version, 10), num(g.Weight), maxNodes,
			dash(g.Quota), strconv.Itoa(len(g.Nodes)), age(now, g.Updated),
		})
	}
	return rows
}

// --- history ---

func newGroupHistoryCommand(a *app) *cobra.Command {
	var reveal bool
	cmd := &cobra.Command{
		Use:               "history NAME",
		Short:             "Show a group's kept versions and what each changed",
		Args:              exactArgs("NAME"),
		ValidArgsFunction: a.completeGroups,
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if err := checkName(name); err != nil {
				return err
			}
			return a.withRegistry(cmd, func(ctx context.Context, reg *registry.Registry) error {
				versions, err := reg.History(ctx, name)
				if err != nil {
					return groupError(name, err)
				}
				if len(versions) == 0 {
					return groupError(name, registry.ErrNotFound)
				}
				shown := make([]registry.Group, len(versions))
				for i, g := range versions {
					shown[i] = g
					if !reveal {
						shown[i] = g.Masked()
					}
				}
				return a.print(shown, func() table {
					return table{header: historyHeader, rows: historyRows(versions, a.now()), fit: true}
				})
			})
		},
	}
	cmd.Flags().BoolVar(&reveal, "reveal", false, "show secret config values (json/yaml)")
	return cmd
}

var historyHeader = []string{"VER", "STATE", "UPDATED", "BY", "CHANGES"}

// historyRows is the table of `group history`: versions newest first, each
// with what it changed from the one before. Secret values never appear.
func historyRows(versions []registry.Group, now time.Time) [][]string {
	rows := make([][]string, 0, len(versions))
	for i, g := range versions {
		changes := "created"
		if i+1 < len(versions) {
			changes = summarizeChanges(registry.DiffGroups(versions[i+1], g))
		} else if g.Version > 1 {
			changes = "(older versions not kept)"
		}
		rows = append(rows, []string{
			strconv.FormatInt(g.Version, 10), string(g.State), age(now, g.Updated), dash(g.UpdatedBy), changes,
		})
	}
	return rows
}

// --- rollback ---

func newGroupRollbackCommand(a *app) *cobra.Command {
	var to int64
	cmd := &cobra.Command{
		Use:               "rollback NAME --to VERSION",
		Short:             "Restore the settings of an earlier version as a new version",
		Example:           "  allot group history openai-1\n  allot group rollback openai-1 --to 3",
		Args:              exactArgs("NAME"),
		ValidArgsFunction: a.completeGroups,
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if err := checkName(name); err != nil {
				return err
			}
			if !cmd.Flags().Changed("to") {
				return usageErrorf("missing --to VERSION (see 'allot group history %s')", name)
			}
			if to <= 0 {
				return usageErrorf("invalid --to %d: versions start at 1", to)
			}
			return a.withRegistry(cmd, func(ctx context.Context, reg *registry.Registry) error {
				g, err := reg.Rollback(ctx, name, to, a.by())
				if errors.Is(err, registry.ErrNotFound) {
					if _, gerr := reg.Get(ctx, name); gerr == nil {
						return fmt.Errorf("group %q has no version %d (see 'allot group history %s')", name, to, name)
					}
				}
				if err != nil {
					return groupError(name, err)
				}
				return a.print(groupView(g, nil, false), func() table {
					return table{title: []string{fmt.Sprintf("group %q rolled back to the settings of version %d (now version %d)", name, to, g.Version)}}
				})
			})
		},
	}
	cmd.Flags().Int64Var(&to, "to", 0, "the `VERSION` whose settings to restore")
	return cmd
}

// --- retire ---

func newGroupRetireCommand(a *app) *cobra.Command {
	var at string
	var wait bool
	var drain time.Duration
	cmd := &cobra.Command{
		Use:   "retire NAME",
		Short: "Drain a group from its nodes, then mark it retired",
		Long: `Retire moves a group to "draining": it gets no new nodes and its holders are
moved off. Once no node holds it (or after --drain-timeout) it is "retired".
With --wait the command returns once the group is retired.`,
		Args:              exactArgs("NAME"),
		ValidArgsFunction: a.completeGroups,
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if err := checkName(name); err != nil {
				return err
			}
			if drain <= 0 {
				return usageErrorf("invalid --drain-timeout %v: must be > 0", drain)
			}
			var when time.Time
			if cmd.Flags().Changed("at") {
				if wait {
					return usageErrorf("--wait cannot be combined with --at (wait later with 'allot group retire %s --wait' or watch 'allot watch')", name)
				}
				var err error
				if when, err = parseAt(at, a.now()); err != nil {
					return err
				}
			}
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			reg, err := a.registry(ctx)
			if err != nil {
				return err
			}
			if !when.IsZero() {
				return a.schedule(ctx, reg, registry.Scheduled{At: when, Group: name, Op: registry.OpRetire, Drain: drain, By: a.by()})
			}
			g, err := reg.Retire(ctx, name, drain, a.by())
			if errors.Is(err, registry.ErrInvalidState) {
				cur, gerr := reg.Get(ctx, name)
				switch {
				case gerr != nil:
				case cur.State == registry.Draining && wait:
					g, err = cur, nil
				case cur.State == registry.Retired && wait:
					return a.print(groupView(cur, nil, false), func() table {
						return table{title: []string{fmt.Sprintf("group %q retired (version %d)", name, cur.Version)}}
					})
				default:
					return fmt.Errorf("group %q is already %s (see 'allot group get %s')", name, cur.State, name)
				}
			}
			if err != nil {
				return groupError(name, err)
			}
			if !wait {
				return a.print(groupView(g, nil, false), func() table {
					return table{title: []string{fmt.Sprintf("group %q is draining: retired once no node holds it, at the latest %s", name, age(a.now(), g.DrainBy))}}
				})
			}
			cancel()
			g, err = a.waitRetired(cmd.Context(), name, g)
			if err != nil {
				return err
			}
			return a.print(groupView(g, nil, false), func() table {
				return table{title: []string{fmt.Sprintf("group %q retired (version %d)", name, g.Version)}}
			})
		},
	}
	cmd.Flags().StringVar(&at, "at", "", "retire at `TIME` (RFC 3339, or +DURATION like +10m) instead of now")
	cmd.Flags().BoolVar(&wait, "wait", false, "return only once the group is retired")
	cmd.Flags().DurationVar(&drain, "drain-timeout", registry.DefaultDrainTimeout, "retire the group after this long even if a node still holds it")
	return cmd
}

// waitRetired polls until group name is retired, running the rebalancer on
// each poll so the drain progresses even when no coordinator is running. It
// gives up a little after the drain deadline.
func (a *app) waitRetired(parent context.Context, name string, g registry.Group) (registry.Group, error) {
	deadline := g.DrainBy
	if deadline.IsZero() {
		deadline = a.now().Add(registry.DefaultDrainTimeout)
	}
	ctx, cancel := context.WithDeadline(parent, deadline.Add(retireSlack))
	defer cancel()
	rb, err := a.rebalancer(ctx)
	if err != nil {
		return g, err
	}
	reg, _ := a.registry(ctx)
	tick := time.NewTicker(retirePoll)
	defer tick.Stop()
	for {
		if _, err := rb.Run(ctx); err != nil && !errors.Is(err, allocator.ErrLocked) && !errors.Is(err, registry.ErrStaleEpoch) && ctx.Err() == nil {
			return g, err
		}
		cur, err := reg.Get(ctx, name)
		switch {
		case errors.Is(err, registry.ErrNotFound):
			return g, fmt.Errorf("group %q was deleted while draining", name)
		case err == nil:
			g = cur
			if g.State == registry.Retired {
				return g, nil
			}
		case ctx.Err() == nil:
			return g, err
		}
		select {
		case <-ctx.Done():
			if parent.Err() != nil {
				return g, fmt.Errorf("interrupted: group %q is still %s (follow it with 'allot group get %s')", name, g.State, name)
			}
			return g, fmt.Errorf("group %q is still %s after its drain deadline %s; is a coordinator running? (see 'allot status')", name, g.State, deadline.Local().Format(time.RFC3339))
		case <-tick.C:
		}
	}
}

// --- delete ---

func newGroupDeleteCommand(a *app) *cobra.Command {
	return &cobra.Command{
		Use:               "delete NAME",
		Short:             "Remove a group and its history now; its nodes get other groups",
		Args:              exactArgs("NAME"),
		ValidArgsFunction: a.completeGroups,
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if err := checkName(name); err != nil {
				return err
			}
			return a.withRegistry(cmd, func(ctx context.Context, reg *registry.Registry) error {
				if err := reg.Delete(ctx, name, a.by()); err != nil {
					return groupError(name, err)
				}
				return a.print(map[string]any{"name": name, "deleted": true}, func() table {
					return table{title: []string{fmt.Sprintf("group %q deleted", name)}}
				})
			})
		},
	}
}
