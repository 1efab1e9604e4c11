package main

import (
	"bytes"
	"context"
	"flag"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/internal/redistest"
)

var long = flag.Bool("quota.long", false, "run the long form of the quota benchmark (60 s window per strategy)")

// TestQuotaStrategies runs the comparison and prints its table (go test -v).
// It checks what must hold whatever the machine: the upstream really
// enforces quotas, allot's global quota never exceeds them, and every
// strategy got work done. Whether allot met its target is reported, not
// asserted (see BENCHMARKS.md).
func TestQuotaStrategies(t *testing.T) {
	cfg := shortConfig()
	if *long {
		cfg = longConfig()
	}
	s := redistest.Start(t)
	cfg.Redis = s.Options()
	ctx, cancel := context.WithTimeout(context.Background(), 4*(cfg.Warmup+cfg.Window)+2*time.Minute)
	defer cancel()

	rs, err := compare(ctx, cfg)
	require.NoError(t, err)
	require.Len(t, rs, 4)
	var out bytes.Buffer
	require.NoError(t, writeTable(&out, cfg, rs))
	t.Log("\n" + out.String())

	byName := map[string]result{}
	for _, r := range rs {
		byName[r.Strategy] = r
		assert.Positive(t, r.Succeeded, r.Strategy)
		// Nobody gets more than the upstream lets through: its buckets
		// hold at most (1 + tolerance) s of quota at the window's start.
		assert.LessOrEqual(t, r.Utilisation, 1+cfg.Tolerance+0.3, r.Strategy)
	}
	global := byName["allot Allow (global GCRA)"]
	assert.Zero(t, global.LimitedInWin, "allot's global quota went over a key's quota")
	assert.Greater(t, global.Utilisation, 0.8)
	// Random keys with no coordination collide: the upstream must notice.
	assert.Positive(t, byName["no coordination (random key)"].Limited)
	// Every key is served at all times, so the steady nodes all got calls.
	assert.Positive(t, global.MinPerNode)
	assert.Equal(t, 4, len(byName))
	assert.Len(t, redisKeys(t, s), 0, "namespace left behind")
}

func redisKeys(t *testing.T, s *redistest.Server) []string {
	t.Helper()
	keys, err := s.Client(t).Keys(context.Background(), "*").Result()
	require.NoError(t, err)
	return keys
}

func TestFairness(t *testing.T) {
	lo, hi, jain := fairness([]float64{10, 10, 10, 10})
	assert.Equal(t, []float64{10, 10, 1}, []float64{lo, hi, jain})
	lo, hi, jain = fairness([]float64{0, 0, 0, 40})
	assert.Equal(t, []float64{0, 40, 0.25}, []float64{lo, hi, jain})
}

func TestUpstreamBucket(t *testing.T) {
	u := newUpstream([]string{"k"}, 10, 0.1) // capacity 11
	now := time.Now()
	okCount := 0
	for range 20 {
		if ok, _ := u.take("k", now); ok {
			okCount++
		}
	}
	assert.Equal(t, 11, okCount)
	ok, _ := u.take("k", now.Add(99*time.Millisecond))
	assert.False(t, ok, "0.99 token is not enough")
	ok, _ = u.take("k", now.Add(100*time.Millisecond))
	assert.True(t, ok, "one token refilled after 1/quota s")
	_, known := u.take("other", now)
	assert.False(t, known)
}

// TestHealthScenario runs the key health scenario (go test -v prints the
// table). It checks what must hold whatever the machine: with reports the
// revoked key's holders move and fewer calls reach it than without, and the
// over-configured key draws fewer 429s. The targets are reported, not
// asserted (see BENCHMARKS.md).
func TestHealthScenario(t *testing.T) {
	cfg := shortHealthConfig()
	s := redistest.Start(t)
	cfg.Redis = s.Options()
	ctx, cancel := context.WithTimeout(context.Background(), 3*(cfg.Warmup+cfg.Window)+2*time.Minute)
	defer cancel()

	rs, err := compareHealth(ctx, cfg)
	require.NoError(t, err)
	require.Len(t, rs, 3)
	var out bytes.Buffer
	require.NoError(t, writeHealthTable(&out, cfg, rs))
	t.Log("\n" + out.String())

	with, without, local := rs[0], rs[1], rs[2]
	assert.GreaterOrEqual(t, with.Moved, time.Duration(0), "the revoked key's holders never moved")
	assert.Less(t, with.Moved, 3*time.Second)
	assert.Equal(t, time.Duration(-1), without.Moved, "without reports nothing moves")
	assert.Less(t, with.AfterThreshold, without.AfterThreshold)
	assert.Less(t, with.Throttled429s, without.Throttled429s)
	assert.Positive(t, local.RevokedCalls)
	for _, r := range rs {
		assert.Positive(t, r.Healthy, r.Strategy)
	}
	assert.Len(t, redisKeys(t, s), 0, "namespace left behind")
}
