package registry

import (
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
	probeAfter   time.Duration
	log          *slog.Logger
	// secrets seal and open secret values (sealed.go); nil: plain text.
	secrets *SecretKeys
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

// WithProbeAfter sets the first wait before a suspended group is probed
// (it doubles after every failed probe, up to MaxProbeWait). Every process
// that reports for a namespace should use the same. default: 5m.
func WithProbeAfter(d time.Duration) Option {
	return func(r *Registry) {
		if d > 0 {
			r.probeAfter = min(d, MaxProbeWait)
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
		probeAfter:   DefaultProbeAfter,
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
