package main

import (
	"fmt"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/allot-io/allot/allocator"
	"github.com/allot-io/allot/heartbeat"
	"github.com/allot-io/allot/registry"
)

func init() { commandFactories = append(commandFactories, newNamespaceCommand) }

func newNamespaceCommand(a *app) *cobra.Command {
	cmd := noun(&cobra.Command{
		Use:     "namespace",
		Aliases: []string{"namespaces", "ns"},
		Short:   "List namespaces and set a namespace's heartbeat interval and TTL",
	})
	cmd.AddCommand(newNamespaceListCommand(a), newNamespaceSetCommand(a))
	return cmd
}

func newNamespaceListCommand(a *app) *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List every namespace with its nodes, groups and heartbeat settings",
		Long: `List scans Redis (every master of a Cluster) for the namespaces that have
state: a group, a node or settings. INTERVAL and TTL marked "(default)" were
never set with 'allot namespace set', nor MAX-LIVE-NODES (0 = no limit).`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			rdb, err := a.rdb(ctx)
			if err != nil {
				return err
			}
			list, err := allocator.Namespaces(ctx, rdb)
			if err != nil {
				return err
			}
			return a.print(list, func() table {
				if len(list) == 0 {
					return table{title: []string{"no namespaces yet (add a group or start a node)"}}
				}
				return table{header: namespaceHeader, rows: namespaceRows(list)}
			})
		},
	}
}

var namespaceHeader = []string{"NAME", "NODES", "GROUPS", "INTERVAL", "TTL", "MAX-LIVE-NODES", "MAX SUSPENDED", "MAX COOLDOWN", "LENDING"}

// namespaceRows is the table of `namespace list`.
func namespaceRows(list []allocator.NamespaceInfo) [][]string {
	rows := make([][]string, 0, len(list))
	for _, n := range list {
		ttl := n.Heartbeat.TTL.String()
		if !n.Stored {
			ttl += " (default)"
		}
		maxSuspended, maxCooldown := healthSettingsText(n.Health)
		rows = append(rows, []string{n.Name, strconv.FormatInt(n.Nodes, 10), strconv.FormatInt(n.Groups, 10),
			n.Heartbeat.Interval.String(), ttl, maxLiveText(n.MaxLiveNodes, n.MaxLiveNodesStored), maxSuspended, maxCooldown,
			allocator.OnOff(n.Lending)})
	}
	return rows
}

// maxLiveText renders a max_live_nodes setting.
func maxLiveText(n int64, stored bool) string {
	s := strconv.FormatInt(n, 10)
	if n == 0 {
		s = "unlimited"
	}
	if !stored {
		s += " (default)"
	}
	return s
}

