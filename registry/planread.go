package registry

import (
	"context"
	_ "embed"
	"slices"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

//go:embed plan_groups.lua
var planGroupsLua string

var planGroupsScript = redis.NewScript(planGroupsLua)

// PlanRead is the registry's part of a planner's read, queued on a
// MULTI/EXEC that the caller runs (QueuePlanRead), so that the assignment,
// the groups and the nodes a plan starts from are one snapshot read in one
// round trip.
type PlanRead struct {
	due        *redis.Cmd
	assignment assignmentRead
	groups     *redis.Cmd
	unhealthy  *redis.MapStringStringCmd
	haveRev    int64
}

// PlanState is what a PlanRead read.
type PlanState struct {
	// Assignment is the committed assignment with its counters.
	Assignment Assignment
	// Groups are every group sorted by name, with the suspended and probing
	// ones marked in State (ApplyHealth); nil when the groups are those of
	// the revision the caller said it had (Assignment.Rev == haveRev).
	// Their config values are as stored: a plan reads no config, so sealed
	// values are not opened (no cost, and a bad one cannot stop planning).
	Groups []Group
	// Due reports that a scheduled change is due: ApplyDue it and read again.
	Due bool
}

// QueuePlanRead queues on tx (a TxPipeline of this Registry's client) the
// reads a plan needs: whether a scheduled change is due, the assignment and
// counters, and the groups unless haveRev (-1: none) is the current group
// revision. Scripts go by EVAL (see heartbeat.Tracker.QueuePlanRead).
func (r *Registry) QueuePlanRead(ctx context.Context, tx redis.Pipeliner, haveRev int64) *PlanRead {
	k := r.keys
	have := ""
	if haveRev >= 0 {
		have = strconv.FormatInt(haveRev, 10)
	}
	return &PlanRead{
		due:        scheduleDueScript.Eval(ctx, tx, []string{k.Schedule(), k.ScheduleItems()}, 1),
		assignment: queueAssignment(ctx, tx, k.State(), k.Assign(), k.Revoked()),
		groups:     planGroupsScript.Eval(ctx, tx, []string{k.State(), k.Groups()}, have, k.Group("")),
		unhealthy:  tx.HGetAll(ctx, k.Unhealthy()),
		haveRev:    haveRev,
	}
}

// Result returns what the transaction read.
func (pr *PlanRead) Result() (PlanState, error) {
	var st PlanState
	due, err := pr.due.StringSlice()
	if err != nil && err != redis.Nil {
		return st, wrap(err, "read due schedules")
	}
	st.Due = len(due) > 0
	if st.Assignment, err = pr.assignment.result(); err != nil {
		return st, wrap(err, "read assignment")
	}
	res, err := pr.groups.StringSlice()
	if err != nil {
		return st, wrap(err, "list groups")
	}
	if len(res) == 0 {
		return st, wrap(errMalformed, "list groups")
	}
	if rev, err := parseCounter(res[0]); err != nil || rev != st.Assignment.Rev {
		// Both were read in one transaction: they cannot differ.
		return st, wrap(errMalformed, "list groups")
	}
	if len(res) == 1 && st.Assignment.Rev == pr.haveRev {
		return st, nil
	}
	groups := make([]Group, 0, len(res)-1)
	for _, doc := range res[1:] {
		g, err := parseGroupDoc(doc) // a plan reads no config: values stay as stored
		if err != nil {
			return st, wrap(err, "list groups")
		}
		groups = append(groups, g)
	}
	slices.SortFunc(groups, func(a, b Group) int { return strings.Compare(a.Name, b.Name) })
	unhealthy, err := pr.unhealthy.Result()
	if err != nil {
		return st, wrap(err, "read unhealthy groups")
	}
	st.Groups = ApplyHealth(groups, parseUnhealthy(unhealthy))
	return st, nil
}
