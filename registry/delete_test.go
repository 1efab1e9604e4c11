package registry_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/internal/redistest"
	"github.com/allot-io/allot/quota"
	"github.com/allot-io/allot/registry"
)

// TestDeleteDropsLimiterState: a delete removes, in its own script, every
// key the limiter and key health keep of the group (GCRA state, usage
// minutes, health, the unhealthy entry, the probe), so a group created again
// under the same name starts with a full budget, no cooldown and no usage;
// and the limiter refuses to write for a group whose document is gone.
func TestDeleteDropsLimiterState(t *testing.T) {
	redistest.Topologies(t, testDeleteDropsLimiterState)
}

func testDeleteDropsLimiterState(t *testing.T, rdb redis.UniversalClient) {
	ctx := context.Background()
	e := newEnv(t, rdb)
	limits, err := quota.Parse("2/h")
	require.NoError(t, err)
	qk := quota.Keys{State: e.k.Quota("k"), Health: e.k.Health("k"), UsagePrefix: e.k.UsagePrefix("k"), Group: e.k.Group("k")}
	lim := quota.NewLimiter(rdb)
	take := func() bool {
		res, err := lim.Take(ctx, qk, limits, 1, 0)
		require.NoError(t, err)
		return res.Allowed
	}

	_, err = e.reg.Add(ctx, "k", registry.Change{Quota: new("2/h")}, "t")
	require.NoError(t, err)
	require.True(t, take())
	require.True(t, take())
	require.False(t, take(), "the budget is spent")
	// A cooldown and a suspension with its probe.
	_, err = e.reg.Cool(ctx, "k", time.Hour, "t")
	require.NoError(t, err)
	_, err = e.reg.Suspend(ctx, "k", "bad key", "t")
	require.NoError(t, err)
	before := e.dump(t)
	for _, want := range []string{":quota:k", ":usage:k:", ":health:k"} {
		assert.True(t, hasKeyWith(before, want), "before the delete %s exists", want)
	}

	require.NoError(t, e.reg.Delete(ctx, "k", "t"))
	// A holder that has not heard of the delete yet takes nothing and
	// writes nothing: the next group of the name cannot inherit from it.
	_, err = lim.Take(ctx, qk, limits, 1, 0)
	require.ErrorIs(t, err, quota.ErrGroupGone)
	for key := range e.dump(t) {
		for _, gone := range []string{":quota:k", ":usage:k:", ":health:k", ":group:k", ":history:k"} {
			assert.NotContains(t, key, gone)
		}
	}
	un, err := e.reg.Unhealthy(ctx)
	require.NoError(t, err)
	assert.NotContains(t, un, "k")

	_, err = e.reg.Add(ctx, "k", registry.Change{Quota: new("2/h")}, "t")
	require.NoError(t, err)
	assert.True(t, take(), "a new group of the same name has its whole budget")
	usage, err := e.reg.Usage(ctx, "k", time.Hour)
	require.NoError(t, err)
	var requests int64
	for _, m := range usage {
		requests += m.Requests
	}
	assert.Equal(t, int64(1), requests, "and none of the old group's usage")
}

func hasKeyWith(dump map[string]string, part string) bool {
	for k := range dump {
		if strings.Contains(k, part) {
			return true
		}
	}
	return false
}
