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
	"github.com/allot-io/allot/registry"
)

// Acquire takes one request and tokens (an estimate, 0 for a plain call)
// for one upstream call, and returns the lease to make the call with: its
// group's key is in Lease.Config.
//
// It tries the groups this node holds first, those not cooling by its own
// reports, the one with the most room first (what each group's limits had
// left at this node's last call of it, a group never called first; a
// group without a quota that may not be cooling takes it with no round
// trip). Only when none of them can take the call does it borrow: it
// weighs a few random lendable groups (WithBorrowSample) and the one whose
// limits have the most room now takes it (Lease.Borrowed).
//
// While the first held group had ample room at its last call, Acquire
// takes from it as Reserve does (one round trip, the same script). Else —
// it ran low or refused — one script weighs every held group, then the
// lendable sample: one round trip whether the call borrows or not. So a
// call costs two round trips only when a group that looked ample refuses
// (a node holding more groups than fit one script tries them in turns; the
// first borrow of a node reads the group catalog once). A borrowed call
// costs what a holder's costs and counts as borrowed in the group's usage.
//
// Errors: a *RateLimitError (errors.Is ErrRateLimited) when neither a held
// nor a lendable group can take the call now, with the shortest
// RetryAfter among them; an error wrapping ErrCostTooLarge when tokens
// exceed the burst of every candidate; ErrInvalidCost for a negative or
// absurd estimate; ErrNothingHeld when the node holds no group and none is
// lendable. While Redis cannot be reached it tries the held groups by the
// quota fallback (WithQuotaFallback) and borrows nothing. Allow, Reserve,
// Settle and ObserveHTTP stay the calls for a named group.
func (c *Client) Acquire(ctx context.Context, tokens int64) (*Lease, error) {
	ctx = c.demand.once(ctx, tokens) // one call asked, whatever Acquire tries
	if tokens < 0 || tokens > quota.MaxCost {
		return nil, fmt.Errorf("client: acquire: %w: %d tokens", ErrInvalidCost, tokens)
	}
	a := c.Assignment()
	var (
		refused  *RateLimitError
		tooLarge error
		held     []Group
	)
	for _, g := range c.acquireOrder(a) {
		if until, cooling := c.Cooling(g.Name); cooling {
			// This node's own report cooled it: no round trip to hear so.
			refused = shorter(refused, &RateLimitError{Group: g.Name, Limit: "cooling", RetryAfter: max(time.Until(until), MinWait)})
			continue
		}
		ls, err := c.lim.limits(g.Quota)
		if err != nil {
			return nil, fmt.Errorf("client: quota of group %q: %w", g.Name, err)
		}
		if err := ls.CheckCost(1, tokens); err != nil {
			tooLarge = err
			continue
		}
		if ls.IsZero() && !c.lim.mayCool(g.Name, false) && len(held) == 0 {
			// No limit and no cooldown to check: all the room there is. Only
			// for the first candidate: a group before it that needs a look
			// at its cooldown still comes first, as the order says.
			return &Lease{r: &Reservation{l: c.lim, group: g.Name, share: g.Share, tokens: tokens}, c: c, group: g}, nil
		}
		held = append(held, g)
	}
	cat := c.lend.catalog()
	if len(held) > 0 && c.lim.ample(held[0].Name) {
		// The usual case: the group with the most room has plenty. The
		// plain limiter, as Reserve: nothing to weigh.
		r, err := c.lim.take(ctx, held[0], tokens, false)
		var rl *RateLimitError
		switch {
		case err == nil:
			return &Lease{r: r, c: c, group: held[0]}, nil
		case errors.As(err, &rl):
			refused = shorter(refused, rl)
		case !errors.Is(err, quota.ErrGroupGone):
			return nil, err
		}
		held = held[1:]
	}
	l, err := c.acquireFrom(ctx, held, cat, tokens, &refused, &tooLarge)
	if l != nil || err != nil {
		return l, err
	}
	if refused != nil {
		return nil, refused
	}
	if tooLarge != nil {
		return nil, fmt.Errorf("client: acquire %d tokens: %w", tokens, tooLarge)
	}
	return nil, ErrNothingHeld
}

