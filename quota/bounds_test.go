package quota

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// storedTAT reads limit field's TAT (µs of server time) as the script
// stored it.
func storedTAT(t testing.TB, rdb redis.UniversalClient, k Keys, field string) float64 {
	t.Helper()
	s, err := rdb.HGet(context.Background(), k.State, field).Result()
	require.NoError(t, err)
	v, err := strconv.ParseFloat(s, 64)
	require.NoError(t, err)
	return v
}

// boundsSuite pins issue 21.4 and 22.7/22.15: settles and limits that stay
// bounded, a refund floor, Remaining and ResetAfter.
func boundsSuite(t *testing.T, rdb redis.UniversalClient, l *Limiter) {
	ctx := context.Background()

	t.Run("a settle's debt is capped at one period", func(t *testing.T) {
		// The attack: Reserve(g, 0), then Settle(1e9) locked 90000 tokens/m
		// for 7.7 days.
		k, ls := testKeys("debt"), mustParse(t, "90000 tokens/m")
		r, err := l.Take(ctx, k, ls, 1, 0)
		require.NoError(t, err)
		require.True(t, r.Allowed)
		before := serverMicros(t, rdb)
		s, err := l.Settle(ctx, k, ls, MaxCost, r.Minute)
		require.NoError(t, err)
		after := serverMicros(t, rdb)
		assert.Equal(t, int64(0), s.Remaining)
		// TAT ≤ now + tolerance (the burst: one minute here) + one period.
		assert.LessOrEqual(t, storedTAT(t, rdb, k, "t:60000"), float64(after)+2*60e6)
		assert.GreaterOrEqual(t, storedTAT(t, rdb, k, "t:60000"), float64(before)+2*60e6-1)
		r, err = l.Take(ctx, k, ls, 1, 0)
		require.NoError(t, err)
		require.False(t, r.Allowed)
		assert.Greater(t, r.RetryAfter, 59*time.Second)
		assert.LessOrEqual(t, r.RetryAfter, time.Minute, "at most one period of debt")
		assert.LessOrEqual(t, rdb.PTTL(ctx, k.State).Val(), 2*time.Minute+time.Second)
	})

	t.Run("1 tokens/d settled at MaxCost stays within range", func(t *testing.T) {
		// The attack: math.ceil(8.64e19) came back as -2^63, RetryAfter <= 0.
		k, ls := testKeys("overflow"), mustParse(t, "1 tokens/d")
		r, err := l.Take(ctx, k, ls, 1, 0)
		require.NoError(t, err)
		_, err = l.Settle(ctx, k, ls, MaxCost, r.Minute)
		require.NoError(t, err)
		for range 3 {
			r, err = l.Take(ctx, k, ls, 1, 0)
			require.NoError(t, err)
			require.False(t, r.Allowed)
			assert.Greater(t, r.RetryAfter, 23*time.Hour)
			assert.LessOrEqual(t, r.RetryAfter, Day)
			assert.Equal(t, 0, r.Limit)
		}
	})

	t.Run("a refund never goes below an empty limit", func(t *testing.T) {
		k, ls := testKeys("floor"), mustParse(t, "1000 tokens/h")
		r, err := l.Take(ctx, k, ls, 1, 1000)
		require.NoError(t, err)
		require.True(t, r.Allowed)
		before := serverMicros(t, rdb)
		s, err := l.Settle(ctx, k, ls, -MaxCost, r.Minute)
		require.NoError(t, err)
		assert.GreaterOrEqual(t, storedTAT(t, rdb, k, "t:3600000"), float64(before),
			"the stored TAT is never before now: an empty limit, not credit")
		assert.Equal(t, int64(1000), s.Remaining, "full, never more than the burst")
		assert.Equal(t, time.Duration(0), s.ResetAfter)
		u, err := ReadUsage(ctx, rdb, k.UsagePrefix, r.Minute, r.Minute)
		require.NoError(t, err)
		require.Len(t, u, 1)
		assert.Equal(t, int64(0), u[0].Tokens, "the minute's tokens stop at 0")
	})

	t.Run("a state beyond the bounds is clamped on read", func(t *testing.T) {
		// As stored by the script before the cap, or overflowed.
		k, ls := testKeys("old"), mustParse(t, "60/m")
		require.NoError(t, rdb.HSet(ctx, k.State, "r:60000", "864000000000000000000.000").Err())
		r, err := l.Take(ctx, k, ls, 1, 0)
		require.NoError(t, err)
		require.False(t, r.Allowed)
		assert.LessOrEqual(t, r.RetryAfter, time.Minute+time.Second, "one period of debt, then the call's own second")
		require.NoError(t, rdb.HSet(ctx, k.State, "r:60000", "-9223372036854775808").Err())
		r, err = l.Take(ctx, k, ls, 1, 0)
		require.NoError(t, err)
		assert.True(t, r.Allowed)
		assert.Equal(t, int64(59), r.Remaining)
	})

	t.Run("remaining and reset", func(t *testing.T) {
		k, ls := testKeys("remain"), mustParse(t, "10/m, 100 tokens/m")
		r, err := l.Take(ctx, k, ls, 1, 30)
		require.NoError(t, err)
		require.True(t, r.Allowed)
		assert.Equal(t, 1, r.Limit, "70% of the tokens left is tighter than 90% of the calls")
		assert.Equal(t, int64(70), r.Remaining)
		assert.InDelta(t, float64(18*time.Second), float64(r.ResetAfter), float64(time.Second))
		r, err = l.Take(ctx, k, ls, 1, 80)
		require.NoError(t, err)
		require.False(t, r.Allowed)
		assert.Equal(t, 1, r.Limit)
		assert.Equal(t, int64(70), r.Remaining)
		assert.InDelta(t, float64(6*time.Second), float64(r.RetryAfter), float64(time.Second))
		assert.InDelta(t, float64(18*time.Second), float64(r.ResetAfter), float64(time.Second))

		c := testKeys("remain-cool")
		require.NoError(t, rdb.HSet(ctx, c.Health, "cooling_until", serverMicros(t, rdb)/1000+3000).Err())
		r, err = l.Take(ctx, c, ls, 1, 0)
		require.NoError(t, err)
		require.False(t, r.Allowed)
		assert.Equal(t, Cooling, r.Limit)
		assert.Equal(t, int64(0), r.Remaining)
		assert.Equal(t, r.RetryAfter, r.ResetAfter)
	})

	t.Run("cooling without limits", func(t *testing.T) {
		k := testKeys("cool-only")
		r, err := l.Cooling(ctx, k)
		require.NoError(t, err)
		assert.True(t, r.Allowed)
		n, err := rdb.Exists(ctx, k.UsagePrefix+strconv.FormatInt(r.Minute, 10), k.State).Result()
		require.NoError(t, err)
		assert.Zero(t, n, "an allowed check writes nothing")
		require.NoError(t, rdb.HSet(ctx, k.Health, "cooling_until", serverMicros(t, rdb)/1000+2000).Err())
		r, err = l.Cooling(ctx, k)
		require.NoError(t, err)
		require.False(t, r.Allowed)
		assert.Equal(t, Cooling, r.Limit)
		assert.InDelta(t, float64(2*time.Second), float64(r.RetryAfter), float64(time.Second))
	})

	t.Run("invalid limits are refused before the script", func(t *testing.T) {
		k := testKeys("invalid")
		for _, ls := range []Limits{
			{{}},
			{{Kind: Tokens, Rate: 0, Per: time.Minute}},
			{{Kind: "bytes", Rate: 10, Per: time.Minute}},
			{{Kind: Requests, Rate: 10, Per: 7 * time.Second}},
			{{Kind: Requests, Rate: 1, Per: Day, Burst: MaxRate}},
			{{Kind: Requests, Rate: 10, Per: time.Minute}, {Kind: Requests, Rate: 20, Per: time.Minute}},
		} {
			_, err := l.Take(ctx, k, ls, 1, 0)
			assert.ErrorIs(t, err, ErrInvalidLimit, "%v", ls)
			_, err = l.Settle(ctx, k, ls, 10, 0)
			assert.ErrorIs(t, err, ErrInvalidLimit, "%v", ls)
		}
		n, err := rdb.Exists(ctx, k.State).Result()
		require.NoError(t, err)
		assert.Zero(t, n)
	})

	t.Run("the script refuses malformed ARGV before any write", func(t *testing.T) {
		k := testKeys("argv")
		keys := []string{k.State, k.Health, k.UsagePrefix}
		good := func() []any {
			return []any{"take", 1, 0, 0, 86400, int64(MaxCost), int64(MaxRefill / time.Microsecond), MaxLimits,
				"r:60000", "r", 60000000, 10, 10}
		}
		r, err := limiterScript.Run(ctx, rdb, keys, good()...).Result()
		require.NoError(t, err, "the good ARGV works")
		require.NoError(t, rdb.Del(ctx, k.State).Err())
		for name, edit := range map[string]func(a []any) []any{
			"unknown mode":        func(a []any) []any { a[0] = "give"; return a },
			"negative requests":   func(a []any) []any { a[1] = -1; return a },
			"negative tokens":     func(a []any) []any { a[2] = -5; return a },
			"fractional cost":     func(a []any) []any { a[1] = "0.5"; return a },
			"nan cost":            func(a []any) []any { a[1] = "nan"; return a },
			"cost above max":      func(a []any) []any { a[1] = int64(MaxCost) + 1; return a },
			"cost above burst":    func(a []any) []any { a[1] = 11; return a },
			"no ttl":              func(a []any) []any { a[4] = 0; return a },
			"unknown kind":        func(a []any) []any { a[9] = "x"; return a },
			"empty field":         func(a []any) []any { a[8] = ""; return a },
			"zero period":         func(a []any) []any { a[10] = 0; return a },
			"zero rate":           func(a []any) []any { a[11] = 0; return a },
			"zero burst":          func(a []any) []any { a[12] = 0; return a },
			"slow refill":         func(a []any) []any { a[10], a[11], a[12] = 86400000000, 1, 1000; return a },
			"truncated limit":     func(a []any) []any { return a[:12] },
			"settle in future":    func(a []any) []any { a[0], a[3] = "settle", int64(1)<<40; return a },
			"settle beyond max":   func(a []any) []any { a[0], a[2] = "settle", -int64(MaxCost)-1; return a },
			"cooling with limits": func(a []any) []any { a[0] = "cooling"; return a },
		} {
			_, err := limiterScript.Run(ctx, rdb, keys, edit(good())...).Result()
			var re redis.Error
			if assert.ErrorAs(t, err, &re, name) {
				assert.Contains(t, re.Error(), "quota:", name)
			}
			n, err := rdb.Exists(ctx, k.State).Result()
			require.NoError(t, err)
			assert.Zero(t, n, "%s: nothing written", name)
		}
		_ = r
	})
}
