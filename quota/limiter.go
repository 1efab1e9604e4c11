package quota

import (
	"context"
	_ "embed"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

var (
	//go:embed gcra.lua
	gcraLua string
	//go:embed limiter.lua
	limiterLua string
)

// Every quota script is gcra.lua (the shared checks and arithmetic)
// followed by the script itself.
var limiterScript = newScript(limiterLua)

func newScript(src string) *redis.Script { return redis.NewScript(gcraLua + "\n" + src) }

// UsageTTL is how long a minute of usage is kept.
const UsageTTL = 24 * time.Hour

// Cooling is the Result.Limit of a call refused because the group is
// cooling down after upstream throttling (key health), not by a limit.
const Cooling = -1

// Keys are the Redis keys of one group's limiter, built by the caller (allot
// builds them in internal/keys). They must share one hash tag.
type Keys struct {
	// State is the HASH of the limits' GCRA state.
	State string
	// Health is the group's health HASH; the limiter reads its field
	// cooling_until (Unix ms, Redis server time) and refuses until then.
	Health string
	// UsagePrefix is the prefix of the per-minute usage HASHes; the minute
	// (Unix seconds / 60) is appended.
	UsagePrefix string
	// Group, when set, is the key of the group's document: once it is gone
	// (the group was deleted) the limiter reads and writes nothing and
	// answers ErrGroupGone, so a holder that has not yet heard of the
	// delete cannot leave state behind for a group created later under the
	// same name. Optional (the join limit has no group).
	Group string
	// Borrowers is the ZSET of the group's borrowers, node -> ms until
	// which the borrow proves the node used the key: written when Acquire
	// lends the group (needed for a lent Candidate only).
	Borrowers string
}

// Result is the limiter's answer to one call.
type Result struct {
	// Allowed is true when the call was taken from every limit.
	Allowed bool
	// Limit is the index in the Limits of the limit Remaining and
	// ResetAfter describe: for a refused call the refusing limit with the
	// longest wait, or Cooling for a group cooling down; for an allowed call
	// (and a Settle) the tightest limit, the one with the least left as a
	// share of its burst; -1 when there are no limits.
	Limit int
	// RetryAfter is how long until the call could be allowed: above 0 for
	// every refusal, 0 when allowed.
	RetryAfter time.Duration
	// Remaining is what Limit has left now, in its own unit (calls or
	// tokens), after this call when it was allowed; 0 while cooling. With
	// ResetAfter it is what a RateLimit-Remaining or
	// x-ratelimit-remaining-* header shows.
	Remaining int64
	// ResetAfter is how long until Limit is full again (its whole burst
	// free), or until the cooldown ends.
	ResetAfter time.Duration
	// Minute is the usage minute (Unix seconds / 60, server time) the call
	// was counted in; Settle corrects that minute.
	Minute int64
}

// Limiter applies a group's limits in Redis: one EVALSHA per call, every
// limit at once. It is safe for concurrent use.
type Limiter struct {
	rdb redis.Scripter
}

// NewLimiter returns a Limiter on rdb (a client, cluster client or ring).
func NewLimiter(rdb redis.Scripter) *Limiter { return &Limiter{rdb: rdb} }

// Take takes requests and tokens from every limit of ls, or nothing when
// any limit would go over. Limits that no quota text could give
// (ErrInvalidLimit) and a cost that never fits (CheckCost) are errors
// before any round trip. Errors from Redis are returned wrapped; a reply
// the script never gives is ErrUnexpectedReply.
func (l *Limiter) Take(ctx context.Context, k Keys, ls Limits, requests, tokens int64) (Result, error) {
	if err := ls.Validate(); err != nil {
		return Result{}, err
	}
	if err := ls.CheckCost(requests, tokens); err != nil {
		return Result{}, err
	}
	return l.run(ctx, k, ls, "take", requests, tokens, 0)
}

// Settle adds tokens (negative: gives them back) to every token limit of ls
// and to the usage of minute, without refusing. A refund never takes a
// limit below empty; a debit never puts it more than one period in debt
// (its TAT stays within now + burst tolerance + period, so no call waits
// longer than one period). The Result describes the tightest limit after
// the settle.
func (l *Limiter) Settle(ctx context.Context, k Keys, ls Limits, tokens, minute int64) (Result, error) {
	if err := ls.Validate(); err != nil {
		return Result{}, err
	}
	if tokens < -MaxCost || tokens > MaxCost {
		return Result{}, fmt.Errorf("%w: %d tokens", ErrInvalidCost, tokens)
	}
	return l.run(ctx, k, ls, "settle", 0, tokens, minute)
}

// Cooling checks only the group's cooldown, for a group without limits: a
// refused Result (Limit Cooling) while it runs, allowed otherwise. Nothing
// is written unless it refuses (the minute's rejected).
func (l *Limiter) Cooling(ctx context.Context, k Keys) (Result, error) {
	return l.run(ctx, k, nil, "cooling", 0, 0, 0)
}

func (l *Limiter) run(ctx context.Context, k Keys, ls Limits, mode string, requests, tokens, minute int64) (Result, error) {
	args := make([]any, 0, 8+5*len(ls))
	args = append(args, mode, requests, tokens, minute, int64(UsageTTL/time.Second),
		int64(MaxCost), int64(MaxRefill/time.Microsecond), MaxLimits)
	for _, lim := range ls {
		args = append(args, lim.field(), lim.kindCode(), int64(lim.Per/time.Microsecond), lim.Rate, lim.EffectiveBurst())
	}
	ks := []string{k.State, k.Health, k.UsagePrefix}
	if k.Group != "" {
		ks = append(ks, k.Group)
	}
	reply, err := limiterScript.Run(ctx, l.rdb, ks, args...).Result()
	if err != nil {
		return Result{}, fmt.Errorf("quota: limiter: %w", err)
	}
	// The reply is read here, not by go-redis, so a reply of the wrong
	// shape is ErrUnexpectedReply and never looks like a lost connection.
	list, ok := reply.([]any)
	if !ok {
		return Result{}, fmt.Errorf("%w: %T", ErrUnexpectedReply, reply)
	}
	if len(list) == 1 && list[0] == "gone" {
		return Result{}, ErrGroupGone
	}
	v := make([]int64, len(list))
	for i, x := range list {
		if v[i], ok = x.(int64); !ok {
			return Result{}, fmt.Errorf("%w: value %d is %T", ErrUnexpectedReply, i+1, x)
		}
	}
	return parseReply(v, len(ls))
}

// maxWait bounds every time in a reply: the longest a limit can take to
// refill plus a day of debt.
const maxWait = MaxRefill + Day

// parseReply checks the script's reply against what it promises (see
// limiter.lua) for n limits: anything else is ErrUnexpectedReply.
func parseReply(v []int64, n int) (Result, error) {
	bad := func(why string) (Result, error) {
		return Result{}, fmt.Errorf("%w: %s: %v", ErrUnexpectedReply, why, v)
	}
	if len(v) != 6 {
		return bad("want 6 values")
	}
	r := Result{
		Allowed:    v[0] == 1,
		Limit:      int(v[1]) - 1,
		RetryAfter: time.Duration(v[2]) * time.Microsecond,
		Remaining:  v[4],
		ResetAfter: time.Duration(v[5]) * time.Microsecond,
		Minute:     v[3],
	}
	switch {
	case v[0] != 0 && v[0] != 1:
		return bad("allowed is neither 0 nor 1")
	case v[1] < 0 || v[1] > int64(n):
		return bad("no such limit")
	case !r.Allowed && (v[2] <= 0 || r.RetryAfter > maxWait):
		return bad("a refusal's wait is not within (0, max]")
	case r.Allowed && v[2] != 0:
		return bad("an allowed call with a wait")
	case v[4] < 0 || v[4] > MaxCost:
		return bad("remaining out of range")
	case v[5] < 0 || r.ResetAfter > maxWait:
		return bad("reset out of range")
	case v[3] < 0:
		return bad("negative minute")
	}
	return r, nil
}
