package client

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/allot-io/allot/quota"
)

// Allow takes one request from every request limit of group's quota,
// shared by every node holding the group (one Lua script on Redis server
// time: all limits or none). It returns nil when the call may go ahead (also
// when the group has no quota, without a round trip), a *RateLimitError
// (errors.Is ErrRateLimited) naming the limit with the longest wait, an
// error wrapping ErrNotHeld when the node does not hold group, and when
// Redis cannot be reached what the quota fallback says (WithQuotaFallback).
// A token limit that a Settle drove into debt refuses Allow too.
func (c *Client) Allow(ctx context.Context, group string) error {
	_, err := c.take(ctx, group, 0)
	return err
}

// Reserve takes one request and estTokens tokens from every limit of
// group's quota, all or none, as Allow does. Once the call is done, Settle
// the reservation with the tokens it really used: the difference is debited
// or given back. A cost above a limit's burst fails at once with an error
// wrapping ErrCostTooLarge (it could never be allowed); a negative or absurd
// estimate with ErrInvalidCost.
func (c *Client) Reserve(ctx context.Context, group string, estTokens int64) (*Reservation, error) {
	return c.take(ctx, group, estTokens)
}

// Wait blocks until Allow lets a call of group through, or ctx ends. Errors
// other than a refusal (ErrCostTooLarge, ErrNotHeld, Redis down with the
// closed fallback) return at once.
func (c *Client) Wait(ctx context.Context, group string) error {
	_, err := c.WaitReserve(ctx, group, 0)
	return err
}

// WaitReserve blocks until Reserve succeeds, or ctx ends; see Wait.
func (c *Client) WaitReserve(ctx context.Context, group string, estTokens int64) (*Reservation, error) {
	for {
		r, err := c.take(ctx, group, estTokens)
		var rl *RateLimitError
		if !errors.As(err, &rl) {
			return r, err
		}
		t := time.NewTimer(max(rl.RetryAfter, time.Millisecond))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("client: wait for %q: %w", group, ctx.Err())
		case <-t.C:
		}
	}
}

// Reservation is what Reserve took: one request and an estimate of tokens.
// Settle it once with the tokens really used.
type Reservation struct {
	c       *Client
	group   string
	limits  quota.Limits
	share   float64
	tokens  int64
	minute  int64
	via     via // how it was taken, so Settle corrects the same limiter
	settled atomic.Bool
}

// Group is the group the reservation was taken from.
func (r *Reservation) Group() string { return r.group }

// Tokens is the estimate reserved.
func (r *Reservation) Tokens() int64 { return r.tokens }

// Settle tells the limiter the call used actualTokens: above the estimate
// the difference is debited (never refused: it was spent), below it is given
// back (never more than was reserved, never below an empty limit). A second
// Settle returns ErrAlreadySettled and changes nothing; a negative count
// returns ErrInvalidCost. When Redis cannot be reached the correction is
// lost and the error returned; the reservation still counts as settled.
func (r *Reservation) Settle(ctx context.Context, actualTokens int64) error {
	if actualTokens < 0 || actualTokens > quota.MaxCost {
		return fmt.Errorf("client: settle %q: %w: %d tokens", r.group, ErrInvalidCost, actualTokens)
	}
	if !r.settled.CompareAndSwap(false, true) {
		return fmt.Errorf("client: settle %q: %w", r.group, ErrAlreadySettled)
	}
	delta := actualTokens - r.tokens
	if delta == 0 || !hasTokens(r.limits) {
		return nil
	}
	switch r.via {
	case viaLocal:
		r.c.local.Settle(r.group, r.limits, r.share, delta)
		return nil
	case viaOpen:
		return nil
	}
	if _, err := r.c.limiter.Settle(ctx, r.c.quotaKeys(r.group), r.limits, delta, r.minute); err != nil {
		return fmt.Errorf("client: settle %q: %w", r.group, err)
	}
	return nil
}

// via is the limiter a reservation was taken from.
type via int

