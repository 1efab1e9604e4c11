package client

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/registry"
)

// TestAcquire: one call per upstream request, from the held group with
// room; refused with the shortest wait when none has room; bad costs and a
// node holding nothing get clear errors; a lease settles once.
func TestAcquire(t *testing.T) {
	p := newPool(t)
	p.addGroup("small", registry.Change{Set: set("api_key", "small-key"), Quota: ptr("2/h, 100 tokens/h")})
	p.addGroup("big", registry.Change{Set: set("api_key", "big-key"), Quota: ptr("6/m, 100 tokens/m")})
	c := p.startClient("n1") // one node: it holds both groups
	ctx := context.Background()
	require.Eventually(t, func() bool { return len(c.Assignment().Groups) == 2 }, 10*time.Second, 5*time.Millisecond)

	// Eight calls fit (2 + 6): each takes the group with room, and a lease
	// carries its group's key.
	used := map[string]int{}
	for range 8 {
		l, err := c.Acquire(ctx, 0)
		require.NoError(t, err)
		key, ok := l.Config("api_key")
		require.True(t, ok)
		assert.Equal(t, l.Group()+"-key", key)
		used[l.Group()]++
	}
	assert.Equal(t, map[string]int{"small": 2, "big": 6}, used)

	// The ninth is refused, with the shorter wait of the two (big refills
	// one call in 10 s, small in 30 min).
	_, err := c.Acquire(ctx, 0)
	var rl *RateLimitError
	require.ErrorAs(t, err, &rl)
	assert.ErrorIs(t, err, ErrRateLimited)
	assert.Equal(t, "big", rl.Group)
	assert.LessOrEqual(t, rl.RetryAfter, 10*time.Second)
	assert.Positive(t, rl.RetryAfter)

	// Bad costs.
	_, err = c.Acquire(ctx, -1)
	assert.ErrorIs(t, err, ErrInvalidCost)
	_, err = c.Acquire(ctx, 101)
	assert.ErrorIs(t, err, ErrCostTooLarge, "above every group's burst")
}

func TestAcquireLease(t *testing.T) {
	p := newPool(t)
	p.addGroup("g", registry.Change{Set: set("api_key", "k"), Quota: ptr("100/m, 1000 tokens/m")})
	c := p.startClient("n1")
	ctx := context.Background()
	require.Eventually(t, func() bool { return c.Assignment().Holds("g") }, 10*time.Second, 5*time.Millisecond)

	l, err := c.Acquire(ctx, 100)
	require.NoError(t, err)
	assert.Equal(t, "g", l.Group())
	_, ok := l.Config("nope")
	assert.False(t, ok)
	assert.Equal(t, int64(100), l.Reservation().Tokens())
	require.NoError(t, l.Settle(ctx, 40))
	assert.ErrorIs(t, l.Settle(ctx, 40), ErrAlreadySettled)
	usage, err := p.reg.Usage(ctx, "g", time.Hour)
	require.NoError(t, err)
	var tokens int64
	for _, m := range usage {
		tokens += m.Tokens
	}
	assert.Equal(t, int64(40), tokens, "the refund settled the estimate down to what was used")
}

func TestAcquireNothingHeld(t *testing.T) {
	p := newPool(t)
	c := p.startClient("n1")
	_, err := c.Acquire(context.Background(), 0)
	assert.ErrorIs(t, err, ErrNothingHeld)
}

// TestAcquireSkipsItsOwnCooldown: a group this node's own 429 cooled is not
// tried (no round trip); the call goes to the other group.
func TestAcquireSkipsItsOwnCooldown(t *testing.T) {
	p := newPool(t)
	p.addGroup("a", registry.Change{Quota: ptr("100/m")})
	p.addGroup("b", registry.Change{Quota: ptr("100/m")})
	c := p.startClient("n1")
	ctx := context.Background()
	require.Eventually(t, func() bool { return len(c.Assignment().Groups) == 2 }, 10*time.Second, 5*time.Millisecond)
	require.NoError(t, c.ReportThrottled(ctx, "a", 30*time.Second))
	for range 5 {
		l, err := c.Acquire(ctx, 0)
		require.NoError(t, err)
		assert.Equal(t, "b", l.Group())
	}
	require.NoError(t, c.ReportThrottled(ctx, "b", 10*time.Second))
	_, err := c.AcquireWait(ctxTimeout(t, 50*time.Millisecond), 0)
	assert.True(t, errors.Is(err, context.DeadlineExceeded), "both cooling: AcquireWait waits: %v", err)
}

func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// TestAcquireOneRoundTrip: while the group Acquire tries first has room, a
// call costs one limiter round trip, as Reserve does; a refusal costs one
// more per group it moves on to.
func TestAcquireOneRoundTrip(t *testing.T) {
	p := newPool(t)
	p.addGroup("a", registry.Change{Quota: ptr("3/m")})
	p.addGroup("b", registry.Change{Quota: ptr("100/m")})
	c, calls := p.startCounted(p.rdb, "n1")
	ctx := context.Background()
	require.Eventually(t, func() bool { return len(c.Assignment().Groups) == 2 }, 10*time.Second, 5*time.Millisecond)

	before := calls.n.Load()
	for range 3 {
		_, err := c.Acquire(ctx, 0)
		require.NoError(t, err)
	}
	assert.Equal(t, int64(3), calls.n.Load()-before, "one round trip per call while the first group has room")
	// Each call goes to the group with the larger share of its limit left,
	// which is b (100/m) once a (3/m) was called: one round trip each.
	before = calls.n.Load()
	for range 5 {
		l, err := c.Acquire(ctx, 0)
		require.NoError(t, err)
		assert.Equal(t, "b", l.Group())
	}
	assert.Equal(t, int64(5), calls.n.Load()-before)
}
