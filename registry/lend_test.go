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

func bptr(b bool) *bool { return &b }

// TestLendMark: a group is lendable by default, --no-lend is a version of
// its own (a no-op writes none), a document stored before the field
// existed reads as lendable, rollback brings the mark back, and export and
// import carry it.
func TestLendMark(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, redistest.Start(t).Client(t))
	g, err := e.reg.Add(ctx, "k", registry.Change{}, "t")
	require.NoError(t, err)
	assert.True(t, g.Lend, "default")
	assert.True(t, g.Lendable())

	g, err = e.reg.Update(ctx, "k", registry.Change{Lend: bptr(false)}, "t")
	require.NoError(t, err)
	assert.False(t, g.Lend)
	assert.False(t, g.Lendable())
	assert.Equal(t, int64(2), g.Version)
	g, err = e.reg.Update(ctx, "k", registry.Change{Lend: bptr(false)}, "t")
	require.NoError(t, err)
	assert.Equal(t, int64(2), g.Version, "no change, no version")
	g, err = e.reg.Rollback(ctx, "k", 1, "t")
	require.NoError(t, err)
	assert.True(t, g.Lend, "rollback brings the mark back")

	// Export and import carry it.
	_, err = e.reg.Update(ctx, "k", registry.Change{Lend: bptr(false)}, "t")
	require.NoError(t, err)
	p, err := e.reg.Export(ctx, false)
	require.NoError(t, err)
	require.Len(t, p.Groups, 1)
	require.NotNil(t, p.Groups[0].Lend)
	assert.False(t, *p.Groups[0].Lend)
	p.Groups[0].Lend = bptr(true)
	have, err := e.reg.List(ctx)
	require.NoError(t, err)
	plan, err := registry.PlanImport(p, have, false)
	require.NoError(t, err)
	require.Len(t, plan.Changed, 1)
	assert.Equal(t, "lend", plan.Changed[0].Fields[0].Field)
	p.Groups[0].Lend = nil // absent: lendable
	plan, err = registry.PlanImport(p, have, false)
	require.NoError(t, err)
	require.Len(t, plan.Changed, 1, "an absent lend means true")

	// A document written before the field existed.
	require.NoError(t, e.rdb.Set(ctx, e.k.Group("old"), `{"name":"old","version":1,"state":"active","weight":1,"max_nodes":0,"quota":"","config":{},"secret_keys":[]}`, 0).Err())
	require.NoError(t, e.rdb.SAdd(ctx, e.k.Groups(), "old").Err())
	old, err := e.reg.Get(ctx, "old")
	require.NoError(t, err)
	assert.True(t, old.Lend, "an old document is lendable")

	// Capped and draining groups are never lendable.
	capped, err := e.reg.Add(ctx, "capped", registry.Change{MaxNodes: new(1)}, "t")
	require.NoError(t, err)
	assert.False(t, capped.Lendable())
	_, err = e.reg.Retire(ctx, "old", 0, "t")
	require.NoError(t, err)
	old, err = e.reg.Get(ctx, "old")
	require.NoError(t, err)
	assert.False(t, old.Lendable())
}

func TestLendingSetting(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, redistest.Start(t).Client(t))
	on, stored, err := e.reg.Lending(ctx)
	require.NoError(t, err)
	assert.True(t, on)
	assert.False(t, stored)
	require.NoError(t, e.reg.SetLending(ctx, false))
	on, stored, err = e.reg.Lending(ctx)
	require.NoError(t, err)
	assert.False(t, on)
	assert.True(t, stored)
	assert.Equal(t, "off", e.rdb.HGet(ctx, e.k.Settings(), "lending").Val())
	require.NoError(t, e.reg.SetLending(ctx, true))
	on, _, err = e.reg.Lending(ctx)
	require.NoError(t, err)
	assert.True(t, on)
}

