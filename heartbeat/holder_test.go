package heartbeat_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/heartbeat"
	"github.com/allot-io/allot/internal/redistest"
)

// TestHolder: Holder reads who holds an ID, writing nothing: unknown,
// live under a session, expired under it (still its own: a beat from it
// continues the node), gone after a leave.
func TestHolder(t *testing.T) {
	redistest.Topologies(t, testHolder)
}

func testHolder(t *testing.T, rdb redis.UniversalClient) {
	ctx := context.Background()
	e := newEnv(t, rdb)
	s := heartbeat.NewSession()

	h, err := e.tr.Holder(ctx, "n1")
	require.NoError(t, err)
	assert.Equal(t, heartbeat.Holding{}, h)
	assert.False(t, h.Holds(""))

	_, err = e.tr.Beat(ctx, heartbeat.Beat{Node: "n1", Session: s})
	require.NoError(t, err)
	before := nodeRecords(t, e)
	h, err = e.tr.Holder(ctx, "n1")
	require.NoError(t, err)
	assert.Equal(t, heartbeat.Holding{Registered: true, Session: s, Live: true}, h)
	assert.True(t, h.Holds(s))
	assert.False(t, h.Holds(heartbeat.NewSession()))
	assert.Equal(t, before, nodeRecords(t, e), "Holder wrote")

	require.Eventually(t, func() bool {
		h, err := e.tr.Holder(ctx, "n1")
		return err == nil && !h.Live
	}, waitFor, tick, "the node expires after its TTL")
	h, err = e.tr.Holder(ctx, "n1")
	require.NoError(t, err)
	assert.True(t, h.Holds(s), "an expired, unreaped node is still its session's")
	r, err := e.tr.Beat(ctx, heartbeat.Beat{Node: "n1", Session: s})
	require.NoError(t, err)
	assert.False(t, r.Joined, "Holds and Beat disagree")

	require.NoError(t, e.tr.Leave(ctx, "n1", s))
	h, err = e.tr.Holder(ctx, "n1")
	require.NoError(t, err)
	assert.False(t, h.Registered)
	_, err = e.tr.Holder(ctx, "")
	assert.ErrorIs(t, err, heartbeat.ErrInvalidNode)
}

// nodeRecords is what Holder reads, to show it writes nothing (DEBUG
// DIGEST is per server; on Cluster the namespace's keys share one slot).
func nodeRecords(t *testing.T, e env) string {
	t.Helper()
	ctx := context.Background()
	m, err := e.rdb.HGetAll(ctx, e.k.Members()).Result()
	require.NoError(t, err)
	z, err := e.rdb.ZRangeWithScores(ctx, e.k.Nodes(), 0, -1).Result()
	require.NoError(t, err)
	return fmt.Sprint(m, z)
}
