package quota

import (
	"context"
	_ "embed"
	"fmt"
	"strconv"
	"time"
)

//go:embed lease.lua
var leaseLua string

var leaseScript = newScript(leaseLua)

// MaxCandidates is the most candidate groups one Acquire weighs.
const MaxCandidates = 16

// Candidate is one group an Acquire may take a call from.
type Candidate struct {
	// Keys are the group's limiter keys; Group is required (a group whose
	// document is gone is skipped), and so is Borrowers for a lent one.
	Keys Keys
	// Limits are the group's limits, as the caller knows them.
	Limits Limits
	// Lent marks a group the caller does not hold and would borrow: it is
	// weighed only when no held candidate can take the call, and only while
	// its document is still Version, lendable (active, max_nodes 0, lend
	// not false), neither suspended nor probing, and the namespace's
	// lending is not off.
	Lent bool
	// Version is the document version the caller's copy of a lent group
	// has: another version is stale (CandidateStale), so a caller never
	// borrows with limits or a config it does not know.
	Version int64
}

// Guard makes an Acquire or a SettleLease act only for one node's current
// session, as the HTTP node protocol does: a process that lost the ID
// (another session holds it) is refused, writing nothing.
type Guard struct {
	// Members, Nodes and Assign are the namespace's keys (heartbeat's
	// members record holds the session; Nodes the last beats; Assign the
	// held groups).
	Members, Nodes, Assign string
	// Session is the session the request came with.
	Session string
	// TTL is the node's lease when the namespace stores no ttl_ms.
	TTL time.Duration
	// Held is the node's :assign entry (its held groups, comma-joined) the
	// held candidates were built from: another entry fails with a
	// *HeldError carrying the current one. Acquire only.
	Held string
}

// AcquireRequest is one call to take from the best of several groups.
type AcquireRequest struct {
	// Settings and State are the namespace's settings HASH (lending,
	// ttl_ms) and state HASH (rev).
	Settings, State string
	// Node is the caller's node ID: the borrow of a lent group is recorded
	// under it. Required with lent candidates or a Guard.
	Node string
	// Guard, when set, checks the node's session, lease and held groups.
	Guard *Guard
	// Candidates are the held groups in the order to try them, then the
	// lent ones (at most MaxCandidates in all, each sharing one hash tag).
	Candidates []Candidate
	// Tokens is the call's token estimate (its one request is implied).
	Tokens int64
	// BorrowProof is how long a borrow counts as proof that the node used
	// the key (its health reports on the group count until then).
	BorrowProof time.Duration
}

// CandidateStatus is what an Acquire made of one candidate.
type CandidateStatus byte

// Candidate statuses.
const (
	CandidateNotTaken   CandidateStatus = '-' // not weighed (another took the call first), or less room
	CandidateTaken      CandidateStatus = 'a' // took the call
	CandidateRefused    CandidateStatus = 'r' // a limit refused it
	CandidateCooling    CandidateStatus = 'c' // its key health cooldown runs
	CandidateGone       CandidateStatus = 'g' // its document is gone
	CandidateStale      CandidateStatus = 's' // its document is another version
	CandidateNotLent    CandidateStatus = 'n' // no longer lendable
	CandidateLendingOff CandidateStatus = 'o' // the namespace's lending is off
)

// AcquireResult is the outcome of an Acquire.
type AcquireResult struct {
	// Taken is the index of the candidate that took the call, or -1.
	Taken int
	// Refused is, when none took it, the index of the candidate with the
	// shortest wait, or -1 when none could be weighed (all gone, stale,
	// not lendable).
	Refused int
	// Result describes Taken (Allowed, the tightest limit, Minute), or the
	// refusal of Refused (RetryAfter, the refusing limit or Cooling).
	Result
	// Rev is the group revision of the namespace at the call: a caller
	// whose copy of the groups is older may have missed a change.
	Rev int64
	// Status says what became of each candidate.
	Status []CandidateStatus
	// Now is Redis server time at the call (ms precision).
	Now time.Time
}

// HeldError says a guarded Acquire was built from held groups the node no
// longer holds: Held is its current :assign entry. errors.Is(err,
// ErrHeldChanged) is true for it.
type HeldError struct{ Held string }

func (e *HeldError) Error() string {
	return fmt.Sprintf("quota: the node's held groups are now %q", e.Held)
}

// Unwrap returns ErrHeldChanged.
func (e *HeldError) Unwrap() error { return ErrHeldChanged }

