package registry_test

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/registry"
)

// planRead runs a plan read in a transaction of its own.
func planRead(t *testing.T, e env, haveRev int64) registry.PlanState {
	t.Helper()
	ctx := context.Background()
	var read *registry.PlanRead
	_, err := e.rdb.TxPipelined(ctx, func(tx redis.Pipeliner) error {
		read = e.reg.QueuePlanRead(ctx, tx, haveRev)
		return nil
	})
	require.NoError(t, err)
	st, err := read.Result()
	require.NoError(t, err)
	return st
}

// testPlanRead: a plan read returns the assignment as Assignment does, the
// groups as the planner sees them (health applied) unless the caller has
// those of the current revision, and whether a scheduled change is due.
func testPlanRead(t *testing.T, rdb redis.UniversalClient) {
	ctx := context.Background()
	e := newEnv(t, rdb)
	for _, n := range []string{"b", "a"} {
		_, err := e.reg.Add(ctx, n, registry.Change{}, "t")
		require.NoError(t, err)
	}
	e.register(t, "n1")
	_, _, err := e.reg.Commit(ctx, registry.Commit{From: registry.Counters{Rev: 2}, Nodes: map[string][]string{"n1": {"a"}}})
	require.NoError(t, err)

	st := planRead(t, e, -1)
	a, err := e.reg.Assignment(ctx)
	require.NoError(t, err)
	assert.Equal(t, a, st.Assignment)
	assert.False(t, st.Due)
	require.Len(t, st.Groups, 2)
	assert.Equal(t, "a", st.Groups[0].Name, "sorted by name")
	assert.Equal(t, registry.Active, st.Groups[0].State)

	assert.Nil(t, planRead(t, e, a.Rev).Groups, "the caller has the groups of this revision")
	assert.NotNil(t, planRead(t, e, a.Rev-1).Groups)

	// A suspension moves the revision; the planner sees the group suspended.
	_, err = e.reg.Suspend(ctx, "b", "test", "t")
	require.NoError(t, err)
	st = planRead(t, e, a.Rev)
	require.Len(t, st.Groups, 2)
	assert.Greater(t, st.Assignment.Rev, a.Rev)
	assert.Equal(t, registry.Suspended, st.Groups[1].State)

	_, err = e.reg.Schedule(ctx, registry.Scheduled{At: time.Now().Add(time.Hour), Group: "a", Op: registry.OpDelete})
	require.NoError(t, err)
	assert.False(t, planRead(t, e, -1).Due, "not due for an hour")
	_, err = e.reg.Schedule(ctx, registry.Scheduled{At: time.Now().Add(-time.Second), Group: "a", Op: registry.OpRetire})
	require.NoError(t, err)
	assert.True(t, planRead(t, e, -1).Due)

	// No groups at all: an empty list, not "unchanged".
	empty := newEnv(t, rdb)
	assert.Equal(t, []registry.Group{}, planRead(t, empty, -1).Groups)
}

// testCommitPlanCounters: a commit says which revision and membership
// version it found, so a planner knows without a read whether anything
// moved while it planned.
func testCommitPlanCounters(t *testing.T, rdb redis.UniversalClient) {
	ctx := context.Background()
	e := newEnv(t, rdb)
	_, err := e.reg.Add(ctx, "a", registry.Change{}, "t")
	require.NoError(t, err)
	e.register(t, "n1")
	from, err := e.reg.Counters(ctx)
	require.NoError(t, err)
	// A join while the plan was made.
	require.NoError(t, rdb.HIncrBy(ctx, e.k.State(), "mver", 1).Err())
	c, err := e.reg.CommitPlan(ctx, registry.Commit{From: from, Nodes: map[string][]string{"n1": {"a"}}})
	require.NoError(t, err)
	assert.Equal(t, registry.Committed{Epoch: 1, Changed: true, Rev: from.Rev, MVer: from.MVer + 1}, c)

	c, err = e.reg.CommitPlan(ctx, registry.Commit{From: from, Nodes: map[string][]string{"n1": {"a"}}})
	assert.ErrorIs(t, err, registry.ErrStaleEpoch)
	assert.Equal(t, int64(1), c.Epoch)

	from.Epoch, from.MVer = 1, from.MVer+1
	c, err = e.reg.CommitPlan(ctx, registry.Commit{From: from, Nodes: map[string][]string{"n1": {"a"}}})
	require.NoError(t, err)
	assert.Equal(t, registry.Committed{Epoch: 1, Rev: from.Rev, MVer: from.MVer}, c, "nothing differs: same epoch")
}
