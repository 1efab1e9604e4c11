package registry_test

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/internal/keys"
	"github.com/allot-io/allot/internal/redistest"
	"github.com/allot-io/allot/registry"
)

var nsSeq atomic.Int64

// env is one registry in a namespace of its own on a shared server.
type env struct {
	rdb redis.UniversalClient
	ns  string
	reg *registry.Registry
	k   keys.Keys
}

func newEnv(t *testing.T, rdb redis.UniversalClient, opts ...registry.Option) env {
	t.Helper()
	ns := fmt.Sprintf("t%d", nsSeq.Add(1))
	opts = append([]registry.Option{registry.WithNamespace(ns)}, opts...)
	return env{rdb: rdb, ns: ns, reg: registry.New(rdb, opts...), k: keys.New(ns)}
}

// register adds node IDs to the namespace's live-node set, as their first
// beats would: Commit writes entries only for registered nodes.
func (e env) register(t *testing.T, ids ...string) {
	t.Helper()
	for _, id := range ids {
		require.NoError(t, e.rdb.ZAdd(context.Background(), e.k.Nodes(), redis.Z{Score: 1, Member: id}).Err())
	}
}

// canonical renders a key's type and content in a form that does not depend
// on the encoding (DUMP of a set changes across a restart).
func canonical(ctx context.Context, c *redis.Client, key string) (string, error) {
	typ, err := c.Type(ctx, key).Result()
	if err != nil {
		return "", err
	}
	var v any
	switch typ {
	case "string":
		v, err = c.Get(ctx, key).Result()
	case "list":
		v, err = c.LRange(ctx, key, 0, -1).Result()
	case "set":
		var m []string
		m, err = c.SMembers(ctx, key).Result()
		slices.Sort(m)
		v = m
	case "hash":
		v, err = c.HGetAll(ctx, key).Result() // printed with sorted keys
	case "zset":
		v, err = c.ZRangeWithScores(ctx, key, 0, -1).Result()
	case "stream":
		v, err = c.XRange(ctx, key, "-", "+").Result()
	default:
		err = fmt.Errorf("unexpected type %s of %s", typ, key)
	}
	return fmt.Sprintf("%s %v", typ, v), err
}

// dump returns every key of the namespace with its content.
func (e env) dump(t *testing.T) map[string]string {
	t.Helper()
	ctx := context.Background()
	out := map[string]string{}
	var mu sync.Mutex
	scan := func(ctx context.Context, c *redis.Client) error {
		iter := c.Scan(ctx, 0, e.k.Prefix()+"*", 1000).Iterator()
		for iter.Next(ctx) {
			v, err := canonical(ctx, c, iter.Val())
			if err != nil {
				return err
			}
			mu.Lock()
			out[iter.Val()] = v
			mu.Unlock()
		}
		return iter.Err()
	}
	switch c := e.rdb.(type) {
	case *redis.ClusterClient:
		require.NoError(t, c.ForEachMaster(ctx, scan))
	case *redis.Client:
		require.NoError(t, scan(ctx, c))
	default:
		t.Fatalf("unexpected client %T", e.rdb)
	}
	return out
}

type backend struct {
	name string
	rdb  redis.UniversalClient
}

// TestBackends runs the main flows on a standalone server and on a 3-master
// cluster; each subtest works in its own namespace.
func TestBackends(t *testing.T) {
	standalone := redistest.Start(t)
	cluster := redistest.StartCluster(t)
	for _, b := range []backend{{"standalone", standalone.Client(t)}, {"cluster", cluster.Client(t)}} {
		t.Run(b.name, func(t *testing.T) {
			t.Run("GroupLifecycle", func(t *testing.T) { testGroupLifecycle(t, b.rdb) })
			t.Run("Validation", func(t *testing.T) { testValidation(t, b.rdb) })
			t.Run("HistoryCapAndRollback", func(t *testing.T) { testHistoryCapAndRollback(t, b.rdb) })
			t.Run("RetireAndFinish", func(t *testing.T) { testRetireAndFinish(t, b.rdb) })
			t.Run("RetireDrainTimeout", func(t *testing.T) { testRetireDrainTimeout(t, b.rdb) })
			t.Run("UpdateWithoutChange", func(t *testing.T) { testUpdateWithoutChange(t, b.rdb) })
			t.Run("Delete", func(t *testing.T) { testDelete(t, b.rdb) })
			t.Run("ConcurrentUpdates", func(t *testing.T) { testConcurrentUpdates(t, b.rdb) })
			t.Run("ScheduleExactlyOnce", func(t *testing.T) { testScheduleExactlyOnce(t, b.rdb) })
			t.Run("ScheduleValidateAndCancel", func(t *testing.T) { testScheduleValidateAndCancel(t, b.rdb) })
			t.Run("ScheduleDropped", func(t *testing.T) { testScheduleDropped(t, b.rdb) })
			t.Run("ScheduleRetireAndDelete", func(t *testing.T) { testScheduleRetireAndDelete(t, b.rdb) })
			t.Run("Commit", func(t *testing.T) { testCommit(t, b.rdb) })
			t.Run("PlanRead", func(t *testing.T) { testPlanRead(t, b.rdb) })
			t.Run("CommitPlanCounters", func(t *testing.T) { testCommitPlanCounters(t, b.rdb) })
			t.Run("Events", func(t *testing.T) { testEvents(t, b.rdb) })
		})
	}
}

