package quota

import (
	"errors"
	"fmt"
)

var (
	// ErrInvalid means a quota text that cannot be parsed. The *ParseError
	// that wraps it names the limit and what is wrong.
	ErrInvalid = errors.New("quota: invalid quota")
	// ErrCostTooLarge means a call that costs more than a limit's burst: it
	// could never be allowed, so it is refused at once instead of waiting.
	ErrCostTooLarge = errors.New("quota: cost above a limit's burst")
	// ErrInvalidLimit means a Limit (or Limits) that no quota text could
	// give: built by hand or decoded from JSON. See Limit.Validate.
	ErrInvalidLimit = errors.New("quota: invalid limit")
	// ErrUnexpectedReply means the limiter script answered something it
	// never answers: a bug or a wrong script, never a sign that Redis is
	// away, so a client does not fall back on it.
	ErrUnexpectedReply = errors.New("quota: unexpected limiter reply")
	// ErrGroupGone means the limiter was asked about a group whose document
	// is gone (Keys.Group): it was deleted, and nothing was taken or written.
	ErrGroupGone = errors.New("quota: the group is gone")
	// ErrInvalidCost means a negative or absurd (above MaxCost) cost.
	ErrInvalidCost = errors.New("quota: invalid cost")
	// ErrWrongSession means a guarded Acquire or SettleLease whose session
	// is not the node's current one: nothing was written.
	ErrWrongSession = errors.New("quota: not the node's session")
	// ErrNodeLapsed means a guarded Acquire for a node whose lease lapsed
	// (no beat within its TTL): nothing was taken.
	ErrNodeLapsed = errors.New("quota: the node's lease lapsed")
	// ErrHeldChanged means a guarded Acquire built from held groups the
	// node no longer holds (a *HeldError gives the current ones).
	ErrHeldChanged = errors.New("quota: the node's held groups changed")
	// ErrAlreadySettled means a lease settled before: nothing was written.
	ErrAlreadySettled = errors.New("quota: lease already settled")
	// ErrLeaseExpired means a lease past its expiry: nothing was written.
	ErrLeaseExpired = errors.New("quota: lease expired")
)

// ParseError says which limit of a quota text is wrong and why.
// errors.Is(err, ErrInvalid) is true for it.
type ParseError struct {
	// Pos is the 1-based position of the limit in the text (0 = the text as
	// a whole).
	Pos int
	// Text is the limit's text as given.
	Text string
	// Reason says what is wrong.
	Reason string
}

// Error implements error: `quota: limit 2 ("90000 tokns/m"): unknown kind "tokns"`.
func (e *ParseError) Error() string { return "quota: " + e.Detail() }

// Detail is the message without the package prefix, for front ends that
// say "invalid --quota ...: " themselves.
func (e *ParseError) Detail() string {
	if e.Pos == 0 {
		return fmt.Sprintf("%q: %s", e.Text, e.Reason)
	}
	return fmt.Sprintf("limit %d (%q): %s", e.Pos, e.Text, e.Reason)
}

// Unwrap returns ErrInvalid.
func (e *ParseError) Unwrap() error { return ErrInvalid }

// CostError says which limit a cost does not fit in.
// errors.Is(err, ErrCostTooLarge) is true for it.
type CostError struct {
	// Limit is the limit whose burst the cost exceeds.
	Limit Limit
	// Cost is the cost asked for.
	Cost int64
}

// Error implements error.
func (e *CostError) Error() string {
	return fmt.Sprintf("quota: cost %d is above the burst %d of limit %q", e.Cost, e.Limit.EffectiveBurst(), e.Limit.String())
}

// Unwrap returns ErrCostTooLarge.
func (e *CostError) Unwrap() error { return ErrCostTooLarge }
