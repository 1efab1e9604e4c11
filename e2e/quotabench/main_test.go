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