const (
	viaRedis via = iota // the shared limiter script
	viaLocal            // the in-process fallback
	viaOpen             // nothing: the open fallback let it through
)

func hasTokens(ls quota.Limits) bool {
	for _, l := range ls {
		if l.Kind == quota.Tokens {
			return true
		}
	}
	return false
}

// take is Allow (tokens 0) and Reserve.
func (c *Client) take(ctx context.Context, group string, tokens int64) (*Reservation, error) {
	g, ok := c.Assignment().Group(group)
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrNotHeld, group)
	}
	ls, err := c.limits(g.Quota)
	if err != nil {
		return nil, fmt.Errorf("client: quota of group %q: %w", group, err)
	}
	r := &Reservation{c: c, group: group, limits: ls, share: g.Share, tokens: tokens}
	if err := ls.CheckCost(1, tokens); err != nil {
		if errors.Is(err, quota.ErrInvalidCost) {
			return nil, fmt.Errorf("client: %q: %w: %d tokens", group, ErrInvalidCost, tokens)
		}
		return nil, fmt.Errorf("client: %q: %w", group, err)
	}
	if ls.IsZero() {
		return r, nil
	}
	res, err := c.limiter.Take(ctx, c.quotaKeys(group), ls, 1, tokens)
	switch {
	case err == nil:
		c.quotaUp()
	case ctx.Err() == nil && unreachable(err):
		c.quotaDown(err)
		switch c.o.quotaFallback {
		case QuotaOpen:
			r.via = viaOpen
			return r, nil
		case QuotaLocal:
			r.via = viaLocal
			if res, err = c.local.Take(group, ls, g.Share, 1, tokens); err != nil {
				return nil, fmt.Errorf("client: %q: %w", group, err)
			}
		default:
			return nil, fmt.Errorf("client: allow %q: %w", group, err)
		}
	default:
		return nil, fmt.Errorf("client: allow %q: %w", group, err)
	}
	if !res.Allowed {
		name := "cooling"
		if res.Limit >= 0 && res.Limit < len(ls) {
			name = ls[res.Limit].String()
		}
		return nil, &RateLimitError{Group: group, Limit: name, RetryAfter: max(res.RetryAfter, 0)}
	}
	r.minute = res.Minute
	return r, nil
}

// quotaDown logs, once per outage, that calls are now limited by the
// fallback.
func (c *Client) quotaDown(err error) {
	if c.quotaOut.CompareAndSwap(false, true) {
		c.log.Warn("quota: redis unreachable, limiting by fallback", "fallback", c.o.quotaFallback.String(), "err", err)
	}
}

// quotaUp logs, once, that Redis limits calls again, and forgets the local
// limiter's state (Redis held the truth for the whole pool meanwhile).
func (c *Client) quotaUp() {
	if c.quotaOut.Load() && c.quotaOut.CompareAndSwap(true, false) {
		c.local.Reset()
		c.log.Info("quota: redis reachable again, shared limits resumed")
	}
}

func (c *Client) quotaKeys(group string) quota.Keys {
	return quota.Keys{State: c.keys.Quota(group), Health: c.keys.Health(group), UsagePrefix: c.keys.UsagePrefix(group)}
}

// limits parses a quota text once.
func (c *Client) limits(text string) (quota.Limits, error) {
	if text == "" {
		return nil, nil
	}
	if l, ok := c.quotas.Load(text); ok {
		return l.(quota.Limits), nil
	}
	ls, err := quota.Parse(text)
	if err != nil {
		return nil, err
	}
	c.quotas.Store(text, ls)
	return ls, nil
}

// unreachable reports whether err means Redis did not answer (or answered
// that it cannot serve now), as opposed to refusing the script.
func unreachable(err error) bool {
	var re redis.Error
	if errors.As(err, &re) {
		for _, p := range []string{"LOADING", "CLUSTERDOWN", "TRYAGAIN", "MASTERDOWN", "READONLY"} {
			if strings.HasPrefix(re.Error(), p) {
				return true
			}
		}
		return false
	}
	return !errors.Is(err, context.Canceled)
}
