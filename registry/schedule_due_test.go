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

// serverTime reads TIME on the server that holds the namespace's keys (on
// Cluster, the shard of its hash tag), in ms as the scripts compute it.
var serverTime = redis.NewScript(`local t = redis.call('TIME')
return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)`)

// TestNoScheduleBeforeDue pins the due rule of scheduled changes as
// TestNoReapBeforeTTL pins the reap: an item applies only once the server
// clock has reached its time. Every ApplyDue is bracketed by two
// server-time reads t0 <= apply <= t1, so the verdicts are exact whatever
// the machine's load: a call that applied the item must have t1 >= at, one
// that did not must have t0 < at. Calls start well before the due time
// and go on until the item is applied.
func TestNoScheduleBeforeDue(t *testing.T) {
	redistest.Topologies(t, testNoScheduleBeforeDue)
}

func testNoScheduleBeforeDue(t *testing.T, rdb redis.UniversalClient) {
	ctx := context.Background()
	e := newEnv(t, rdb)
	_, err := e.reg.Add(ctx, "g", registry.Change{}, "t")
	require.NoError(t, err)
	now := func() int64 {
		ms, err := serverTime.Run(ctx, rdb, []string{e.k.Groups()}).Int64()
		require.NoError(t, err)
		return ms
	}
	at := now() + 1500
	_, err = e.reg.Schedule(ctx, registry.Scheduled{At: time.UnixMilli(at), Group: "g", Op: registry.OpUpdate,
		Change: registry.Change{Weight: new(2.0)}, By: "t"})
	require.NoError(t, err)

	early := 0 // calls that certainly ran before the due time
	deadline := time.Now().Add(15 * time.Second)
	for {
		t0 := now()
		applied, err := e.reg.ApplyDue(ctx)
		require.NoError(t, err)
		t1 := now()
		if len(applied) > 0 {
			require.GreaterOrEqual(t, t1, at, "applied %d ms before its time", at-t1)
			break
		}
		require.Less(t, t0, at, "due since %d ms and not applied", t0-at)
		if t1 < at {
			early++
		}
		require.True(t, time.Now().Before(deadline), "never applied")
		time.Sleep(20 * time.Millisecond) // poll interval
	}
	assert.Positive(t, early, "no call was made before the due time: the test proved nothing")
	g, err := e.reg.Get(ctx, "g")
	require.NoError(t, err)
	assert.Equal(t, 2.0, g.Weight)
}
