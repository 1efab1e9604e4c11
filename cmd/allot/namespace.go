package main

import (
	"context"
	"fmt"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/allot-io/allot/allocator"
	"github.com/allot-io/allot/heartbeat"
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

var namespaceHeader = []string{"NAME", "NODES", "GROUPS", "INTERVAL", "TTL", "MAX-LIVE-NODES"}

// namespaceRows is the table of `namespace list`.
func namespaceRows(list []allocator.NamespaceInfo) [][]string {
	rows := make([][]string, 0, len(list))
	for _, n := range list {
		ttl := n.Heartbeat.TTL.String()
		if !n.Stored {
			ttl += " (default)"
		}
		rows = append(rows, []string{n.Name, strconv.FormatInt(n.Nodes, 10), strconv.FormatInt(n.Groups, 10),
			n.Heartbeat.Interval.String(), ttl, maxLiveText(n.MaxLiveNodes, n.MaxLiveNodesStored)})
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
	)
	cmd := &cobra.Command{
		Use:   "set [--interval 2s] [--ttl 6s] [--max-live-nodes N]",
		Short: "Set the heartbeat interval and TTL, or the live-node cap, of the namespace (--namespace)",
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
beat, with no restart.`,
		Example: "  allot namespace set --interval 5s --ttl 15s\n  allot --namespace batch namespace set --interval 10s\n  allot namespace set --max-live-nodes 500",
		Args:    exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			fs := cmd.Flags()
			if !fs.Changed("interval") && !fs.Changed("ttl") && !fs.Changed("max-live-nodes") {
				return usageErrorf("nothing to set (give --interval, --ttl, --max-live-nodes)")
			}
			if maxLive < 0 {
				return usageErrorf("invalid --max-live-nodes %d: want a count >= 0 (0 = no limit)", maxLive)
			}
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			if !fs.Changed("interval") && !fs.Changed("ttl") {
				return a.setMaxLiveNodes(ctx, maxLive)
			}
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
			if err := heartbeat.StoreConfig(ctx, rdb, a.namespace, next); err != nil {
				return err
			}
			if fs.Changed("max-live-nodes") {
				if err := heartbeat.StoreMaxLiveNodes(ctx, rdb, a.namespace, maxLive); err != nil {
					return err
				}
			}
			info := allocator.NamespaceInfo{Name: hb.Namespace(), Nodes: nodes, Heartbeat: next, Stored: true}
			if info.MaxLiveNodes, info.MaxLiveNodesStored, err = heartbeat.LoadMaxLiveNodes(ctx, rdb, a.namespace); err != nil {
				return err
			}
			return a.print(info, func() table {
				return table{title: []string{fmt.Sprintf("namespace %q: interval %v, ttl %v (processes read it when they start), max live nodes %s",
					info.Name, next.Interval, next.TTL, maxLiveText(info.MaxLiveNodes, info.MaxLiveNodesStored))}}
			})
		},
	}
	cmd.Flags().Int64Var(&maxLive, "max-live-nodes", 0, "most nodes live at once; a join past it is refused (0 = no limit; default 100000 when never set)")
	cmd.Flags().DurationVar(&cfg.Interval, "interval", 0, "time between two beats of a node, e.g. 2s")
	cmd.Flags().DurationVar(&cfg.TTL, "ttl", 0, "how long a silent node stays live, >= 3 × interval, e.g. 6s")
	cmd.Flags().BoolVar(&force, "force", false, "store even though nodes are registered (restart them right after)")
	return cmd
}

// setMaxLiveNodes stores the namespace's max_live_nodes alone and prints the
// namespace.
func (a *app) setMaxLiveNodes(ctx context.Context, n int64) error {
	rdb, err := a.rdb(ctx)
	if err != nil {
		return err
	}
	if err := heartbeat.StoreMaxLiveNodes(ctx, rdb, a.namespace, n); err != nil {
		return err
	}
	hb, err := a.tracker(ctx)
	if err != nil {
		return err
	}
	nodes, err := hb.Registered(ctx)
	if err != nil {
		return err
	}
	cfg, stored, err := heartbeat.LoadConfig(ctx, rdb, a.namespace)
	if err != nil {
		return err
	}
	info := allocator.NamespaceInfo{Name: hb.Namespace(), Nodes: nodes, Heartbeat: cfg, Stored: stored, MaxLiveNodes: n, MaxLiveNodesStored: true}
	return a.print(info, func() table {
		return table{title: []string{fmt.Sprintf("namespace %q: max live nodes %s (from the next beat; %d registered now)",
			info.Name, maxLiveText(n, true), nodes)}}
	})
}
