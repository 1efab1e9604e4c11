package registry

import (
	"errors"
	"fmt"
	"strings"

	"github.com/allot-io/allot/quota"
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
	// ErrInvalidQuota means a quota text that does not parse (quota.Parse);
	// the error returned also matches quota.ErrInvalid, and its text names
	// the limit and what is wrong.
	ErrInvalidQuota = errors.New("registry: invalid quota")
	// ErrNoQuota means an automatic weight was asked for a group without a
	// quota to derive it from.
	ErrNoQuota = errors.New("registry: weight auto needs a quota")
	// ErrInvalidWindow means a usage window that is not above 0 or longer
	// than the usage kept (MaxUsageWindow).
	ErrInvalidWindow = errors.New("registry: invalid usage window")
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
	// ErrPoolDocument means a pool document (import file or body) that
	// cannot be decoded; the error is a *PoolDocumentError.
	ErrPoolDocument = errors.New("registry: malformed pool document")
	// ErrEmptyPool means a pool document with nothing in it.
	ErrEmptyPool = errors.New("registry: empty pool document")
	// ErrInvalidState means the group's state does not allow the operation
	// (retiring a group that is not active, finishing one that is not
	// draining, importing a retired group as active) or, in a Pool, a state
	// that is not active, draining or retired.
	ErrInvalidState = errors.New("registry: invalid group state for this operation")
	// ErrConflict means a write kept losing version races with concurrent
	// writers and gave up.
	ErrConflict = errors.New("registry: too many concurrent writers, try again")
	// ErrDuplicateGroup means a Pool lists a group name twice.
	ErrDuplicateGroup = errors.New("registry: group listed twice in the pool")
	// ErrMaskedSecret means a Pool holds a masked secret value (as exported
	// without reveal) that matches no stored secret, so the real value is
	// unknown.
	ErrMaskedSecret = errors.New("registry: masked secret value matches no stored secret")
	// ErrUnmarkSecret means a Pool lists a stored secret config key as not
	// secret: an import never un-marks a secret (unset the key first).
	ErrUnmarkSecret = errors.New("registry: import cannot un-mark a secret key")
	// ErrInvalidEjectAfter means an eject_after that is not "0" or
	// "N/WINDOW" with N from 1 to 1000 and WINDOW whole seconds from 1s to 24h.
	ErrInvalidEjectAfter = errors.New(`registry: invalid eject_after (want N/WINDOW like "3/1m", or "0" = never)`)
	// ErrInvalidReport means a report with an unknown outcome.
	ErrInvalidReport = errors.New("registry: invalid report")
	// ErrNodeLapsed means a report came from a node that is not live (never
	// joined, left, reaped or silent past its TTL): it is ignored.
	ErrNodeLapsed = errors.New("registry: reporting node is not live; report ignored")
	// ErrNotHolder means a report came from a node that neither holds the
	// group nor borrowed it lately: it is ignored.
	ErrNotHolder = errors.New("registry: reporting node does not hold the group; report ignored")
	// ErrReportSession means a report whose Session is not the node's
	// current one (an HTTP lease of an earlier process): ignored.
	ErrReportSession = errors.New("registry: report from another session of the node; report ignored")
	// ErrLeaseExpired means a report made on a lease past its expiry:
	// ignored.
	ErrLeaseExpired = errors.New("registry: the lease has expired; report ignored")
	// ErrReportLimited means a node sent reports faster than the per-node
	// report rate (ReportInterval, ReportBurst): the report was counted
	// (limited_total) and otherwise ignored.
	ErrReportLimited = errors.New("registry: too many reports from this node; report ignored")
	// ErrInvalidHealthSettings means a max_suspended outside 0–100 % or a
	// max_cooldown outside 1s–1h.
	ErrInvalidHealthSettings = errors.New("registry: invalid health settings (max_suspended 0-100%, max_cooldown 1s-1h)")
	// ErrInvalidCount means a count of recent events outside 1..MaxRecentEvents.
	ErrInvalidCount = errors.New("registry: invalid event count")
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

// Reason is err's message as a front end shows it to a user who already knows
// what they asked for: when err carries the operation context registry adds
// (`registry: update group "x": …`) only the reason after it, and never the
// "registry: " prefix. Errors of other packages keep their message.
func Reason(err error) string {
	if err == nil {
		return ""
	}
	if oe, ok := err.(*opError); ok {
		return strings.TrimPrefix(oe.err.Error(), "registry: ")
	}
	return strings.TrimPrefix(err.Error(), "registry: ")
}

// errMalformed is a Redis reply of an unexpected shape.
var errMalformed = errors.New("registry: malformed reply")

// wrap adds the operation to err (nil stays nil).
func wrap(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	return &opError{op: fmt.Sprintf(format, args...), err: err}
}

// PoolError is the error of PlanImport for a Pool with invalid groups: it
// names every problem, and nothing was planned or written. It unwraps to
// each problem's error.
type PoolError struct {
	Problems []PoolProblem
}

func (e *PoolError) Error() string {
	parts := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		parts[i] = fmt.Sprintf("groups[%d] %q: %v", p.Index, p.Name, p.Err)
	}
	return "registry: invalid pool: " + strings.Join(parts, "; ")
}

