package registry_test

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/internal/redistest"
	"github.com/allot-io/allot/registry"
)

// TestHealthAbuse pins the rules that keep one node's reports from taking a
// pool down (docs/design.md, "Key health"), on a standalone server and on a
// 3-master cluster.
func TestHealthAbuse(t *testing.T) {
	redistest.Topologies(t, func(t *testing.T, rdb redis.UniversalClient) {
		t.Run("Corroboration", func(t *testing.T) { testCorroboration(t, rdb) })
		t.Run("SuspendEverything", func(t *testing.T) { testSuspendEverything(t, rdb) })
		t.Run("SuspensionCap", func(t *testing.T) { testSuspensionCap(t, rdb) })
		t.Run("FreezePool", func(t *testing.T) { testFreezePool(t, rdb) })
		t.Run("ResumeAndClearCooldown", func(t *testing.T) { testClearCooldown(t, rdb) })
		t.Run("ReportRate", func(t *testing.T) { testReportRate(t, rdb) })
		t.Run("Settings", func(t *testing.T) { testHealthSettings(t, rdb) })
	})
}

// pool adds every group plan names (eject_after eject) and commits plan as
// the whole assignment, its nodes live.
func pool(t *testing.T, e env, eject string, plan map[string][]string) {
	t.Helper()
	ctx := context.Background()
	seen := map[string]bool{}
	now := float64(time.Now().UnixMilli())
	for n, gs := range plan {
		require.NoError(t, e.rdb.ZAdd(ctx, e.k.Nodes(), redis.Z{Score: now, Member: n}).Err())
		for _, g := range gs {
			if seen[g] {
				continue
			}
			seen[g] = true
			_, err := e.reg.Add(ctx, g, registry.Change{EjectAfter: &eject}, "t")
			require.NoError(t, err)
		}
	}
	cnt, err := e.reg.Counters(ctx)
	require.NoError(t, err)
	_, _, err = e.reg.Commit(ctx, registry.Commit{From: cnt, Nodes: plan, By: "t"})
	require.NoError(t, err)
}

func unhealthyCount(t *testing.T, e env) int {
	t.Helper()
	un, err := e.reg.Unhealthy(context.Background())
	require.NoError(t, err)
	return len(un)
}

// testCorroboration: a group with two or more holders is suspended only on
// failures from at least two of them; a single-holder group by its holder.
func testCorroboration(t *testing.T, rdb redis.UniversalClient) {
	e := newEnv(t, rdb)
	require.NoError(t, e.reg.SetHealthSettings(context.Background(), registry.HealthSettings{MaxSuspended: 100, MaxCooldown: time.Minute}))
	pool(t, e, "3/1m", map[string][]string{"n1": {"shared"}, "n2": {"shared"}, "n3": {"alone"}})

	for range 5 {
		res, err := report(e, "n1", "shared", registry.Failure, 0, "401")
		require.NoError(t, err)
		assert.Empty(t, res.Transition, "one of two holders alone never suspends")
	}
	res, err := report(e, "n1", "shared", registry.Failure, 0, "401")
	require.NoError(t, err)
	assert.Equal(t, registry.HeldUncorroborated, res.Held)
	assert.Equal(t, 3, res.Failures)

	res, err = report(e, "n2", "shared", registry.Failure, 0, "401")
	require.NoError(t, err)
	assert.Equal(t, registry.TransitionSuspended, res.Transition, "a second holder corroborates")
	ev := eventsOf(t, e, registry.EventGroupSuspended)
	require.Len(t, ev, 1)
	assert.Equal(t, "401 [nodes: n1,n2]", ev[0].Reason, "the event names the reporting nodes")

	// The honest single holder suspends its own group.
	for range 3 {
		res, err = report(e, "n3", "alone", registry.Failure, 0, "401")
		require.NoError(t, err)
	}
	assert.Equal(t, registry.TransitionSuspended, res.Transition)
}

// testSuspendEverything replays the attack: one node, handed group after
// group, reports each one failed. On groups it shares it suspends none; on
// groups it holds alone it suspends one per probe wait.
func testSuspendEverything(t *testing.T, rdb redis.UniversalClient) {
	ctx := context.Background()
	e := newEnv(t, rdb)
	require.NoError(t, e.reg.SetHealthSettings(ctx, registry.HealthSettings{MaxSuspended: 100, MaxCooldown: time.Minute}))
	plan := map[string][]string{"bad": {"g1", "g2", "g3", "g4", "g5"}}
	for i, g := range []string{"g1", "g2", "g3", "g4", "g5"} {
		plan["h"+string(rune('1'+i))] = []string{g}
	}
	pool(t, e, "3/1m", plan)
	for _, g := range []string{"g1", "g2", "g3", "g4", "g5"} {
		for range 3 {
			res, err := report(e, "bad", g, registry.Failure, 0, "401")
			require.NoError(t, err)
			assert.Empty(t, res.Transition, g)
		}
	}
	assert.Zero(t, unhealthyCount(t, e), "shared groups: nothing suspended without corroboration")

	// The same node now holds the groups alone (the rebalancer handed them
	// over one by one): the first suspension bars it from the next.
	e = newEnv(t, rdb)
	require.NoError(t, e.reg.SetHealthSettings(ctx, registry.HealthSettings{MaxSuspended: 100, MaxCooldown: time.Minute}))
	pool(t, e, "3/1m", map[string][]string{"bad": {"g1", "g2", "g3", "g4", "g5"}})
	suspended := 0
	for _, g := range []string{"g1", "g2", "g3", "g4", "g5"} {
		for range 3 {
			res, err := report(e, "bad", g, registry.Failure, 0, "401")
			require.NoError(t, err)
			if res.Transition == registry.TransitionSuspended {
				suspended++
			} else if res.Failures == 3 {
				assert.Equal(t, registry.HeldEjector, res.Held, g)
			}
		}
	}
	assert.Equal(t, 1, suspended, "one suspension per probe wait")
	assert.Equal(t, 1, unhealthyCount(t, e))
	h, err := e.reg.HealthOf(ctx, "g5")
	require.NoError(t, err)
	assert.Equal(t, 3, h.Failures, "its reports are counted")
	assert.Equal(t, int64(3), h.FailuresTotal)
}

