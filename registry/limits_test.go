package registry_test

import (
	"context"
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/internal/redistest"
	"github.com/allot-io/allot/quota"
	"github.com/allot-io/allot/registry"
)

func strp(s string) *string { return &s }

func TestGroupLimits(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, redistest.Start(t).Client(t))

	g, err := e.reg.Add(ctx, "llm", registry.Change{Quota: strp(" 600/m ,90000 tokens/m, 10000/d"), WeightAuto: true}, "test")
	require.NoError(t, err)
	assert.Equal(t, "600/m, 90000 tokens/m, 10000/d", g.Quota)
	assert.InDelta(t, 10000.0/1440, g.Weight, 1e-9, "the daily limit binds")
	b, err := json.Marshal(g)
	require.NoError(t, err)
	var doc map[string]any
	require.NoError(t, json.Unmarshal(b, &doc))
	assert.Equal(t, []any{
		map[string]any{"kind": "requests", "rate": 600.0, "per": "m", "burst": 600.0},
		map[string]any{"kind": "tokens", "rate": 90000.0, "per": "m", "burst": 90000.0},
		map[string]any{"kind": "requests", "rate": 10000.0, "per": "d", "burst": 10000.0},
	}, doc["limits"])

	g, err = e.reg.Update(ctx, "llm", registry.Change{Quota: strp("90000 tokens/m"), WeightAuto: true}, "test")
	require.NoError(t, err)
	assert.Equal(t, 90.0, g.Weight)

	// Bad input names the limit and writes nothing.
	_, err = e.reg.Update(ctx, "llm", registry.Change{Quota: strp("600/m, 90000 tokns/m")}, "test")
	require.ErrorIs(t, err, registry.ErrInvalidQuota)
	require.ErrorIs(t, err, quota.ErrInvalid)
	assert.Contains(t, err.Error(), `invalid quota: limit 2 ("90000 tokns/m"): unknown kind "tokns"`)
	_, err = e.reg.Add(ctx, "plain", registry.Change{WeightAuto: true}, "test")
	require.ErrorIs(t, err, registry.ErrNoQuota)
	got, err := e.reg.Get(ctx, "llm")
	require.NoError(t, err)
	assert.Equal(t, int64(2), got.Version)
	_, err = e.reg.Get(ctx, "plain")
	assert.ErrorIs(t, err, registry.ErrNotFound)

	// A group stored before limits existed gets them on read: no migration.
	old := `{"name":"old","version":1,"state":"active","weight":1,"max_nodes":0,"quota":"100/s burst 20","config":{},"secret_keys":[]}`
	require.NoError(t, e.rdb.Set(ctx, e.k.Group("old"), old, 0).Err())
	require.NoError(t, e.rdb.SAdd(ctx, e.k.Groups(), "old").Err())
	og, err := e.reg.Get(ctx, "old")
	require.NoError(t, err)
	assert.Equal(t, registry.Quota{{Kind: quota.Requests, Rate: 100, Per: time.Second, Burst: 20}}, og.Limits)
}

func TestUsage(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, redistest.Start(t).Client(t))
	now, err := e.rdb.Time(ctx).Result()
	require.NoError(t, err)
	cur := quota.MinuteOf(now)
	for i, m := range []int64{cur - 90, cur - 30, cur - 1, cur} {
		key := e.k.UsagePrefix("g") + strconv.FormatInt(m, 10)
		require.NoError(t, e.rdb.HSet(ctx, key, "requests", i+1, "tokens", 100*(i+1)).Err())
	}
	u, err := e.reg.Usage(ctx, "g", time.Hour)
	require.NoError(t, err)
	require.Len(t, u, 3)
	assert.Equal(t, time.Unix((cur-30)*60, 0).UTC(), u[0].Minute)
	assert.Equal(t, quota.Minute{Minute: time.Unix(cur*60, 0).UTC(), Requests: 4, Tokens: 400}, u[2])

	last, err := e.reg.LastMinute(ctx, []string{"g", "idle"})
	require.NoError(t, err)
	assert.Equal(t, int64(3), last["g"].Requests)
	assert.Equal(t, time.Unix((cur-1)*60, 0).UTC(), last["idle"].Minute)
	assert.Zero(t, last["idle"].Requests)

	_, err = e.reg.Usage(ctx, "g", 25*time.Hour)
	assert.ErrorIs(t, err, registry.ErrInvalidWindow)
	_, err = e.reg.Usage(ctx, "Bad Name", time.Hour)
	assert.ErrorIs(t, err, registry.ErrInvalidName)
}
