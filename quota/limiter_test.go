package quota

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/internal/redistest"
)

func testKeys(group string) Keys {
	p := "{allot:test}"
	return Keys{State: p + ":quota:" + group, Health: p + ":health:" + group, UsagePrefix: p + ":usage:" + group + ":"}
}

func mustParse(t testing.TB, s string) Limits {
	t.Helper()
	ls, err := Parse(s)
	require.NoError(t, err)
	return ls
}

// TestLimiter runs the limiter suite on a standalone server and on Cluster.
func TestLimiter(t *testing.T) {
	t.Run("standalone", func(t *testing.T) { limiterSuite(t, redistest.Start(t).Client(t)) })
	t.Run("cluster", func(t *testing.T) { limiterSuite(t, redistest.StartCluster(t).Client(t)) })
}

func limiterSuite(t *testing.T, rdb redis.UniversalClient) {
	ctx := context.Background()
	l := NewLimiter(rdb)

	t.Run("requests", func(t *testing.T) {
		k, ls := testKeys("req"), mustParse(t, "3/h")
		for range 3 {
			r, err := l.Take(ctx, k, ls, 1, 0)
			require.NoError(t, err)
			require.True(t, r.Allowed)
		}
		r, err := l.Take(ctx, k, ls, 1, 0)
		require.NoError(t, err)
		assert.False(t, r.Allowed)
		assert.Equal(t, 0, r.Limit)
		assert.InDelta(t, float64(20*time.Minute), float64(r.RetryAfter), float64(time.Second))
	})

	t.Run("tokens", func(t *testing.T) {
		k, ls := testKeys("tok"), mustParse(t, "100/m, 1000 tokens/h")
		r, err := l.Take(ctx, k, ls, 1, 700)
		require.NoError(t, err)
		require.True(t, r.Allowed)
		r, err = l.Take(ctx, k, ls, 1, 400)
		require.NoError(t, err)
		assert.False(t, r.Allowed)
		assert.Equal(t, 1, r.Limit)
		// 100 tokens too many at 1000/h: 6 minutes.
		assert.InDelta(t, float64(6*time.Minute), float64(r.RetryAfter), float64(time.Second))
		_, err = l.Take(ctx, k, ls, 1, 1001)
		assert.ErrorIs(t, err, ErrCostTooLarge)
	})

	t.Run("all or nothing", func(t *testing.T) {
		k, ls := testKeys("aon"), mustParse(t, "10/m, 100 tokens/m")
		r, err := l.Take(ctx, k, ls, 1, 100)
		require.NoError(t, err)
		require.True(t, r.Allowed)
		before := rdb.HGetAll(ctx, k.State).Val()
		for range 5 { // the token limit refuses: the request limit must keep its budget
			r, err = l.Take(ctx, k, ls, 1, 50)
			require.NoError(t, err)
			require.False(t, r.Allowed)
			assert.Equal(t, 1, r.Limit)
		}
		assert.Equal(t, before, rdb.HGetAll(ctx, k.State).Val())
		for range 9 { // 9 more requests without tokens still fit
			r, err = l.Take(ctx, k, ls, 1, 0)
			require.NoError(t, err)
			assert.True(t, r.Allowed)
		}
		r, err = l.Take(ctx, k, ls, 1, 0)
		require.NoError(t, err)
		assert.False(t, r.Allowed)
		assert.Equal(t, 0, r.Limit)
	})

	t.Run("longest wait is named", func(t *testing.T) {
		k, ls := testKeys("worst"), mustParse(t, "1/s, 1/d")
		_, err := l.Take(ctx, k, ls, 1, 0)
		require.NoError(t, err)
		r, err := l.Take(ctx, k, ls, 1, 0)
		require.NoError(t, err)
		require.False(t, r.Allowed)
		assert.Equal(t, 1, r.Limit)
		assert.Greater(t, r.RetryAfter, 23*time.Hour)
	})

	t.Run("refund and debit", func(t *testing.T) {
		k, ls := testKeys("settle"), mustParse(t, "1000 tokens/h")
		r, err := l.Take(ctx, k, ls, 1, 1000)
		require.NoError(t, err)
		require.True(t, r.Allowed)
		_, err = l.Settle(ctx, k, ls, -600, r.Minute)
		require.NoError(t, err) // used 400 of 1000
		u, err := ReadUsage(ctx, rdb, k.UsagePrefix, r.Minute, r.Minute)
		require.NoError(t, err)
		require.Len(t, u, 1)
		assert.Equal(t, int64(400), u[0].Tokens, "the usage minute is corrected")
		r, err = l.Take(ctx, k, ls, 1, 600)
		require.NoError(t, err)
		require.True(t, r.Allowed, "the refund is spendable")
		r2, err := l.Take(ctx, k, ls, 1, 1)
		require.NoError(t, err)
		require.False(t, r2.Allowed)
		// A refund larger than what is in use stops at a full budget.
		_, err = l.Settle(ctx, k, ls, -5000, r.Minute)
		require.NoError(t, err)
		r, err = l.Take(ctx, k, ls, 1, 1000)
		require.NoError(t, err)
		assert.True(t, r.Allowed)
		r2, err = l.Take(ctx, k, ls, 1, 1)
		require.NoError(t, err)
		assert.False(t, r2.Allowed, "never more than the burst")
		// A debit above the estimate goes into debt: even a zero-token call waits.
		_, err = l.Settle(ctx, k, ls, 500, r.Minute)
		require.NoError(t, err)
		r2, err = l.Take(ctx, k, ls, 1, 0)
		require.NoError(t, err)
		assert.False(t, r2.Allowed)
		assert.InDelta(t, float64(30*time.Minute), float64(r2.RetryAfter), float64(time.Second))
	})

	t.Run("daily window", func(t *testing.T) {
		// 10/d: one request is worth 8640 s of the window. The stored TAT
		// shows it without waiting a day.
		k, ls := testKeys("daily"), mustParse(t, "10/d")
		now := serverMicros(t, rdb)
		for range 10 {
			r, err := l.Take(ctx, k, ls, 1, 0)
			require.NoError(t, err)
			require.True(t, r.Allowed)
		}
		tat, err := strconv.ParseFloat(rdb.HGet(ctx, k.State, "r:86400000").Val(), 64)
		require.NoError(t, err)
		assert.InDelta(t, float64(now)+86400e6, tat, 2e6)
		r, err := l.Take(ctx, k, ls, 1, 0)
		require.NoError(t, err)
		require.False(t, r.Allowed)
		assert.InDelta(t, float64(8640*time.Second), float64(r.RetryAfter), float64(2*time.Second))
		ttl := rdb.PTTL(ctx, k.State).Val()
		assert.Greater(t, ttl, 23*time.Hour, "the state lives as long as the window")
		// Move the TAT back by 9 h as if 9 h had passed: 3 requests fit again.
		rdb.HSet(ctx, k.State, "r:86400000", strconv.FormatFloat(tat-9*3600e6, 'f', 3, 64))
		for range 3 {
			r, err = l.Take(ctx, k, ls, 1, 0)
			require.NoError(t, err)
			require.True(t, r.Allowed)
		}
		r, err = l.Take(ctx, k, ls, 1, 0)
		require.NoError(t, err)
		assert.False(t, r.Allowed)
	})

	t.Run("cooling", func(t *testing.T) {
		k, ls := testKeys("cool"), mustParse(t, "100/s")
		until := serverMicros(t, rdb)/1000 + 5000
		require.NoError(t, rdb.HSet(ctx, k.Health, "cooling_until", until).Err())
		r, err := l.Take(ctx, k, ls, 1, 0)
		require.NoError(t, err)
		assert.False(t, r.Allowed)
		assert.Equal(t, Cooling, r.Limit)
		assert.InDelta(t, float64(5*time.Second), float64(r.RetryAfter), float64(time.Second))
		require.NoError(t, rdb.HSet(ctx, k.Health, "cooling_until", until-10000).Err())
		r, err = l.Take(ctx, k, ls, 1, 0)
		require.NoError(t, err)
		assert.True(t, r.Allowed)
	})

	t.Run("usage", func(t *testing.T) {
		k, ls := testKeys("use"), mustParse(t, "2/h, 100 tokens/h")
		var last Result
		for _, tok := range []int64{10, 20, 30} {
			r, err := l.Take(ctx, k, ls, 1, tok)
			require.NoError(t, err)
			last = r
		}
		u, err := ReadUsage(ctx, rdb, k.UsagePrefix, last.Minute-1, last.Minute)
		require.NoError(t, err)
		var sum Minute
		for _, m := range u {
			sum.Requests += m.Requests
			sum.Tokens += m.Tokens
			sum.Rejected += m.Rejected
		}
		assert.Equal(t, Minute{Requests: 2, Tokens: 30, Rejected: 1}, sum)

		ttl := rdb.TTL(ctx, k.UsagePrefix+strconv.FormatInt(last.Minute, 10)).Val()
		assert.InDelta(t, float64(UsageTTL), float64(ttl), float64(time.Minute))
	})

	boundsSuite(t, rdb, l)

	t.Run("two holders share one budget", func(t *testing.T) {
		k, ls := testKeys("shared"), mustParse(t, "50/h")
		other := NewLimiter(rdb)
		allowed := 0
		for i := range 80 {
			lim := l
			if i%2 == 1 {
				lim = other
			}
			r, err := lim.Take(ctx, k, ls, 1, 0)
			require.NoError(t, err)
			if r.Allowed {
				allowed++
			}
		}
		assert.Equal(t, 50, allowed)
	})
}