// maxHeldPerCall is how many held groups one acquire script weighs, room
// left for the lent ones.
const maxHeldPerCall = quota.MaxCandidates - MaxBorrowSample

// acquireFrom runs the acquire script over held (in order, in turns of
// maxHeldPerCall) and, with the last turn, a sample of cat's lendable
// groups; when cat was never read and every held group refused, it reads
// it (once per process) and weighs a sample alone. It returns the lease, or
// nil with the refusals and cost errors noted in refused and tooLarge.
func (c *Client) acquireFrom(ctx context.Context, held []Group, cat *registry.Catalog, tokens int64,
	refused **RateLimitError, tooLarge *error) (*Lease, error) {
	run := func(groups []Group, nHeld int) (*Lease, bool, error) {
		if len(groups) == 0 {
			return nil, false, nil
		}
		l, err := c.acquireTurn(ctx, groups, nHeld, tokens, refused)
		if err != nil && ctx.Err() == nil && registry.IsUnavailable(err) {
			// Redis is away: the held groups by the quota fallback; no
			// borrowing without the pool's state.
			l, err = c.acquireFallback(ctx, held, tokens, refused)
			return l, true, err
		}
		return l, err != nil, err
	}
	for first := 0; ; {
		turn := held[first:min(first+maxHeldPerCall, len(held))]
		first += len(turn)
		groups := slices.Clip(turn)
		last := first >= len(held)
		if last && cat != nil {
			groups = append(groups, c.sampleLent(cat, tokens, refused, tooLarge)...)
		}
		if l, done, err := run(groups, len(turn)); l != nil || done {
			return l, err
		}
		if last {
			break
		}
	}
	if cat != nil || c.lend.sample == 0 {
		return nil, nil
	}
	// No held group could take the call and the catalog was never read.
	cat, err := c.lend.catalogNow(ctx)
	if err != nil || cat == nil {
		// The refusals noted say more than a failed read.
		return nil, nil
	}
	l, _, err := run(c.sampleLent(cat, tokens, refused, tooLarge), 0)
	return l, err
}

// sampleLent picks the lent candidates of one acquire: lendable groups of
// cat the node does not hold, not cooling by its own report (noted as a
// refusal), whose limits can take the call at all (else noted too large).
func (c *Client) sampleLent(cat *registry.Catalog, tokens int64, refused **RateLimitError, tooLarge *error) []Group {
	a := c.Assignment()
	names := c.lend.pick(cat.Lendable(), func(name string) bool {
		if a.Holds(name) {
			return true
		}
		if until, cooling := c.Cooling(name); cooling {
			*refused = shorter(*refused, &RateLimitError{Group: name, Limit: "cooling", RetryAfter: max(time.Until(until), MinWait)})
			return true
		}
		g, _ := cat.Group(name)
		ls, err := c.lim.limits(g.Quota)
		if err != nil {
			return true
		}
		if err := ls.CheckCost(1, tokens); err != nil {
			*tooLarge = err
			return true
		}
		return false
	})
	out := make([]Group, 0, len(names))
	for _, n := range names {
		doc, _ := cat.Group(n)
		g := groupFromDoc(doc, 0)
		g.lentVersion = doc.Version
		out = append(out, g)
	}
	return out
}

