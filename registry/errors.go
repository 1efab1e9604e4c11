package registry

import (
	"errors"
	"fmt"
	"strings"
)

var (
	// ErrNotFound means the group (or scheduled change, or history version)
	// does not exist.
	ErrNotFound = errors.New("registry: not found")
	// ErrExists means Add was called for a group name that is already taken.
	ErrExists = errors.New("registry: group already exists")
	// ErrInvalidName means a group name does not match ^[a-z0-9][a-z0-9._-]{0,62}$.
	ErrInvalidName = errors.New("registry: invalid group name (want ^[a-z0-9][a-z0-9._-]{0,62}$)")
	// ErrInvalidWeight means a weight that is not a finite number > 0.
	ErrInvalidWeight = errors.New("registry: weight must be a finite number > 0")
	// ErrInvalidMaxNodes means a negative max_nodes.
	ErrInvalidMaxNodes = errors.New("registry: max_nodes must be >= 0")
	// ErrInvalidQuota means a quota that is not like "600/m", "10/s" or
	// "100/s burst 20".
	ErrInvalidQuota = errors.New(`registry: invalid quota (want RATE/UNIT [burst N], UNIT s|m|h, e.g. "600/m" or "100/s burst 20")`)
	// ErrConfigTooLarge means the encoded config exceeds MaxConfigBytes.
	ErrConfigTooLarge = errors.New("registry: config too large (max 64 KiB encoded)")
	// ErrInvalidConfig means an empty config key, a key both set and unset, or
	// a secret key that is not a config key.
	ErrInvalidConfig = errors.New("registry: invalid config")
	// ErrVersionMismatch means Change.IfVersion was not the current version.
	ErrVersionMismatch = errors.New("registry: version mismatch")
	// ErrStaleEpoch means a Commit was planned from an epoch that is no longer
	// current: another plan was committed since.
	ErrStaleEpoch = errors.New("registry: stale epoch")
	// ErrInvalidSchedule means a scheduled change with no time, an unknown op
	// or an op that cannot be scheduled.
	ErrInvalidSchedule = errors.New("registry: invalid schedule")
	// ErrInvalidState means the group's state does not allow the operation
	// (retiring a group that is not active, finishing one that is not draining).
	ErrInvalidState = errors.New("registry: invalid group state for this operation")
	// ErrConflict means a write kept losing version races with concurrent
	// writers and gave up.
	ErrConflict = errors.New("registry: too many concurrent writers, try again")
)

// opError is an error with the operation it happened in, e.g.
// `registry: update group "x": weight must be a finite number > 0`.
type opError struct {
	op  string
	err error
}

func (e *opError) Error() string {
	return "registry: " + e.op + ": " + strings.TrimPrefix(e.err.Error(), "registry: ")
}

func (e *opError) Unwrap() error { return e.err }

// wrap adds the operation to err (nil stays nil).
func wrap(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	return &opError{op: fmt.Sprintf(format, args...), err: err}
}

// errClaimed means a scheduled item was applied, dropped or cancelled by
// another caller first. It never leaves the package.
var errClaimed = errors.New("registry: scheduled item already claimed")