// TestCatalogFollowsEvents: every change that moves the group revision
// reaches the lend channel with its revision (and a write's document), and
// a catalog that applies them stays equal to one read afresh; a gap is
// reported, not applied.
func TestCatalogFollowsEvents(t *testing.T) {
	redistest.Topologies(t, func(t *testing.T, rdb redis.UniversalClient) {
		ctx := context.Background()
		e := newEnv(t, rdb)
		ps := rdb.Subscribe(ctx, e.k.LendEvents())
		t.Cleanup(func() { _ = ps.Close() })
		_, err := ps.Receive(ctx) // the subscription is confirmed
		require.NoError(t, err)
		cat, err := e.reg.ReadCatalog(ctx)
		require.NoError(t, err)
		assert.Equal(t, 0, cat.Len())

		next := func() registry.Event {
			t.Helper()
			m, err := ps.ReceiveMessage(ctx)
			require.NoError(t, err)
			ev, err := registry.ParseEvent(m.Payload)
			require.NoError(t, err)
			return ev
		}
		apply := func(want string) {
			t.Helper()
			ev := next()
			require.Equal(t, want, ev.Type)
			var ok bool
			cat, ok = cat.Apply(ev)
			require.True(t, ok, "event %s rev %d applies to rev %d", ev.Type, ev.Rev, cat.Rev)
			fresh, err := e.reg.ReadCatalog(ctx)
			require.NoError(t, err)
			assert.Equal(t, fresh.Rev, cat.Rev)
			assert.Equal(t, fresh.Lendable(), cat.Lendable(), "after %s", want)
		}

		_, err = e.reg.Add(ctx, "a", registry.Change{Set: map[string]string{"api_key": "ka"}, Quota: new("10/s")}, "t")
		require.NoError(t, err)
		apply(registry.EventGroupAdded)
		_, err = e.reg.Add(ctx, "b", registry.Change{}, "t")
		require.NoError(t, err)
		apply(registry.EventGroupAdded)
		_, err = e.reg.Add(ctx, "c", registry.Change{MaxNodes: new(1)}, "t")
		require.NoError(t, err)
		apply(registry.EventGroupAdded)
		assert.Equal(t, []string{"a", "b"}, cat.Lendable(), "a capped group is never lendable")
		g, ok := cat.Group("a")
		require.True(t, ok)
		assert.Equal(t, "ka", g.Config["api_key"], "the document, secrets included")

		_, err = e.reg.Update(ctx, "a", registry.Change{Lend: bptr(false)}, "t")
		require.NoError(t, err)
		apply(registry.EventGroupUpdated)
		assert.Equal(t, []string{"b"}, cat.Lendable())

		_, err = e.reg.Suspend(ctx, "b", "test", "t")
		require.NoError(t, err)
		apply(registry.EventGroupSuspended)
		assert.Empty(t, cat.Lendable(), "a suspended group is not lent")
		_, err = e.reg.Resume(ctx, "b", "t")
		require.NoError(t, err)
		apply(registry.EventGroupResumed)
		assert.Equal(t, []string{"b"}, cat.Lendable())

		// A throttle moves no revision and reaches no catalog.
		_, err = e.reg.Cool(ctx, "b", time.Second, "t")
		require.NoError(t, err)
		require.NoError(t, e.reg.Delete(ctx, "b", "t"))
		apply(registry.EventGroupDeleted)
		assert.Empty(t, cat.Lendable())

		// A gap: an event two revisions ahead is not applied.
		_, err = e.reg.Add(ctx, "d", registry.Change{}, "t")
		require.NoError(t, err)
		_, err = e.reg.Add(ctx, "f", registry.Change{}, "t")
		require.NoError(t, err)
		next()
		ev := next()
		same, ok := cat.Apply(ev)
		assert.False(t, ok, "a gap")
		assert.Same(t, cat, same)
	})
}

// TestBorrowerReports: a node that borrowed a group (a record the acquire
// script writes) reports on it as a holder would until the record expires;
// a node that never used the group cannot; a borrower's failures alone
// never suspend; a report on an HTTP lease needs the node's session and a
// lease that has not expired.
func TestBorrowerReports(t *testing.T) {
	redistest.Topologies(t, func(t *testing.T, rdb redis.UniversalClient) {
		ctx := context.Background()
		e := newEnv(t, rdb)
		holding(t, e, "k", "2/1m", "holder")
		now := float64(time.Now().UnixMilli())
		require.NoError(t, rdb.ZAdd(ctx, e.k.Nodes(), redis.Z{Score: now, Member: "b"}, redis.Z{Score: now, Member: "stranger"}).Err())

		_, err := report(e, "stranger", "k", registry.Throttled, time.Second, "")
		assert.ErrorIs(t, err, registry.ErrNotHolder, "never used it")
		require.NoError(t, rdb.ZAdd(ctx, e.k.Borrowers("k"), redis.Z{Score: now - 1000, Member: "stranger"}).Err())
		_, err = report(e, "stranger", "k", registry.Throttled, time.Second, "")
		assert.ErrorIs(t, err, registry.ErrNotHolder, "a borrow that expired proves nothing")

		require.NoError(t, rdb.ZAdd(ctx, e.k.Borrowers("k"), redis.Z{Score: now + 60_000, Member: "b"}).Err())
		res, err := report(e, "b", "k", registry.Throttled, 5*time.Second, "")
		require.NoError(t, err)
		assert.False(t, res.CoolingUntil.IsZero(), "a borrower's 429 cools the group")

		// eject_after 2/1m, one holder: a borrower's failures alone never
		// suspend (it counts as a second user)...
		for range 3 {
			res, err = report(e, "b", "k", registry.Failure, 0, "HTTP 401")
			require.NoError(t, err)
			assert.Equal(t, registry.Active, res.State)
		}
		assert.Equal(t, registry.HeldUncorroborated, res.Held)
		// ...with the holder's, they do.
		res, err = report(e, "holder", "k", registry.Failure, 0, "HTTP 401")
		require.NoError(t, err)
		assert.Equal(t, registry.Suspended, res.State)

		// An HTTP lease: the session must be the node's, the lease alive.
		holding(t, e, "h", "", "web")
		require.NoError(t, rdb.HSet(ctx, e.k.Members(), "web", "1\t10.0.0.1\t\t\t0\tsess-1\t0\t").Err())
		rep := registry.Report{Node: "web", TTL: hour, Group: "h", Outcome: registry.Success, Session: "sess-2",
			LeaseUntil: time.Now().Add(time.Minute)}
		_, err = e.reg.Report(ctx, rep)
		assert.ErrorIs(t, err, registry.ErrReportSession)
		rep.Session = "sess-1"
		_, err = e.reg.Report(ctx, rep)
		assert.NoError(t, err)
		rep.LeaseUntil = time.Now().Add(-time.Second)
		_, err = e.reg.Report(ctx, rep)
		assert.ErrorIs(t, err, registry.ErrLeaseExpired)
	})
}
