package quota

import (
	"context"
	_ "embed"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

//go:embed limiter.lua
var limiterLua string

var limiterScript = redis.NewScript(limiterLua)

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
}

// Result is the limiter's answer to one call.
type Result struct {
	// Allowed is true when the call was taken from every limit.
	Allowed bool
	// Limit is, for a refused call, the index in the Limits of the refusing
	// limit with the longest wait, or Cooling for a group cooling down.
	Limit int
	// RetryAfter is how long until the call could be allowed (0 when allowed).
	RetryAfter time.Duration
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
// any limit would go over. A cost that never fits (CheckCost) is an error
// before any round trip. Errors from Redis are returned wrapped.
func (l *Limiter) Take(ctx context.Context, k Keys, ls Limits, requests, tokens int64) (Result, error) {
	if err := ls.CheckCost(requests, tokens); err != nil {
		return Result{}, err
	}
	return l.run(ctx, k, ls, "take", requests, tokens, 0)
}

// Settle adds tokens (negative: gives them back) to every token limit of ls
// and to the usage of minute, without refusing. A refund never takes a
// limit below empty.
func (l *Limiter) Settle(ctx context.Context, k Keys, ls Limits, tokens, minute int64) error {
	if tokens < -MaxCost || tokens > MaxCost {
		return fmt.Errorf("%w: %d tokens", ErrInvalidCost, tokens)
	}
	_, err := l.run(ctx, k, ls, "settle", 0, tokens, minute)
	return err
}

func (l *Limiter) run(ctx context.Context, k Keys, ls Limits, mode string, requests, tokens, minute int64) (Result, error) {
	args := make([]any, 0, 5+4*len(ls))
	args = append(args, mode, requests, tokens, minute, int64(UsageTTL/time.Second))
	for _, lim := range ls {
		interval := float64(lim.Per/time.Microsecond) / float64(lim.Rate)
		kind := "r"
		if lim.Kind == Tokens {
			kind = "t"
		}
		args = append(args, lim.field(), kind,
			strconv.FormatFloat(interval, 'f', 6, 64),
			strconv.FormatFloat(interval*float64(lim.EffectiveBurst()), 'f', 3, 64))
	}
	v, err := limiterScript.Run(ctx, l.rdb, []string{k.State, k.Health, k.UsagePrefix}, args...).Int64Slice()
	if err != nil {
		return Result{}, fmt.Errorf("quota: limiter: %w", err)
	}
	if len(v) != 4 {
		return Result{}, fmt.Errorf("quota: limiter: unexpected reply %v", v)
	}
	r := Result{Allowed: v[0] == 1, Minute: v[3]}
	if !r.Allowed {
		r.Limit = int(v[1]) - 1
		r.RetryAfter = time.Duration(v[2]) * time.Microsecond
	}
	return r, nil
}