// testUpdateWithoutChange: an update that sets what is already there is not
// a change — no new version, no history entry, no event, nothing written.
func testUpdateWithoutChange(t *testing.T, rdb redis.UniversalClient) {
	ctx := context.Background()
	e := newEnv(t, rdb)
	_, err := e.reg.Add(ctx, "same", registry.Change{Set: map[string]string{"k": "v"}, Weight: f64(2)}, "test")
	require.NoError(t, err)
	before := e.dump(t)
	g, err := e.reg.Update(ctx, "same", registry.Change{Set: map[string]string{"k": "v"}, Weight: f64(2)}, "test")
	require.NoError(t, err)
	assert.Equal(t, int64(1), g.Version)
	assert.Equal(t, before, e.dump(t))

	g, err = e.reg.Update(ctx, "same", registry.Change{Weight: f64(3)}, "test")
	require.NoError(t, err)
	assert.Equal(t, int64(2), g.Version, "a real change still bumps the version")
}

func f64(v float64) *float64 { return &v }
func intp(v int) *int        { return &v }
func str(v string) *string   { return &v }

func testGroupLifecycle(t *testing.T, rdb redis.UniversalClient) {
	ctx := context.Background()
	e := newEnv(t, rdb)
	before := time.Now().Add(-time.Second)

	g, err := e.reg.Add(ctx, "key-a", registry.Change{
		Set: map[string]string{"url": "https://x", "token": "abcdefghijklmnop"}, Secret: []string{"token"},
		Quota: str("600/M"),
	}, "alice")
	require.NoError(t, err)
	assert.Equal(t, int64(1), g.Version)
	assert.Equal(t, registry.Active, g.State)
	assert.Equal(t, 1.0, g.Weight)
	assert.Equal(t, "600/m", g.Quota)
	assert.Equal(t, []string{"token"}, g.SecretKeys)
	assert.Equal(t, "alice", g.UpdatedBy)
	assert.True(t, g.Created.After(before), "created %v is server time", g.Created)
	assert.WithinDuration(t, time.Now(), g.Created, 5*time.Second)
	assert.Equal(t, g.Created, g.Updated)
	assert.Equal(t, "****mnop", g.Masked().Config["token"])
	assert.Equal(t, "abcdefghijklmnop", g.Config["token"], "Masked must not modify the original")

	_, err = e.reg.Add(ctx, "key-a", registry.Change{}, "bob")
	assert.ErrorIs(t, err, registry.ErrExists)

	u, err := e.reg.Update(ctx, "key-a", registry.Change{Set: map[string]string{"region": "eu"}, Unset: []string{"token"}, Weight: f64(2.5), MaxNodes: intp(3)}, "bob")
	require.NoError(t, err)
	assert.Equal(t, int64(2), u.Version)
	assert.Equal(t, map[string]string{"url": "https://x", "region": "eu"}, u.Config)
	assert.Equal(t, []string{}, u.SecretKeys, "unset drops the secret mark")
	assert.Equal(t, 2.5, u.Weight)
	assert.Equal(t, 3, u.MaxNodes)
	assert.Equal(t, g.Created, u.Created, "created is kept")
	assert.False(t, u.Updated.Before(g.Updated))

	u, err = e.reg.Update(ctx, "key-a", registry.Change{Quota: str(""), IfVersion: 2}, "bob")
	require.NoError(t, err)
	assert.Equal(t, int64(3), u.Version)
	assert.Equal(t, "", u.Quota)

	_, err = e.reg.Update(ctx, "key-a", registry.Change{Weight: f64(1), IfVersion: 2}, "bob")
	assert.ErrorIs(t, err, registry.ErrVersionMismatch)
	_, err = e.reg.Update(ctx, "nope", registry.Change{Weight: f64(1)}, "bob")
	assert.ErrorIs(t, err, registry.ErrNotFound)
	_, err = e.reg.Get(ctx, "nope")
	assert.ErrorIs(t, err, registry.ErrNotFound)

	got, err := e.reg.Get(ctx, "key-a")
	require.NoError(t, err)
	assert.Equal(t, u, got)

	_, err = e.reg.Add(ctx, "key-0", registry.Change{}, "alice")
	require.NoError(t, err)
	list, err := e.reg.List(ctx)
	require.NoError(t, err)
	require.Len(t, list, 2)
	assert.Equal(t, "key-0", list[0].Name)
	assert.Equal(t, "key-a", list[1].Name)

	hist, err := e.reg.History(ctx, "key-a")
	require.NoError(t, err)
	require.Len(t, hist, 3)
	assert.Equal(t, []int64{3, 2, 1}, []int64{hist[0].Version, hist[1].Version, hist[2].Version})
	assert.Equal(t, u, hist[0], "history includes the current version")

	c, err := e.reg.Counters(ctx)
	require.NoError(t, err)
	assert.Equal(t, int64(4), c.Rev, "rev +1 per group write")
}

