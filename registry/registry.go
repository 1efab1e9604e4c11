package registry

import (
	"context"
	"io"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/allot-io/allot/internal/keys"
)

// Defaults.
const (
	// DefaultHistoryLimit is how many versions of a group are kept.
	DefaultHistoryLimit = 100
	// MinHistoryLimit is the smallest history WithHistoryLimit accepts.
	MinHistoryLimit = 50
	// DefaultDrainTimeout is how long a retiring group may stay held before
	// it is retired anyway, when Retire is given no timeout.
	DefaultDrainTimeout = 5 * time.Minute
	// LogMaxLen is the approximate cap of the event stream.
	LogMaxLen = 10000
)

// Registry stores groups, history, assignments, schedules and events of one
// namespace in Redis. It is safe for concurrent use.
type Registry struct {
	rdb          redis.UniversalClient
	keys         keys.Keys
	historyLimit int
	drainTimeout time.Duration
	log          *slog.Logger
}

// Option configures a Registry.
type Option func(*Registry)

// WithNamespace selects the namespace (default: keys.DefaultNamespace).
func WithNamespace(ns string) Option { return func(r *Registry) { r.keys = keys.New(ns) } }

// WithHistoryLimit sets how many versions of each group are kept
// (default: 100; values below 50 are raised to 50).
func WithHistoryLimit(n int) Option {
	return func(r *Registry) { r.historyLimit = max(n, MinHistoryLimit) }
}

// WithDrainTimeout sets the drain timeout used when Retire or a scheduled
// retire is given none (default: 5m).
func WithDrainTimeout(d time.Duration) Option {
	return func(r *Registry) {
		if d > 0 {
			r.drainTimeout = d
		}
	}
}

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option {
	return func(r *Registry) {
		if l != nil {
			r.log = l
		}
	}
}

// New returns a Registry on rdb.
func New(rdb redis.UniversalClient, opts ...Option) *Registry {
	r := &Registry{
		rdb:          rdb,
		keys:         keys.New(""),
		historyLimit: DefaultHistoryLimit,
		drainTimeout: DefaultDrainTimeout,
		log:          slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	for _, o := range opts {
		o(r)
	}
	r.log = r.log.With("ns", r.keys.Namespace())
	return r
}

// Namespace is the namespace this registry works in.
func (r *Registry) Namespace() string { return r.keys.Namespace() }

// Add creates group name from c (weight defaults to 1). It fails with
// ErrExists when the name is taken and an ErrInvalid… error on bad input.
func (r *Registry) Add(ctx context.Context, name string, c Change, by string) (Group, error) {
	return Group{}, errNotImplemented
}

// Update applies c to group name, creating a new version.
func (r *Registry) Update(ctx context.Context, name string, c Change, by string) (Group, error) {
	return Group{}, errNotImplemented
}

// Get returns group name or ErrNotFound.
func (r *Registry) Get(ctx context.Context, name string) (Group, error) {
	return Group{}, errNotImplemented
}

// List returns every group, sorted by name.
func (r *Registry) List(ctx context.Context) ([]Group, error) { return nil, errNotImplemented }

// History returns the kept versions of group name, newest first, the current
// one included.
func (r *Registry) History(ctx context.Context, name string) ([]Group, error) {
	return nil, errNotImplemented
}

// Rollback makes a new version of group name with the weight, max_nodes,
// quota, config and secret keys of an earlier version. The state is kept.
func (r *Registry) Rollback(ctx context.Context, name string, version int64, by string) (Group, error) {
	return Group{}, errNotImplemented
}

// Retire moves an active group to draining: it gets no new nodes and its
// holders are moved off. It is retired by FinishRetire once nobody holds it,
// or at the latest after drainTimeout (<= 0 means the registry default),
// even if nobody is connected then.
func (r *Registry) Retire(ctx context.Context, name string, drainTimeout time.Duration, by string) (Group, error) {
	return Group{}, errNotImplemented
}

// FinishRetire moves a draining group to retired (ErrInvalidState otherwise).
func (r *Registry) FinishRetire(ctx context.Context, name string, by string) (Group, error) {
	return Group{}, errNotImplemented
}

// Delete removes group name and its history at once.
func (r *Registry) Delete(ctx context.Context, name string, by string) error {
	return errNotImplemented
}
