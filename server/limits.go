package server

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/allot-io/allot/internal/keys"
	"github.com/allot-io/allot/quota"
)

// slots caps what each token class holds open at once (event streams,
// long polls): one class cannot use up another's.
type slots map[role]chan struct{}

func newSlots(n int) slots {
	return slots{roleAdmin: make(chan struct{}, n), roleRead: make(chan struct{}, n), roleNode: make(chan struct{}, n)}
}

// take takes a slot of r's class; release gives it back. ok is false when
// the class is full (or r has no class).
func (s slots) take(r role) (release func(), ok bool) {
	ch := s[r]
	if ch == nil {
		return nil, false
	}
	select {
	case ch <- struct{}{}:
		return func() { <-ch }, true
	default:
		return nil, false
	}
}

// size is the cap of each class.
func (s slots) size() int { return cap(s[roleAdmin]) }

// errFull is the 503 of a class whose slots are taken.
func errFull(what string, n int, retry time.Duration) *apiError {
	return &apiError{status: http.StatusServiceUnavailable, code: CodeUnavailable, retryAfter: retry,
		message: fmt.Sprintf("too many %s open for this token's class (%d); try again later", what, n)}
}

// joinLimit limits the joins of each node token: the quota limiter's GCRA
// (one EVALSHA, Redis server time), on keys of the namespace, so every
// serve replica shares the budget.
type joinLimit struct {
	lim    *quota.Limiter
	keys   keys.Keys
	limits quota.Limits
}

func newJoinLimit(rdb redis.Scripter, k keys.Keys, perMinute int) *joinLimit {
	return &joinLimit{lim: quota.NewLimiter(rdb), keys: k,
		limits: quota.Limits{{Kind: quota.Requests, Rate: int64(perMinute), Per: time.Minute}}}
}

// take takes one join from c's budget, or answers 429 with Retry-After.
func (j *joinLimit) take(ctx context.Context, c credential) error {
	key := j.keys.NodeJoins(c.joinKey())
	// The limiter reads a cooling_until field from its health key; joins
	// never cool, so it is given the state key, which has no such field.
	res, err := j.lim.Take(ctx, quota.Keys{State: key, Health: key, UsagePrefix: key + ":"}, j.limits, 1, 0)
	if err != nil {
		return err
	}
	if res.Allowed {
		return nil
	}
	return &apiError{status: http.StatusTooManyRequests, code: CodeTooManyRequests, retryAfter: res.RetryAfter,
		message: fmt.Sprintf("too many joins for this node token (%d a minute); retry in %v", j.limits[0].Rate, res.RetryAfter.Round(time.Millisecond))}
}

// retryAfterHeader is d in whole seconds, at least 1, for Retry-After.
func retryAfterHeader(d time.Duration) string {
	return strconv.FormatInt(max(1, int64(math.Ceil(d.Seconds()))), 10)
}