// Acquire takes one request and req.Tokens from the best candidate, all
// of its limits or none, in one round trip (see lease.lua): the first held
// candidate whose limits let the call through, else the lent candidate
// with the most room now. A candidate whose burst is below the cost must
// not be given (Limits.CheckCost): the script refuses it as malformed.
// Errors: ErrInvalidLimit, ErrInvalidCost, a cost above a burst; with a
// Guard, ErrWrongSession, ErrNodeLapsed and *HeldError.
func (l *Limiter) Acquire(ctx context.Context, req AcquireRequest) (AcquireResult, error) {
	if len(req.Candidates) > MaxCandidates {
		return AcquireResult{}, fmt.Errorf("%w: %d candidates, at most %d", ErrInvalidLimit, len(req.Candidates), MaxCandidates)
	}
	if req.Tokens < 0 || req.Tokens > MaxCost {
		return AcquireResult{}, fmt.Errorf("%w: %d tokens", ErrInvalidCost, req.Tokens)
	}
	for _, c := range req.Candidates {
		if err := c.Limits.Validate(); err != nil {
			return AcquireResult{}, err
		}
		if err := c.Limits.CheckCost(1, req.Tokens); err != nil {
			return AcquireResult{}, err
		}
	}
	ks, args := leaseArgs("acquire", req.Settings, req.State, "", req.Node, req.Guard, 1, req.Tokens, 0,
		req.BorrowProof.Milliseconds(), req.Candidates)
	reply, err := leaseScript.Run(ctx, l.rdb, ks, args...).Result()
	if err != nil {
		return AcquireResult{}, fmt.Errorf("quota: acquire: %w", err)
	}
	return parseAcquire(reply, req.Candidates)
}

// SettleLeaseRequest is the settle of one lease (an HTTP node's): once, and
// only before the lease expires.
type SettleLeaseRequest struct {
	// Once is the key of the record that the lease was settled; it is
	// created by the settle and expires with the lease.
	Once string
	// Expires is the lease's expiry (Redis server time).
	Expires time.Time
	// Node and Guard: the session check (Guard.Session; Held is unused).
	Node  string
	Guard *Guard
	// Keys and Limits are the group's; Tokens the difference to settle
	// (negative: given back); Minute the usage minute of the lease.
	Keys   Keys
	Limits Limits
	Tokens int64
	Minute int64
}

// SettleLease settles a lease as Settle does, in one round trip, but only
// once and before req.Expires: ErrAlreadySettled, ErrLeaseExpired,
// ErrGroupGone and (with a Guard) ErrWrongSession write nothing.
func (l *Limiter) SettleLease(ctx context.Context, req SettleLeaseRequest) (Result, error) {
	if err := req.Limits.Validate(); err != nil {
		return Result{}, err
	}
	if req.Tokens < -MaxCost || req.Tokens > MaxCost {
		return Result{}, fmt.Errorf("%w: %d tokens", ErrInvalidCost, req.Tokens)
	}
	if req.Once == "" || req.Keys.Group == "" {
		return Result{}, fmt.Errorf("%w: a lease settle needs its record and group keys", ErrInvalidLimit)
	}
	ks, args := leaseArgs("settle", "", "", req.Once, req.Node, req.Guard, 0, req.Tokens, req.Minute,
		req.Expires.UnixMilli(), []Candidate{{Keys: req.Keys, Limits: req.Limits}})
	reply, err := leaseScript.Run(ctx, l.rdb, ks, args...).Result()
	if err != nil {
		return Result{}, fmt.Errorf("quota: settle lease: %w", err)
	}
	list, ok := reply.([]any)
	if !ok || len(list) == 0 {
		return Result{}, fmt.Errorf("%w: %v", ErrUnexpectedReply, reply)
	}
	switch list[0] {
	case "settled":
		return Result{}, ErrAlreadySettled
	case "expired":
		return Result{}, ErrLeaseExpired
	case "gone":
		return Result{}, ErrGroupGone
	case "session":
		return Result{}, ErrWrongSession
	case "ok":
	default:
		return Result{}, fmt.Errorf("%w: %v", ErrUnexpectedReply, list)
	}
	v, err := ints(list[1:], 4)
	if err != nil {
		return Result{}, err
	}
	return parseReply([]int64{1, v[0], 0, v[1], v[2], v[3]}, len(req.Limits))
}

