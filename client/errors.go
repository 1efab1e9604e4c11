package client

import (
	"errors"
	"fmt"
	"time"

	"github.com/allot-io/allot/quota"
)

var (
	// ErrInvalidOption is returned by New and FromEnv for an option or
	// environment variable that cannot work (bad namespace, node ID, group
	// name or heartbeat config, nil Redis client).
	ErrInvalidOption = errors.New("client: invalid option")

	// ErrAlreadyStarted is returned by a second call to Start.
	ErrAlreadyStarted = errors.New("client: already started")

	// ErrClosed is returned by Start after Close.
	ErrClosed = errors.New("client: closed")

	// ErrNotHeld is returned by Allow and Wait for a group the node does not
	// hold in its current assignment: a node never spends a quota it does
	// not hold.
	ErrNotHeld = errors.New("client: group not held")

	// ErrRateLimited is returned (wrapped in a *RateLimitError) by Allow when
	// the group's quota is used up for now.
	ErrRateLimited = errors.New("client: rate limited")

	// ErrCostTooLarge is returned by Allow and Reserve for a call that
	// costs more than a limit's burst: it could never be allowed, so it is
	// an error at once, never a wait. It is quota.ErrCostTooLarge.
	ErrCostTooLarge = quota.ErrCostTooLarge

	// ErrInvalidCost is returned by Reserve and Settle for a negative or
	// absurd (above quota.MaxCost) token count.
	ErrInvalidCost = errors.New("client: invalid token count")

	// ErrAlreadySettled is returned by a second Settle of one Reservation:
	// nothing is debited or refunded twice.
	ErrAlreadySettled = errors.New("client: reservation already settled")
	// ErrNothingHeld is returned by Acquire on a node that holds no group
	// (standby, or not started) when no group is lendable either (none
	// lendable, lending off, or WithBorrowSample(0)).
	ErrNothingHeld = errors.New("client: no group held, and none lendable")

	// ErrNoAssignment is returned by Start when it gave up (ctx done) before
	// the first assignment was known from Redis or the disk cache.
	ErrNoAssignment = errors.New("client: no assignment yet")
)

// RateLimitError says a call over a group's quota was refused, by which
// limit, and when the next one may succeed. errors.Is(err, ErrRateLimited)
// is true for it.
type RateLimitError struct {
	// Group is the group whose quota is used up.
	Group string
	// Limit is the refusing limit with the longest wait, in its canonical
	// text ("90000 tokens/m"), or "cooling" while the group cools down after
	// the upstream throttled it.
	Limit string
	// RetryAfter is how long until the next call may be allowed: always
	// above 0 (at least MinWait).
	RetryAfter time.Duration
	// Remaining is what Limit has left now, in its unit (calls or tokens):
	// less than the call needed; 0 while cooling. With ResetAfter it is
	// what a proxy puts in RateLimit-Remaining / x-ratelimit-remaining-*.
	Remaining int64
	// ResetAfter is how long until Limit is full again (its whole burst
	// free), or until the cooldown ends.
	ResetAfter time.Duration
}

// Error implements error.
func (e *RateLimitError) Error() string {
	return fmt.Sprintf("client: rate limited on group %q by %q, retry after %v", e.Group, e.Limit, e.RetryAfter)
}

// Unwrap returns ErrRateLimited.
func (e *RateLimitError) Unwrap() error { return ErrRateLimited }
