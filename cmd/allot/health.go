package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/allot-io/allot/allocator"
	"github.com/allot-io/allot/registry"
)

// registerEjectAfter adds --eject-after to a group add/update command.
func registerEjectAfter(fs *pflag.FlagSet, v *string) {
	fs.StringVar(v, "eject-after", "", `suspend the group after N failure reports (401/403) within WINDOW, "N/WINDOW" like "3/1m" (the default); "0" = never`)
}

// parseEjectAfterFlag checks --eject-after and returns its canonical text.
func parseEjectAfterFlag(s string) (string, error) {
	e, err := registry.ParseEjectAfter(s)
	if err != nil {
		return "", usageErrorf("invalid --eject-after %q: want N/WINDOW with N from 1 to 1000 and WINDOW from 1s to 24h (e.g. 3/1m), or 0 = never", s)
	}
	return e.String(), nil
}

// withHealth returns g with its key health filled in.
func withHealth(ctx context.Context, reg *registry.Registry, g registry.Group) (registry.Group, error) {
	gs, err := reg.WithHealth(ctx, []registry.Group{g})
	if err != nil {
		return g, err
	}
	return gs[0], nil
}

// ejectAfterText renders eject_after for `group get`.
func ejectAfterText(s string) string {
	if s == "0" {
		return "0 (never suspended by failures)"
	}
	e, err := registry.ParseEjectAfter(s)
	if err != nil {
		return s
	}
	_, window, _ := strings.Cut(e.String(), "/")
	return fmt.Sprintf("%s (%d failures within %s suspend it)", e, e.N, window)
}

// healthState is the STATE column of `status` and `group list`: the state,
// with the remaining cooldown of an active group ("active (cooling 12s)") and
// the reason of a suspended one.
func healthState(state string, h *registry.Health, now time.Time) string {
	if h == nil {
		return state
	}
	switch h.State {
	case registry.Suspended:
		out := "suspended"
		if !h.NextProbe.IsZero() {
			out += ", probe " + age(now, h.NextProbe)
		}
		if h.Reason != "" {
			out += ": " + oneLine(clip(h.Reason, 40))
		}
		return out
	case registry.Probing:
		return "probing"
	}
	if h.Cooling(now) {
		return state + " (cooling " + shortDuration(h.CoolingUntil.Sub(now).Round(time.Second)) + ")"
	}
	return state
}

// clip shortens s to n bytes with an ellipsis, for table cells.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return registry.TruncateReason(s[:n]) + "…"
}

// healthRows are the key health lines of `group get`.
func healthRows(h *registry.Health, now time.Time) [][]string {
	if h == nil {
		return nil
	}
	var rows [][]string
	health := string(h.State)
	if h.Cooling(now) {
		health += fmt.Sprintf(", cooling until %s (%s)", h.CoolingUntil.Local().Format(time.RFC3339), age(now, h.CoolingUntil))
	}
	rows = append(rows, []string{"health:", health})
	rows = append(rows, []string{"failures:", fmt.Sprintf("%d in the window (%d reported, %d throttles, %d suspensions in all)",
		h.Failures, h.FailuresTotal, h.Throttles, h.Suspensions)})
	if h.State != registry.Active {
		rows = append(rows, []string{"reason:", dash(h.Reason)})
		rows = append(rows, []string{"since:", fmt.Sprintf("%s (%s)", h.Since.Local().Format(time.RFC3339), age(now, h.Since))})
		next := "- (until 'allot group resume')"
		if !h.NextProbe.IsZero() {
			next = fmt.Sprintf("%s (%s)", h.NextProbe.Local().Format(time.RFC3339), age(now, h.NextProbe))
		}
		rows = append(rows, []string{"next_probe:", next})
	}
	return rows
}

// --- suspend / resume ---

