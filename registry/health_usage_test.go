package registry_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/internal/redistest"
	"github.com/allot-io/allot/registry"
)

// TestReportsCountedInUsage: throttled and failure reports land in the same
// per-minute usage the limiter counts requests in, so `allot group usage`
// shows what allot refused next to what the upstream refused.
func TestReportsCountedInUsage(t *testing.T) {
	e := newEnv(t, redistest.Start(t).Client(t))
	ctx := context.Background()
	holding(t, e, "k", "0", "n1")

	for range 2 {
		_, err := report(e, "n1", "k", registry.Throttled, time.Second, "")
		require.NoError(t, err)
	}
	_, err := report(e, "n1", "k", registry.Failure, 0, "HTTP 401")
	require.NoError(t, err)
	_, err = report(e, "n1", "k", registry.Success, 0, "")
	require.NoError(t, err)

	var throttled, failures int64
	require.Eventually(t, func() bool {
		ms, err := e.reg.Usage(ctx, "k", 2*time.Minute)
		require.NoError(t, err)
		throttled, failures = 0, 0
		for _, m := range ms {
			throttled += m.Throttled
			failures += m.Failures
		}
		return throttled == 2 && failures == 1
	}, 5*time.Second, 20*time.Millisecond)
	assert.Equal(t, int64(2), throttled)
	assert.Equal(t, int64(1), failures)

	minutes, err := e.rdb.Keys(ctx, e.k.UsagePrefix("k")+"*").Result()
	require.NoError(t, err)
	require.NotEmpty(t, minutes)
	for _, key := range minutes {
		ttl, err := e.rdb.TTL(ctx, key).Result()
		require.NoError(t, err)
		assert.Greater(t, ttl, 23*time.Hour, "usage minutes are kept 24 h")
	}
}
