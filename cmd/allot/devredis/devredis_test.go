package devredis_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/allocator"
	"github.com/allot-io/allot/client"
	"github.com/allot-io/allot/cmd/allot/devredis"
	"github.com/allot-io/allot/heartbeat"
	"github.com/allot-io/allot/registry"
)

// TestDevMode runs the whole system on the embedded Redis: every Lua script
// (cjson, TIME, XADD, PUBLISH), the rebalance lock, real clients, a crash
// reaped by TTL, a graceful leave and a restart.
func TestDevMode(t *testing.T) {
	r, err := devredis.Start()
	require.NoError(t, err)
	t.Cleanup(r.Close)
	rdb := r.Client()
	t.Cleanup(func() { _ = rdb.Close() })
	ctx := context.Background()

	reg := registry.New(rdb)
	added, err := devredis.Seed(ctx, reg)
	require.NoError(t, err)
	assert.Equal(t, []string{"search-a", "search-b", "llm-exclusive", "maps-a"}, added)
	added, err = devredis.Seed(ctx, reg)
	require.NoError(t, err)
	assert.Empty(t, added, "seeding twice adds nothing")

	hb, err := heartbeat.New(rdb, "default", devredis.DefaultHeartbeat)
	require.NoError(t, err)
	f := devredis.NewFleet(r.Addr())
	t.Cleanup(func() { _ = f.Close(context.Background()) })
	for range 5 {
		_, err := f.Add(ctx)
		require.NoError(t, err)
	}

	status := func() allocator.Status {
		st, err := allocator.Inspect(ctx, reg, hb)
		require.NoError(t, err)
		return st
	}
	holders := func(st allocator.Status) map[string][]string {
		m := map[string][]string{}
		for _, g := range st.Groups {
			m[g.Name] = g.Nodes
		}
		return m
	}
	// Five nodes, four groups: every group held, the exclusive one by one node.
	require.Eventually(t, func() bool {
		st := status()
		h := holders(st)
		return len(st.Nodes) == 5 && len(h["llm-exclusive"]) == 1 &&
			len(h["search-a"]) >= 1 && len(h["search-b"]) >= 1 && len(h["maps-a"]) >= 1 && st.Balanced
	}, 15*time.Second, 20*time.Millisecond, "never balanced: %+v", status)

	// A crash: the node stops beating without leaving; the TTL reaps it and
	// its groups move to the others.
	victim := holders(status())["llm-exclusive"][0]
	require.NoError(t, f.Stop(ctx, victim, false))
	require.Eventually(t, func() bool {
		st := status()
		h := holders(st)
		return len(st.Nodes) == 4 && len(h["llm-exclusive"]) == 1 && h["llm-exclusive"][0] != victim
	}, 15*time.Second, 20*time.Millisecond)
	evs, err := reg.Events(ctx, "", 10000, 0)
	require.NoError(t, err)
	assert.True(t, slices.ContainsFunc(evs, func(e registry.Event) bool {
		return e.Type == registry.EventNodeReaped && e.Node == victim
	}), "the stopped node was reaped, not left")
	assert.False(t, slices.ContainsFunc(evs, func(e registry.Event) bool {
		return e.Type == registry.EventNodeLeft && e.Node == victim
	}), "the stopped node left")
	nodes := f.Nodes()
	require.Len(t, nodes, 5)
	i := slices.IndexFunc(nodes, func(n devredis.Node) bool { return n.ID == victim })
	assert.False(t, nodes[i].Running)

	// A restart under the same ID joins again.
	require.NoError(t, f.Start(ctx, victim))
	require.Eventually(t, func() bool { return len(status().Nodes) == 5 }, 15*time.Second, 20*time.Millisecond)

	// A graceful stop leaves at once.
	require.NoError(t, f.Stop(ctx, victim, true))
	assert.Len(t, status().Nodes, 4)

	assert.ErrorIs(t, f.Stop(ctx, "nope", false), devredis.ErrUnknownNode)

	// The quota limiter (redis_rate's GCRA script) works on it too.
	c, err := client.New(rdb, client.WithNodeID("quota-user"), client.WithPreferredGroup("maps-a"), client.WithHeartbeat(devredis.DefaultHeartbeat))
	require.NoError(t, err)
	require.NoError(t, c.Start(ctx))
	defer func() { _ = c.Close(context.Background()) }()
	require.Eventually(t, func() bool { return c.Assignment().Holds("maps-a") }, 15*time.Second, 20*time.Millisecond)
	allowed := 0
	for range 700 {
		if err := c.Allow(ctx, "maps-a"); err == nil {
			allowed++
		} else {
			require.ErrorIs(t, err, client.ErrRateLimited)
		}
	}
	// 600/m with the default burst (the whole rate): 600 at once, then ~10/s.
	assert.GreaterOrEqual(t, allowed, 600)
	assert.Less(t, allowed, 650)
	assert.ErrorIs(t, f.Start(ctx, "nope"), devredis.ErrUnknownNode)
}