// testSuspensionCap: reports suspend at most max_suspended of the pool;
// past it the group cools instead, and an event says so. Operators are not
// limited.
func testSuspensionCap(t *testing.T, rdb redis.UniversalClient) {
	ctx := context.Background()
	e := newEnv(t, rdb)
	pool(t, e, "1/1m", map[string][]string{"n1": {"a"}, "n2": {"b"}, "n3": {"c"}, "n4": {"d"}})
	for _, p := range [][2]string{{"n1", "a"}, {"n2", "b"}} {
		res, err := report(e, p[0], p[1], registry.Failure, 0, "401")
		require.NoError(t, err)
		require.Equal(t, registry.TransitionSuspended, res.Transition, p[1])
	}
	// 2 of 4 suspended: the default 50 % is reached.
	start := time.Now()
	res, err := report(e, "n3", "c", registry.Failure, 0, "401")
	require.NoError(t, err)
	assert.Empty(t, res.Transition)
	assert.Equal(t, registry.HeldCapped, res.Held)
	assert.Equal(t, registry.Active, res.State)
	assert.WithinDuration(t, start.Add(time.Minute), res.CoolingUntil, 2*time.Second, "cools for max_cooldown instead")
	ev := eventsOf(t, e, registry.EventGroupThrottled)
	require.Len(t, ev, 1)
	assert.Contains(t, ev[0].Reason, "suspension limit reached: cooling instead")
	assert.Contains(t, ev[0].Reason, "[nodes: n3]")
	assert.Equal(t, 2, unhealthyCount(t, e))

	_, err = e.reg.Suspend(ctx, "d", "operator", "alice")
	require.NoError(t, err, "an operator's suspension is not limited")
	assert.Equal(t, 3, unhealthyCount(t, e))

	// 0 %: reports never suspend.
	e = newEnv(t, rdb)
	require.NoError(t, e.reg.SetHealthSettings(ctx, registry.HealthSettings{MaxSuspended: 0, MaxCooldown: time.Minute}))
	pool(t, e, "1/1m", map[string][]string{"n1": {"a"}})
	res, err = report(e, "n1", "a", registry.Failure, 0, "401")
	require.NoError(t, err)
	assert.Equal(t, registry.HeldCapped, res.Held)
	assert.Zero(t, unhealthyCount(t, e))
}

// testFreezePool replays the attack: one node's 1 h Retry-After per group
// cools each for max_cooldown at most; a second holder's long wait extends.
func testFreezePool(t *testing.T, rdb redis.UniversalClient) {
	ctx := context.Background()
	e := newEnv(t, rdb)
	pool(t, e, "", map[string][]string{"bad": {"a", "b", "c"}, "n2": {"c"}})
	for _, g := range []string{"a", "b", "c"} {
		start := time.Now()
		res, err := report(e, "bad", g, registry.Throttled, registry.MaxRetryAfter, "")
		require.NoError(t, err)
		assert.WithinDuration(t, start.Add(time.Minute), res.CoolingUntil, 2*time.Second, g)
		assert.Equal(t, registry.HeldCooldown, res.Held)
		// Repeats of the same node do not add up.
		res, err = report(e, "bad", g, registry.Throttled, registry.MaxRetryAfter, "")
		require.NoError(t, err)
		assert.WithinDuration(t, start.Add(time.Minute), res.CoolingUntil, 2*time.Second, g)
	}
	res, err := report(e, "n2", "c", registry.Throttled, registry.MaxRetryAfter, "")
	require.NoError(t, err)
	assert.WithinDuration(t, time.Now().Add(registry.MaxRetryAfter), res.CoolingUntil, 2*time.Second, "a second holder corroborates")
	ev := eventsOf(t, e, registry.EventGroupThrottled)
	require.NotEmpty(t, ev)
	assert.Contains(t, ev[len(ev)-1].Reason, "[nodes: bad,n2]")

	// A lower max_cooldown applies at once, to default waits too.
	require.NoError(t, e.reg.SetHealthSettings(ctx, registry.HealthSettings{MaxSuspended: 50, MaxCooldown: 2 * time.Second}))
	_, err = e.reg.ClearCooldown(ctx, "a", "t")
	require.NoError(t, err)
	start := time.Now()
	res, err = report(e, "bad", "a", registry.Throttled, 30*time.Second, "")
	require.NoError(t, err)
	assert.WithinDuration(t, start.Add(2*time.Second), res.CoolingUntil, time.Second)
}

