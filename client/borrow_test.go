package client

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/internal/redistest"
	"github.com/allot-io/allot/registry"
)

// borrowPool is two nodes on rdb: n1 holds "mine" (2 calls an hour), n2
// holds "other" (100 a minute); both lendable unless a test says otherwise.
func borrowPool(t *testing.T, rdb redis.UniversalClient, opts ...Option) (*pool, *Client, *Client) {
	t.Helper()
	p := healthPool(t, rdb)
	p.addGroup("mine", registry.Change{Set: set("api_key", "mine-key"), Quota: ptr("2/h")})
	p.addGroup("other", registry.Change{Set: set("api_key", "other-key"), Quota: ptr("100/m")})
	n1 := p.startClient("n1", append([]Option{WithPreferredGroup("mine")}, opts...)...)
	n2 := p.startClient("n2", WithPreferredGroup("other"))
	within(t, 10*time.Second, func() bool {
		return n1.Assignment().Names()[0] == "mine" && len(n1.Assignment().Groups) == 1 &&
			n2.Assignment().Holds("other") && len(n2.Assignment().Groups) == 1
	}, "each holds its own group")
	return p, n1, n2
}

// spend uses up n1's own group: two calls, both its own.
func spend(t *testing.T, c *Client) {
	t.Helper()
	for range 2 {
		l, err := c.Acquire(context.Background(), 0)
		require.NoError(t, err)
		require.False(t, l.Borrowed(), "its own group first")
		require.Equal(t, "mine", l.Group())
	}
}

// TestAcquireBorrows (issue 23.2): once the node's own group is spent, a
// call borrows an idle lendable group, carries its key, costs what a
// holder's call costs and is counted as borrowed; a borrower's 429 cools
// the group for its holder too.
func TestAcquireBorrows(t *testing.T) {
	redistest.Topologies(t, func(t *testing.T, rdb redis.UniversalClient) {
		p, n1, n2 := borrowPool(t, rdb)
		ctx := context.Background()
		spend(t, n1)
		l, err := n1.Acquire(ctx, 0)
		require.NoError(t, err)
		assert.True(t, l.Borrowed())
		assert.Equal(t, "other", l.Group())
		key, _ := l.Config("api_key")
		assert.Equal(t, "other-key", key)
		assert.Equal(t, "100/m", l.Reservation().Limit(), "the lent group's own limits")
		assert.Equal(t, int64(99), l.Reservation().Remaining())

		usage, err := p.reg.Usage(ctx, "other", time.Hour)
		require.NoError(t, err)
		require.NotEmpty(t, usage)
		assert.Equal(t, int64(1), usage[len(usage)-1].Requests)
		assert.Equal(t, int64(1), usage[len(usage)-1].Borrowed)

		// The borrower's 429 cools "other" for its holder.
		resp := &http.Response{StatusCode: http.StatusTooManyRequests, Header: http.Header{"Retry-After": {"5"}}}
		require.NoError(t, l.Observe(ctx, resp, nil))
		var rl *RateLimitError
		require.ErrorAs(t, n2.Allow(ctx, "other"), &rl)
		assert.Equal(t, "cooling", rl.Limit)
		// Now neither can take a call: the shortest wait is the cooldown's.
		_, err = n1.Acquire(ctx, 0)
		require.ErrorAs(t, err, &rl)
		assert.Equal(t, "other", rl.Group)
		assert.LessOrEqual(t, rl.RetryAfter, 5*time.Second)
	})
}

// TestAcquireBorrowsInOneRoundTrip: a call that borrows costs one limiter
// round trip, as one that does not; no catalog read per call.
func TestAcquireBorrowsInOneRoundTrip(t *testing.T) {
	rdb := redistest.Start(t).Client(t)
	p := healthPool(t, rdb)
	p.addGroup("mine", registry.Change{Quota: ptr("2/h")})
	p.addGroup("other", registry.Change{Quota: ptr("1000/m")})
	n2 := p.startClient("n2", WithPreferredGroup("other"))
	n1, calls := p.startCounted(rdb, "n1", WithPreferredGroup("mine"))
	within(t, 10*time.Second, func() bool {
		return n1.Assignment().Holds("mine") && !n1.Assignment().Holds("other") && n2.Assignment().Holds("other")
	}, "placed")
	ctx := context.Background()
	spend(t, n1)
	within(t, 5*time.Second, func() bool { return n1.lend.cat.Load() != nil }, "the catalog, read in the background")
	reads := n1.lend.reads.Load()
	before := calls.n.Load()
	for range 20 {
		l, err := n1.Acquire(ctx, 0)
		require.NoError(t, err)
		require.True(t, l.Borrowed())
	}
	assert.Equal(t, int64(20), calls.n.Load()-before, "one round trip per borrowed call")
	assert.Equal(t, reads, n1.lend.reads.Load(), "no catalog read per call")
}

