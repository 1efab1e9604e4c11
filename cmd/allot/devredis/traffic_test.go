package devredis

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/quota"
	"github.com/allot-io/allot/registry"
)

func TestPace(t *testing.T) {
	ls, err := quota.Parse("60/m, 90000 tokens/m, 10000/d")
	require.NoError(t, err)
	calls, tokens := pace(ls, 1)
	assert.InDelta(t, 10000.0/86400, calls, 1e-9, "the daily limit binds")
	assert.InDelta(t, 1500/(10000.0/86400), tokens, 1e-6, "the token limit at the calls' pace")
	_, tokens = pace(mustParse(t, "1/s, 1000 tokens/s"), 1)
	assert.InDelta(t, 500.0, tokens, 1e-9, "at most half the token burst per call")
	calls, tokens = pace(quota.Limits{{Kind: quota.Requests, Rate: 600, Per: time.Minute}}, 0.5)
	assert.InDelta(t, 5.0, calls, 1e-9)
	assert.Zero(t, tokens)
	calls, tokens = pace(quota.Limits{{Kind: quota.Tokens, Rate: 6000, Per: time.Minute}}, 1)
	assert.Equal(t, 1.0, calls, "no request limit: one call a second")
	assert.InDelta(t, 100.0, tokens, 1e-9)
}

// TestDemoTraffic: running demo nodes spend from their groups' limits, so
// dev mode shows usage (Stop ends the calls before the node leaves).
func TestDemoTraffic(t *testing.T) {
	r, err := Start()
	require.NoError(t, err)
	t.Cleanup(r.Close)
	rdb := r.Client()
	t.Cleanup(func() { _ = rdb.Close() })
	ctx := context.Background()
	reg := registry.New(rdb)
	q := "600/m"
	_, err = reg.Add(ctx, "busy", registry.Change{Quota: &q}, "test")
	require.NoError(t, err)
	f := NewFleet(r.Addr())
	t.Cleanup(func() { _ = f.Close(context.Background()) })
	n, err := f.Add(ctx)
	require.NoError(t, err)
	requests := func() int64 {
		u, err := reg.Usage(ctx, "busy", time.Hour)
		require.NoError(t, err)
		var sum int64
		for _, m := range u {
			sum += m.Requests
		}
		return sum
	}
	require.Eventually(t, func() bool { return requests() >= 3 }, 10*time.Second, 50*time.Millisecond)
	require.NoError(t, f.Stop(ctx, n.ID, true))
}

func mustParse(t *testing.T, s string) quota.Limits {
	t.Helper()
	ls, err := quota.Parse(s)
	require.NoError(t, err)
	return ls
}