func serverMicros(t *testing.T, rdb redis.UniversalClient) int64 {
	t.Helper()
	tm, err := rdb.Time(context.Background()).Result()
	require.NoError(t, err)
	return tm.UnixMicro()
}

func TestLocal(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	lo := NewLocal(func() time.Time { return now })
	ls := mustParse(t, "60/m, 6000 tokens/m")
	allowed := 0
	for range 40 {
		r, err := lo.Take("g", ls, 0.5, 1, 0)
		require.NoError(t, err)
		if r.Allowed {
			allowed++
		}
	}
	assert.Equal(t, 30, allowed, "half of 60/m")
	now = now.Add(time.Minute)
	r, err := lo.Take("g", ls, 0.5, 1, 3000)
	require.NoError(t, err)
	require.True(t, r.Allowed)
	r, err = lo.Take("g", ls, 0.5, 1, 100)
	require.NoError(t, err)
	require.False(t, r.Allowed)
	assert.Equal(t, 1, r.Limit)
	lo.Settle("g", ls, 0.5, -1000)
	r, err = lo.Take("g", ls, 0.5, 1, 1000)
	require.NoError(t, err)
	assert.True(t, r.Allowed, "the refund is spendable")
	// A cost above the share's burst but within the group's fits an empty budget.
	now = now.Add(time.Minute)
	r, err = lo.Take("g", ls, 0.5, 1, 5000)
	require.NoError(t, err)
	assert.True(t, r.Allowed)
	_, err = lo.Take("g", ls, 0.5, 1, 6001)
	assert.ErrorIs(t, err, ErrCostTooLarge)
}

