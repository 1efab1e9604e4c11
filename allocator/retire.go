package allocator

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/allot-io/allot/registry"
)

// RetireSlack is how long WaitRetired waits past a group's drain deadline
// before giving up: the planner that finishes the drain runs at most one
// heartbeat interval late, plus a commit.
const RetireSlack = 30 * time.Second

// WaitRetired waits until group name is retired and returns it. It runs the
// rebalancer on every poll (default 500ms when poll <= 0), so the drain
// progresses even when no coordinator is running, and reads the group. It
// returns registry.ErrNotFound (wrapped) when the group is deleted meanwhile,
// ErrRetireTimeout (wrapped, with the last state read) a RetireSlack after the
// group's drain deadline, and ctx's error when ctx ends first. Both the CLI
// (`allot group retire --wait`) and the HTTP API (`?wait=true`) call it.
func (r *Rebalancer) WaitRetired(ctx context.Context, name string, poll time.Duration) (registry.Group, error) {
	if poll <= 0 {
		poll = 500 * time.Millisecond
	}
	g, err := r.reg.Get(ctx, name)
	if err != nil {
		return g, err
	}
	deadline := g.DrainBy
	if deadline.IsZero() {
		deadline = time.Now().Add(registry.DefaultDrainTimeout)
	}
	wctx, cancel := context.WithDeadline(ctx, deadline.Add(RetireSlack))
	defer cancel()
	tick := time.NewTicker(poll)
	defer tick.Stop()
	for {
		if g.State == registry.Retired {
			return g, nil
		}
		if g.State != registry.Draining {
			return g, fmt.Errorf("allocator: wait for group %q to retire: it is %s: %w", name, g.State, registry.ErrInvalidState)
		}
		if _, err := r.Run(wctx); err != nil && !errors.Is(err, ErrLocked) && !errors.Is(err, registry.ErrStaleEpoch) && wctx.Err() == nil {
			return g, err
		}
		cur, err := r.reg.Get(wctx, name)
		switch {
		case errors.Is(err, registry.ErrNotFound):
			return g, fmt.Errorf("allocator: group %q was deleted while draining: %w", name, err)
		case err == nil:
			if g = cur; g.State == registry.Retired {
				return g, nil
			}
		case wctx.Err() == nil:
			return g, err
		}
		select {
		case <-wctx.Done():
			if ctx.Err() != nil {
				return g, ctx.Err()
			}
			return g, fmt.Errorf("%w: group %q is %s, deadline was %s", ErrRetireTimeout, name, g.State, deadline.UTC().Format(time.RFC3339))
		case <-tick.C:
		}
	}
}
