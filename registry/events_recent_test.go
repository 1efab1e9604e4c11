package registry_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/internal/redistest"
	"github.com/allot-io/allot/registry"
)

// TestRecentEvents: the newest events of both streams, merged by ID and
// oldest first; with a group, that group's only, found further back than
// one read of the log.
func TestRecentEvents(t *testing.T) {
	e := newEnv(t, redistest.Start(t).Client(t))
	ctx := context.Background()
	// Explicit IDs a while back, so the order across the two streams is
	// the test's (two streams share milliseconds otherwise).
	now, err := e.rdb.Time(ctx).Result()
	require.NoError(t, err)
	base := now.UnixMilli() - 100_000
	id := func(ms int64, seq int) string { return strconv.FormatInt(ms, 10) + "-" + strconv.Itoa(seq) }
	require.NoError(t, e.rdb.XAdd(ctx, &redis.XAddArgs{Stream: e.k.Log(), ID: id(base, 0),
		Values: []any{"type", "group.added", "group", "old", "at", "1"}}).Err())
	// 2,500 events of another group push "old"'s out of the newest 1,000.
	pipe := e.rdb.Pipeline()
	for i := range 2500 {
		pipe.XAdd(ctx, &redis.XAddArgs{Stream: e.k.Log(), ID: id(base+1, i),
			Values: []any{"type", "group.updated", "group", "busy", "version", strconv.Itoa(i + 1), "at", "1"}})
	}
	_, err = pipe.Exec(ctx)
	require.NoError(t, err)
	for i := range 3 {
		require.NoError(t, e.rdb.XAdd(ctx, &redis.XAddArgs{Stream: e.k.NodeLog(), ID: id(base+2, i),
			Values: []any{"type", "node.joined", "node", fmt.Sprintf("n%d", i), "at", "1"}}).Err())
	}
	_, err = e.reg.Add(ctx, "new", registry.Change{}, "test")
	require.NoError(t, err)

	got, err := e.reg.RecentEvents(ctx, 5, "")
	require.NoError(t, err)
	var kinds []string
	for _, ev := range got {
		kinds = append(kinds, ev.Type+" "+ev.Group+ev.Node)
	}
	assert.Equal(t, []string{"group.updated busy", "node.joined n0", "node.joined n1", "node.joined n2", "group.added new"}, kinds,
		"newest five of both streams, oldest first")

	old, err := e.reg.RecentEvents(ctx, 10, "old")
	require.NoError(t, err)
	require.Len(t, old, 1)
	assert.Equal(t, registry.EventGroupAdded, old[0].Type)

	busy, err := e.reg.RecentEvents(ctx, 3, "busy")
	require.NoError(t, err)
	require.Len(t, busy, 3)
	assert.Equal(t, []int64{2498, 2499, 2500}, []int64{busy[0].Version, busy[1].Version, busy[2].Version})

	none, err := e.reg.RecentEvents(ctx, 10, "nobody")
	require.NoError(t, err)
	assert.Empty(t, none)
	assert.NotNil(t, none, "[] in JSON, not null")

	for _, n := range []int{0, registry.MaxRecentEvents + 1} {
		_, err = e.reg.RecentEvents(ctx, n, "")
		assert.ErrorIs(t, err, registry.ErrInvalidCount)
		assert.True(t, registry.IsInvalidInput(err))
	}
	_, err = e.reg.RecentEvents(ctx, 1, "Bad Name")
	assert.ErrorIs(t, err, registry.ErrInvalidName)
}