func testValidation(t *testing.T, rdb redis.UniversalClient) {
	ctx := context.Background()
	e := newEnv(t, rdb)
	_, err := e.reg.Add(ctx, "base", registry.Change{Set: map[string]string{"a": "1"}}, "t")
	require.NoError(t, err)
	big := map[string]string{"k": strings.Repeat("x", registry.MaxConfigBytes)}
	cases := []struct {
		name   string
		group  string
		change registry.Change
		want   error
	}{
		{"name uppercase", "Bad", registry.Change{}, registry.ErrInvalidName},
		{"name leading dash", "-x", registry.Change{}, registry.ErrInvalidName},
		{"name too long", strings.Repeat("a", 64), registry.Change{}, registry.ErrInvalidName},
		{"name empty", "", registry.Change{}, registry.ErrInvalidName},
		{"name slash", "a/b", registry.Change{}, registry.ErrInvalidName},
		{"weight zero", "g", registry.Change{Weight: f64(0)}, registry.ErrInvalidWeight},
		{"weight negative", "g", registry.Change{Weight: f64(-1)}, registry.ErrInvalidWeight},
		{"weight NaN", "g", registry.Change{Weight: f64(math.NaN())}, registry.ErrInvalidWeight},
		{"weight Inf", "g", registry.Change{Weight: f64(math.Inf(1))}, registry.ErrInvalidWeight},
		{"max nodes negative", "g", registry.Change{MaxNodes: intp(-1)}, registry.ErrInvalidMaxNodes},
		{"quota garbage", "g", registry.Change{Quota: str("fast")}, registry.ErrInvalidQuota},
		{"quota zero", "g", registry.Change{Quota: str("0/m")}, registry.ErrInvalidQuota},
		{"quota unit", "g", registry.Change{Quota: str("10/w")}, registry.ErrInvalidQuota},
		{"quota burst missing", "g", registry.Change{Quota: str("10/s burst")}, registry.ErrInvalidQuota},
		{"quota burst zero", "g", registry.Change{Quota: str("10/s burst 0")}, registry.ErrInvalidQuota},
		{"config too large", "g", registry.Change{Set: big}, registry.ErrConfigTooLarge},
		{"config empty key", "g", registry.Change{Set: map[string]string{"": "v"}}, registry.ErrInvalidConfig},
		{"secret not a key", "g", registry.Change{Set: map[string]string{"a": "1"}, Secret: []string{"b"}}, registry.ErrInvalidConfig},
		{"set and unset", "g", registry.Change{Set: map[string]string{"a": "1"}, Unset: []string{"a"}}, registry.ErrInvalidConfig},
	}
	before := e.dump(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.reg.Add(ctx, tc.group, tc.change, "t")
			assert.ErrorIs(t, err, tc.want)
			if tc.group != "g" {
				return
			}
			assert.ErrorContains(t, err, `registry: add group "g": `)
			_, err = e.reg.Update(ctx, "base", tc.change, "t")
			assert.ErrorIs(t, err, tc.want)
			assert.ErrorContains(t, err, `registry: update group "base": `)
			_, err = e.reg.Schedule(ctx, registry.Scheduled{At: time.Now().Add(time.Hour), Group: "base", Op: registry.OpUpdate, Change: tc.change})
			assert.ErrorIs(t, err, tc.want)
		})
	}
	assert.Equal(t, before, e.dump(t), "bad input must write nothing")
}

func testHistoryCapAndRollback(t *testing.T, rdb redis.UniversalClient) {
	ctx := context.Background()
	e := newEnv(t, rdb, registry.WithHistoryLimit(10)) // raised to the minimum, 50
	_, err := e.reg.Add(ctx, "g", registry.Change{Set: map[string]string{"v": "1", "s": "x"}, Secret: []string{"s"}, Quota: str("10/s")}, "t")
	require.NoError(t, err)
	for i := 2; i <= 60; i++ {
		_, err := e.reg.Update(ctx, "g", registry.Change{Set: map[string]string{"v": fmt.Sprint(i)}, Weight: f64(float64(i))}, "t")
		require.NoError(t, err)
	}
	hist, err := e.reg.History(ctx, "g")
	require.NoError(t, err)
	require.Len(t, hist, registry.MinHistoryLimit)
	assert.Equal(t, int64(60), hist[0].Version)
	assert.Equal(t, int64(11), hist[len(hist)-1].Version)

	_, err = e.reg.Rollback(ctx, "g", 5, "t")
	assert.ErrorIs(t, err, registry.ErrNotFound, "version 5 fell out of the history")

	_, err = e.reg.Update(ctx, "g", registry.Change{Unset: []string{"s"}, Quota: str("")}, "t")
	require.NoError(t, err)
	_, err = e.reg.Retire(ctx, "g", time.Hour, "t")
	require.NoError(t, err)
	r, err := e.reg.Rollback(ctx, "g", 20, "carol")
	require.NoError(t, err)
	assert.Equal(t, int64(63), r.Version)
	assert.Equal(t, map[string]string{"v": "20", "s": "x"}, r.Config)
	assert.Equal(t, []string{"s"}, r.SecretKeys)
	assert.Equal(t, 20.0, r.Weight)
	assert.Equal(t, "10/s", r.Quota)
	assert.Equal(t, registry.Draining, r.State, "rollback keeps the state")
	assert.False(t, r.DrainBy.IsZero(), "rollback keeps drain_by")
	assert.Equal(t, "carol", r.UpdatedBy)

	ev, err := e.reg.Events(ctx, "", 1000, 0)
	require.NoError(t, err)
	assert.Equal(t, registry.EventGroupRolledBack, ev[len(ev)-1].Type)
	assert.Equal(t, int64(63), ev[len(ev)-1].Version)
}