// testClearCooldown: resume clears the cooldown too; ClearCooldown clears
// only the cooldown.
func testClearCooldown(t *testing.T, rdb redis.UniversalClient) {
	ctx := context.Background()
	e := newEnv(t, rdb)
	pool(t, e, "1/1m", map[string][]string{"n1": {"k"}, "n2": {"j"}})
	_, err := report(e, "n1", "k", registry.Throttled, 30*time.Second, "")
	require.NoError(t, err)
	res, err := report(e, "n1", "k", registry.Failure, 0, "401")
	require.NoError(t, err)
	require.Equal(t, registry.TransitionSuspended, res.Transition)
	h, err := e.reg.Resume(ctx, "k", "alice")
	require.NoError(t, err)
	assert.Equal(t, registry.Active, h.State)
	assert.True(t, h.CoolingUntil.IsZero(), "resume clears the cooldown")
	assert.False(t, h.Cooling(time.Now()))

	_, err = report(e, "n2", "j", registry.Throttled, 30*time.Second, "")
	require.NoError(t, err)
	_, err = e.reg.Suspend(ctx, "j", "operator", "alice")
	require.NoError(t, err)
	h, err = e.reg.ClearCooldown(ctx, "j", "alice")
	require.NoError(t, err)
	assert.True(t, h.CoolingUntil.IsZero())
	assert.Equal(t, registry.Suspended, h.State, "clearing the cooldown leaves the suspension")
	ev := eventsOf(t, e, registry.EventGroupCooldownCleared)
	require.Len(t, ev, 1)
	assert.Equal(t, "alice", ev[0].By)
	_, err = e.reg.ClearCooldown(ctx, "missing", "alice")
	assert.ErrorIs(t, err, registry.ErrNotFound)
}

// testReportRate: one node's reports beyond the rate write nothing but a
// counter.
func testReportRate(t *testing.T, rdb redis.UniversalClient) {
	ctx := context.Background()
	e := newEnv(t, rdb)
	pool(t, e, "0", map[string][]string{"n1": {"k", "fine"}, "n2": {"k"}})
	// Successes that write nothing (an active group with no failures) take
	// no share: an honest node may report every 2xx.
	for range 3 * registry.ReportBurst {
		_, err := report(e, "n1", "fine", registry.Success, 0, "")
		require.NoError(t, err)
	}
	ok, limited := 0, 0
	for range 3 * registry.ReportBurst {
		_, err := report(e, "n1", "k", registry.Failure, 0, "401")
		switch {
		case err == nil:
			ok++
		case assert.ErrorIs(t, err, registry.ErrReportLimited):
			limited++
		}
	}
	assert.Less(t, ok, registry.ReportBurst+5, "at most the burst (and what the rate refilled)")
	assert.GreaterOrEqual(t, ok, registry.ReportBurst)
	h, err := e.reg.HealthOf(ctx, "k")
	require.NoError(t, err)
	assert.Equal(t, int64(ok), h.FailuresTotal, "a limited report writes nothing")
	assert.Equal(t, int64(limited), h.Limited, "but the counter")
	// Another node is not limited by n1.
	_, err = report(e, "n2", "k", registry.Failure, 0, "401")
	assert.NoError(t, err)
	// The rate refills.
	require.Eventually(t, func() bool {
		_, err := report(e, "n1", "k", registry.Success, 0, "")
		return err == nil
	}, 3*time.Second, 50*time.Millisecond)
}

func testHealthSettings(t *testing.T, rdb redis.UniversalClient) {
	ctx := context.Background()
	e := newEnv(t, rdb)
	s, stored, err := e.reg.HealthSettings(ctx)
	require.NoError(t, err)
	assert.False(t, stored)
	assert.Equal(t, registry.DefaultHealthSettings(), s)
	want := registry.HealthSettings{MaxSuspended: 20, MaxCooldown: 90 * time.Second}
	require.NoError(t, e.reg.SetHealthSettings(ctx, want))
	s, stored, err = e.reg.HealthSettings(ctx)
	require.NoError(t, err)
	assert.True(t, stored)
	assert.Equal(t, want, s)
	for _, bad := range []registry.HealthSettings{
		{MaxSuspended: -1, MaxCooldown: time.Minute},
		{MaxSuspended: 101, MaxCooldown: time.Minute},
		{MaxSuspended: 50, MaxCooldown: 999 * time.Millisecond},
		{MaxSuspended: 50, MaxCooldown: time.Hour + time.Second},
	} {
		assert.ErrorIs(t, e.reg.SetHealthSettings(ctx, bad), registry.ErrInvalidHealthSettings)
		assert.True(t, registry.IsInvalidInput(bad.Validate()))
	}
}