// leaseArgs builds the KEYS and ARGV of lease.lua.
func leaseArgs(mode, settings, state, once, node string, g *Guard, requests, tokens, minute, window int64, cands []Candidate) ([]string, []any) {
	ks := make([]string, 6, 6+5*len(cands))
	ks[0], ks[1], ks[5] = settings, state, once
	var session, held string
	var ttl int64
	if g != nil {
		ks[2], ks[3], ks[4] = g.Members, g.Nodes, g.Assign
		session, held, ttl = g.Session, g.Held, g.TTL.Milliseconds()
	}
	// Keys the call does not read stand in as the first given key (every
	// key shares the namespace's hash tag).
	fill := settings
	if fill == "" {
		fill = once
	}
	for i := range ks {
		if ks[i] == "" {
			ks[i] = fill
		}
	}
	args := []any{mode, requests, tokens, minute, int64(UsageTTL / time.Second),
		int64(MaxCost), int64(MaxRefill / time.Microsecond), MaxLimits,
		node, session, ttl, held, window, MaxCandidates, len(cands)}
	for _, c := range cands {
		lent := "0"
		if c.Lent {
			lent = "1"
		}
		borrowers := c.Keys.Borrowers
		if borrowers == "" {
			borrowers = c.Keys.State
		}
		ks = append(ks, c.Keys.State, c.Keys.Health, c.Keys.UsagePrefix, c.Keys.Group, borrowers)
		args = append(args, lent, c.Version, len(c.Limits))
		for _, lim := range c.Limits {
			args = append(args, lim.field(), lim.kindCode(), int64(lim.Per/time.Microsecond), lim.Rate, lim.EffectiveBurst())
		}
	}
	return ks, args
}

// parseAcquire checks lease.lua's acquire reply for cands.
func parseAcquire(reply any, cands []Candidate) (AcquireResult, error) {
	bad := func(why string) (AcquireResult, error) {
		return AcquireResult{}, fmt.Errorf("%w: acquire: %s: %v", ErrUnexpectedReply, why, reply)
	}
	list, ok := reply.([]any)
	if !ok || len(list) == 0 {
		return bad("not a list")
	}
	switch list[0] {
	case "session":
		return AcquireResult{}, ErrWrongSession
	case "lapsed":
		return AcquireResult{}, ErrNodeLapsed
	case "held":
		if len(list) != 2 {
			return bad("held")
		}
		h, _ := list[1].(string)
		return AcquireResult{}, &HeldError{Held: h}
	case "ok", "refused", "none":
	default:
		return bad("unknown status")
	}
	if len(list) != 9 {
		return bad("want 9 values")
	}
	nowMs, ok := list[8].(int64)
	if !ok {
		return bad("server time")
	}
	v, err := ints(list[1:6], 5)
	if err != nil {
		return AcquireResult{}, err
	}
	revText, _ := list[6].(string)
	rev, err := strconv.ParseInt(revText, 10, 64)
	codes, _ := list[7].(string)
	if err != nil || len(codes) != len(cands) {
		return bad("rev or codes")
	}
	res := AcquireResult{Taken: -1, Refused: -1, Rev: rev, Status: make([]CandidateStatus, len(codes)), Now: time.UnixMilli(nowMs)}
	for i := range codes {
		res.Status[i] = CandidateStatus(codes[i])
	}
	i := int(v[0]) - 1
	if list[0] != "none" && (i < 0 || i >= len(cands)) {
		return bad("no such candidate")
	}
	switch list[0] {
	case "ok":
		res.Taken = i
		r, err := parseReply([]int64{1, v[1], 0, v[2], v[3], v[4]}, len(cands[i].Limits))
		if err != nil {
			return AcquireResult{}, err
		}
		res.Result = r
	case "refused":
		res.Refused = i
		r, err := parseReply([]int64{0, v[1], v[2], 0, v[3], v[4]}, len(cands[i].Limits))
		if err != nil {
			return AcquireResult{}, err
		}
		if r.Limit < 0 {
			r.Limit = Cooling
		}
		res.Result = r
	}
	return res, nil
}

// ints reads n integers of a script reply.
func ints(list []any, n int) ([]int64, error) {
	if len(list) != n {
		return nil, fmt.Errorf("%w: want %d values: %v", ErrUnexpectedReply, n, list)
	}
	out := make([]int64, n)
	for i, x := range list {
		v, ok := x.(int64)
		if !ok {
			return nil, fmt.Errorf("%w: value %d is %T", ErrUnexpectedReply, i+1, x)
		}
		out[i] = v
	}
	return out, nil
}