func testRetireAndFinish(t *testing.T, rdb redis.UniversalClient) {
	ctx := context.Background()
	e := newEnv(t, rdb)
	_, err := e.reg.Add(ctx, "g", registry.Change{}, "t")
	require.NoError(t, err)
	_, err = e.reg.FinishRetire(ctx, "g", "t")
	assert.ErrorIs(t, err, registry.ErrInvalidState)

	start := time.Now()
	g, err := e.reg.Retire(ctx, "g", time.Hour, "t")
	require.NoError(t, err)
	assert.Equal(t, registry.Draining, g.State)
	assert.Equal(t, int64(2), g.Version)
	assert.WithinDuration(t, start.Add(time.Hour), g.DrainBy, 5*time.Second)

	s, err := e.reg.Schedules(ctx)
	require.NoError(t, err)
	require.Len(t, s, 1, "retire schedules its drain timeout")
	assert.Equal(t, registry.OpFinishRetire, s[0].Op)
	assert.Equal(t, g.DrainBy, s[0].At)
	assert.False(t, s[0].Created.IsZero())

	_, err = e.reg.Retire(ctx, "g", time.Hour, "t")
	assert.ErrorIs(t, err, registry.ErrInvalidState)

	g, err = e.reg.FinishRetire(ctx, "g", "rebalancer")
	require.NoError(t, err)
	assert.Equal(t, registry.Retired, g.State)
	assert.Equal(t, int64(3), g.Version)
	assert.True(t, g.DrainBy.IsZero())
	s, err = e.reg.Schedules(ctx)
	require.NoError(t, err)
	assert.Empty(t, s, "finishing cancels the drain timeout")

	ev, err := e.reg.Events(ctx, "", 100, 0)
	require.NoError(t, err)
	assert.Equal(t, []string{registry.EventGroupAdded, registry.EventGroupRetiring, registry.EventGroupRetired}, types(ev))
}

func types(ev []registry.Event) []string {
	out := make([]string, len(ev))
	for i, e := range ev {
		out[i] = e.Type
	}
	return out
}

func testRetireDrainTimeout(t *testing.T, rdb redis.UniversalClient) {
	ctx := context.Background()
	e := newEnv(t, rdb)
	_, err := e.reg.Add(ctx, "g", registry.Change{}, "t")
	require.NoError(t, err)
	_, err = e.reg.Retire(ctx, "g", 50*time.Millisecond, "admin")
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		applied, err := e.reg.ApplyDue(ctx)
		return err == nil && len(applied) == 1 && applied[0].Op == registry.OpFinishRetire
	}, 5*time.Second, 10*time.Millisecond)
	g, err := e.reg.Get(ctx, "g")
	require.NoError(t, err)
	assert.Equal(t, registry.Retired, g.State)
	assert.Equal(t, int64(3), g.Version)
	applied, err := e.reg.ApplyDue(ctx)
	require.NoError(t, err)
	assert.Empty(t, applied)
}

func testDelete(t *testing.T, rdb redis.UniversalClient) {
	ctx := context.Background()
	e := newEnv(t, rdb)
	_, err := e.reg.Add(ctx, "g", registry.Change{}, "t")
	require.NoError(t, err)
	_, err = e.reg.Retire(ctx, "g", time.Hour, "t")
	require.NoError(t, err)
	require.NoError(t, e.reg.Delete(ctx, "g", "bob"))
	_, err = e.reg.Get(ctx, "g")
	assert.ErrorIs(t, err, registry.ErrNotFound)
	_, err = e.reg.History(ctx, "g")
	assert.ErrorIs(t, err, registry.ErrNotFound)
	list, err := e.reg.List(ctx)
	require.NoError(t, err)
	assert.Empty(t, list)
	s, err := e.reg.Schedules(ctx)
	require.NoError(t, err)
	assert.Empty(t, s, "delete removes the drain timeout")
	assert.ErrorIs(t, e.reg.Delete(ctx, "g", "bob"), registry.ErrNotFound)
	ev, err := e.reg.Events(ctx, "", 100, 0)
	require.NoError(t, err)
	last := ev[len(ev)-1]
	assert.Equal(t, registry.EventGroupDeleted, last.Type)
	assert.Equal(t, "g", last.Group)
	assert.Equal(t, "bob", last.By)
	// The name can be reused from version 1.
	g, err := e.reg.Add(ctx, "g", registry.Change{}, "t")
	require.NoError(t, err)
	assert.Equal(t, int64(1), g.Version)
}

