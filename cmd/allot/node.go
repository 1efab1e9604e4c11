package main

import (
	"time"

	"github.com/spf13/cobra"

	"github.com/allot-io/allot/allocator"
)

func init() { commandFactories = append(commandFactories, newNodeCommand) }

func newNodeCommand(a *app) *cobra.Command {
	cmd := noun(&cobra.Command{
		Use:     "node",
		Aliases: []string{"nodes"},
		Short:   "Inspect the live nodes",
	})
	cmd.AddCommand(&cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List the live nodes and the groups each holds",
		Args:    exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			st, err := a.inspect(ctx)
			if err != nil {
				return err
			}
			return a.print(st.Nodes, func() table {
				if len(st.Nodes) == 0 {
					return table{title: []string{"no live nodes"}}
				}
				return table{header: nodeHeader, rows: nodeRows(st.Nodes, a.now())}
			})
		},
	})
	cmd.AddCommand(newNodeSimulateCommand(a))
	return cmd
}

var nodeHeader = []string{"ID", "IP", "GROUPS", "DEMAND", "LAST SEEN"}

// nodeRows is the table of `node list`.
func nodeRows(nodes []allocator.NodeStatus, now time.Time) [][]string {
	rows := make([][]string, 0, len(nodes))
	for _, n := range nodes {
		groups := list(n.Groups)
		if len(n.Groups) == 0 {
			groups = "(standby)"
		}
		rows = append(rows, []string{n.ID, dash(n.IP), groups, demandText(n.Demand), age(now, n.LastSeen)})
	}
	return rows
}