// TestAcquireNeverBorrows: a capped, suspended, cooling or --no-lend group
// is never lent, nor anything while lending is off; a group marked
// --no-lend is lent no more from its event on, with no read.
func TestAcquireNeverBorrows(t *testing.T) {
	redistest.Topologies(t, func(t *testing.T, rdb redis.UniversalClient) {
		ctx := context.Background()
		p, n1, n2 := borrowPool(t, rdb)
		spend(t, n1)
		l, err := n1.Acquire(ctx, 0)
		require.NoError(t, err)
		require.True(t, l.Borrowed(), "lendable: lent")
		reads := n1.lend.reads.Load()

		refusedNow := func(why string) {
			t.Helper()
			for range 5 {
				l, err := n1.Acquire(ctx, 0)
				require.Error(t, err, why)
				require.Nil(t, l, why)
				assert.ErrorIs(t, err, ErrRateLimited, why)
			}
		}
		lendsAgain := func() {
			t.Helper()
			within(t, 5*time.Second, func() bool {
				l, err := n1.Acquire(ctx, 0)
				return err == nil && l.Borrowed()
			}, "lent again")
		}

		// --no-lend: refused at once (the acquire script reads the
		// document), and the catalog drops the group from its event on.
		rev := n1.lend.cat.Load().Rev
		_, err = p.reg.Update(ctx, "other", registry.Change{Lend: ptr(false)}, "t")
		require.NoError(t, err)
		refusedNow("--no-lend")
		within(t, 5*time.Second, func() bool {
			c := n1.lend.cat.Load()
			return c.Rev > rev && len(c.Lendable()) == 1 && c.Lendable()[0] == "mine"
		}, "the catalog follows the event")
		assert.Equal(t, reads, n1.lend.reads.Load(), "from the event, not a read")
		_, err = p.reg.Update(ctx, "other", registry.Change{Lend: ptr(true)}, "t")
		require.NoError(t, err)
		lendsAgain()

		// Lending off for the pool.
		require.NoError(t, p.reg.SetLending(ctx, false))
		refusedNow("lending off")
		require.NoError(t, p.reg.SetLending(ctx, true))
		lendsAgain()

		// Cooling: the lent group's cooldown refuses it.
		_, err = p.reg.Cool(ctx, "other", time.Hour, "t")
		require.NoError(t, err)
		refusedNow("cooling")
		_, err = p.reg.ClearCooldown(ctx, "other", "t")
		require.NoError(t, err)
		lendsAgain()

		// Suspended.
		_, err = p.reg.Suspend(ctx, "other", "test", "t")
		require.NoError(t, err)
		refusedNow("suspended")
		_, err = p.reg.Resume(ctx, "other", "t")
		require.NoError(t, err)
		within(t, 10*time.Second, func() bool { return n2.Assignment().Holds("other") }, "n2 holds it again")
		lendsAgain()

		// Capped: an exclusive key stays exclusive.
		_, err = p.reg.Update(ctx, "other", registry.Change{MaxNodes: ptr(1)}, "t")
		require.NoError(t, err)
		refusedNow("capped")
	})
}

// TestAcquireNeverBorrowsLostEvent: with every event lost, a group marked
// --no-lend is still never lent: the acquire script checks the document.
func TestAcquireNeverBorrowsLostEvent(t *testing.T) {
	rdb := redistest.Start(t).Client(t)
	p, n1, _ := borrowPool(t, rdb)
	ctx := context.Background()
	spend(t, n1)
	l, err := n1.Acquire(ctx, 0)
	require.NoError(t, err)
	require.True(t, l.Borrowed())
	n1.dropEvents.Store(true)
	_, err = p.reg.Update(ctx, "other", registry.Change{Lend: ptr(false)}, "t")
	require.NoError(t, err)
	for range 10 {
		_, err := n1.Acquire(ctx, 0)
		assert.ErrorIs(t, err, ErrRateLimited)
	}
	// The reply's revision told the node its catalog is behind: it reads.
	within(t, 5*time.Second, func() bool {
		g, _ := n1.lend.cat.Load().Group("other")
		return !g.Lend
	}, "the catalog catches up without the event")
}