func newGroupSuspendCommand(a *app) *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:   "suspend NAME",
		Short: "Take a group out of every plan until resumed (its holders get other groups)",
		Long: `Suspend a group: no node holds it until 'allot group resume'. Nodes also
suspend a group themselves when its key keeps failing (see --eject-after);
such a suspension is probed after a while, an operator's is not.`,
		Example:           `  allot group suspend openai-1 --reason "credit ran out"`,
		Args:              exactArgs("NAME"),
		ValidArgsFunction: a.completeGroups,
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if err := checkName(name); err != nil {
				return err
			}
			if len(reason) > registry.MaxReasonBytes {
				return usageErrorf("--reason is %d bytes long: at most %d", len(reason), registry.MaxReasonBytes)
			}
			return a.withRegistry(cmd, func(ctx context.Context, reg *registry.Registry) error {
				if _, err := reg.Suspend(ctx, name, reason, a.by()); err != nil {
					return groupError(name, err)
				}
				return a.printGroupHealth(ctx, reg, name, fmt.Sprintf("group %q suspended: its nodes move at the next rebalance (resume with 'allot group resume %s')", name, name))
			})
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why, shown in events, status and the UI (never a secret)")
	return cmd
}

func newGroupResumeCommand(a *app) *cobra.Command {
	return &cobra.Command{
		Use:               "resume NAME",
		Short:             "Make a suspended or probing group active again (failure counts and cooldown reset)",
		Example:           `  allot group resume openai-1`,
		Args:              exactArgs("NAME"),
		ValidArgsFunction: a.completeGroups,
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if err := checkName(name); err != nil {
				return err
			}
			return a.withRegistry(cmd, func(ctx context.Context, reg *registry.Registry) error {
				if _, err := reg.Resume(ctx, name, a.by()); err != nil {
					return groupError(name, err)
				}
				return a.printGroupHealth(ctx, reg, name, fmt.Sprintf("group %q resumed: it is handed out again at the next rebalance", name))
			})
		},
	}
}

func newGroupCoolCommand(a *app) *cobra.Command {
	var clear bool
	cmd := &cobra.Command{
		Use:   "cool NAME --clear",
		Short: "End a group's shared cooldown now (its suspension, if any, stays)",
		Long: `Cool --clear ends the shared cooldown that throttle reports (429) put on a
group: every holder may call with its key again at once. A suspension is
left as it is ('allot group resume' clears both).`,
		Example:           `  allot group cool openai-1 --clear`,
		Args:              exactArgs("NAME"),
		ValidArgsFunction: a.completeGroups,
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if err := checkName(name); err != nil {
				return err
			}
			if !clear {
				return usageErrorf("nothing to do: give --clear (a cooldown is set by the nodes' throttle reports only)")
			}
			return a.withRegistry(cmd, func(ctx context.Context, reg *registry.Registry) error {
				if _, err := reg.ClearCooldown(ctx, name, a.by()); err != nil {
					return groupError(name, err)
				}
				return a.printGroupHealth(ctx, reg, name, fmt.Sprintf("group %q: cooldown cleared", name))
			})
		},
	}
	cmd.Flags().BoolVar(&clear, "clear", false, "end the cooldown now")
	return cmd
}

// groupView reads group name with its health and live holders: the group
// JSON `group get` and the health commands print (masked unless reveal).
func (a *app) groupView(ctx context.Context, reg *registry.Registry, name string, reveal bool) (allocator.GroupView, error) {
	g, err := reg.Get(ctx, name)
	if err != nil {
		return allocator.GroupView{}, groupError(name, err)
	}
	if g, err = withHealth(ctx, reg, g); err != nil {
		return allocator.GroupView{}, err
	}
	h, err := a.holders(ctx)
	if err != nil {
		return allocator.GroupView{}, err
	}
	if reveal {
		// Plain text or an error naming the key ID, never a sealed value.
		if err := registry.RequireOpen(g); err != nil {
			return allocator.GroupView{}, err
		}
	}
	return allocator.View(g, h[name], reveal), nil
}

// printGroupHealth prints group name (masked) after a health change, under
// title in table form.
func (a *app) printGroupHealth(ctx context.Context, reg *registry.Registry, name, title string) error {
	v, err := a.groupView(ctx, reg, name, false)
	if err != nil {
		return err
	}
	return a.print(v, func() table {
		return table{title: []string{title}, rows: healthRows(v.Health, a.now())}
	})
}
