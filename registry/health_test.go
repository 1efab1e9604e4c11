package registry_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/internal/redistest"
	"github.com/allot-io/allot/registry"
)

func TestParseEjectAfter(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		err      bool
	}{
		{"", "3/1m", false},
		{"0", "0", false},
		{"3/1m", "3/1m", false},
		{"5/m", "5/1m", false},
		{"10/90s", "10/90s", false},
		{"2/2h", "2/2h", false},
		{"4/120s", "4/2m", false},
		{"1000/24h", "1000/24h", false},
		{"3", "", true},
		{"0/1m", "", true},
		{"-1/1m", "", true},
		{"1001/1m", "", true},
		{"3/500ms", "", true},
		{"3/1500ms", "", true},
		{"3/25h", "", true},
		{"x/1m", "", true},
		{"3/soon", "", true},
	} {
		got, err := registry.ParseEjectAfter(tc.in)
		if tc.err {
			assert.ErrorIs(t, err, registry.ErrInvalidEjectAfter, tc.in)
			continue
		}
		require.NoError(t, err, tc.in)
		assert.Equal(t, tc.want, got.String(), tc.in)
	}
}

func TestTruncateReason(t *testing.T) {
	assert.Equal(t, "short", registry.TruncateReason("short"))
	long := strings.Repeat("é", 150) // 300 bytes
	got := registry.TruncateReason(long)
	assert.Equal(t, strings.Repeat("é", 100), got, "cut at 200 bytes on a rune boundary")
}

// TestHealth runs the key health flows on a standalone server and on a
// 3-master cluster.
func TestHealth(t *testing.T) {
	redistest.Topologies(t, func(t *testing.T, rdb redis.UniversalClient) {
		t.Run("Cooldown", func(t *testing.T) { testCooldown(t, rdb) })
		t.Run("EjectWindow", func(t *testing.T) { testEjectWindow(t, rdb) })
		t.Run("BadReports", func(t *testing.T) { testBadReports(t, rdb) })
		t.Run("ProbeSuccessAndFailure", func(t *testing.T) { testProbe(t, rdb) })
		t.Run("ManualSuspendResume", func(t *testing.T) { testManualSuspendResume(t, rdb) })
		t.Run("ReportStorm", func(t *testing.T) { testReportStorm(t, rdb) })
	})
}

const hour = time.Hour

// holding adds group name (default eject_after unless given) and makes node
// a live holder of it.
func holding(t *testing.T, e env, name, eject string, nodes ...string) {
	t.Helper()
	ctx := context.Background()
	c := registry.Change{}
	if eject != "" {
		c.EjectAfter = &eject
	}
	_, err := e.reg.Add(ctx, name, c, "t")
	require.NoError(t, err)
	now := float64(time.Now().UnixMilli())
	plan := map[string][]string{}
	for _, n := range nodes {
		require.NoError(t, e.rdb.ZAdd(ctx, e.k.Nodes(), redis.Z{Score: now, Member: n}).Err())
		plan[n] = []string{name}
	}
	cnt, err := e.reg.Counters(ctx)
	require.NoError(t, err)
	_, _, err = e.reg.Commit(ctx, registry.Commit{From: cnt, Nodes: plan, By: "t"})
	require.NoError(t, err)
}

func report(e env, node, group string, o registry.Outcome, ra time.Duration, reason string) (registry.ReportResult, error) {
	return e.reg.Report(context.Background(), registry.Report{Node: node, TTL: hour, Group: group, Outcome: o, RetryAfter: ra, Reason: reason})
}

func eventsOf(t *testing.T, e env, typ string) []registry.Event {
	t.Helper()
	evs, err := e.reg.Events(context.Background(), "", 1000, 0)
	require.NoError(t, err)
	var out []registry.Event
	for _, ev := range evs {
		if ev.Type == typ {
			out = append(out, ev)
		}
	}
	return out
}

