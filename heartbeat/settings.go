package heartbeat

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/allot-io/allot/internal/keys"
)

// The heartbeat Config of a namespace lives in Redis (the :settings hash,
// fields interval_ms and ttl_ms), not in each process: every process of the
// namespace — nodes, `allot serve`, `allot rebalance`, `check perf` — reads it
// with LoadConfig before it beats or reaps, so a reaper never judges a node by
// a TTL the node does not use. `allot namespace set` writes it (StoreConfig).

// Settings field names in the :settings hash.
const (
	settingInterval     = "interval_ms"
	settingTTL          = "ttl_ms"
	settingMaxLiveNodes = "max_live_nodes"
)

// DefaultMaxLiveNodes is the most live nodes a namespace takes when
// max_live_nodes was never set (`allot namespace set --max-live-nodes`): a
// beat that would join one more is refused with ErrTooManyNodes. 100,000 is
// the largest pool docs/sizing.md projects for one namespace, so no pool
// sized by it is refused, while a leaked node token cannot register
// millions of IDs. 0 stored means no limit.
const DefaultMaxLiveNodes = 100_000

// LoadMaxLiveNodes returns the max_live_nodes setting of namespace ns (""
// = keys.DefaultNamespace): the stored value (0 = no limit), or
// DefaultMaxLiveNodes when none is stored; stored says which.
func LoadMaxLiveNodes(ctx context.Context, rdb redis.UniversalClient, ns string) (n int64, stored bool, err error) {
	k, err := nsKeys(ns)
	if err != nil {
		return 0, false, err
	}
	v, err := rdb.HGet(ctx, k.Settings(), settingMaxLiveNodes).Result()
	if errors.Is(err, redis.Nil) {
		return DefaultMaxLiveNodes, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("heartbeat: load max_live_nodes of namespace %q: %w", k.Namespace(), err)
	}
	n, err = strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, false, fmt.Errorf("%w: namespace %q: stored %s %q is not a count >= 0", ErrInvalidConfig, k.Namespace(), settingMaxLiveNodes, v)
	}
	return n, true, nil
}

// StoreMaxLiveNodes stores n as the max_live_nodes setting of namespace ns:
// from the next beat on, a join while n nodes are live is refused
// (ErrTooManyNodes); nodes already live are never removed. 0 means no
// limit; n < 0 is ErrInvalidConfig.
func StoreMaxLiveNodes(ctx context.Context, rdb redis.UniversalClient, ns string, n int64) error {
	if n < 0 {
		return fmt.Errorf("%w: max live nodes %d must be >= 0 (0 = no limit)", ErrInvalidConfig, n)
	}
	k, err := nsKeys(ns)
	if err != nil {
		return err
	}
	if err := rdb.HSet(ctx, k.Settings(), settingMaxLiveNodes, n).Err(); err != nil {
		return fmt.Errorf("heartbeat: store max_live_nodes of namespace %q: %w", k.Namespace(), err)
	}
	return nil
}

//go:embed settings_init.lua
var settingsInitLua string

var settingsInitScript = redis.NewScript(settingsInitLua)

// LoadConfig returns the heartbeat Config stored for namespace ns ("" =
// keys.DefaultNamespace), or DefaultConfig() when none is stored; stored says
// which. A stored value that does not validate is an error wrapping
// ErrInvalidConfig (it was written by hand: StoreConfig validates).
func LoadConfig(ctx context.Context, rdb redis.UniversalClient, ns string) (cfg Config, stored bool, err error) {
	k, err := nsKeys(ns)
	if err != nil {
		return Config{}, false, err
	}
	vals, err := rdb.HMGet(ctx, k.Settings(), settingInterval, settingTTL).Result()
	if err != nil {
		return Config{}, false, fmt.Errorf("heartbeat: load settings of namespace %q: %w", k.Namespace(), err)
	}
	return parseSettings(k.Namespace(), vals)
}

