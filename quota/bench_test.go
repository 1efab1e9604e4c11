package quota

import (
	"context"
	"testing"
	"time"

	"github.com/go-redis/redis_rate/v10"

	"github.com/allot-io/allot/internal/redistest"
)

// BenchmarkLimiter compares one call of the limiter script with 3 limits
// (usage counting included) against one redis_rate Allow (one limit, no
// usage) on the same redis-server. The two alternate call by call, so a
// machine whose load changes during the run slows both alike; it reports
// the mean of each and their ratio. Limits are high so every call is
// allowed and writes.
func BenchmarkLimiter(b *testing.B) {
	rdb := redistest.Start(b).Client(b)
	ctx := context.Background()
	l := NewLimiter(rdb)
	k := testKeys("bench")
	ls, err := Parse("100000000/m, 1000000000 tokens/m, 1000000000/d")
	if err != nil {
		b.Fatal(err)
	}
	rr := redis_rate.NewLimiter(rdb)
	limit := redis_rate.Limit{Rate: 100000000, Burst: 100000000, Period: time.Minute}
	var allot, rate time.Duration
	for b.Loop() {
		t0 := time.Now()
		if r, err := l.Take(ctx, k, ls, 1, 0); err != nil || !r.Allowed {
			b.Fatal(r, err)
		}
		t1 := time.Now()
		if r, err := rr.Allow(ctx, "{allot:test}:rr", limit); err != nil || r.Allowed == 0 {
			b.Fatal(r, err)
		}
		allot += t1.Sub(t0)
		rate += time.Since(t1)
	}
	b.ReportMetric(float64(allot.Nanoseconds())/float64(b.N), "allot-ns/call")
	b.ReportMetric(float64(rate.Nanoseconds())/float64(b.N), "redis_rate-ns/call")
	b.ReportMetric(float64(allot)/float64(rate), "ratio")
}
