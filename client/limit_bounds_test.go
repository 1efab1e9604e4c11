package client

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/internal/redistest"
	"github.com/allot-io/allot/quota"
	"github.com/allot-io/allot/registry"
)

// limiterCalls is a go-redis hook that counts the runs of the limiter
// script (EVALSHA or EVAL whose first key is a :quota: key) and, when
// mangle is set, replaces their reply with one the script never gives.
type limiterCalls struct {
	n      atomic.Int64
	mangle atomic.Bool
}

func (h *limiterCalls) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *limiterCalls) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if !isLimiterCall(cmd) {
			return err
		}
		if name := cmd.Name(); name == "evalsha" && err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT") {
			return err // go-redis runs EVAL next: one call
		}
		h.n.Add(1)
		if c, ok := cmd.(*redis.Cmd); ok && h.mangle.Load() && err == nil {
			c.SetVal("not a limiter reply")
		}
		return err
	}
}

func (h *limiterCalls) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// isLimiterCall reports whether cmd runs a quota script: limiter.lua (its
// first key a :quota: key) or lease.lua (an acquire: a :quota: key among
// its candidates' keys).
func isLimiterCall(cmd redis.Cmder) bool {
	a := cmd.Args()
	if n := cmd.Name(); (n != "evalsha" && n != "eval") || len(a) < 4 {
		return false
	}
	n, ok := a[2].(int)
	if !ok {
		n = 1
	}
	for i := 3; i < len(a) && i < 3+n; i++ {
		if k, _ := a[i].(string); strings.Contains(k, ":quota:") {
			return true
		}
	}
	return false
}

// startCounted starts node id on its own connection to the same Redis as
// base, with a limiterCalls hook.
func (p *pool) startCounted(base redis.UniversalClient, id string, opts ...Option) (*Client, *limiterCalls) {
	p.t.Helper()
	var rdb redis.UniversalClient
	switch b := base.(type) {
	case *redis.ClusterClient:
		rdb = redis.NewClusterClient(b.Options())
	case *redis.Client:
		rdb = redis.NewClient(b.Options())
	default:
		p.t.Fatalf("unknown client %T", base)
	}
	p.t.Cleanup(func() { _ = rdb.Close() })
	h := &limiterCalls{}
	rdb.AddHook(h)
	q := *p
	q.rdb = rdb
	return q.startClient(id, opts...), h
}

// TestCoolingStopsEveryHolderWithoutQuota (issue 22.1): a 429 that one
// holder reports refuses Allow on a group without a quota for every holder,
// a holder that joins during the cooldown included; a quota-less group that
// is not cooling costs no round trip.
func TestCoolingStopsEveryHolderWithoutQuota(t *testing.T) {
	standalone := redistest.Start(t)
	cluster := redistest.StartCluster(t)
	for name, rdb := range map[string]redis.UniversalClient{"standalone": standalone.Client(t), "cluster": cluster.Client(t)} {
		t.Run(name, func(t *testing.T) {
			p := healthPool(t, rdb)
			p.addGroup("k", registry.Change{})
			a := p.startClient("a")
			b, calls := p.startCounted(rdb, "b")
			ctx := context.Background()
			for _, c := range []*Client{a, b} {
				require.Eventually(t, func() bool { return c.Assignment().Holds("k") }, 10*time.Second, 5*time.Millisecond)
			}
			// Once b follows k's events, Allow costs no round trip.
			require.Eventually(t, func() bool {
				n := calls.n.Load()
				return b.Allow(ctx, "k") == nil && calls.n.Load() == n
			}, 10*time.Second, 5*time.Millisecond)
			n := calls.n.Load()
			for range 100 {
				require.NoError(t, b.Allow(ctx, "k"))
			}
			assert.Equal(t, n, calls.n.Load(), "not cooling: no round trip")

			require.NoError(t, a.ReportThrottled(ctx, "k", 3*time.Second))
			var rl *RateLimitError
			took := within(t, 5*time.Second, func() bool { return errors.As(b.Allow(ctx, "k"), &rl) }, "b refuses")
			assert.Less(t, took, bound(500*time.Millisecond))
			assert.Equal(t, "cooling", rl.Limit)
			assert.Greater(t, rl.RetryAfter, time.Second)
			assert.LessOrEqual(t, rl.RetryAfter, 3*time.Second)
			assert.ErrorIs(t, a.Allow(ctx, "k"), ErrRateLimited, "the reporter refuses too")

			c := p.startClient("c")
			require.Eventually(t, func() bool { return c.Assignment().Holds("k") }, 10*time.Second, 5*time.Millisecond)
			assert.ErrorIs(t, c.Allow(ctx, "k"), ErrRateLimited, "a holder that came during the cooldown")

			// The cooldown ends for everyone; then b is back to no round trips.
			within(t, 10*time.Second, func() bool { return b.Allow(ctx, "k") == nil && a.Allow(ctx, "k") == nil }, "cooldown over")
			require.Eventually(t, func() bool {
				n := calls.n.Load()
				return b.Allow(ctx, "k") == nil && calls.n.Load() == n
			}, 10*time.Second, 5*time.Millisecond)
		})
	}
}

