package quota

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/allot-io/allot/internal/redistest"
)

var fuzzGroup atomic.Int64

// FuzzLimiter runs limiter.lua itself (one redis-server per fuzz process;
// the seeds run in every go test) on a limit built from the inputs, and a
// take, a settle and a take of fuzzed costs, and checks its invariants
// after each step:
//   - a refusal waits more than 0 and at most one period plus the call's
//     own cost (the debt cap);
//   - no stored TAT lies beyond now + tolerance + one period, nor before
//     the call (a refund never goes below an empty limit);
//   - Remaining is within 0..burst and ResetAfter within 0..tolerance +
//     period.
//
// Limits no parser gives must be refused with ErrInvalidLimit, costs out of
// range with ErrInvalidCost or ErrCostTooLarge, and nothing else may fail.
//
//	go test ./quota/ -run '^$' -fuzz FuzzLimiter -fuzztime 60s
func FuzzLimiter(f *testing.F) {
	for _, s := range []struct {
		rate, burst         int64
		per                 uint8
		tokens              bool
		take, settle, take2 int64
	}{
		{90000, 0, 1, true, 0, MaxCost, 0},          // the 7.7-day lock
		{1, 0, 3, true, 0, MaxCost, 0},              // the overflow of 1 tokens/d
		{1000, 0, 2, true, 1000, -MaxCost, 1000},    // a refund far past empty
		{600, 20, 1, false, 1, 0, 1},                // requests, a burst
		{7, 0, 1, true, 3, 2, 7},                    // a fractional interval
		{MaxRate, MaxRate, 0, true, MaxCost, -1, 1}, // the largest numbers
		{1, 366, 3, false, 1, 0, 1},                 // the slowest refill
		{1, 367, 3, false, 1, 0, 1},                 // too slow: invalid
		{0, 0, 1, false, 1, 0, 1},                   // rate 0: invalid
		{10, -1, 0x84, true, -1, 0, 1},              // bad period, cost, burst
		{5, 3, 0x81, false, 1, -7, MaxCost + 1},     // unfolded: cost above max
	} {
		f.Add(s.rate, s.burst, s.per, s.tokens, s.take, s.settle, s.take2)
	}
	rdb := redistest.Start(f).Client(f)
	l := NewLimiter(rdb)
	pers := []time.Duration{time.Second, time.Minute, time.Hour, Day, 90 * time.Second}
	f.Fuzz(func(t *testing.T, rate, burst int64, per uint8, tokens bool, take, settle, take2 int64) {
		ctx := context.Background()
		if per&0x80 == 0 {
			// Most inputs are folded into range, so they reach the script;
			// the others test the refusals before it.
			rate, burst = fold(rate, 1, MaxRate), fold(burst, 0, MaxRate)
			take, take2, settle = fold(take, 0, MaxCost), fold(take2, 0, MaxCost), fold(settle, -MaxCost, MaxCost)
		}
		lim := Limit{Kind: Requests, Rate: rate, Per: pers[int(per&0x7f)%len(pers)], Burst: burst}
		if tokens {
			lim.Kind = Tokens
		}
		ls := Limits{lim}
		k := testKeys(fmt.Sprintf("fuzz-%d", fuzzGroup.Add(1)))
		valid := lim.Validate() == nil
		interval := float64(lim.Per/time.Microsecond) / float64(lim.Rate)
		tol := interval * float64(lim.EffectiveBurst())
		period := float64(lim.Per / time.Microsecond)

		check := func(step string, r Result, before, after int64) {
			t.Helper()
			if !r.Allowed {
				cost := float64(max(take, take2, 1)) * interval
				if r.RetryAfter <= 0 || float64(r.RetryAfter/time.Microsecond) > period+cost+2 {
					t.Fatalf("%s: %v: refusal waits %v (period %v)", step, lim, r.RetryAfter, lim.Per)
				}
			}
			if r.Remaining < 0 || r.Remaining > lim.EffectiveBurst() {
				t.Fatalf("%s: %v: remaining %d", step, lim, r.Remaining)
			}
			if r.ResetAfter < 0 || float64(r.ResetAfter/time.Microsecond) > tol+period+2 {
				t.Fatalf("%s: %v: reset after %v", step, lim, r.ResetAfter)
			}
			v, err := rdb.HGet(ctx, k.State, lim.field()).Float64()
			if errors.Is(err, redis.Nil) {
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if v < float64(before) || v > float64(after)+tol+period+1 {
				t.Fatalf("%s: %v: TAT %.0f outside [%d, %.0f]", step, lim, v, before, float64(after)+tol+period)
			}
		}
		now := func() int64 {
			tm, err := rdb.Time(ctx).Result()
			if err != nil {
				t.Fatal(err)
			}
			return tm.UnixMicro()
		}
		takeStep := func(step string, cost int64) (Result, bool) {
			before := now()
			r, err := l.Take(ctx, k, ls, 1, cost)
			switch {
			case !valid:
				if !errors.Is(err, ErrInvalidLimit) {
					t.Fatalf("%s: %v: want ErrInvalidLimit, got %v", step, lim, err)
				}
				return r, false
			case ls.CheckCost(1, cost) != nil:
				if !errors.Is(err, ErrInvalidCost) && !errors.Is(err, ErrCostTooLarge) {
					t.Fatalf("%s: cost %d: got %v", step, cost, err)
				}
				return r, false
			case err != nil:
				t.Fatalf("%s: %v cost %d: %v", step, lim, cost, err)
			}
			check(step, r, before, now())
			return r, true
		}
		r, ok := takeStep("take", take)
		if !ok {
			return
		}
		before := now()
		s, err := l.Settle(ctx, k, ls, settle, r.Minute)
		if settle < -MaxCost || settle > MaxCost {
			if !errors.Is(err, ErrInvalidCost) {
				t.Fatalf("settle %d: got %v", settle, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("settle %v by %d: %v", lim, settle, err)
		}
		check("settle", s, before, now())
		takeStep("take again", take2)
	})
}

// fold maps v into lo..hi.
func fold(v, lo, hi int64) int64 {
	if v >= lo && v <= hi {
		return v
	}
	span := uint64(hi - lo + 1)
	return lo + int64(uint64(v)%span)
}