// TestAcquirePrefersHeld: while a held group has room, nothing is borrowed,
// even from a group with more room.
func TestAcquirePrefersHeld(t *testing.T) {
	rdb := redistest.Start(t).Client(t)
	p := healthPool(t, rdb)
	p.addGroup("mine", registry.Change{Quota: ptr("10/h")})
	p.addGroup("other", registry.Change{Quota: ptr("1000000/m")})
	n1 := p.startClient("n1", WithPreferredGroup("mine"))
	p.startClient("n2", WithPreferredGroup("other"))
	within(t, 10*time.Second, func() bool {
		return n1.Assignment().Holds("mine") && !n1.Assignment().Holds("other")
	}, "placed")
	ctx := context.Background()
	for range 10 {
		l, err := n1.Acquire(ctx, 0)
		require.NoError(t, err)
		assert.False(t, l.Borrowed())
	}
	l, err := n1.Acquire(ctx, 0)
	require.NoError(t, err)
	assert.True(t, l.Borrowed(), "spent: now it borrows")
}

// TestAcquireErrorsWithLending: ErrCostTooLarge when tokens exceed every
// candidate's burst, held and lendable; ErrNothingHeld when the node holds
// nothing and nothing is lendable; no borrowing with WithBorrowSample(0).
func TestAcquireErrorsWithLending(t *testing.T) {
	rdb := redistest.Start(t).Client(t)
	p := healthPool(t, rdb)
	p.addGroup("mine", registry.Change{Quota: ptr("2/h, 100 tokens/h")})
	p.addGroup("other", registry.Change{Quota: ptr("100/m, 500 tokens/m")})
	n1 := p.startClient("n1", WithPreferredGroup("mine"))
	p.startClient("n2", WithPreferredGroup("other"))
	within(t, 10*time.Second, func() bool { return n1.Assignment().Holds("mine") && !n1.Assignment().Holds("other") }, "placed")
	ctx := context.Background()
	l, err := n1.Acquire(ctx, 300)
	require.NoError(t, err, "above mine's burst, within other's")
	assert.True(t, l.Borrowed())
	_, err = n1.Acquire(ctx, 501)
	assert.ErrorIs(t, err, ErrCostTooLarge, "above every candidate's burst")

	// Nothing held, nothing lendable: a standby node of a pool of one
	// exclusive group.
	q := healthPool(t, redistest.Start(t).Client(t))
	q.addGroup("excl", registry.Change{MaxNodes: ptr(1)})
	a := q.startClient("a")
	b := q.startClient("b")
	within(t, 10*time.Second, func() bool { return len(a.Assignment().Groups)+len(b.Assignment().Groups) == 1 }, "one holds it")
	standby := a
	if len(a.Assignment().Groups) == 1 {
		standby = b
	}
	_, err = standby.Acquire(ctx, 0)
	assert.ErrorIs(t, err, ErrNothingHeld)

	c := p.startClient("n3", WithBorrowSample(0))
	within(t, 10*time.Second, func() bool { return len(c.Assignment().Groups) == 1 }, "n3 holds one")
	for {
		l, err := c.Acquire(ctx, 0)
		if err != nil {
			assert.ErrorIs(t, err, ErrRateLimited)
			break
		}
		require.False(t, l.Borrowed(), "WithBorrowSample(0) never borrows")
	}
	_, err = New(rdb, WithBorrowSample(MaxBorrowSample+1))
	assert.ErrorIs(t, err, ErrInvalidOption)
}

// TestBorrowSample: the sample is random (injectable), skips what it must,
// and weighs at most k groups whatever the pool's size.
func TestBorrowSample(t *testing.T) {
	names := make([]string, 1000)
	for i := range names {
		names[i] = "g" + string(rune('a'+i%26)) + string(rune('a'+i/26%26)) + string(rune('a'+i/676))
	}
	seq := []int{5, 5, 7, 9, 11}
	i := 0
	l := newLender(nil, 3, func(n int) int { v := seq[i%len(seq)] % n; i++; return v })
	got := l.pick(names, func(name string) bool { return name == names[7] })
	assert.Equal(t, []string{names[5], names[9], names[11]}, got, "a repeat and a skipped name are drawn again")
	assert.Empty(t, l.pick(names, func(string) bool { return true }), "bounded tries when everything is skipped")
	assert.Nil(t, newLender(nil, 0, nil).pick(names, func(string) bool { return false }), "k = 0: never")
}