func newNamespaceSetCommand(a *app) *cobra.Command {
	var (
		cfg     heartbeat.Config
		force   bool
		maxLive int64
		health  healthSettingFlags
		lending string
	)
	cmd := &cobra.Command{
		Use:   "set [--interval 2s] [--ttl 6s] [--max-live-nodes N] [--max-suspended P%] [--max-cooldown D] [--lending on|off]",
		Short: "Set the heartbeat interval and TTL, the live-node cap, the key health limits or lending of the namespace (--namespace)",
		Long: `Set stores the heartbeat interval and TTL of the namespace in Redis. Every
process of the namespace reads them when it starts: nodes, 'allot serve',
'allot rebalance', 'allot check perf'. The TTL must be at least 3 × the
interval; --interval alone sets the TTL to 3 × interval. A node configured
with another interval or TTL (WithHeartbeat, ALLOT_HEARTBEAT_*) refuses to
start.

Running nodes keep the settings they started with until they restart, and a
reaper would judge them by the new TTL: with registered nodes, set refuses
unless --force (restart the nodes right after).

--max-live-nodes caps how many nodes may be live at once (default 100000,
0 = no limit): a node that would join past it is refused until one leaves
or expires; nodes already live are never removed. It applies from the next
beat, with no restart.

--max-suspended and --max-cooldown bound what node reports may do to the
pool (see 'Key health' in docs/design.md); they act at the next report,
no restart needed.

--lending off stops every borrow at once: a node whose own groups are spent
no longer takes a call from another group's key (Acquire); on (the
default) lends the pool's lendable groups again.`,
		Example: "  allot namespace set --interval 5s --ttl 15s\n  allot --namespace batch namespace set --interval 10s\n  allot namespace set --max-live-nodes 500\n  allot namespace set --max-suspended 50% --max-cooldown 60s\n  allot namespace set --lending off",
		Args:    exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			fs := cmd.Flags()
			setHeartbeat := fs.Changed("interval") || fs.Changed("ttl")
			setMaxLive := fs.Changed("max-live-nodes")
			setLending := fs.Changed("lending")
			if !setHeartbeat && !setMaxLive && !health.changed(fs) && !setLending {
				return usageErrorf("nothing to set (give --interval, --ttl, --max-live-nodes, --max-suspended, --max-cooldown or --lending)")
			}
			if setLending && lending != "on" && lending != "off" {
				return usageErrorf("invalid --lending %q: want on or off", lending)
			}
			if maxLive < 0 {
				return usageErrorf("invalid --max-live-nodes %d: want a count >= 0 (0 = no limit)", maxLive)
			}
			if _, err := health.apply(fs, registry.DefaultHealthSettings()); health.changed(fs) && err != nil {
				return err
			}
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			hb, err := a.tracker(ctx)
			if err != nil {
				return err
			}
			next := hb.Config()
			if fs.Changed("interval") {
				next.Interval = cfg.Interval
				if !fs.Changed("ttl") {
					next.TTL = 3 * cfg.Interval
				}
			}
			if fs.Changed("ttl") {
				next.TTL = cfg.TTL
			}
			if err := next.Validate(); err != nil {
				return usageErrorf("invalid settings: interval %v, ttl %v: the ttl must be >= 3 × the interval, the interval > 0", next.Interval, next.TTL)
			}
			nodes, err := hb.Registered(ctx)
			if err != nil {
				return err
			}
			if nodes > 0 && !force && next != hb.Config() {
				return fmt.Errorf("namespace %q has %d registered node(s) using interval %v, ttl %v; nothing written (give --force, then restart them)",
					hb.Namespace(), nodes, hb.Config().Interval, hb.Config().TTL)
			}
			rdb, err := a.rdb(ctx)
			if err != nil {
				return err
			}
			_, stored, err := heartbeat.LoadConfig(ctx, rdb, a.namespace)
			if err != nil {
				return err
			}
			if setHeartbeat {
				if err := heartbeat.StoreConfig(ctx, rdb, a.namespace, next); err != nil {
					return err
				}
				stored = true
			}
			if setMaxLive {
				if err := heartbeat.StoreMaxLiveNodes(ctx, rdb, a.namespace, maxLive); err != nil {
					return err
				}
			}
			reg, err := a.registry(ctx)
			if err != nil {
				return err
			}
			hs, _, err := reg.HealthSettings(ctx)
			if err != nil {
				return err
			}
			if health.changed(fs) {
				if hs, err = health.store(ctx, fs, reg); err != nil {
					return err
				}
			}
			if setLending {
				if err := reg.SetLending(ctx, lending == "on"); err != nil {
					return err
				}
			}
			lends, _, err := reg.Lending(ctx)
			if err != nil {
				return err
			}
			info := allocator.NamespaceInfo{Name: hb.Namespace(), Nodes: nodes, Heartbeat: next, Stored: stored, Health: hs, Lending: lends}
			if info.MaxLiveNodes, info.MaxLiveNodesStored, err = heartbeat.LoadMaxLiveNodes(ctx, rdb, a.namespace); err != nil {
				return err
			}
			return a.print(info, func() table {
				var title []string
				if setHeartbeat {
					title = append(title, fmt.Sprintf("namespace %q: interval %v, ttl %v (processes read it when they start)", info.Name, next.Interval, next.TTL))
				}
				if setMaxLive {
					title = append(title, fmt.Sprintf("namespace %q: max live nodes %s (from the next beat; %d registered now)",
						info.Name, maxLiveText(info.MaxLiveNodes, info.MaxLiveNodesStored), nodes))
				}
				if health.changed(fs) {
					ms, mc := healthSettingsText(hs)
					title = append(title, fmt.Sprintf("namespace %q: max suspended %s, max cooldown %s (the next report uses them)", info.Name, ms, mc))
				}
				if setLending {
					title = append(title, fmt.Sprintf("namespace %q: lending %s (from the next acquire)", info.Name, allocator.OnOff(lends)))
				}
				return table{title: title}
			})
		},
	}
	cmd.Flags().Int64Var(&maxLive, "max-live-nodes", 0, "most nodes live at once; a join past it is refused (0 = no limit; default 100000 when never set)")
	cmd.Flags().DurationVar(&cfg.Interval, "interval", 0, "time between two beats of a node, e.g. 2s")
	cmd.Flags().DurationVar(&cfg.TTL, "ttl", 0, "how long a silent node stays live, >= 3 × interval, e.g. 6s")
	cmd.Flags().BoolVar(&force, "force", false, "store even though nodes are registered (restart them right after)")
	health.register(cmd.Flags())
	cmd.Flags().StringVar(&lending, "lending", "", "on: lend the pool's lendable groups to nodes whose own groups are spent (the default); off: never")
	return cmd
}