func testCooldown(t *testing.T, rdb redis.UniversalClient) {
	ctx := context.Background()
	e := newEnv(t, rdb)
	holding(t, e, "k", "", "n1", "n2")

	start := time.Now()
	res, err := report(e, "n1", "k", registry.Throttled, 30*time.Second, "")
	require.NoError(t, err)
	assert.WithinDuration(t, start.Add(30*time.Second), res.CoolingUntil, 2*time.Second)
	first := res.CoolingUntil

	// Only ever extended: a shorter Retry-After from another holder keeps it.
	res, err = report(e, "n2", "k", registry.Throttled, time.Second, "")
	require.NoError(t, err)
	assert.Equal(t, first, res.CoolingUntil)
	h, err := e.reg.HealthOf(ctx, "k")
	require.NoError(t, err)
	assert.Equal(t, first, h.CoolingUntil)
	assert.True(t, h.Cooling(time.Now()))
	assert.Equal(t, registry.Active, h.State, "throttling does not suspend")
	assert.Equal(t, int64(2), h.Throttles)

	// Absurd Retry-After from one node: capped at max_cooldown; a second
	// holder asking for a long wait too: capped at one hour.
	res, err = report(e, "n1", "k", registry.Throttled, 1000*hour, "")
	require.NoError(t, err)
	assert.WithinDuration(t, time.Now().Add(time.Minute), res.CoolingUntil, 2*time.Second, "one node alone: at most max_cooldown")
	assert.Equal(t, registry.HeldCooldown, res.Held)
	res, err = report(e, "n2", "k", registry.Throttled, 1000*hour, "")
	require.NoError(t, err)
	assert.WithinDuration(t, time.Now().Add(registry.MaxRetryAfter), res.CoolingUntil, 2*time.Second)

	// group.throttled: at most one per second per group, but a long
	// cooldown two holders agreed on is always told.
	assert.Len(t, eventsOf(t, e, registry.EventGroupThrottled), 2)

	// No Retry-After: 1 s, then doubling for a repeat after the cooldown.
	holding(t, e, "d", "", "n3")
	res, err = report(e, "n3", "d", registry.Throttled, -1, "")
	require.NoError(t, err)
	assert.WithinDuration(t, time.Now().Add(time.Second), res.CoolingUntil, 500*time.Millisecond)
	// During the cooldown a report without Retry-After adds nothing.
	again, err := report(e, "n3", "d", registry.Throttled, -1, "")
	require.NoError(t, err)
	assert.Equal(t, res.CoolingUntil, again.CoolingUntil)
	require.Eventually(t, func() bool { return time.Now().After(res.CoolingUntil.Add(20 * time.Millisecond)) }, 3*time.Second, 10*time.Millisecond)
	res, err = report(e, "n3", "d", registry.Throttled, -1, "")
	require.NoError(t, err)
	assert.WithinDuration(t, time.Now().Add(2*time.Second), res.CoolingUntil, 500*time.Millisecond)
}

