package registry_test

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/internal/redistest"
	"github.com/allot-io/allot/registry"
)

// hgetallCounter counts the HGETALLs sent (usage minute reads).
type hgetallCounter struct{ n atomic.Int64 }

func (c *hgetallCounter) DialHook(next redis.DialHook) redis.DialHook { return next }
func (c *hgetallCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if cmd.Name() == "hgetall" {
			c.n.Add(1)
		}
		return next(ctx, cmd)
	}
}
func (c *hgetallCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, cmd := range cmds {
			if cmd.Name() == "hgetall" {
				c.n.Add(1)
			}
		}
		return next(ctx, cmds)
	}
}

// earlyInMinute waits (polling Redis server time) until the current
// minute has at least 15 s left, so minute numbers taken now hold through
// the reads that follow.
func earlyInMinute(t *testing.T, rdb redis.UniversalClient) int64 {
	t.Helper()
	var cur int64
	require.Eventually(t, func() bool {
		now, err := rdb.Time(context.Background()).Result()
		require.NoError(t, err)
		cur = now.Unix() / 60
		return now.Second() < 45
	}, 20*time.Second, 100*time.Millisecond)
	return cur
}

// TestUsageReader: one Read gives every group's last hour minute by minute
// and the totals its limits are read over (a day for a daily limit); a
// second Read reads only the minutes a Settle may still change, and sees
// such a change; a group created again under the same name starts afresh.
func TestUsageReader(t *testing.T) {
	redistest.Topologies(t, func(t *testing.T, rdb redis.UniversalClient) {
		e := newEnv(t, rdb)
		ctx := context.Background()
		for name, q := range map[string]string{"day": "10000/d", "hour": "100/h", "minute": "600/m", "free": ""} {
			_, err := e.reg.Add(ctx, name, registry.Change{Quota: &q}, "test")
			require.NoError(t, err)
		}
		cur := earlyInMinute(t, rdb)
		use := func(group string, minute, requests int64) {
			require.NoError(t, rdb.HIncrBy(ctx, e.k.UsagePrefix(group)+strconv.FormatInt(minute, 10), "requests", requests).Err())
		}
		use("day", cur-1000, 4) // in the day, not the hour
		use("day", cur-30, 2)
		use("day", cur, 1)
		use("hour", cur-59, 5) // the oldest minute of the hour
		use("hour", cur-60, 7) // just out of it
		use("minute", cur-1, 30)
		use("minute", cur-2, 99)
		use("free", cur-10, 3)

		groups, err := e.reg.List(ctx)
		require.NoError(t, err)
		r := registry.NewUsageReader(e.reg)
		got, err := r.Read(ctx, groups, time.Hour)
		require.NoError(t, err)
		require.Equal(t, time.Unix(cur*60, 0).UTC(), got.Now, "the minute rolled over during the test")
		assert.Equal(t, time.Unix((cur-59)*60, 0).UTC(), got.From)
		require.Len(t, got.Groups, 4)
		for name, g := range got.Groups {
			require.Len(t, g.Minutes, 60, name)
			assert.Equal(t, got.From, g.Minutes[0].Minute, name)
			assert.Equal(t, got.Now, g.Minutes[59].Minute, name)
		}
		assert.Equal(t, int64(7), got.Groups["day"].Totals.Day.Requests, "4 + 2 + 1 over the day")
		assert.Equal(t, int64(3), got.Groups["day"].Totals.Hour.Requests)
		assert.Equal(t, int64(5), got.Groups["hour"].Totals.Hour.Requests, "the minute 60 ago is out of the hour")
		assert.Zero(t, got.Groups["hour"].Totals.Day.Requests, "no daily limit: no day read")
		assert.Equal(t, int64(30), got.Groups["minute"].Totals.LastMinute.Requests)
		assert.Equal(t, int64(99), got.Groups["minute"].Minutes[57].Requests)
		assert.Equal(t, int64(3), got.Groups["free"].Minutes[49].Requests)

		// Again: only the last SettleMinutes full minutes and the current one
		// are read, four groups of them; a late Settle on one is seen, a
		// write to a kept minute older than that is not.
		count := &hgetallCounter{}
		rdb.AddHook(count)
		use("day", cur-3, 10)
		use("day", cur-500, 1000)
		again, err := r.Read(ctx, groups, time.Hour)
		require.NoError(t, err)
		require.Equal(t, got.Now, again.Now, "the minute rolled over during the test")
		assert.Equal(t, int64(4*(registry.SettleMinutes+1)), count.n.Load(), "minutes read again")
		assert.Equal(t, int64(17), again.Groups["day"].Totals.Day.Requests, "the settle on a recent minute counts, the old minute is kept as read")

		// A caller asking for the totals only (status) does not make the
		// next hour's read start over.
		_, err = r.Read(ctx, groups, 0)
		require.NoError(t, err)
		count.n.Store(0)
		_, err = r.Read(ctx, groups, time.Hour)
		require.NoError(t, err)
		assert.Equal(t, int64(4*(registry.SettleMinutes+1)), count.n.Load(), "minutes read after a totals-only read")

		// Created again under the same name: nothing of the old group is kept.
		require.NoError(t, e.reg.Delete(ctx, "day", "test"))
		q := "10000/d"
		_, err = e.reg.Add(ctx, "day", registry.Change{Quota: &q}, "test")
		require.NoError(t, err)
		use("day", cur-700, 2)
		groups, err = e.reg.List(ctx)
		require.NoError(t, err)
		fresh, err := r.Read(ctx, groups, 0)
		require.NoError(t, err)
		assert.Empty(t, fresh.Groups["day"].Minutes, "since 0: totals only")
		assert.Equal(t, int64(2), fresh.Groups["day"].Totals.Day.Requests, "the new group's day, read afresh")

		_, err = r.Read(ctx, groups, 25*time.Hour)
		assert.ErrorIs(t, err, registry.ErrInvalidWindow)
	})
}

// usagePool adds 100 groups, every tenth with a daily limit, and returns
// them (the web UI's pool at size).
func usagePool(b *testing.B, reg *registry.Registry) []registry.Group {
	ctx := context.Background()
	for i := range 100 {
		q := "600/m"
		if i%10 == 0 {
			q = "60/m, 90000 tokens/m, 10000/d"
		}
		_, err := reg.Add(ctx, "g"+strconv.Itoa(i), registry.Change{Quota: &q}, "bench")
		require.NoError(b, err)
	}
	groups, err := reg.List(ctx)
	require.NoError(b, err)
	return groups
}

// BenchmarkUsageReaderCold is GET /v1/usage?since=1h of 100 groups (10 with
// a daily limit) by a reader that keeps nothing: 6,000 + 10 × 1,380
// minute reads in one round trip.
func BenchmarkUsageReaderCold(b *testing.B) {
	reg := registry.New(redistest.Start(b).Client(b))
	groups := usagePool(b, reg)
	b.ResetTimer()
	for range b.N {
		_, err := registry.NewUsageReader(reg).Read(context.Background(), groups, time.Hour)
		require.NoError(b, err)
	}
}

// BenchmarkUsageReaderKept is the same read by the server's reader, which
// kept the minutes: 100 × 6 minute reads.
func BenchmarkUsageReaderKept(b *testing.B) {
	reg := registry.New(redistest.Start(b).Client(b))
	groups := usagePool(b, reg)
	r := registry.NewUsageReader(reg)
	_, err := r.Read(context.Background(), groups, time.Hour)
	require.NoError(b, err)
	b.ResetTimer()
	for range b.N {
		_, err := r.Read(context.Background(), groups, time.Hour)
		require.NoError(b, err)
	}
}