// parseSettings reads the reply of HMGET interval_ms ttl_ms.
func parseSettings(ns string, vals []any) (cfg Config, stored bool, err error) {
	cfg = DefaultConfig()
	for i, v := range vals {
		s, ok := v.(string)
		if !ok {
			continue
		}
		ms, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return Config{}, false, fmt.Errorf("%w: namespace %q: stored %s %q is not a number of ms", ErrInvalidConfig, ns, []string{settingInterval, settingTTL}[i], s)
		}
		stored = true
		if i == 0 {
			cfg.Interval = time.Duration(ms) * time.Millisecond
		} else {
			cfg.TTL = time.Duration(ms) * time.Millisecond
		}
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, false, fmt.Errorf("namespace %q settings: %w", ns, err)
	}
	return cfg, stored, nil
}

// StoreConfig validates cfg and stores it as the heartbeat Config of
// namespace ns. Processes read it when they start: nodes already running keep
// the Config they started with until they restart.
func StoreConfig(ctx context.Context, rdb redis.UniversalClient, ns string, cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	k, err := nsKeys(ns)
	if err != nil {
		return err
	}
	err = rdb.HSet(ctx, k.Settings(),
		settingInterval, cfg.Interval.Milliseconds(), settingTTL, cfg.TTL.Milliseconds()).Err()
	if err != nil {
		return fmt.Errorf("heartbeat: store settings of namespace %q: %w", k.Namespace(), err)
	}
	return nil
}

// Resolve returns the Config a process of namespace ns must use. With want
// nil (the process was not configured explicitly) it is the stored Config, or
// DefaultConfig() when none is stored. With want set (e.g. client.WithHeartbeat)
// it is want: when no Config is stored yet, want is recorded as the
// namespace's (the first configured process wins, atomically), and when the
// stored Config differs the error wraps ErrConfigMismatch and names both.
func Resolve(ctx context.Context, rdb redis.UniversalClient, ns string, want *Config) (Config, error) {
	if want == nil {
		cfg, _, err := LoadConfig(ctx, rdb, ns)
		return cfg, err
	}
	if err := want.Validate(); err != nil {
		return Config{}, err
	}
	k, err := nsKeys(ns)
	if err != nil {
		return Config{}, err
	}
	vals, err := settingsInitScript.Run(ctx, rdb, []string{k.Settings()},
		want.Interval.Milliseconds(), want.TTL.Milliseconds()).Slice()
	if err != nil {
		return Config{}, fmt.Errorf("heartbeat: load settings of namespace %q: %w", k.Namespace(), err)
	}
	cfg, _, err := parseSettings(k.Namespace(), vals)
	if err != nil {
		return Config{}, err
	}
	// Stored values are whole milliseconds.
	if cfg.Interval != want.Interval.Truncate(time.Millisecond) || cfg.TTL != want.TTL.Truncate(time.Millisecond) {
		return Config{}, fmt.Errorf("%w: configured interval %v ttl %v, namespace %q has interval %v ttl %v (change it with 'allot namespace set', or drop the option)",
			ErrConfigMismatch, want.Interval, want.TTL, k.Namespace(), cfg.Interval, cfg.TTL)
	}
	return *want, nil
}

// Registered returns how many nodes are registered in the namespace of t:
// live, or past their TTL and not reaped yet. One ZCARD.
func (t *Tracker) Registered(ctx context.Context) (int64, error) {
	n, err := t.rdb.ZCard(ctx, t.nodes).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return 0, fmt.Errorf("heartbeat: count nodes: %w", err)
	}
	return n, nil
}

func nsKeys(ns string) (keys.Keys, error) {
	ns = nsName(ns)
	if err := keys.Validate(ns); err != nil {
		return keys.Keys{}, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return keys.New(ns), nil
}

func nsName(ns string) string {
	if ns == "" {
		return keys.DefaultNamespace
	}
	return ns
}

// Namespace is the namespace the Tracker records beats in.
func (t *Tracker) Namespace() string { return t.keys.Namespace() }
