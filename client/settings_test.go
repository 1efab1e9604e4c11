package client

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/heartbeat"
	"github.com/allot-io/allot/registry"
)

// TestStartReadsNamespaceSettings: a node without WithHeartbeat adopts the
// namespace's settings; one whose option disagrees fails at Start.
func TestStartReadsNamespaceSettings(t *testing.T) {
	p := newPool(t)
	p.addGroup("g1", registry.Change{})
	ctx := context.Background()
	stored := heartbeat.Config{Interval: 150 * time.Millisecond, TTL: 600 * time.Millisecond}
	require.NoError(t, heartbeat.StoreConfig(ctx, p.rdb, "", stored))

	c, err := New(p.rdb, WithNodeID("adopts"), WithLogger(testLogger()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	require.NoError(t, c.Start(sctx))
	assert.Equal(t, stored, c.hb.Config())
	assert.Equal(t, []string{"g1"}, c.Assignment().Names())

	other, err := New(p.rdb, WithNodeID("disagrees"), WithHeartbeat(heartbeat.DefaultConfig()))
	require.NoError(t, err)
	err = other.Start(sctx)
	require.ErrorIs(t, err, heartbeat.ErrConfigMismatch)
	require.ErrorIs(t, err, ErrInvalidOption)
	assert.Contains(t, err.Error(), "has interval 150ms ttl 600ms")
	require.NoError(t, other.Close(ctx))

	same, err := New(p.rdb, WithNodeID("agrees"), WithHeartbeat(stored))
	require.NoError(t, err)
	t.Cleanup(func() { _ = same.Close(context.Background()) })
	require.NoError(t, same.Start(sctx))
}