func testConcurrentUpdates(t *testing.T, rdb redis.UniversalClient) {
	ctx := context.Background()
	e := newEnv(t, rdb)
	_, err := e.reg.Add(ctx, "g", registry.Change{}, "t")
	require.NoError(t, err)
	const writers, each = 4, 10
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				_, err := e.reg.Update(ctx, "g", registry.Change{Set: map[string]string{fmt.Sprintf("w%d-%d", w, i): "x"}}, "t")
				assert.NoError(t, err)
			}
		})
	}
	wg.Wait()
	g, err := e.reg.Get(ctx, "g")
	require.NoError(t, err)
	assert.Equal(t, int64(1+writers*each), g.Version, "no update lost")
	assert.Len(t, g.Config, writers*each)
}

func testScheduleExactlyOnce(t *testing.T, rdb redis.UniversalClient) {
	ctx := context.Background()
	e := newEnv(t, rdb)
	_, err := e.reg.Add(ctx, "g", registry.Change{}, "t")
	require.NoError(t, err)
	_, err = e.reg.Add(ctx, "h", registry.Change{}, "t")
	require.NoError(t, err)
	const items = 20
	past := time.Now().Add(-time.Second)
	for i := range items {
		s, err := e.reg.Schedule(ctx, registry.Scheduled{At: past, Group: "g", Op: registry.OpUpdate,
			Change: registry.Change{Set: map[string]string{fmt.Sprint(i): "x"}}, By: "sched"})
		require.NoError(t, err)
		assert.NotEmpty(t, s.ID)
		assert.False(t, s.Created.IsZero())
	}
	future, err := e.reg.Schedule(ctx, registry.Scheduled{At: time.Now().Add(time.Hour), Group: "h", Op: registry.OpDelete})
	require.NoError(t, err)

	var total atomic.Int64
	var wg sync.WaitGroup
	for range 5 {
		wg.Go(func() {
			applied, err := e.reg.ApplyDue(ctx)
			assert.NoError(t, err)
			total.Add(int64(len(applied)))
		})
	}
	wg.Wait()
	assert.Equal(t, int64(items), total.Load(), "every due item applied exactly once")
	g, err := e.reg.Get(ctx, "g")
	require.NoError(t, err)
	assert.Equal(t, int64(1+items), g.Version)
	assert.Len(t, g.Config, items)
	assert.Equal(t, "sched", g.UpdatedBy)

	left, err := e.reg.Schedules(ctx)
	require.NoError(t, err)
	require.Len(t, left, 1)
	assert.Equal(t, future.ID, left[0].ID)
	_, err = e.reg.Get(ctx, "h")
	assert.NoError(t, err, "the future delete is not due")

	ev, err := e.reg.Events(ctx, "", 1000, 0)
	require.NoError(t, err)
	counts := map[string]int{}
	for _, x := range ev {
		counts[x.Type]++
	}
	assert.Equal(t, items, counts[registry.EventScheduleApplied])
	assert.Equal(t, items+1, counts[registry.EventScheduleAdded])
}

func testScheduleValidateAndCancel(t *testing.T, rdb redis.UniversalClient) {
	ctx := context.Background()
	e := newEnv(t, rdb)
	_, err := e.reg.Add(ctx, "g", registry.Change{}, "t")
	require.NoError(t, err)
	at := time.Now().Add(time.Hour)
	before := e.dump(t)
	bad := []struct {
		name string
		s    registry.Scheduled
		want error
	}{
		{"no time", registry.Scheduled{Group: "g", Op: registry.OpDelete}, registry.ErrInvalidSchedule},
		{"unknown op", registry.Scheduled{At: at, Group: "g", Op: "explode"}, registry.ErrInvalidSchedule},
		{"internal op", registry.Scheduled{At: at, Group: "g", Op: registry.OpFinishRetire}, registry.ErrInvalidSchedule},
		{"empty update", registry.Scheduled{At: at, Group: "g", Op: registry.OpUpdate}, registry.ErrInvalidSchedule},
		{"if-version on delete", registry.Scheduled{At: at, Group: "g", Op: registry.OpDelete, Change: registry.Change{IfVersion: 1}}, registry.ErrInvalidSchedule},
		{"change on delete", registry.Scheduled{At: at, Group: "g", Op: registry.OpDelete, Change: registry.Change{Weight: f64(2)}}, registry.ErrInvalidSchedule},
		{"missing group", registry.Scheduled{At: at, Group: "nope", Op: registry.OpDelete}, registry.ErrNotFound},
		{"bad group name", registry.Scheduled{At: at, Group: "NO", Op: registry.OpDelete}, registry.ErrInvalidName},
		{"stale if-version", registry.Scheduled{At: at, Group: "g", Op: registry.OpUpdate, Change: registry.Change{Weight: f64(2), IfVersion: 7}}, registry.ErrVersionMismatch},
	}
	for _, tc := range bad {
		_, err := e.reg.Schedule(ctx, tc.s)
		assert.ErrorIs(t, err, tc.want, tc.name)
	}
	assert.Equal(t, before, e.dump(t), "bad schedules write nothing")

	s1, err := e.reg.Schedule(ctx, registry.Scheduled{At: at.Add(time.Minute), Group: "g", Op: registry.OpRetire, By: "x"})
	require.NoError(t, err)
	s2, err := e.reg.Schedule(ctx, registry.Scheduled{At: at, Group: "g", Op: registry.OpUpdate, Change: registry.Change{Weight: f64(3)}})
	require.NoError(t, err)
	list, err := e.reg.Schedules(ctx)
	require.NoError(t, err)
	require.Len(t, list, 2)
	assert.Equal(t, s2.ID, list[0].ID, "soonest first")
	assert.Equal(t, s1, list[1])
	assert.Equal(t, 3.0, *list[0].Change.Weight)

	require.NoError(t, e.reg.CancelSchedule(ctx, s1.ID))
	assert.ErrorIs(t, e.reg.CancelSchedule(ctx, s1.ID), registry.ErrNotFound)
	list, err = e.reg.Schedules(ctx)
	require.NoError(t, err)
	require.Len(t, list, 1)
	assert.Equal(t, s2.ID, list[0].ID)
}