func testEjectWindow(t *testing.T, rdb redis.UniversalClient) {
	ctx := context.Background()
	e := newEnv(t, rdb)
	holding(t, e, "k", "", "n1")
	c0, err := e.reg.Counters(ctx)
	require.NoError(t, err)

	for i := range 2 {
		res, err := report(e, "n1", "k", registry.Failure, 0, "401 Unauthorized")
		require.NoError(t, err)
		assert.Equal(t, i+1, res.Failures)
		assert.Empty(t, res.Transition)
	}
	res, err := report(e, "n1", "k", registry.Failure, 0, "401 Unauthorized")
	require.NoError(t, err)
	assert.Equal(t, registry.TransitionSuspended, res.Transition)
	assert.Equal(t, registry.Suspended, res.State)

	c1, err := e.reg.Counters(ctx)
	require.NoError(t, err)
	assert.Equal(t, c0.Rev+1, c1.Rev, "a suspension bumps rev so every beat sees work")

	g, err := e.reg.Get(ctx, "k")
	require.NoError(t, err)
	assert.Equal(t, registry.Active, g.State, "the stored document stays active")
	gs, err := e.reg.WithHealth(ctx, []registry.Group{g})
	require.NoError(t, err)
	assert.Equal(t, registry.Suspended, gs[0].State)
	require.NotNil(t, gs[0].Health)
	assert.Equal(t, "401 Unauthorized", gs[0].Health.Reason)
	assert.Equal(t, 3, gs[0].Health.Failures)
	assert.WithinDuration(t, gs[0].Health.Since.Add(registry.DefaultProbeAfter), gs[0].Health.NextProbe, time.Millisecond)

	un, err := e.reg.Unhealthy(ctx)
	require.NoError(t, err)
	assert.Equal(t, registry.Suspended, un["k"].State)
	planned := registry.ApplyHealth([]registry.Group{g}, un)
	assert.Equal(t, registry.Suspended, planned[0].State)

	ev := eventsOf(t, e, registry.EventGroupSuspended)
	require.Len(t, ev, 1)
	assert.Equal(t, "401 Unauthorized [nodes: n1]", ev[0].Reason)
	assert.Equal(t, "n1", ev[0].Node)

	// eject_after 0: never suspended.
	holding(t, e, "never", "0", "n2")
	for range 5 {
		res, err := report(e, "n2", "never", registry.Failure, 0, "403")
		require.NoError(t, err)
		assert.Empty(t, res.Transition)
	}
	h, err := e.reg.HealthOf(ctx, "never")
	require.NoError(t, err)
	assert.Equal(t, registry.Active, h.State)
	assert.Equal(t, int64(5), h.FailuresTotal)
	assert.Equal(t, 5, h.Failures, "counted for display, never acted on")

	// Failures outside the window do not add up.
	holding(t, e, "slow", "2/1s", "n3")
	res, err = report(e, "n3", "slow", registry.Failure, 0, "403")
	require.NoError(t, err)
	require.Empty(t, res.Transition)
	// The script prunes the window at every report (server time); the
	// group JSON shows the count it stored.
	require.Eventually(t, func() bool {
		res, err := report(e, "n3", "slow", registry.Success, 0, "")
		require.NoError(t, err)
		h, err := e.reg.HealthOf(ctx, "slow")
		require.NoError(t, err)
		require.Equal(t, res.Failures, h.Failures, "the report and the group JSON agree")
		return h.Failures == 0
	}, 3*time.Second, 150*time.Millisecond)
	res, err = report(e, "n3", "slow", registry.Failure, 0, "403")
	require.NoError(t, err)
	assert.Empty(t, res.Transition, "the first failure left the window")
}

