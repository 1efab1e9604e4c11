package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/allot-io/allot/quota"
)

// Acquire takes one request and tokens (an estimate, 0 for a plain call)
// for one upstream call from a group this node holds, and returns the
// lease to make the call with: its group's key is in Lease.Config.
//
// It tries the held groups that are not cooling, the one with the most
// room first (what each group's limits had left at this node's last call
// of it, a group never called first), and moves to the next only when one
// refuses: when the first has room, Acquire costs one Redis round trip, as
// Reserve does. Errors: a *RateLimitError (errors.Is ErrRateLimited) when
// no held group can take the call now, with the shortest RetryAfter among
// them; an error wrapping ErrCostTooLarge when tokens exceed the burst of
// every held group; ErrInvalidCost for a negative or absurd estimate;
// ErrNothingHeld when the node holds no group. Allow, Reserve, Settle and
// ObserveHTTP stay the calls for a named group.
func (c *Client) Acquire(ctx context.Context, tokens int64) (*Lease, error) {
	ctx = c.demand.once(ctx, tokens) // one call asked, whatever Acquire tries
	if tokens < 0 || tokens > quota.MaxCost {
		return nil, fmt.Errorf("client: acquire: %w: %d tokens", ErrInvalidCost, tokens)
	}
	a := c.Assignment()
	if len(a.Groups) == 0 {
		return nil, ErrNothingHeld
	}
	var (
		refused  *RateLimitError
		tooLarge error
	)
	for _, g := range c.acquireOrder(a) {
		if until, cooling := c.Cooling(g.Name); cooling {
			// This node's own report cooled it: no round trip to hear so.
			refused = shorter(refused, &RateLimitError{Group: g.Name, Limit: "cooling", RetryAfter: max(time.Until(until), MinWait)})
			continue
		}
		r, err := c.lim.take(ctx, g, tokens, false)
		var rl *RateLimitError
		switch {
		case err == nil:
			return &Lease{r: r, c: c, group: g}, nil
		case errors.As(err, &rl):
			refused = shorter(refused, rl)
		case errors.Is(err, ErrCostTooLarge):
			tooLarge = err
		default:
			return nil, err
		}
	}
	if refused != nil {
		return nil, refused
	}
	return nil, fmt.Errorf("client: acquire %d tokens: %w", tokens, tooLarge)
}

// AcquireWait blocks until Acquire succeeds, or ctx ends, sleeping the
// shortest RetryAfter (at least MinWait) between tries, as WaitReserve
// does. Errors other than a refusal return at once.
func (c *Client) AcquireWait(ctx context.Context, tokens int64) (*Lease, error) {
	ctx = c.demand.once(ctx, tokens) // one call asked, however many tries
	for {
		l, err := c.Acquire(ctx, tokens)
		var rl *RateLimitError
		if !errors.As(err, &rl) {
			return l, err
		}
		t := time.NewTimer(max(rl.RetryAfter, MinWait))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("client: acquire: %w", ctx.Err())
		case <-t.C:
		}
	}
}

// shorter returns the refusal with the shorter wait (a when b is nil).
func shorter(a, b *RateLimitError) *RateLimitError {
	if a == nil || b.RetryAfter < a.RetryAfter {
		return b
	}
	return a
}

// acquireOrder is the held groups, the most room first: a group refused
// at its last call after the others (the one that may take calls soonest
// first), then by the share of its tightest limit left, then by name.
func (c *Client) acquireOrder(a Assignment) []Group {
	now := time.Now()
	type ranked struct {
		g    Group
		room room
	}
	rs := make([]ranked, len(a.Groups))
	for i, g := range a.Groups {
		rs[i] = ranked{g, c.lim.roomOf(g.Name)}
	}
	slices.SortStableFunc(rs, func(x, y ranked) int {
		xr, yr := x.room.refusedUntil.After(now), y.room.refusedUntil.After(now)
		switch {
		case xr != yr:
			if xr {
				return 1
			}
			return -1
		case xr:
			return x.room.refusedUntil.Compare(y.room.refusedUntil)
		case x.room.left != y.room.left:
			if x.room.left > y.room.left {
				return -1
			}
			return 1
		}
		return strings.Compare(x.g.Name, y.g.Name)
	})
	out := make([]Group, len(rs))
	for i, r := range rs {
		out[i] = r.g
	}
	return out
}

// room is what a group's limits had left at this node's last call of it.
type room struct {
	left         float64   // share of the tightest limit's burst left (1 = full; no quota: 1)
	refusedUntil time.Time // the last call was refused until then
}

// roomOf is group's last known room; a group never called counts as full.
func (l *limiter) roomOf(group string) room {
	if v, ok := l.room.Load(group); ok {
		return v.(room)
	}
	return room{left: 1}
}

// noteRoom records what the limiter said of group's limits ls.
func (l *limiter) noteRoom(group string, ls quota.Limits, res quota.Result) {
	r := room{left: 1}
	if res.Limit >= 0 && res.Limit < len(ls) {
		if b := ls[res.Limit].EffectiveBurst(); b > 0 {
			r.left = float64(res.Remaining) / float64(b)
		}
	}
	if !res.Allowed {
		r.left, r.refusedUntil = 0, time.Now().Add(max(res.RetryAfter, MinWait))
	}
	l.room.Store(group, r)
}

// Lease is one upstream call Acquire let through: the group (and so the
// key) to make it with. Settle it with the tokens the call used, and
// Observe what the upstream answered.
type Lease struct {
	r     *Reservation
	c     *Client
	group Group
}

// Group is the name of the group the call may use.
func (l *Lease) Group() string { return l.group.Name }

// Config returns a config value of the lease's group, as it was when the
// lease was taken (its API key, endpoint...).
func (l *Lease) Config(key string) (string, bool) {
	v, ok := l.group.Config[key]
	return v, ok
}

// Reservation is what the lease took from the group's limits (Limit,
// Remaining and ResetAfter of its tightest limit).
func (l *Lease) Reservation() *Reservation { return l.r }

// Settle tells the limiter the call used tokens, as Reservation.Settle:
// the difference from the estimate is debited or given back; a second
// Settle returns ErrAlreadySettled.
func (l *Lease) Settle(ctx context.Context, tokens int64) error { return l.r.Settle(ctx, tokens) }

// Observe reports what the upstream answered to the call, as ObserveHTTP
// on the lease's group: a 429 cools the group for every holder, a 401 or
// 403 counts towards its suspension.
func (l *Lease) Observe(ctx context.Context, resp *http.Response, err error) error {
	return l.c.ObserveHTTP(ctx, l.group.Name, resp, err)
}
