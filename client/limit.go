package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/allot-io/allot/internal/keys"
	"github.com/allot-io/allot/quota"
	"github.com/allot-io/allot/registry"
)

// Allow takes one request from every request limit of group's quota,
// shared by every node holding the group (one Lua script on Redis server
// time: all limits or none). It returns nil when the call may go ahead, a
// *RateLimitError (errors.Is ErrRateLimited) naming the limit with the
// longest wait, or "cooling" while the group cools down after an upstream
// 429 that any holder reported; an error wrapping ErrNotHeld when the node
// does not hold group, and when Redis cannot be reached
// (registry.IsUnavailable) what the quota fallback says (WithQuotaFallback).
// A token limit that a Settle drove into debt refuses Allow too.
//
// A group without a quota costs no round trip, unless it may be cooling:
// after a group.throttled event on its channel (or this node's own report),
// while its events are not followed yet, and once after they are (a
// cooldown from before). Then one round trip checks the cooldown, until a
// check finds none.
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

// MinWait is the shortest a Wait or WaitReserve sleeps after a refusal,
// whatever RetryAfter says: a waiter never calls the limiter more than
// once a millisecond.
const MinWait = time.Millisecond

// WaitReserve blocks until Reserve succeeds, or ctx ends; see Wait. It calls
// the limiter once per refusal's RetryAfter (at least MinWait), never in a
// tight loop.
func (c *Client) WaitReserve(ctx context.Context, group string, estTokens int64) (*Reservation, error) {
	ctx = c.demand.once(ctx, estTokens) // one call asked, however many tries
	for {
		r, err := c.take(ctx, group, estTokens)
		var rl *RateLimitError
		if !errors.As(err, &rl) {
			return r, err
		}
		t := time.NewTimer(max(rl.RetryAfter, MinWait))
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
	l       *limiter
	group   string
	limits  quota.Limits
	share   float64
	tokens  int64
	minute  int64
	via     via // how it was taken, so Settle corrects the same limiter
	settled atomic.Bool
	// what the shared limiter said of the tightest limit (viaRedis only)
	tightest   string
	remaining  int64
	resetAfter time.Duration
}

// Group is the group the reservation was taken from.
func (r *Reservation) Group() string { return r.group }

// Limit is the tightest limit of the group's quota after this call (the
// one with the least left as a share of its burst), in its canonical text;
// "" when the group has no quota or the call was not counted by the shared
// limiter (a fallback let it through). Remaining and ResetAfter describe
// it: what a RateLimit-* or x-ratelimit-* header shows.
func (r *Reservation) Limit() string { return r.tightest }

// Remaining is what Limit had left right after this call, in its unit
// (calls or tokens).
func (r *Reservation) Remaining() int64 { return r.remaining }

// ResetAfter is how long after this call Limit was full again.
func (r *Reservation) ResetAfter() time.Duration { return r.resetAfter }

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
		r.l.local.Settle(r.group, r.limits, r.share, delta)
		return nil
	case viaOpen:
		return nil
	}
	if _, err := r.l.shared.Settle(ctx, r.l.keysOf(r.group), r.limits, delta, r.minute); err != nil {
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

// take is Allow (tokens 0) and Reserve: the client knows what it holds and
// what its own reports cooled; the limiter does the rest.
func (c *Client) take(ctx context.Context, group string, tokens int64) (*Reservation, error) {
	c.demand.ask(ctx, tokens)
	g, ok := c.Assignment().Group(group)
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrNotHeld, group)
	}
	_, cooling := c.Cooling(group)
	return c.lim.take(ctx, g, tokens, cooling)
}

// limiter is a node's side of the shared limits, a small type on the Client
// as etcd's Mutex sits on a Session: the limiter script, the in-process
// fallback while Redis is away, parsed quota texts, and what the node knows
// of its groups' cooldowns. Safe for concurrent use.
type limiter struct {
	keys     keys.Keys
	shared   *quota.Limiter
	local    *quota.Local // the in-process fallback (WithQuotaFallback)
	fallback QuotaFallback
	log      *slog.Logger
	parsed   sync.Map  // quota text -> quota.Limits
	cool     coolWatch // when Allow on a group without a quota must ask Redis
	room     sync.Map  // group -> room: what its limits had left at its last call (Acquire's order)
	// outage is true while Redis is unreachable for the limiter, so the
	// fallback is logged once on entering and once on leaving.
	outage atomic.Bool
}

func newLimiter(rdb redis.Scripter, k keys.Keys, fallback QuotaFallback, now func() time.Time, log *slog.Logger) *limiter {
	return &limiter{keys: k, shared: quota.NewLimiter(rdb), local: quota.NewLocal(now), fallback: fallback, log: log}
}