func testBadReports(t *testing.T, rdb redis.UniversalClient) {
	ctx := context.Background()
	e := newEnv(t, rdb)
	holding(t, e, "k", "", "n1")
	_, err := e.reg.Add(ctx, "other", registry.Change{}, "t")
	require.NoError(t, err)
	before := e.dump(t)

	_, err = report(e, "n1", "nope", registry.Failure, 0, "x")
	assert.ErrorIs(t, err, registry.ErrNotFound)
	_, err = report(e, "n1", "other", registry.Failure, 0, "x")
	assert.ErrorIs(t, err, registry.ErrNotHolder)
	_, err = report(e, "ghost", "k", registry.Failure, 0, "x")
	assert.ErrorIs(t, err, registry.ErrNodeLapsed)
	_, err = report(e, "n1", "k", "exploded", 0, "x")
	assert.ErrorIs(t, err, registry.ErrInvalidReport)
	_, err = report(e, "n1", "Bad Name", registry.Failure, 0, "x")
	assert.ErrorIs(t, err, registry.ErrInvalidName)
	after := e.dump(t)
	// Nothing but the created stamp of the health hashes looked at changed.
	for k := range after {
		if strings.Contains(k, ":health:") {
			delete(after, k)
		}
	}
	assert.Equal(t, before, after)

	// A node whose lease lapsed (last beat older than its TTL).
	require.NoError(t, e.rdb.ZAdd(ctx, e.k.Nodes(), redis.Z{Score: float64(time.Now().Add(-time.Minute).UnixMilli()), Member: "n1"}).Err())
	_, err = e.reg.Report(ctx, registry.Report{Node: "n1", TTL: 6 * time.Second, Group: "k", Outcome: registry.Failure})
	assert.ErrorIs(t, err, registry.ErrNodeLapsed)

	// Long reasons are truncated; a negative Retry-After is "none given".
	require.NoError(t, e.rdb.ZAdd(ctx, e.k.Nodes(), redis.Z{Score: float64(time.Now().UnixMilli()), Member: "n1"}).Err())
	for range 3 {
		_, err = report(e, "n1", "k", registry.Failure, 0, strings.Repeat("r", 500))
		require.NoError(t, err)
	}
	h, err := e.reg.HealthOf(ctx, "k")
	require.NoError(t, err)
	assert.Len(t, h.Reason, registry.MaxReasonBytes)
	res, err := report(e, "n1", "k", registry.Throttled, -5*time.Second, "")
	require.NoError(t, err)
	assert.WithinDuration(t, time.Now().Add(time.Second), res.CoolingUntil, 500*time.Millisecond)

	// Retired: a clear error. Deleted and re-added: a clean slate.
	_, err = e.reg.Retire(ctx, "other", time.Minute, "t")
	require.NoError(t, err)
	_, err = e.reg.FinishRetire(ctx, "other", "t")
	require.NoError(t, err)
	_, err = e.reg.Report(ctx, registry.Report{Node: "n1", TTL: hour, Group: "other", Outcome: registry.Failure})
	assert.ErrorIs(t, err, registry.ErrInvalidState)
	// A report names its node: an empty one would skip the holder checks.
	_, err = e.reg.Report(ctx, registry.Report{Group: "k", Outcome: registry.Failure})
	assert.ErrorIs(t, err, registry.ErrInvalidReport)

	require.NoError(t, e.reg.Delete(ctx, "k", "t"))
	for key := range e.dump(t) {
		assert.NotContains(t, key, ":health:k", "a deleted group's health is dropped")
	}
	sched, err := e.reg.Schedules(ctx)
	require.NoError(t, err)
	assert.Empty(t, sched, "and its probe")
	un, err := e.reg.Unhealthy(ctx)
	require.NoError(t, err)
	assert.NotContains(t, un, "k")
	_, err = report(e, "n1", "k", registry.Failure, 0, "x")
	assert.ErrorIs(t, err, registry.ErrNotFound)
	g, err := e.reg.Add(ctx, "k", registry.Change{}, "t")
	require.NoError(t, err)
	gs, err := e.reg.WithHealth(ctx, []registry.Group{g})
	require.NoError(t, err)
	assert.Equal(t, registry.Active, gs[0].State)
	assert.Equal(t, registry.Health{State: registry.Active}, *gs[0].Health)
	un, err = e.reg.Unhealthy(ctx)
	require.NoError(t, err)
	assert.Equal(t, registry.Active, registry.ApplyHealth([]registry.Group{g}, un)[0].State)
}

