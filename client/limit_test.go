package client

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/internal/redistest"
	"github.com/allot-io/allot/internal/testlog"
	"github.com/allot-io/allot/quota"
	"github.com/allot-io/allot/registry"
)

// TestReserveSettle: a token budget shared by two holders, reserved and
// settled; refunds are spendable, a second Settle changes nothing, a cost
// above the burst fails at once.
func TestReserveSettle(t *testing.T) {
	p := newPool(t)
	p.addGroup("llm", registry.Change{Set: set("api_key", "k"), Quota: ptr("100/h, 1000 tokens/h")})
	cs := p.startClients("r", 2)
	within(t, 5*time.Second, func() bool { return len(holdersOf(cs)["llm"]) == 2 }, "both hold llm")
	a, b := cs[0], cs[1]
	ctx := context.Background()

	r, err := a.Reserve(ctx, "llm", 600)
	require.NoError(t, err)
	assert.Equal(t, int64(600), r.Tokens())
	_, err = b.Reserve(ctx, "llm", 500)
	var rl *RateLimitError
	require.ErrorAs(t, err, &rl, "the other holder sees the same budget")
	assert.Equal(t, "1000 tokens/h", rl.Limit)
	assert.Greater(t, rl.RetryAfter, time.Minute)

	require.NoError(t, r.Settle(ctx, 100)) // 500 given back
	assert.ErrorIs(t, r.Settle(ctx, 0), ErrAlreadySettled)
	r2, err := b.Reserve(ctx, "llm", 900)
	require.NoError(t, err, "the refund is spendable by the other holder")
	_, err = a.Reserve(ctx, "llm", 1)
	require.ErrorIs(t, err, ErrRateLimited, "a second Settle gave nothing back")
	require.NoError(t, r2.Settle(ctx, 900))

	_, err = a.Reserve(ctx, "llm", 1001)
	assert.ErrorIs(t, err, ErrCostTooLarge)
	assert.NotErrorIs(t, err, ErrRateLimited)
	_, err = a.WaitReserve(ctx, "llm", 5000)
	assert.ErrorIs(t, err, ErrCostTooLarge, "never a wait that cannot end")
	_, err = a.Reserve(ctx, "llm", -1)
	assert.ErrorIs(t, err, ErrInvalidCost)
	r3, err := a.Reserve(ctx, "free-of-tokens", 0)
	assert.ErrorIs(t, err, ErrNotHeld)
	assert.Nil(t, r3)

	// Allow takes requests only; the token debt of a Settle above the
	// estimate makes even Allow wait.
	r4, err := b.WaitReserve(ctx, "llm", 0)
	require.NoError(t, err)
	require.NoError(t, r4.Settle(ctx, 200))
	assert.ErrorIs(t, a.Allow(ctx, "llm"), ErrRateLimited)

	u, err := p.reg.Usage(ctx, "llm", time.Hour)
	require.NoError(t, err)
	var sum quota.Minute
	for _, m := range u {
		sum.Requests += m.Requests
		sum.Tokens += m.Tokens
		sum.Rejected += m.Rejected
	}
	assert.Equal(t, int64(3), sum.Requests)
	assert.Equal(t, int64(100+900+200), sum.Tokens)
	assert.GreaterOrEqual(t, sum.Rejected, int64(3))
}

// TestQuotaFallback kills Redis under three holders of one group, each with
// another fallback: local limits at its share, open allows, closed refuses;
// entering and leaving is logged once; after the restart the shared limiter
// is back.
func TestQuotaFallback(t *testing.T) {
	p := newPool(t, redistest.WithAOF())
	p.addGroup("g", registry.Change{Set: set("api_key", "k"), Quota: ptr("90/h, 9000 tokens/h")})
	var logs testlog.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	local := p.startClient("f-local", WithLogger(logger))
	open := p.startClient("f-open", WithQuotaFallback(QuotaOpen))
	closed := p.startClient("f-closed", WithQuotaFallback(QuotaClosed))
	all := []*Client{local, open, closed}
	within(t, 5*time.Second, func() bool {
		for _, c := range all {
			if g, ok := c.Assignment().Group("g"); !ok || g.Share != 1.0/3 {
				return false
			}
		}
		return true
	}, "all three hold g at a third each")
	ctx := context.Background()
	require.NoError(t, local.Allow(ctx, "g"))

	p.s.Kill(t)
	allowed := 0
	for range 50 {
		if err := local.Allow(ctx, "g"); err == nil {
			allowed++
		} else {
			require.ErrorIs(t, err, ErrRateLimited)
		}
	}
	assert.Equal(t, 30, allowed, "local: 90/h × a third")
	r, err := local.Reserve(ctx, "g", 4000)
	require.Error(t, err, "the request limit is spent")
	assert.Nil(t, r)
	for range 50 {
		require.NoError(t, open.Allow(ctx, "g"), "open lets everything through")
	}
	err = closed.Allow(ctx, "g")
	require.Error(t, err)
	assert.NotErrorIs(t, err, ErrRateLimited)
	assert.Equal(t, 1, logs.Count("limiting by fallback"), "entering is logged once")

	p.s.Restart(t)
	require.Eventually(t, func() bool { return closed.Allow(ctx, "g") == nil }, 10*time.Second, 20*time.Millisecond)
	require.Eventually(t, func() bool { return local.Allow(ctx, "g") == nil }, 10*time.Second, 20*time.Millisecond)
	require.NoError(t, local.Allow(ctx, "g"))
	assert.Equal(t, 1, logs.Count("limiting by fallback"))
	assert.Equal(t, 1, logs.Count("shared limits resumed"), "leaving is logged once")
	u, err := p.reg.Usage(ctx, "g", time.Hour)
	require.NoError(t, err)
	var reqs int64
	for _, m := range u {
		reqs += m.Requests
	}
	assert.GreaterOrEqual(t, reqs, int64(4), "counted in Redis again (AOF kept the first)")

	_, err = New(p.rdb, WithQuotaFallback(QuotaFallback(9)))
	assert.ErrorIs(t, err, ErrInvalidOption)
}