// Unwrap returns the error of every problem.
func (e *PoolError) Unwrap() []error {
	errs := make([]error, len(e.Problems))
	for i, p := range e.Problems {
		errs[i] = p.Err
	}
	return errs
}

// PoolProblem is one group of a Pool that cannot be imported.
type PoolProblem struct {
	// Index is the group's position in Pool.Groups.
	Index int
	// Name is the group's name as the Pool gives it.
	Name string
	// First is, for ErrDuplicateGroup, the position of the name's first
	// entry.
	First int
	// Key is, for ErrMaskedSecret and ErrUnmarkSecret, the config key.
	Key string
	// Err says what is wrong, naming the field, in a message without the
	// package prefix (e.g. "invalid weight -2: must be a number > 0"). It
	// wraps the sentinel of its kind: ErrInvalidName, ErrInvalidState,
	// ErrInvalidWeight, ErrInvalidMaxNodes, ErrInvalidQuota,
	// ErrInvalidConfig, ErrConfigTooLarge, ErrDuplicateGroup,
	// ErrMaskedSecret or ErrUnmarkSecret.
	Err error
}

// problemError is the error of a PoolProblem: its own message, and the
// sentinel of its kind for errors.Is.
type problemError struct {
	kind error
	msg  string
}

func (e *problemError) Error() string { return e.msg }

func (e *problemError) Unwrap() error { return e.kind }

// problem returns a problemError of kind.
func problem(kind error, format string, args ...any) error {
	return &problemError{kind: kind, msg: fmt.Sprintf(format, args...)}
}

// ApplyError is the error of an ImportPlan.Apply that stopped at a failed
// write. The writes made before it were undone where they could be. It
// unwraps to the failed write's error.
type ApplyError struct {
	// Group is the group whose write failed.
	Group string
	// Err is that write's error.
	Err error
	// Undone counts the writes made before it and undone.
	Undone int
	// Standing are the writes made before it that remain, newest first.
	Standing []StandingWrite
}

func (e *ApplyError) Error() string {
	msg := fmt.Sprintf("registry: import stopped at group %q: %s", e.Group, strings.TrimPrefix(e.Err.Error(), "registry: "))
	if len(e.Standing) == 0 {
		return msg + fmt.Sprintf("; the %d writes before it were undone, the pool is as it was", e.Undone)
	}
	parts := make([]string, len(e.Standing))
	for i, w := range e.Standing {
		parts[i] = w.String()
	}
	return msg + fmt.Sprintf("; %d writes undone, these remain: %s", e.Undone, strings.Join(parts, "; "))
}

func (e *ApplyError) Unwrap() error { return e.Err }

// StandingWrite is a write of a failed import that was not undone.
type StandingWrite struct {
	// Group is the group written.
	Group string
	// Done says what the write did: "added", "updated", "retiring" (retire
	// started), "retired" or "deleted".
	Done string
	// UndoErr is why undoing it failed; nil for a retire or a deletion,
	// which cannot be undone.
	UndoErr error
}

// String renders w as "added x" or "updated x (undo failed: …)".
func (w StandingWrite) String() string {
	if w.UndoErr == nil {
		return w.Done + " " + w.Group
	}
	return fmt.Sprintf("%s %s (undo failed: %v)", w.Done, w.Group, w.UndoErr)
}

// errClaimed means a scheduled item was applied, dropped or cancelled by
// another caller first. It never leaves the package.
var errClaimed = errors.New("registry: scheduled item already claimed")