// TestSettleDebtBounded (issue 21.4): the attacks on Settle. Reserve(0)
// then Settle(1e9) locks 90000 tokens/m for at most one period, not 7.7
// days; on 1 tokens/d it neither overflows nor makes WaitReserve spin.
func TestSettleDebtBounded(t *testing.T) {
	p := newPool(t)
	p.addGroup("tpm", registry.Change{Set: set("api_key", "k"), Quota: ptr("90000 tokens/m")})
	p.addGroup("daily", registry.Change{Set: set("api_key", "k"), Quota: ptr("1 tokens/d")})
	c, calls := p.startCounted(p.rdb, "s")
	within(t, 5*time.Second, func() bool { return c.Assignment().Holds("tpm") && c.Assignment().Holds("daily") }, "holds both")
	ctx := context.Background()

	for _, g := range []string{"tpm", "daily"} {
		r, err := c.Reserve(ctx, g, 0)
		require.NoError(t, err)
		require.NoError(t, r.Settle(ctx, quota.MaxCost))
	}
	var rl *RateLimitError
	require.ErrorAs(t, c.Allow(ctx, "tpm"), &rl)
	assert.Greater(t, rl.RetryAfter, 59*time.Second)
	assert.LessOrEqual(t, rl.RetryAfter, time.Minute, "one period of debt, not 7.7 days")
	require.ErrorAs(t, c.Allow(ctx, "daily"), &rl)
	assert.Greater(t, rl.RetryAfter, 23*time.Hour)
	assert.LessOrEqual(t, rl.RetryAfter, 24*time.Hour)

	// A waiter calls the limiter once, then waits for RetryAfter.
	n := calls.n.Load()
	wctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	_, err := c.WaitReserve(wctx, "daily", 0)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.LessOrEqual(t, calls.n.Load()-n, int64(2), "WaitReserve does not spin")
	n = calls.n.Load()
	wctx, cancel = context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	assert.ErrorIs(t, c.Wait(wctx, "tpm"), context.DeadlineExceeded)
	assert.LessOrEqual(t, calls.n.Load()-n, int64(2), "Wait does not spin")
}

// TestSettleRefundFloor (issue 22.7): a refund through Reservation.Settle
// never takes a limit below empty: the stored TAT is never before now.
func TestSettleRefundFloor(t *testing.T) {
	p := newPool(t)
	p.addGroup("llm", registry.Change{Set: set("api_key", "k"), Quota: ptr("1000 tokens/h")})
	c := p.startClient("f")
	within(t, 5*time.Second, func() bool { return c.Assignment().Holds("llm") }, "holds llm")
	ctx := context.Background()
	r, err := c.Reserve(ctx, "llm", 1000)
	require.NoError(t, err)
	tm, err := p.rdb.Time(ctx).Result()
	require.NoError(t, err)
	require.NoError(t, r.Settle(ctx, 0), "the whole estimate given back")
	s, err := p.rdb.HGet(ctx, c.keys.Quota("llm"), "t:3600000").Result()
	require.NoError(t, err)
	tat, err := strconv.ParseFloat(s, 64)
	require.NoError(t, err)
	assert.GreaterOrEqual(t, tat, float64(tm.UnixMicro()), "a refund stops at an empty limit")
	r, err = c.Reserve(ctx, "llm", 1000)
	require.NoError(t, err)
	assert.Equal(t, int64(0), r.Remaining())
	_, err = c.Reserve(ctx, "llm", 1)
	assert.ErrorIs(t, err, ErrRateLimited, "no credit beyond the burst")
}

// TestMalformedLimiterReplyIsNoFallback (issue 22.8): a reply the script
// never gives is an error, not "Redis is unreachable": neither the open nor
// the local fallback lets the call through.
func TestMalformedLimiterReplyIsNoFallback(t *testing.T) {
	p := newPool(t)
	p.addGroup("g", registry.Change{Set: set("api_key", "k"), Quota: ptr("100/m")})
	ctx := context.Background()
	for _, fb := range []QuotaFallback{QuotaOpen, QuotaLocal} {
		c, calls := p.startCounted(p.rdb, "m-"+fb.String(), WithQuotaFallback(fb))
		within(t, 5*time.Second, func() bool { return c.Assignment().Holds("g") }, "holds g")
		calls.mangle.Store(true)
		err := c.Allow(ctx, "g")
		require.Error(t, err, fb.String())
		assert.ErrorIs(t, err, quota.ErrUnexpectedReply, fb.String())
		assert.NotErrorIs(t, err, ErrRateLimited)
		_, err = c.Reserve(ctx, "g", 0)
		assert.ErrorIs(t, err, quota.ErrUnexpectedReply, fb.String())
		assert.False(t, c.lim.outage.Load(), "not counted as an outage")
		calls.mangle.Store(false)
		assert.NoError(t, c.Allow(ctx, "g"))
	}
}

// TestRateLimitRemaining (issue 22.15): an answer carries what the tightest
// limit has left and when it is full again, for RateLimit-* headers.
func TestRateLimitRemaining(t *testing.T) {
	p := newPool(t)
	p.addGroup("llm", registry.Change{Set: set("api_key", "k"), Quota: ptr("10/m, 100 tokens/m")})
	c := p.startClient("h")
	within(t, 5*time.Second, func() bool { return c.Assignment().Holds("llm") }, "holds llm")
	ctx := context.Background()
	r, err := c.Reserve(ctx, "llm", 30)
	require.NoError(t, err)
	assert.Equal(t, "100 tokens/m", r.Limit())
	assert.Equal(t, int64(70), r.Remaining())
	assert.InDelta(t, float64(18*time.Second), float64(r.ResetAfter()), float64(time.Second))
	_, err = c.Reserve(ctx, "llm", 80)
	var rl *RateLimitError
	require.ErrorAs(t, err, &rl)
	assert.Equal(t, "100 tokens/m", rl.Limit)
	assert.Equal(t, int64(70), rl.Remaining)
	assert.InDelta(t, float64(6*time.Second), float64(rl.RetryAfter), float64(time.Second))
	assert.InDelta(t, float64(18*time.Second), float64(rl.ResetAfter), float64(time.Second))
}