// take takes one request and tokens from group g's limits (see Allow and
// Reserve); ownCooling says this node's own report cooled g.
func (l *limiter) take(ctx context.Context, g Group, tokens int64, ownCooling bool) (*Reservation, error) {
	group := g.Name
	ls, err := l.limits(g.Quota)
	if err != nil {
		return nil, fmt.Errorf("client: quota of group %q: %w", group, err)
	}
	r := &Reservation{l: l, group: group, limits: ls, share: g.Share, tokens: tokens}
	if err := ls.CheckCost(1, tokens); err != nil {
		if errors.Is(err, quota.ErrInvalidCost) {
			return nil, fmt.Errorf("client: %q: %w: %d tokens", group, ErrInvalidCost, tokens)
		}
		return nil, fmt.Errorf("client: %q: %w", group, err)
	}
	var res quota.Result
	switch {
	case ls.IsZero() && !l.mayCool(group, ownCooling):
		return r, nil
	case ls.IsZero():
		start := time.Now()
		if res, err = l.shared.Cooling(ctx, l.keysOf(group)); err == nil && res.Allowed {
			l.cool.cleared(group, start)
		}
	default:
		res, err = l.shared.Take(ctx, l.keysOf(group), ls, 1, tokens)
	}
	switch {
	case err == nil:
		l.up()
	case ls.IsZero() && ctx.Err() == nil && registry.IsUnavailable(err):
		// Nothing to fall back on: the cooldown cannot be read, and the
		// group has no quota to keep. The suspicion stays, so the next
		// call checks again.
		return r, nil
	case ctx.Err() == nil && registry.IsUnavailable(err):
		l.down(err)
		switch l.fallback {
		case QuotaOpen:
			r.via = viaOpen
			return r, nil
		case QuotaLocal:
			r.via = viaLocal
			if res, err = l.local.Take(group, ls, g.Share, 1, tokens); err != nil {
				return nil, fmt.Errorf("client: %q: %w", group, err)
			}
		default:
			return nil, fmt.Errorf("client: allow %q: %w", group, err)
		}
	default:
		return nil, fmt.Errorf("client: allow %q: %w", group, err)
	}
	name := ""
	if res.Limit >= 0 && res.Limit < len(ls) {
		name = ls[res.Limit].String()
	}
	l.noteRoom(group, ls, res)
	if !res.Allowed {
		if res.Limit == quota.Cooling {
			name = "cooling"
		}
		return nil, &RateLimitError{Group: group, Limit: name, RetryAfter: max(res.RetryAfter, MinWait),
			Remaining: res.Remaining, ResetAfter: res.ResetAfter}
	}
	r.minute = res.Minute
	if r.via == viaRedis {
		r.tightest, r.remaining, r.resetAfter = name, res.Remaining, res.ResetAfter
	}
	return r, nil
}

// down logs, once per outage, that calls are now limited by the fallback.
func (l *limiter) down(err error) {
	if l.outage.CompareAndSwap(false, true) {
		l.log.Warn("quota: redis unreachable, limiting by fallback", "fallback", l.fallback.String(), "err", err)
	}
}

// up logs, once, that Redis limits calls again, and forgets the local
// limiter's state (Redis held the truth for the whole pool meanwhile).
func (l *limiter) up() {
	if l.outage.Load() && l.outage.CompareAndSwap(true, false) {
		l.local.Reset()
		l.log.Info("quota: redis reachable again, shared limits resumed")
	}
}

// keysOf builds the limiter's keys of group.
func (l *limiter) keysOf(group string) quota.Keys {
	return quota.Keys{State: l.keys.Quota(group), Health: l.keys.Health(group), UsagePrefix: l.keys.UsagePrefix(group),
		Group: l.keys.Group(group), Borrowers: l.keys.Borrowers(group)}
}

// limits parses a quota text once.
func (l *limiter) limits(text string) (quota.Limits, error) {
	if text == "" {
		return nil, nil
	}
	if v, ok := l.parsed.Load(text); ok {
		return v.(quota.Limits), nil
	}
	ls, err := quota.Parse(text)
	if err != nil {
		return nil, err
	}
	l.parsed.Store(text, ls)
	return ls, nil
}

// throttleEventGap is how long a node that heard a group.throttled event
// keeps checking the cooldown: registry.ThrottleEventGap (a cooldown
// extended sooner after the last event is announced by none), and room for
// the two clocks' rates.
const throttleEventGap = registry.ThrottleEventGap + 250*time.Millisecond

// coolWatch is what a node knows of the cooldowns of its groups without a
// quota, so that their Allow costs no round trip unless one may be running.
// Groups with a quota need none of it: their limiter script reads the
// cooldown anyway. Safe for concurrent use.
type coolWatch struct {
	// suspect: group -> time.Time (process clock): Allow checks the
	// cooldown in Redis until a check that started at or after then finds
	// none.
	suspect sync.Map
	// followed: group -> struct{}: the group's event channel is subscribed,
	// so a cooldown that starts is announced. Without it, every Allow checks.
	followed sync.Map
}

// suspectUntil makes group's Allow check the cooldown until a check that
// starts at or after until finds none (a later until wins).
func (w *coolWatch) suspectUntil(group string, until time.Time) {
	for {
		old, loaded := w.suspect.LoadOrStore(group, until)
		if !loaded || !old.(time.Time).Before(until) || w.suspect.CompareAndSwap(group, old, until) {
			return
		}
	}
}

// cleared records a check, started at start, that found group not cooling.
func (w *coolWatch) cleared(group string, start time.Time) {
	if v, ok := w.suspect.Load(group); ok && !start.Before(v.(time.Time)) {
		w.suspect.CompareAndDelete(group, v)
	}
}

// follow records that group's events are (or are no longer) subscribed. A
// newly followed group is checked once: a cooldown may have started before.
func (w *coolWatch) follow(group string, on bool) {
	if !on {
		w.followed.Delete(group)
		return
	}
	if _, had := w.followed.LoadOrStore(group, struct{}{}); !had {
		w.suspectUntil(group, time.Now())
	}
}

// unfollowAll forgets every subscription (the events connection is gone).
func (w *coolWatch) unfollowAll() { w.followed.Clear() }

// mayCool reports whether Allow on group, which has no quota, must check its
// cooldown in Redis; ownCooling says this node's own report cooled it.
func (l *limiter) mayCool(group string, ownCooling bool) bool {
	if _, ok := l.cool.suspect.Load(group); ok {
		return true
	}
	if _, ok := l.cool.followed.Load(group); !ok {
		return true
	}
	return ownCooling
}