func testProbe(t *testing.T, rdb redis.UniversalClient) {
	ctx := context.Background()
	const wait = 200 * time.Millisecond
	e := newEnv(t, rdb, registry.WithProbeAfter(wait))
	holding(t, e, "k", "1/1m", "n1")

	res, err := report(e, "n1", "k", registry.Failure, 0, "revoked")
	require.NoError(t, err)
	require.Equal(t, registry.TransitionSuspended, res.Transition)
	sched, err := e.reg.Schedules(ctx)
	require.NoError(t, err)
	require.Len(t, sched, 1)
	assert.Equal(t, registry.OpProbe, sched[0].Op)

	probed := func() bool {
		_, err := e.reg.ApplyDue(ctx)
		require.NoError(t, err)
		h, err := e.reg.HealthOf(ctx, "k")
		require.NoError(t, err)
		return h.State == registry.Probing
	}
	require.Eventually(t, probed, 5*time.Second, 20*time.Millisecond)
	assert.Len(t, eventsOf(t, e, registry.EventGroupProbing), 1)

	// A failure while probing: suspended again, the wait doubled.
	res, err = report(e, "n1", "k", registry.Failure, 0, "still revoked")
	require.NoError(t, err)
	require.Equal(t, registry.TransitionSuspended, res.Transition)
	h, err := e.reg.HealthOf(ctx, "k")
	require.NoError(t, err)
	assert.Equal(t, 2*wait, h.NextProbe.Sub(h.Since))
	assert.Equal(t, "still revoked", h.Reason)

	require.Eventually(t, probed, 5*time.Second, 20*time.Millisecond)
	// Three successes and no failure: active again.
	for i := range registry.ProbeSuccesses {
		res, err = report(e, "n1", "k", registry.Success, 0, "")
		require.NoError(t, err)
		if i < registry.ProbeSuccesses-1 {
			assert.Equal(t, registry.Probing, res.State)
		}
	}
	assert.Equal(t, registry.TransitionRecovered, res.Transition)
	h, err = e.reg.HealthOf(ctx, "k")
	require.NoError(t, err)
	assert.Equal(t, registry.Active, h.State)
	assert.Zero(t, h.Failures)
	assert.Len(t, eventsOf(t, e, registry.EventGroupRecovered), 1)
	sched, err = e.reg.Schedules(ctx)
	require.NoError(t, err)
	assert.Empty(t, sched)

	// The next suspension starts from the base wait again.
	res, err = report(e, "n1", "k", registry.Failure, 0, "again")
	require.NoError(t, err)
	require.Equal(t, registry.TransitionSuspended, res.Transition)
	h, err = e.reg.HealthOf(ctx, "k")
	require.NoError(t, err)
	assert.Equal(t, wait, h.NextProbe.Sub(h.Since))
}

func testManualSuspendResume(t *testing.T, rdb redis.UniversalClient) {
	ctx := context.Background()
	e := newEnv(t, rdb, registry.WithProbeAfter(50*time.Millisecond))
	holding(t, e, "k", "", "n1")
	_, err := report(e, "n1", "k", registry.Failure, 0, "x")
	require.NoError(t, err)

	h, err := e.reg.Suspend(ctx, "k", "credit ran out", "alice")
	require.NoError(t, err)
	assert.Equal(t, registry.Suspended, h.State)
	assert.Equal(t, "credit ran out", h.Reason)
	assert.True(t, h.NextProbe.IsZero(), "an operator's suspension is not probed")
	_, err = e.reg.Suspend(ctx, "k", "again", "alice")
	assert.ErrorIs(t, err, registry.ErrInvalidState)
	ev := eventsOf(t, e, registry.EventGroupSuspended)
	require.Len(t, ev, 1)
	assert.Equal(t, "alice", ev[0].By)

	h, err = e.reg.Resume(ctx, "k", "alice")
	require.NoError(t, err)
	assert.Equal(t, registry.Active, h.State)
	assert.Zero(t, h.Failures, "resume resets the failure window")
	assert.Empty(t, h.Reason)
	assert.Len(t, eventsOf(t, e, registry.EventGroupResumed), 1)

	_, err = e.reg.Suspend(ctx, "missing", "", "alice")
	assert.ErrorIs(t, err, registry.ErrNotFound)
	_, err = e.reg.Resume(ctx, "missing", "alice")
	assert.ErrorIs(t, err, registry.ErrNotFound)
}

