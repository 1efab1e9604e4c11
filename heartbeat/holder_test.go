package heartbeat_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/heartbeat"
	"github.com/allot-io/allot/internal/redistest"
)

// TestHolder: Holder reads who holds an ID, writing nothing: unknown,
// live under a session, expired under it (still its own: a beat from it
// continues the node), gone after a leave.
func TestHolder(t *testing.T) {
	ctx := context.Background()
	rdb := redistest.Start(t).Client(t)
	e := newEnv(t, rdb)
	s := heartbeat.NewSession()

	h, err := e.tr.Holder(ctx, "n1")
	require.NoError(t, err)
	assert.Equal(t, heartbeat.Holding{}, h)
	assert.False(t, h.Holds(""))

	_, err = e.tr.Beat(ctx, heartbeat.Beat{Node: "n1", Session: s})
	require.NoError(t, err)
	before := digest(t, rdb)
	h, err = e.tr.Holder(ctx, "n1")
	require.NoError(t, err)
	assert.Equal(t, heartbeat.Holding{Registered: true, Session: s, Live: true}, h)
	assert.True(t, h.Holds(s))
	assert.False(t, h.Holds(heartbeat.NewSession()))
	assert.Equal(t, before, digest(t, rdb), "Holder wrote")

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
