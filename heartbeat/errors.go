package heartbeat

import (
	"errors"
	"fmt"
	"time"
)

// ErrConfigMismatch means a process was configured with a heartbeat Config
// that differs from the one stored for its namespace (`allot namespace set`):
// a reaper would judge its nodes by a TTL they do not use.
var ErrConfigMismatch = errors.New("heartbeat: config differs from the namespace settings")

var (
	// ErrInvalidConfig is returned by Config.Validate and New for a Config
	// that cannot work (Interval <= 0, or TTL shorter than 3 × Interval), and
	// by New for an invalid namespace.
	ErrInvalidConfig = errors.New("heartbeat: invalid config")

	// ErrInvalidNode is returned for a node ID that cannot be stored (empty,
	// longer than MaxNodeIDLen bytes, not UTF-8, or containing a control
	// character, a comma or whitespace), an IP that does not parse, a
	// preferred group that is not a valid group name, a held group name
	// that is not one, or a malformed or empty session.
	ErrInvalidNode = errors.New("heartbeat: invalid node")

	// ErrNodeIDInUse is returned by Beat when the node ID is live under
	// another session: another process is using it. Nothing was recorded;
	// the ID frees up when that session leaves or stops beating for a TTL.
	// The error is an *InUseError, which says for how long at least.
	ErrNodeIDInUse = errors.New("heartbeat: node id in use by another session")

	// ErrTooManyNodes is returned by Beat for a beat that would join a node
	// while the namespace already has its max_live_nodes live nodes (see
	// StoreMaxLiveNodes). Nothing was recorded; nodes already live keep
	// beating, and the join succeeds once a node leaves or expires.
	ErrTooManyNodes = errors.New("heartbeat: too many live nodes in the namespace")

	// ErrWrongSession is returned by Leave and CheckSession when the node's
	// record belongs to another session (or, for CheckSession, when the
	// node has no record): the caller is not the process that holds the ID.
	ErrWrongSession = errors.New("heartbeat: wrong session for node")
)

// InUseError is the error of a beat refused because the node ID is live
// under another session. It matches ErrNodeIDInUse with errors.Is.
type InUseError struct {
	// Node is the refused node ID.
	Node string
	// Remaining is how long the other session still holds the ID if it does
	// not beat again (measured on the Redis server's clock).
	Remaining time.Duration
}

func (e *InUseError) Error() string {
	return fmt.Sprintf("%v: node %q is live under another session for at least %v more", ErrNodeIDInUse, e.Node, e.Remaining)
}

// Unwrap makes errors.Is(err, ErrNodeIDInUse) true.
func (e *InUseError) Unwrap() error { return ErrNodeIDInUse }

// ErrInvalidBeat is returned by Beat for a beat that carries what no valid
// node sends: an invalid node ID, session, IP or preferred group, more than
// MaxHeld held groups, or a held name that is not a group name. The beat
// script checks the same rules before its first write, so a beat that gets
// past Go's checks some other way is refused the same, writing nothing. It
// matches ErrInvalidNode too (errors.Is), so callers that map ErrInvalidNode
// to a client error need no change.
var ErrInvalidBeat error = invalidBeat{}

type invalidBeat struct{}

func (invalidBeat) Error() string { return "heartbeat: invalid beat" }

// ErrInvalidDemand is returned by Beat (and Demand.Validate) for a demand
// figure that is negative, NaN, infinite or above MaxDemand; the error
// matches ErrInvalidBeat (and so ErrInvalidNode) too. The beat script
// refuses the same before its first write, so such a beat records nothing,
// liveness included: the sender learns it at once and can beat again
// without the figure, as the Go client does.
var ErrInvalidDemand error = invalidDemand{}

type invalidDemand struct{}

func (invalidDemand) Error() string { return "heartbeat: invalid demand" }

// Is makes errors.Is(ErrInvalidDemand, ErrInvalidBeat) and ErrInvalidNode
// true.
func (invalidDemand) Is(target error) bool {
	return target == ErrInvalidBeat || target == ErrInvalidNode
}

// Is makes errors.Is(ErrInvalidBeat, ErrInvalidNode) true.
func (invalidBeat) Is(target error) bool { return target == ErrInvalidNode }
