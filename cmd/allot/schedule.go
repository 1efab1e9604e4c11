package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/allot-io/allot/registry"
)

func init() { commandFactories = append(commandFactories, newScheduleCommand) }

func newScheduleCommand(a *app) *cobra.Command {
	cmd := noun(&cobra.Command{
		Use:     "schedule",
		Aliases: []string{"schedules"},
		Short:   "List and cancel changes scheduled with --at",
	})
	var reveal bool
	listCmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List pending scheduled changes, soonest first",
		Args:    exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withRegistry(cmd, func(ctx context.Context, reg *registry.Registry) error {
				items, err := reg.Schedules(ctx)
				if err != nil {
					return err
				}
				if reveal {
					if err := registry.RequireOpenSchedules(items...); err != nil {
						return err
					}
				}
				groups, err := reg.List(ctx)
				if err != nil {
					return err
				}
				secret := map[string][]string{}
				for _, g := range groups {
					secret[g.Name] = g.SecretKeys
				}
				shown := make([]registry.Scheduled, len(items))
				for i, s := range items {
					shown[i] = maskSchedule(s, secret[s.Group], reveal)
				}
				return a.print(shown, func() table {
					if len(shown) == 0 {
						return table{title: []string{"no scheduled changes"}}
					}
					return table{header: scheduleHeader, rows: scheduleRows(shown), fit: true}
				})
			})
		},
	}
	listCmd.Flags().BoolVar(&reveal, "reveal", false, "show secret values of scheduled changes")
	cmd.AddCommand(listCmd, &cobra.Command{
		Use:   "cancel ID",
		Short: "Cancel a pending scheduled change",
		Args:  exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			id := args[0]
			return a.withRegistry(cmd, func(ctx context.Context, reg *registry.Registry) error {
				if err := reg.CancelSchedule(ctx, id); err != nil {
					if errors.Is(err, registry.ErrNotFound) {
						return fmt.Errorf("scheduled change %q not found: already applied or cancelled? (see 'allot schedule list')", id)
					}
					return err
				}
				return a.print(map[string]any{"id": id, "cancelled": true}, func() table {
					return table{title: []string{fmt.Sprintf("scheduled change %s cancelled", id)}}
				})
			})
		},
	})
	return cmd
}

// maskSchedule hides the values a scheduled change sets for secret keys:
// those it marks secret and those secret in the group now.
func maskSchedule(s registry.Scheduled, groupSecrets []string, reveal bool) registry.Scheduled {
	if reveal {
		return s
	}
	return s.Masked(groupSecrets)
}

var scheduleHeader = []string{"ID", "AT", "GROUP", "OP", "CHANGE"}

// scheduleRows is the table of `schedule list`; items must be masked already.
func scheduleRows(items []registry.Scheduled) [][]string {
	rows := make([][]string, 0, len(items))
	for _, s := range items {
		rows = append(rows, []string{
			s.ID, s.At.Local().Format("2006-01-02 15:04"), s.Group, string(s.Op), changeSummary(s),
		})
	}
	return rows
}

// changeSummary renders what a scheduled change does on one line.
func changeSummary(s registry.Scheduled) string {
	var parts []string
	c := s.Change
	for _, k := range slices.Sorted(maps.Keys(c.Set)) {
		parts = append(parts, k+"="+c.Set[k])
	}
	for _, k := range c.Unset {
		parts = append(parts, "-"+k)
	}
	for _, k := range c.Secret {
		if _, ok := c.Set[k]; !ok {
			parts = append(parts, "secret "+k)
		}
	}
	for _, k := range c.Unsecret {
		parts = append(parts, "unsecret "+k)
	}
	if c.Weight != nil {
		parts = append(parts, "weight "+num(*c.Weight))
	}
	if c.MaxNodes != nil {
		parts = append(parts, "max_nodes "+strconv.Itoa(*c.MaxNodes))
	}
	if c.Quota != nil {
		parts = append(parts, "quota "+dash(*c.Quota))
	}
	if s.Op == registry.OpRetire && s.Drain > 0 {
		parts = append(parts, "drain "+s.Drain.String())
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, " ")
}