func testScheduleDropped(t *testing.T, rdb redis.UniversalClient) {
	ctx := context.Background()
	e := newEnv(t, rdb)
	_, err := e.reg.Add(ctx, "g", registry.Change{}, "t")
	require.NoError(t, err)
	past := time.Now().Add(-time.Second)
	_, err = e.reg.Schedule(ctx, registry.Scheduled{At: past, Group: "g", Op: registry.OpUpdate, Change: registry.Change{Weight: f64(2)}})
	require.NoError(t, err)
	require.NoError(t, e.reg.Delete(ctx, "g", "t"))
	applied, err := e.reg.ApplyDue(ctx)
	require.NoError(t, err)
	assert.Empty(t, applied)
	s, err := e.reg.Schedules(ctx)
	require.NoError(t, err)
	assert.Empty(t, s, "an item whose group is gone is dropped")
	ev, err := e.reg.Events(ctx, "", 100, 0)
	require.NoError(t, err)
	assert.Equal(t, registry.EventScheduleDropped, ev[len(ev)-1].Type)
	_, err = e.reg.Get(ctx, "g")
	assert.ErrorIs(t, err, registry.ErrNotFound, "a dropped item writes no group")

	// A conditional update whose version moved on is dropped too.
	_, err = e.reg.Add(ctx, "h", registry.Change{}, "t")
	require.NoError(t, err)
	_, err = e.reg.Schedule(ctx, registry.Scheduled{At: past, Group: "h", Op: registry.OpUpdate, Change: registry.Change{Weight: f64(9), IfVersion: 1}})
	require.NoError(t, err)
	_, err = e.reg.Update(ctx, "h", registry.Change{Weight: f64(2)}, "t")
	require.NoError(t, err)
	applied, err = e.reg.ApplyDue(ctx)
	require.NoError(t, err)
	assert.Empty(t, applied)
	h, err := e.reg.Get(ctx, "h")
	require.NoError(t, err)
	assert.Equal(t, 2.0, h.Weight)
	s, err = e.reg.Schedules(ctx)
	require.NoError(t, err)
	assert.Empty(t, s)
}

