package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/allot-io/allot/allocator"
)

func init() { commandFactories = append(commandFactories, newRebalanceCommand) }

func newRebalanceCommand(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "rebalance",
		Short: "Plan and commit the assignment once, now",
		Long: `Rebalance runs one planning round now: it reaps dead nodes, applies due
scheduled changes, finishes drains and commits the plan if it differs from the
current assignment. Only one planner runs at a time; if another one holds the
lock the command fails and that planner does the work.`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			rb, err := a.rebalancer(ctx)
			if err != nil {
				return err
			}
			res, err := rb.Run(ctx)
			if err != nil {
				return groupError("", err)
			}
			out := res.Summary()
			return a.print(out, func() table { return table{title: rebalanceLines(out)} })
		},
	}
}

// rebalanceLines is the table output of `allot rebalance`.
func rebalanceLines(r allocator.Summary) []string {
	head := fmt.Sprintf("epoch %d: unchanged (took %.1fms)", r.Epoch, r.TookMS)
	if r.Changed {
		head = fmt.Sprintf("epoch %d: new assignment, %d nodes moved (took %.1fms)", r.Epoch, r.Moved, r.TookMS)
	}
	out := []string{head}
	var extra []string
	if len(r.Reaped) > 0 {
		extra = append(extra, "reaped "+strings.Join(r.Reaped, ","))
	}
	if len(r.Retired) > 0 {
		extra = append(extra, "retired "+strings.Join(r.Retired, ","))
	}
	if r.Applied > 0 {
		extra = append(extra, fmt.Sprintf("applied %d scheduled changes", r.Applied))
	}
	if r.Waiting > 0 {
		extra = append(extra, fmt.Sprintf("%d capped grants waiting for a release", r.Waiting))
	}
	for _, e := range extra {
		out = append(out, "  "+e)
	}
	return out
}
