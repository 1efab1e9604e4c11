package client

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/go-redis/redis_rate/v10"

	"github.com/allot-io/allot/registry"
)

// Allow takes one call from group's quota, shared by every node holding
// the group (GCRA in Redis, key keys.Quota(group)). It returns nil when the
// call may go ahead (also when the group has no quota), a *RateLimitError
// (errors.Is ErrRateLimited) when the quota is used up, an error wrapping
// ErrNotHeld when the node does not hold group, or the Redis error when
// Redis cannot be reached — the caller decides whether to fail open.
func (c *Client) Allow(ctx context.Context, group string) error {
	g, ok := c.Assignment().Group(group)
	if !ok {
		return fmt.Errorf("%w: %q", ErrNotHeld, group)
	}
	if g.Quota == "" {
		return nil
	}
	limit, err := c.limit(g.Quota)
	if err != nil {
		return fmt.Errorf("client: quota of group %q: %w", group, err)
	}
	res, err := c.limiter.Allow(ctx, c.keys.Quota(group), limit)
	if err != nil {
		return fmt.Errorf("client: allow %q: %w", group, err)
	}
	if res.Allowed == 0 {
		return &RateLimitError{Group: group, RetryAfter: max(res.RetryAfter, 0)}
	}
	return nil
}

// Wait blocks until Allow lets a call of group through, or ctx ends.
func (c *Client) Wait(ctx context.Context, group string) error {
	for {
		err := c.Allow(ctx, group)
		var rl *RateLimitError
		if !errors.As(err, &rl) {
			return err
		}
		t := time.NewTimer(max(rl.RetryAfter, time.Millisecond))
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("client: wait for %q: %w", group, ctx.Err())
		case <-t.C:
		}
	}
}

// limit turns a quota text into a GCRA limit, parsing each text once.
// Without an explicit burst the whole rate may be spent at once.
func (c *Client) limit(quota string) (redis_rate.Limit, error) {
	if l, ok := c.quotas.Load(quota); ok {
		return l.(redis_rate.Limit), nil
	}
	q, err := registry.ParseQuota(quota)
	if err != nil {
		return redis_rate.Limit{}, err
	}
	l := redis_rate.Limit{Rate: q.Rate, Period: q.Per, Burst: q.Burst}
	if l.Burst <= 0 {
		l.Burst = q.Rate
	}
	c.quotas.Store(quota, l)
	return l, nil
}