func testCommit(t *testing.T, rdb redis.UniversalClient) {
	ctx := context.Background()
	e := newEnv(t, rdb)
	for _, n := range []string{"a", "b", "c"} {
		_, err := e.reg.Add(ctx, n, registry.Change{Set: map[string]string{"name": n}}, "t")
		require.NoError(t, err)
	}
	c0, err := e.reg.Counters(ctx)
	require.NoError(t, err)
	assert.Equal(t, registry.Counters{Rev: 3}, c0)

	e.register(t, "n1", "n2", "n3")
	plan := registry.Commit{From: c0, By: "planner",
		Nodes:   map[string][]string{"n1": {"b", "a"}, "n2": {"c"}, "n3": nil, "gone": {"a"}},
		Revoked: map[string][]string{"n2": {"a@0"}, "n3": {}, "gone": {"b@0"}}}
	epoch, changed, err := e.reg.Commit(ctx, plan)
	require.NoError(t, err)
	delete(plan.Nodes, "gone") // never registered (or reaped since the plan was read): no entry
	delete(plan.Revoked, "gone")
	assert.True(t, changed)
	assert.Equal(t, int64(1), epoch)

	a, err := e.reg.Assignment(ctx)
	require.NoError(t, err)
	assert.Equal(t, registry.Counters{Epoch: 1, Rev: 3, PlannedRev: 3}, a.Counters)
	assert.Equal(t, map[string][]string{"n1": {"a", "b"}, "n2": {"c"}, "n3": {}}, a.Nodes)
	assert.Equal(t, map[string][]string{"n2": {"a@0"}}, a.Revoked)

	view, err := e.reg.NodeAssignment(ctx, "n1")
	require.NoError(t, err)
	assert.Equal(t, int64(1), view.Epoch)
	require.Len(t, view.Groups, 2)
	assert.Equal(t, "a", view.Groups[0].Name)
	assert.Equal(t, "b", view.Groups[1].Config["name"])
	assert.Equal(t, map[string]int{"a": 1, "b": 1}, view.Holders)
	assert.Equal(t, int64(3), view.Rev, "the read says which group revision it saw")
	view, err = e.reg.NodeAssignment(ctx, "stranger")
	require.NoError(t, err)
	assert.Empty(t, view.Groups)
	assert.Equal(t, int64(3), view.Rev)

	// Stale: planned from epoch 0.
	before := e.dump(t)
	_, _, err = e.reg.Commit(ctx, plan)
	assert.ErrorIs(t, err, registry.ErrStaleEpoch)
	assert.Equal(t, before, e.dump(t), "a stale commit writes nothing")

	// Unchanged: no epoch bump, no event, but prev/pmver recorded.
	require.NoError(t, rdb.HIncrBy(ctx, e.k.State(), "mver", 5).Err())
	plan.From = a.Counters
	plan.From.MVer = 5
	evBefore, err := e.reg.Events(ctx, "", 1000, 0)
	require.NoError(t, err)
	epoch, changed, err = e.reg.Commit(ctx, plan)
	require.NoError(t, err)
	assert.False(t, changed)
	assert.Equal(t, int64(1), epoch)
	evAfter, err := e.reg.Events(ctx, "", 1000, 0)
	require.NoError(t, err)
	assert.Len(t, evAfter, len(evBefore), "an unchanged commit logs nothing")
	c, err := e.reg.Counters(ctx)
	require.NoError(t, err)
	assert.Equal(t, registry.Counters{Epoch: 1, Rev: 3, MVer: 5, PlannedRev: 3, PlannedMVer: 5}, c)

	// A deleted group is dropped from the committed assignment.
	require.NoError(t, e.reg.Delete(ctx, "b", "t"))
	view, err = e.reg.NodeAssignment(ctx, "n1")
	require.NoError(t, err)
	require.Len(t, view.Groups, 1, "a deleted group's document is skipped")
	assert.Equal(t, "a", view.Groups[0].Name)
	c, err = e.reg.Counters(ctx)
	require.NoError(t, err)
	epoch, changed, err = e.reg.Commit(ctx, registry.Commit{From: c, Nodes: plan.Nodes, Revoked: map[string][]string{"n3": {"b@1"}}})
	require.NoError(t, err)
	assert.True(t, changed)
	assert.Equal(t, int64(2), epoch)
	a, err = e.reg.Assignment(ctx)
	require.NoError(t, err)
	assert.Equal(t, map[string][]string{"n1": {"a"}, "n2": {"c"}, "n3": {}}, a.Nodes)
	assert.Equal(t, map[string][]string{"n3": {"b@1"}}, a.Revoked, "revoked entries are stored as given")
	// Committing the filtered result again is "unchanged".
	_, changed, err = e.reg.Commit(ctx, registry.Commit{From: a.Counters, Nodes: a.Nodes, Revoked: a.Revoked})
	require.NoError(t, err)
	assert.False(t, changed)

	ev, err := e.reg.Events(ctx, "", 1000, 0)
	require.NoError(t, err)
	last := ev[len(ev)-1]
	assert.Equal(t, registry.EventAssignment, last.Type)
	assert.Equal(t, int64(2), last.Epoch)
}

