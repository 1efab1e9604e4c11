package main

import (
	"context"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	limiter "github.com/allot-io/allot/quota"
	"github.com/allot-io/allot/registry"
)

func newGroupUsageCommand(a *app) *cobra.Command {
	var since time.Duration
	cmd := &cobra.Command{
		Use:   "usage NAME",
		Short: "Show a group's use per minute: requests, tokens, rejected, throttled, failures",
		Long: "Show a group's use per minute (Redis server time, UTC), counted by the limiter\n" +
			"of every holder: requests and tokens taken, calls rejected by allot, and the\n" +
			"throttled and failure reports. Minutes without use are left out; 24 h are kept.",
		Example:           "  allot group usage openai-1 --since 15m\n  allot group usage openai-1 -o json",
		Args:              exactArgs("NAME"),
		ValidArgsFunction: a.completeGroups,
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if err := checkName(name); err != nil {
				return err
			}
			if since <= 0 || since > registry.MaxUsageWindow {
				return usageErrorf("invalid --since %v: want a duration above 0, at most 24h", since)
			}
			return a.withRegistry(cmd, func(ctx context.Context, reg *registry.Registry) error {
				g, err := reg.Get(ctx, name)
				if err != nil {
					return groupError(name, err)
				}
				u, err := reg.Usage(ctx, name, since)
				if err != nil {
					return groupError(name, err)
				}
				return a.print(u, func() table { return usageTable(g.Limits, u) })
			})
		},
	}
	cmd.Flags().DurationVar(&since, "since", time.Hour, "how far back (at most 24h)")
	return cmd
}

var usageHeader = []string{"MINUTE", "REQUESTS", "BORROWED", "TOKENS", "REJECTED", "THROTTLED", "FAILURES", "USED"}

// usageTable is the table of `group usage`: one row per minute with use,
// USED being the highest fraction of any limit that minute took.
func usageTable(ls limiter.Limits, u []limiter.Minute) table {
	t := table{header: usageHeader}
	if len(u) == 0 {
		return table{footer: []string{"no use in this window"}}
	}
	for _, m := range u {
		used := "-"
		if !ls.IsZero() {
			used = strconv.FormatFloat(ls.Used(m)*100, 'f', 0, 64) + "%"
		}
		t.rows = append(t.rows, []string{
			m.Minute.Format("2006-01-02 15:04"), strconv.FormatInt(m.Requests, 10), strconv.FormatInt(m.Borrowed, 10), strconv.FormatInt(m.Tokens, 10),
			strconv.FormatInt(m.Rejected, 10), strconv.FormatInt(m.Throttled, 10), strconv.FormatInt(m.Failures, 10), used,
		})
	}
	if !ls.IsZero() {
		t.footer = []string{"limits: " + ls.String()}
	}
	return t
}