// acquireTurn runs the acquire script once over groups, the first nHeld
// held, the others lent.
func (c *Client) acquireTurn(ctx context.Context, groups []Group, nHeld int, tokens int64, refused **RateLimitError) (*Lease, error) {
	cands := make([]quota.Candidate, len(groups))
	lims := make([]quota.Limits, len(groups))
	for i, g := range groups {
		ls, err := c.lim.limits(g.Quota)
		if err != nil {
			return nil, fmt.Errorf("client: quota of group %q: %w", g.Name, err)
		}
		lims[i] = ls
		cands[i] = quota.Candidate{Keys: c.lim.keysOf(g.Name), Limits: ls, Lent: i >= nHeld, Version: g.lentVersion}
	}
	start := time.Now()
	res, err := c.lim.shared.Acquire(ctx, quota.AcquireRequest{
		Settings: c.keys.Settings(), State: c.keys.State(), Node: c.o.nodeID,
		Candidates: cands, Tokens: tokens, BorrowProof: registry.LeaseTTL,
	})
	if err != nil {
		return nil, fmt.Errorf("client: acquire: %w", err)
	}
	c.lim.up()
	c.lend.saw(res.Rev)
	for i, st := range res.Status {
		g := groups[i]
		switch st {
		case quota.CandidateStale, quota.CandidateGone, quota.CandidateNotLent:
			if i >= nHeld {
				c.lend.readAgain() // the catalog is behind (an event lost): read it
			}
		case quota.CandidateRefused, quota.CandidateCooling:
			if i != res.Refused {
				c.lim.room.Store(g.Name, room{}) // refused; its wait is not known
			}
		}
		if st == quota.CandidateTaken && lims[i].IsZero() {
			c.lim.cool.cleared(g.Name, start)
		}
	}
	if res.Taken >= 0 {
		g, ls := groups[res.Taken], lims[res.Taken]
		c.lim.noteRoom(g.Name, ls, res.Result)
		r := &Reservation{l: c.lim, group: g.Name, limits: ls, share: g.Share, tokens: tokens, minute: res.Minute}
		if res.Limit >= 0 && res.Limit < len(ls) {
			r.tightest = ls[res.Limit].String()
		}
		r.remaining, r.resetAfter = res.Remaining, res.ResetAfter
		return &Lease{r: r, c: c, group: g, borrowed: res.Taken >= nHeld}, nil
	}
	if res.Refused >= 0 {
		g, ls := groups[res.Refused], lims[res.Refused]
		c.lim.noteRoom(g.Name, ls, res.Result)
		name := "cooling"
		if res.Limit >= 0 && res.Limit < len(ls) {
			name = ls[res.Limit].String()
		}
		*refused = shorter(*refused, &RateLimitError{Group: g.Name, Limit: name, RetryAfter: max(res.RetryAfter, MinWait),
			Remaining: res.Remaining, ResetAfter: res.ResetAfter})
	}
	return nil, nil
}

// acquireFallback is Acquire while Redis cannot be reached: the held groups
// in order, each by the quota fallback.
func (c *Client) acquireFallback(ctx context.Context, held []Group, tokens int64, refused **RateLimitError) (*Lease, error) {
	for _, g := range held {
		r, err := c.lim.take(ctx, g, tokens, false)
		var rl *RateLimitError
		switch {
		case err == nil:
			return &Lease{r: r, c: c, group: g}, nil
		case errors.As(err, &rl):
			*refused = shorter(*refused, rl)
		default:
			return nil, err
		}
	}
	return nil, nil
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
	if len(a.Groups) < 2 {
		return a.Groups
	}
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

// ampleRoom is the share of its tightest limit's burst a group must have
// had left at its last call for Acquire to take from it alone, as Reserve
// does; below it (or after a refusal) Acquire weighs every held group and
// the lendable sample in one script.
const ampleRoom = 0.1

// ample reports whether group's last known room is ample (a group never
// called counts as full).
func (l *limiter) ample(group string) bool {
	r := l.roomOf(group)
	return r.left >= ampleRoom && !r.refusedUntil.After(time.Now())
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
	r        *Reservation
	c        *Client
	group    Group
	borrowed bool
}

// Borrowed reports whether the lease's group is not one this node holds:
// Acquire borrowed it from the pool's lendable groups because none of the
// node's own could take the call.
func (l *Lease) Borrowed() bool { return l.borrowed }

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
// 403 counts towards its suspension. A borrowed lease's report counts as a
// holder's (the borrow, recorded by the acquire, proves the node used the
// key, for registry.LeaseTTL), though a borrower's failures alone never
// suspend a group.
func (l *Lease) Observe(ctx context.Context, resp *http.Response, err error) error {
	if !l.borrowed {
		return l.c.ObserveHTTP(ctx, l.group.Name, resp, err)
	}
	return l.c.observe(ctx, l.group.Name, resp, err, l.c.rep.report)
}