// quotaError is a quota text that does not parse: "registry: invalid quota:
// limit 2 ("90000 tokns/m"): unknown kind "tokns" (...)". It matches
// ErrInvalidQuota and the quota package's error.
type quotaError struct{ err *quota.ParseError }

func (e *quotaError) Error() string { return ErrInvalidQuota.Error() + ": " + e.err.Detail() }

func (e *quotaError) Unwrap() []error { return []error{ErrInvalidQuota, e.err} }

// PoolDocumentError is a pool document that cannot be decoded (ParsePool).
type PoolDocumentError struct {
	// Problem says why on one line, naming the line of the document.
	Problem string
}

// Error is "registry: malformed pool document: " and the problem.
func (e *PoolDocumentError) Error() string { return ErrPoolDocument.Error() + ": " + e.Problem }

// Unwrap returns ErrPoolDocument.
func (e *PoolDocumentError) Unwrap() error { return ErrPoolDocument }

// Errors of encryption at rest (sealing.go).
var (
	// ErrInvalidSecretKeys means a key list that does not parse
	// (ParseSecretKeys): its message never shows key material.
	ErrInvalidSecretKeys = errors.New("registry: invalid secret keys")
	// ErrSecretAuth means a sealed value that is malformed or fails
	// authentication: tampered, or moved from another namespace, group or
	// config key. It is never returned as a value.
	ErrSecretAuth = errors.New("registry: sealed value fails authentication")
	// ErrSecretKeyMissing means a sealed value whose key this process does
	// not have: a plain-text consumer (a node, reveal, export) refuses it.
	ErrSecretKeyMissing = errors.New("registry: sealed value's key is not in this process's secret keys")
	// ErrNoSecretKeys means an operation that needs secret keys (rotate)
	// was called on a registry without them.
	ErrNoSecretKeys = errors.New("registry: no secret keys configured (ALLOT_SECRET_KEYS or --secret-keys)")
)

// SecretValueError is a secret value that cannot be opened: it names the
// group, where the value is stored, the config key and the key ID, never
// the value. It unwraps to ErrSecretAuth or ErrSecretKeyMissing.
type SecretValueError struct {
	// Group is the group the value belongs to.
	Group string
	// Where is "" for the group document, "history version N" or
	// "schedule ID".
	Where string
	// Key is the config key.
	Key string
	// KeyID is the ID of the key the value is sealed with.
	KeyID string
	// Err is ErrSecretAuth or ErrSecretKeyMissing (possibly wrapped).
	Err error
}

func (e *SecretValueError) Error() string {
	at := ""
	if e.Where != "" {
		at = " (" + e.Where + ")"
	}
	if errors.Is(e.Err, ErrSecretKeyMissing) {
		return fmt.Sprintf("registry: group %q%s config key %q is sealed with secret key %q, which this process does not have (ALLOT_SECRET_KEYS)",
			e.Group, at, e.Key, e.KeyID)
	}
	return fmt.Sprintf("registry: group %q%s config key %q: %s (key %q)",
		e.Group, at, e.Key, strings.TrimPrefix(e.Err.Error(), "registry: "), e.KeyID)
}

func (e *SecretValueError) Unwrap() error { return e.Err }

// RotateError is a RotateSecrets that stopped at values it cannot open
// (their key is not in the list, or they fail authentication): before
// writing anything when found by the first look at every value, which is
// when Written is 0.
type RotateError struct {
	// Problems are *SecretValueError, one per value (the first 100; a few
	// are named in the message).
	Problems []error
	// More counts the values beyond Problems that cannot be opened either.
	More int
	// Written counts the texts rewritten before the stop.
	Written int
}

func (e *RotateError) Error() string {
	const named = 3
	parts := make([]string, 0, named)
	for _, p := range e.Problems[:min(len(e.Problems), named)] {
		parts = append(parts, strings.TrimPrefix(p.Error(), "registry: "))
	}
	msg := "registry: cannot open every secret value: " + strings.Join(parts, "; ")
	if n := len(e.Problems) + e.More - named; n > 0 {
		msg += fmt.Sprintf("; and %d more", n)
	}
	if e.Written == 0 {
		return msg + "; nothing was written"
	}
	return msg + fmt.Sprintf("; %d texts were rewritten before it", e.Written)
}

// Unwrap returns every problem.
func (e *RotateError) Unwrap() []error { return e.Problems }
