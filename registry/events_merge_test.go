package registry_test

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/internal/redistest"
)

// Events replays the audit stream and the node stream merged by entry ID,
// in batches that miss and repeat nothing, ties across the streams
// included; LastEventID is the newest of both.
func TestEventsMergeNodeStream(t *testing.T) {
	redistest.Topologies(t, func(t *testing.T, rdb redis.UniversalClient) {
		ctx := context.Background()
		e := newEnv(t, rdb)
		last, err := e.reg.LastEventID(ctx)
		require.NoError(t, err)
		assert.Equal(t, "0-0", last)

		add := func(stream, id, typ string) {
			require.NoError(t, e.rdb.XAdd(ctx, &redis.XAddArgs{Stream: stream, ID: id, Values: []any{"type", typ}}).Err())
		}
		add(e.k.Log(), "1-1", "group.added")
		add(e.k.NodeLog(), "2-1", "node.joined")
		add(e.k.NodeLog(), "3-1", "node.joined")
		add(e.k.Log(), "3-1", "group.updated") // a tie: the audit entry first
		add(e.k.NodeLog(), "4-1", "node.left")
		add(e.k.NodeLog(), "5-1", "node.reaped")
		add(e.k.Log(), "6-1", "group.deleted")
		want := []string{"1-1 group.added", "2-1 node.joined", "3-1 group.updated", "3-1 node.joined",
			"4-1 node.left", "5-1 node.reaped", "6-1 group.deleted"}

		for _, count := range []int64{1, 2, 3, 100} {
			var got []string
			after := "0"
			for range 20 {
				evs, err := e.reg.Events(ctx, after, count, 0)
				require.NoError(t, err)
				if len(evs) == 0 {
					break
				}
				for _, ev := range evs {
					got = append(got, ev.ID+" "+ev.Type)
					after = ev.ID
				}
			}
			assert.Equal(t, want, got, "count %d", count)
		}
		last, err = e.reg.LastEventID(ctx)
		require.NoError(t, err)
		assert.Equal(t, "6-1", last)
		add(e.k.NodeLog(), "7-1", "node.joined")
		last, err = e.reg.LastEventID(ctx)
		require.NoError(t, err)
		assert.Equal(t, "7-1", last)
	})
}
