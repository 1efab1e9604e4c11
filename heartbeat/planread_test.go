package heartbeat_test

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/heartbeat"
)

// testPlanRead: a plan read reaps the nodes past their TTL and returns the
// others exactly as Live does (but for LastSeen), in one transaction.
func testPlanRead(t *testing.T, rdb redis.UniversalClient) {
	ctx := context.Background()
	e := newEnv(t, rdb)
	tr, err := heartbeat.New(rdb, e.k.Namespace(), safetyConfig)
	require.NoError(t, err)
	require.NoError(t, rdb.HSet(ctx, e.k.Assign(), "b", "maps,search").Err())
	for _, b := range []heartbeat.Beat{
		{Node: "b", IP: "10.0.0.2", Preferred: "search", Held: []string{"search", "maps"}, Ack: 3, Session: "test"},
		{Node: "a", IP: "10.0.0.1", Session: "test"},
		{Node: "dead", IP: "10.0.0.3", Session: "test"},
	} {
		_, err := tr.Beat(ctx, b)
		require.NoError(t, err)
	}
	// "dead" last beat an hour ago, by its score: past any TTL.
	now, err := rdb.Time(ctx).Result()
	require.NoError(t, err)
	require.NoError(t, rdb.ZAdd(ctx, e.k.Nodes(), redis.Z{Score: float64(now.Add(-time.Hour).UnixMilli()), Member: "dead"}).Err())
	mver := e.state(t, "mver")

	want, _, err := tr.Live(ctx)
	require.NoError(t, err)
	require.Len(t, want, 2, "Live leaves the expired node out")

	var read *heartbeat.PlanRead
	_, err = rdb.TxPipelined(ctx, func(tx redis.Pipeliner) error {
		read = tr.QueuePlanRead(ctx, tx)
		return nil
	})
	require.NoError(t, err)
	reaped, live, err := read.Result()
	require.NoError(t, err)
	assert.Equal(t, []string{"dead"}, reaped)
	assert.Equal(t, mver+1, e.state(t, "mver"), "the reap is a membership change")
	for i := range want {
		want[i].LastSeen = time.Time{}
	}
	assert.Equal(t, want, live, "the live nodes sorted by ID, as Live reads them")
	assert.Equal(t, []string{"maps", "search"}, live[1].Held)

	// Nothing left to reap: the same read reaps nobody.
	_, err = rdb.TxPipelined(ctx, func(tx redis.Pipeliner) error {
		read = tr.QueuePlanRead(ctx, tx)
		return nil
	})
	require.NoError(t, err)
	reaped, live, err = read.Result()
	require.NoError(t, err)
	assert.Empty(t, reaped)
	assert.Len(t, live, 2)
	assert.Equal(t, mver+1, e.state(t, "mver"))
}
