package allocator

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/heartbeat"
	"github.com/allot-io/allot/internal/keys"
	"github.com/allot-io/allot/internal/redistest"
	"github.com/allot-io/allot/registry"
)

// TestRunAfterLeaveCostsFourRoundTrips: the run that follows a leave takes
// the lock, reads the whole pool in one transaction, commits and unlocks —
// four round trips, however large the pool, where each read used to be one.
func TestRunAfterLeaveCostsFourRoundTrips(t *testing.T) {
	for _, tc := range topologies {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			rdb := tc.rdb(t)
			p := newPool(t, rdb)
			// A lock that needs no extension however slow the machine.
			p.rb = NewRebalancer(rdb, p.reg, p.hb, WithLockExpiry(time.Minute))
			p.addGroup(t, "a", 1, 0)
			p.addGroup(t, "b", 1, 0)
			for i := 1; i <= 4; i++ {
				p.beat(t, heartbeat.Beat{Node: fmt.Sprintf("n%d", i), Session: "test"})
			}
			// The first run loads the scripts and fills the group cache.
			_, err := p.rb.Run(ctx)
			require.NoError(t, err)

			var trips redistest.RoundTrips
			rdb.AddHook(&trips)
			require.NoError(t, p.hb.Leave(ctx, "n2", "test"))
			trips.N.Store(0)
			res, err := p.rb.Run(ctx)
			require.NoError(t, err)
			assert.Equal(t, int64(4), trips.N.Load(), "lock, read, commit, unlock")
			assert.True(t, res.Changed)
			assert.NotContains(t, p.assignment(t).Nodes, "n2")
		})
	}
}

// TestRunReapsAppliesDueAndSeesWrites: one run reaps an expired node,
// applies a due scheduled change, and plans with a group added since the
// last run (its cached groups are of an older revision).
func TestRunReapsAppliesDueAndSeesWrites(t *testing.T) {
	ctx := context.Background()
	rdb := redistest.Start(t).Client(t)
	p := newPool(t, rdb)
	p.addGroup(t, "a", 1, 0)
	for _, id := range []string{"n1", "n2", "n3"} {
		p.beat(t, heartbeat.Beat{Node: id, Session: "test"})
	}
	_, err := p.rb.Run(ctx)
	require.NoError(t, err)
	for _, id := range []string{"n1", "n2", "n3"} {
		require.Equal(t, []string{"a"}, p.assignment(t).Nodes[id])
	}

	p.addGroup(t, "b", 1, 0)
	_, err = p.reg.Schedule(ctx, registry.Scheduled{At: time.Now().Add(-time.Second), Group: "a", Op: registry.OpDelete, By: "t"})
	require.NoError(t, err)
	// n3 last beat an hour ago, by its score: past the TTL.
	now, err := rdb.Time(ctx).Result()
	require.NoError(t, err)
	require.NoError(t, rdb.ZAdd(ctx, keys.New("t").Nodes(), redis.Z{Score: float64(now.Add(-time.Hour).UnixMilli()), Member: "n3"}).Err())

	res, err := p.rb.Run(ctx)
	require.NoError(t, err)
	assert.Equal(t, []string{"n3"}, res.Reaped)
	assert.Equal(t, 1, res.Applied)
	a := p.assignment(t)
	assert.Equal(t, map[string][]string{"n1": {"b"}, "n2": {"b"}}, a.Nodes, "a deleted, b added, n3 gone")
	assert.Equal(t, a.Rev, a.PlannedRev, "planned from the groups as they are now")
}

// TestLeaveAndPlan: a leaver deregisters and plans the pool without itself
// in two round trips (the transaction that leaves and reads, the commit),
// without the lock; a leave of another session's node changes nothing; a
// plan committed in between makes the leaver's stale, and says so.
func TestLeaveAndPlan(t *testing.T) {
	ctx := context.Background()
	rdb := redistest.Start(t).Client(t)
	p := newPool(t, rdb)
	p.addGroup(t, "a", 1, 0)
	p.addGroup(t, "b", 1, 0)
	for _, id := range []string{"n1", "n2", "n3", "n4"} {
		p.beat(t, heartbeat.Beat{Node: id, Session: "s-" + id})
	}
	_, err := p.rb.Run(ctx)
	require.NoError(t, err)
	before := p.assignment(t)

	left, _, err := p.rb.LeaveAndPlan(ctx, "n1", "s-other")
	assert.False(t, left)
	assert.ErrorIs(t, err, heartbeat.ErrWrongSession)
	assert.Equal(t, before, p.assignment(t), "another session's node is left alone")

	var trips redistest.RoundTrips
	rdb.AddHook(&trips)
	left, res, err := p.rb.LeaveAndPlan(ctx, "n1", "s-n1")
	require.NoError(t, err)
	assert.Equal(t, int64(2), trips.N.Load(), "leave and read, commit")
	assert.True(t, left)
	assert.True(t, res.Changed)
	after := p.assignment(t)
	assert.NotContains(t, after.Nodes, "n1")
	assert.Equal(t, after.MVer, after.PlannedMVer, "the plan saw the leave")
	live, _, err := p.hb.Live(ctx)
	require.NoError(t, err)
	assert.Len(t, live, 3)

	// Another plan committed between the read and the commit: stale.
	other := NewRebalancer(rdb, p.reg, p.hb)
	p.rb.beforeCommit = func() {
		p.rb.beforeCommit = nil
		p.beat(t, heartbeat.Beat{Node: "n5", Session: "s-n5"})
		_, err := other.Run(ctx)
		require.NoError(t, err)
	}
	left, _, err = p.rb.LeaveAndPlan(ctx, "n2", "s-n2")
	assert.True(t, left, "the node left; only its plan lost")
	assert.ErrorIs(t, err, registry.ErrStaleEpoch)
	_, err = p.rb.Run(ctx)
	require.NoError(t, err)
	a := p.assignment(t)
	assert.NotContains(t, a.Nodes, "n2")
	assert.Contains(t, a.Nodes, "n5")
}