// TestLocalBounds: the fallback keeps the script's bounds: a settle's debt
// is capped at one period (no overflow on 1 tokens/d), a refund stops at an
// empty limit, and a refusal always waits.
func TestLocalBounds(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	lo := NewLocal(func() time.Time { return now })
	ls := mustParse(t, "1 tokens/d")
	r, err := lo.Take("g", ls, 1, 1, 0)
	require.NoError(t, err)
	require.True(t, r.Allowed)
	lo.Settle("g", ls, 1, MaxCost)
	r, err = lo.Take("g", ls, 1, 1, 0)
	require.NoError(t, err)
	require.False(t, r.Allowed)
	assert.Greater(t, r.RetryAfter, 23*time.Hour)
	assert.LessOrEqual(t, r.RetryAfter, Day, "one period of debt")

	tok := mustParse(t, "100 tokens/m")
	r, err = lo.Take("h", tok, 1, 1, 100)
	require.NoError(t, err)
	require.True(t, r.Allowed)
	lo.Settle("h", tok, 1, -MaxCost)
	for range 2 {
		r, err = lo.Take("h", tok, 1, 1, 50)
		require.NoError(t, err)
		require.True(t, r.Allowed)
	}
	r, err = lo.Take("h", tok, 1, 1, 1)
	require.NoError(t, err)
	assert.False(t, r.Allowed, "a refund gives back no more than an empty limit")
	assert.Greater(t, r.RetryAfter, time.Duration(0))
}