func testEvents(t *testing.T, rdb redis.UniversalClient) {
	ctx := context.Background()
	e := newEnv(t, rdb)
	sub := rdb.Subscribe(ctx, e.k.Events())
	defer sub.Close()
	_, err := sub.Receive(ctx) // subscription confirmed
	require.NoError(t, err)

	start := time.Now().Add(-time.Second)
	_, err = e.reg.Add(ctx, "g", registry.Change{}, "alice")
	require.NoError(t, err)
	ev, err := e.reg.Events(ctx, "", 10, 0)
	require.NoError(t, err)
	require.Len(t, ev, 1)
	first := ev[0]
	assert.Equal(t, registry.EventGroupAdded, first.Type)
	assert.Equal(t, "g", first.Group)
	assert.Equal(t, "alice", first.By)
	assert.Equal(t, int64(1), first.Version)
	assert.True(t, first.At.After(start))

	msg, err := sub.ReceiveMessage(ctx)
	require.NoError(t, err)
	pub, err := registry.ParseEvent(msg.Payload)
	require.NoError(t, err)
	assert.Equal(t, first, pub, "pub/sub payload carries the stream entry")

	// Resume after the first: nothing yet; a blocking read wakes on the next write.
	ev, err = e.reg.Events(ctx, first.ID, 10, 0)
	require.NoError(t, err)
	assert.Empty(t, ev)
	got := make(chan []registry.Event, 1)
	go func() {
		ev, err := e.reg.Events(ctx, first.ID, 10, 5*time.Second)
		assert.NoError(t, err)
		got <- ev
	}()
	_, err = e.reg.Update(ctx, "g", registry.Change{Weight: f64(2)}, "bob")
	require.NoError(t, err)
	ev = <-got
	require.Len(t, ev, 1)
	assert.Equal(t, registry.EventGroupUpdated, ev[0].Type)
	assert.Equal(t, int64(2), ev[0].Version)

	ev, err = e.reg.Events(ctx, "$", 10, 20*time.Millisecond)
	require.NoError(t, err)
	assert.Empty(t, ev, "$ only returns new events")

	b, err := ev0JSON(first)
	require.NoError(t, err)
	back, err := registry.ParseEvent(b)
	require.NoError(t, err)
	assert.Equal(t, first, back)
	_, err = registry.ParseEvent(`{"id":"1-0"}`)
	assert.Error(t, err)
	_, err = registry.ParseEvent(`nope`)
	assert.Error(t, err)
	tolerant, err := registry.ParseEvent(`{"type":"node.joined","node":"n1","epoch":"7","version":"0","at":"1700000000000"}`)
	require.NoError(t, err)
	assert.Equal(t, registry.Event{Type: "node.joined", Node: "n1", Epoch: 7, At: time.UnixMilli(1700000000000).UTC()}, tolerant)
}

func ev0JSON(e registry.Event) (string, error) {
	b, err := e.MarshalJSON()
	return string(b), err
}

// TestAOFKillRestart: every acknowledged write survives kill -9 + restart.
func TestAOFKillRestart(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t, redistest.WithAOF())
	e := newEnv(t, srv.Client(t))
	for i := range 10 {
		_, err := e.reg.Add(ctx, fmt.Sprintf("g%d", i), registry.Change{Set: map[string]string{"i": fmt.Sprint(i)}}, "t")
		require.NoError(t, err)
	}
	_, err := e.reg.Update(ctx, "g0", registry.Change{Weight: f64(4)}, "t")
	require.NoError(t, err)
	_, err = e.reg.Retire(ctx, "g1", time.Hour, "t")
	require.NoError(t, err)
	c, err := e.reg.Counters(ctx)
	require.NoError(t, err)
	e.register(t, "n1")
	_, _, err = e.reg.Commit(ctx, registry.Commit{From: c, Nodes: map[string][]string{"n1": {"g0", "g2"}}})
	require.NoError(t, err)
	want := e.dump(t)

	srv.Kill(t)
	srv.Restart(t)
	e2 := newEnv(t, srv.Client(t))
	e2.ns, e2.k = e.ns, e.k
	e2.reg = registry.New(e2.rdb, registry.WithNamespace(e.ns))
	got := e2.dump(t)
	assert.Equal(t, want, got)
	g, err := e2.reg.Get(ctx, "g0")
	require.NoError(t, err)
	assert.Equal(t, int64(2), g.Version)
	a, err := e2.reg.Assignment(ctx)
	require.NoError(t, err)
	assert.Equal(t, int64(1), a.Epoch)
	assert.Equal(t, []string{"g0", "g2"}, a.Nodes["n1"])
}

func testScheduleRetireAndDelete(t *testing.T, rdb redis.UniversalClient) {
	ctx := context.Background()
	e := newEnv(t, rdb, registry.WithDrainTimeout(time.Hour))
	for _, n := range []string{"r", "d"} {
		_, err := e.reg.Add(ctx, n, registry.Change{}, "t")
		require.NoError(t, err)
	}
	past := time.Now().Add(-time.Second)
	_, err := e.reg.Schedule(ctx, registry.Scheduled{At: past, Group: "r", Op: registry.OpRetire, By: "ops"})
	require.NoError(t, err)
	_, err = e.reg.Schedule(ctx, registry.Scheduled{At: past, Group: "d", Op: registry.OpDelete, By: "ops"})
	require.NoError(t, err)
	applied, err := e.reg.ApplyDue(ctx)
	require.NoError(t, err)
	assert.Len(t, applied, 2)

	g, err := e.reg.Get(ctx, "r")
	require.NoError(t, err)
	assert.Equal(t, registry.Draining, g.State)
	assert.Equal(t, "ops", g.UpdatedBy)
	assert.WithinDuration(t, time.Now().Add(time.Hour), g.DrainBy, 5*time.Second, "the registry's drain timeout")
	_, err = e.reg.Get(ctx, "d")
	assert.ErrorIs(t, err, registry.ErrNotFound)

	left, err := e.reg.Schedules(ctx)
	require.NoError(t, err)
	require.Len(t, left, 1)
	assert.Equal(t, registry.OpFinishRetire, left[0].Op)
	assert.Equal(t, "r", left[0].Group)
	assert.Equal(t, g.DrainBy, left[0].At)
}
