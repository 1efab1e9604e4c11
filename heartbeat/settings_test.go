package heartbeat_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/heartbeat"
	"github.com/allot-io/allot/internal/keys"
	"github.com/allot-io/allot/internal/redistest"
)

func TestNamespaceSettings(t *testing.T) {
	ctx := context.Background()
	rdb := redistest.Start(t).Client(t)

	cfg, stored, err := heartbeat.LoadConfig(ctx, rdb, "")
	require.NoError(t, err)
	assert.False(t, stored)
	assert.Equal(t, heartbeat.DefaultConfig(), cfg)

	// Not configured explicitly: the stored (here default) Config, nothing written.
	got, err := heartbeat.Resolve(ctx, rdb, "a", nil)
	require.NoError(t, err)
	assert.Equal(t, heartbeat.DefaultConfig(), got)
	_, stored, err = heartbeat.LoadConfig(ctx, rdb, "a")
	require.NoError(t, err)
	assert.False(t, stored)

	// The first explicitly configured process records its Config...
	slow := heartbeat.Config{Interval: 10 * time.Second, TTL: 30 * time.Second}
	got, err = heartbeat.Resolve(ctx, rdb, "a", &slow)
	require.NoError(t, err)
	assert.Equal(t, slow, got)
	cfg, stored, err = heartbeat.LoadConfig(ctx, rdb, "a")
	require.NoError(t, err)
	assert.True(t, stored)
	assert.Equal(t, slow, cfg)

	// ...which every unconfigured process then uses, and a disagreeing one
	// is refused.
	got, err = heartbeat.Resolve(ctx, rdb, "a", nil)
	require.NoError(t, err)
	assert.Equal(t, slow, got)
	def := heartbeat.DefaultConfig()
	_, err = heartbeat.Resolve(ctx, rdb, "a", &def)
	require.ErrorIs(t, err, heartbeat.ErrConfigMismatch)
	assert.Contains(t, err.Error(), "namespace \"a\" has interval 10s ttl 30s")

	// StoreConfig validates (TTL >= 3 × interval) and overwrites.
	err = heartbeat.StoreConfig(ctx, rdb, "a", heartbeat.Config{Interval: 5 * time.Second, TTL: 10 * time.Second})
	require.ErrorIs(t, err, heartbeat.ErrInvalidConfig)
	require.NoError(t, heartbeat.StoreConfig(ctx, rdb, "a", def))
	cfg, _, err = heartbeat.LoadConfig(ctx, rdb, "a")
	require.NoError(t, err)
	assert.Equal(t, def, cfg)

	// A hand-written bad value is an error, not a silent default.
	require.NoError(t, rdb.HSet(ctx, keys.New("b").Settings(), "interval_ms", "2000", "ttl_ms", "1000").Err())
	_, _, err = heartbeat.LoadConfig(ctx, rdb, "b")
	require.ErrorIs(t, err, heartbeat.ErrInvalidConfig)
	require.NoError(t, rdb.HSet(ctx, keys.New("c").Settings(), "interval_ms", "soon").Err())
	_, _, err = heartbeat.LoadConfig(ctx, rdb, "c")
	require.ErrorIs(t, err, heartbeat.ErrInvalidConfig)

	_, _, err = heartbeat.LoadConfig(ctx, rdb, "bad namespace")
	require.ErrorIs(t, err, heartbeat.ErrInvalidConfig)
}
