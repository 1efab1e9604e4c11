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
	"go.yaml.in/yaml/v3"

	"github.com/allot-io/allot/allocator"
	"github.com/allot-io/allot/internal/yamlguard"
	"github.com/allot-io/allot/registry"
)

func init() { commandFactories = append(commandFactories, newGroupCommand) }

// retirePoll is the poll interval of `group retire --wait`.
const retirePoll = 500 * time.Millisecond

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
		newGroupSuspendCommand(a),
		newGroupResumeCommand(a),
		newGroupCoolCommand(a),
		newGroupUsageCommand(a),
	)
	return cmd
}

// checkName rejects an invalid group name before any I/O.
func checkName(name string) error {
	if err := registry.ValidateName(name); err != nil {
		return usageErrorf("invalid group name %q: want lowercase letters, digits, '.', '_' or '-', starting with a letter or digit, at most 63 long", name)
	}
	return nil
}

// holders returns the nodes holding each group according to the live status.
func (a *app) holders(ctx context.Context) (map[string][]string, error) {
	st, err := a.inspect(ctx)
	if err != nil {
		return nil, err
	}
	return st.Holders(), nil
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
				return a.print(allocator.View(g, nil, false), func() table {
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
	if over.EjectAfter != nil {
		out.EjectAfter = over.EjectAfter
	}
	if over.Lend != nil {
		out.Lend = over.Lend
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
	EjectAfter string            `yaml:"eject_after"`
	Lend       *bool             `yaml:"lend"`

	Version   any `yaml:"version"`
	Limits    any `yaml:"limits"` // derived from quota
	Nodes     any `yaml:"nodes"`
	Created   any `yaml:"created"`
	Updated   any `yaml:"updated"`
	UpdatedBy any `yaml:"updated_by"`
	DrainBy   any `yaml:"drain_by"`
	Health    any `yaml:"health"`
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
	if err := yamlguard.Check(data); err != nil {
		return registry.Change{}, err
	}
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
	if d.State != "" && d.State != string(registry.Active) && d.State != string(registry.Suspended) && d.State != string(registry.Probing) {
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
	if d.EjectAfter != "" {
		e := d.EjectAfter
		c.EjectAfter = &e
	}
	c.Lend = d.Lend
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
				before, err := reg.Get(ctx, name)
				if err != nil {
					return groupError(name, err)
				}
				g, err := reg.Update(ctx, name, c, a.by())
				if err != nil {
					return groupError(name, err)
				}
				return a.print(allocator.View(g, nil, false), func() table {
					if g.Version == before.Version {
						// The registry writes no version for a change that
						// changes nothing.
						return table{title: []string{fmt.Sprintf("group %q unchanged: it already had these settings (version %d)", g.Name, g.Version)}}
					}
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
				v, err := a.groupView(ctx, reg, name, reveal)
				if err != nil {
					return err
				}
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
		{"eject_after:", ejectAfterText(g.EjectAfter)},
		{"lend:", lendText(g.Group)},
		{"nodes:", nodeCount(g.Nodes)},
		{"updated:", fmt.Sprintf("%s (%s) by %s", g.Updated.Local().Format(time.RFC3339), age(now, g.Updated), dash(g.UpdatedBy))},
		{"created:", g.Created.Local().Format(time.RFC3339)},
	}
	if !g.DrainBy.IsZero() {
		rows = append(rows, []string{"drain_by:", fmt.Sprintf("%s (%s)", g.DrainBy.Local().Format(time.RFC3339), age(now, g.DrainBy))})
	}
	rows = append(rows, healthRows(g.Health, now)...)
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

// lendText says whether nodes that do not hold g may borrow it.
func lendText(g registry.Group) string {
	switch {
	case !g.Lend:
		return "no (--no-lend)"
	case g.MaxNodes > 0:
		return "no (capped groups are never lent)"
	case g.State != registry.Active:
		return "no (only active groups are lent)"
	}
	return "yes"
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
				if groups, err = reg.WithHealth(ctx, groups); err != nil {
					return err
				}
				h, err := a.holders(ctx)
				if err != nil {
					return err
				}
				views := make([]allocator.GroupView, 0, len(groups))
				for _, g := range groups {
					views = append(views, allocator.View(g, h[g.Name], false))
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
			g.Name, healthState(string(g.State), g.Health, now), strconv.FormatInt(g.Version, 10), num(g.Weight), maxNodes,
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
				shown := versions
				if !reveal {
					shown = registry.MaskHistory(versions)
				} else if err := registry.RequireOpen(versions...); err != nil {
					return err
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
// with what it changed from the one before. Secret values never appear,
// not even those stored before their key was marked.
func historyRows(versions []registry.Group, now time.Time) [][]string {
	secret := registry.SecretUnion(versions)
	rows := make([][]string, 0, len(versions))
	for i, g := range versions {
		changes := "created"
		if i+1 < len(versions) {
			changes = summarizeChanges(registry.DiffGroups(versions[i+1], g, secret...))
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
				return a.print(allocator.View(g, nil, false), func() table {
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
					return a.print(allocator.View(cur, nil, false), func() table {
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
				return a.print(allocator.View(g, nil, false), func() table {
					return table{title: []string{fmt.Sprintf("group %q is draining: retired once no node holds it, at the latest %s", name, age(a.now(), g.DrainBy))}}
				})
			}
			cancel()
			g, err = a.waitRetired(cmd.Context(), name, g)
			if err != nil {
				return err
			}
			return a.print(allocator.View(g, nil, false), func() table {
				return table{title: []string{fmt.Sprintf("group %q retired (version %d)", name, g.Version)}}
			})
		},
	}
	cmd.Flags().StringVar(&at, "at", "", "retire at `TIME` (RFC 3339, or +DURATION like +10m) instead of now")
	cmd.Flags().BoolVar(&wait, "wait", false, "return only once the group is retired")
	cmd.Flags().DurationVar(&drain, "drain-timeout", registry.DefaultDrainTimeout, "retire the group after this long even if a node still holds it")
	return cmd
}

// waitRetired waits until group name is retired (allocator.WaitRetired),
// turning its errors into lines that say what to do.
func (a *app) waitRetired(ctx context.Context, name string, g registry.Group) (registry.Group, error) {
	rb, err := a.rebalancer(ctx)
	if err != nil {
		return g, err
	}
	got, err := rb.WaitRetired(ctx, name, retirePoll)
	switch {
	case err == nil:
		return got, nil
	case errors.Is(err, registry.ErrNotFound):
		return got, fmt.Errorf("group %q was deleted while draining", name)
	case errors.Is(err, allocator.ErrRetireTimeout):
		return got, fmt.Errorf("group %q is still %s after its drain deadline %s; is a coordinator running? (see 'allot status')", name, got.State, got.DrainBy.Local().Format(time.RFC3339))
	case ctx.Err() != nil:
		if got.State == "" {
			got = g
		}
		return got, fmt.Errorf("interrupted: group %q is still %s (follow it with 'allot group get %s')", name, got.State, name)
	}
	return got, err
}

// --- delete ---

func newGroupDeleteCommand(a *app) *cobra.Command {
	var yes bool
	cmd := &cobra.Command{
		Use:   "delete NAME",
		Short: "Remove a group and its history now; its nodes get other groups",
		Long: `Delete removes a group and its history at once; the nodes holding it move to
other groups. A group that live nodes hold needs --yes (on a terminal, a
prompt asks instead): retiring it ('allot group retire') drains it first.`,
		Args:              exactArgs("NAME"),
		ValidArgsFunction: a.completeGroups,
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if err := checkName(name); err != nil {
				return err
			}
			return a.withRegistry(cmd, func(ctx context.Context, reg *registry.Registry) error {
				if !yes {
					h, err := a.holders(ctx)
					if err != nil {
						return err
					}
					if held := h[name]; len(held) > 0 && !a.confirm(fmt.Sprintf("group %q is held by %d node(s): %s; delete it now? [y/N] ", name, len(held), list(held))) {
						return usageErrorf("group %q is held by %d node(s) (%s); nothing deleted: add --yes to delete it now, or retire it to drain it first", name, len(held), list(held))
					}
				}
				if err := reg.Delete(ctx, name, a.by()); err != nil {
					return groupError(name, err)
				}
				return a.print(map[string]any{"name": name, "deleted": true}, func() table {
					return table{title: []string{fmt.Sprintf("group %q deleted", name)}}
				})
			})
		},
	}
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "delete even when nodes hold the group")
	return cmd
}