// testReportStorm: many nodes reporting failures at once suspend the group
// exactly once.
func testReportStorm(t *testing.T, rdb redis.UniversalClient) {
	e := newEnv(t, rdb)
	nodes := make([]string, 50)
	for i := range nodes {
		nodes[i] = "n" + string(rune('a'+i%26)) + string(rune('a'+i/26))
	}
	holding(t, e, "k", "", nodes...)
	var wg sync.WaitGroup
	var mu sync.Mutex
	transitions := 0
	for _, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 20 {
				res, err := report(e, n, "k", registry.Failure, 0, "401")
				if !assert.NoError(t, err) {
					return
				}
				if res.Transition != "" {
					mu.Lock()
					transitions++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	assert.Equal(t, 1, transitions)
	assert.Len(t, eventsOf(t, e, registry.EventGroupSuspended), 1)
}

func TestPlanImportEjectAfter(t *testing.T) {
	have := []registry.Group{{Name: "k", Version: 2, State: registry.Active, Weight: 1, Config: map[string]string{}, SecretKeys: []string{}, EjectAfter: "3/1m", Lend: true}}
	p, err := registry.PlanImport(registry.Pool{Groups: []registry.PoolGroup{{Name: "k", EjectAfter: "5/30s"}}}, have, false)
	require.NoError(t, err)
	require.Len(t, p.Changed, 1)
	require.Len(t, p.Changed[0].Fields, 1)
	f := p.Changed[0].Fields[0]
	assert.Equal(t, "eject_after", f.Field)
	assert.Equal(t, "3/1m", *f.Old)
	assert.Equal(t, "5/30s", *f.New)

	p, err = registry.PlanImport(registry.Pool{Groups: []registry.PoolGroup{{Name: "k"}}}, have, false)
	require.NoError(t, err)
	assert.Equal(t, 1, p.Unchanged, "absent means the default")

	_, err = registry.PlanImport(registry.Pool{Groups: []registry.PoolGroup{{Name: "k", EjectAfter: "often"}}}, have, false)
	assert.ErrorIs(t, err, registry.ErrInvalidEjectAfter)

	exported := registry.ExportPool([]registry.Group{{Name: "k", Weight: 1, EjectAfter: "0"}}, false)
	assert.Equal(t, "0", exported.Groups[0].EjectAfter)
}

func TestApplyHealth(t *testing.T) {
	created := time.Date(2026, 11, 30, 3, 0, 0, 0, time.UTC)
	at := created.Format("2006-01-02T15:04:05.000Z")
	groups := []registry.Group{
		{Name: "a", State: registry.Active, Created: created},
		{Name: "b", State: registry.Active, Created: created},
		{Name: "c", State: registry.Active, Created: created.Add(time.Second)},
		{Name: "d", State: registry.Draining, Created: created},
		{Name: "e", State: registry.Active, Created: created},
	}
	un := map[string]registry.UnhealthyEntry{
		"a": {State: registry.Suspended, Created: at},
		"b": {State: registry.Probing, Created: at},
		"c": {State: registry.Suspended, Created: at}, // left by an older group "c"
		"d": {State: registry.Suspended, Created: at},
	}
	var got []registry.State
	for _, g := range registry.ApplyHealth(groups, un) {
		got = append(got, g.State)
	}
	assert.Equal(t, []registry.State{registry.Suspended, registry.Probing, registry.Active, registry.Draining, registry.Active}, got)
	assert.Equal(t, registry.Active, groups[0].State, "the input is not modified")
}

// TestReportLeaseIsTheNamespaces: a report counts only from a node within
// its lease, and the lease is the namespace's stored TTL, not the one the
// caller passes: a caller cannot make a lapsed node's report count.
func TestReportLeaseIsTheNamespaces(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, redistest.Start(t).Client(t))
	_, err := e.reg.Add(ctx, "k", registry.Change{}, "t")
	require.NoError(t, err)
	// n1 holds k and beat 5 s ago; the namespace's TTL is 2 s.
	require.NoError(t, e.rdb.HSet(ctx, e.k.Assign(), "n1", "k").Err())
	require.NoError(t, e.rdb.ZAdd(ctx, e.k.Nodes(), redis.Z{Score: float64(time.Now().Add(-5 * time.Second).UnixMilli()), Member: "n1"}).Err())
	require.NoError(t, e.rdb.HSet(ctx, e.k.Settings(), "interval_ms", 500, "ttl_ms", 2000).Err())

	_, err = e.reg.Report(ctx, registry.Report{Node: "n1", TTL: time.Hour, Group: "k", Outcome: registry.Throttled})
	assert.ErrorIs(t, err, registry.ErrNodeLapsed)

	// Without stored settings the caller's TTL is all there is.
	require.NoError(t, e.rdb.Del(ctx, e.k.Settings()).Err())
	_, err = e.reg.Report(ctx, registry.Report{Node: "n1", TTL: time.Hour, Group: "k", Outcome: registry.Throttled})
	assert.NoError(t, err)
}
