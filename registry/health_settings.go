package registry

import (
	"context"
	"fmt"
	"strconv"
	"time"
)

// HealthSettings are the namespace-wide limits on what node reports may do
// to a pool (the :settings hash, fields max_suspended and max_cooldown_ms).
// health.lua reads them at every report, so a change acts at once.
type HealthSettings struct {
	// MaxSuspended is the most groups of the pool, in percent of its groups,
	// that reports may keep suspended or probing at once (rounded down, at
	// least one unless 0; 0 = reports never suspend). Past it a group that
	// reaches its eject_after cools for MaxCooldown instead. Operator
	// suspensions are not limited. default: 50.
	MaxSuspended int
	// MaxCooldown is the longest cooldown one node's report may cause; a
	// longer Retry-After (up to MaxRetryAfter) takes a second holder asking
	// for a long wait within MaxCooldown. From 1s to 1h. default: 60s.
	MaxCooldown time.Duration
}

// DefaultHealthSettings returns the settings of a namespace that stores none.
func DefaultHealthSettings() HealthSettings {
	return HealthSettings{MaxSuspended: 50, MaxCooldown: time.Minute}
}

// Validate checks MaxSuspended (0–100) and MaxCooldown (1s–1h, whole ms).
func (s HealthSettings) Validate() error {
	if s.MaxSuspended < 0 || s.MaxSuspended > 100 {
		return fmt.Errorf("%w: max_suspended %d%%", ErrInvalidHealthSettings, s.MaxSuspended)
	}
	if s.MaxCooldown < time.Second || s.MaxCooldown > MaxRetryAfter || s.MaxCooldown%time.Millisecond != 0 {
		return fmt.Errorf("%w: max_cooldown %v", ErrInvalidHealthSettings, s.MaxCooldown)
	}
	return nil
}

// Settings fields of HealthSettings in the :settings hash.
const (
	settingMaxSuspended = "max_suspended"
	settingMaxCooldown  = "max_cooldown_ms"
)

// HealthSettings returns the namespace's health settings, the defaults for
// the fields never stored; stored says whether any field was.
func (r *Registry) HealthSettings(ctx context.Context) (s HealthSettings, stored bool, err error) {
	vals, err := r.rdb.HMGet(ctx, r.keys.Settings(), settingMaxSuspended, settingMaxCooldown).Result()
	if err != nil {
		return HealthSettings{}, false, wrap(err, "read health settings")
	}
	s = DefaultHealthSettings()
	for i, v := range vals {
		str, ok := v.(string)
		if !ok {
			continue
		}
		n, err := strconv.ParseInt(str, 10, 64)
		if err != nil {
			return HealthSettings{}, false, fmt.Errorf("%w: stored %q is not a number", ErrInvalidHealthSettings, str)
		}
		stored = true
		if i == 0 {
			s.MaxSuspended = int(n)
		} else {
			s.MaxCooldown = time.Duration(n) * time.Millisecond
		}
	}
	return s, stored, nil
}

// SetHealthSettings validates s and stores it as the namespace's health
// settings; the next report uses them.
func (r *Registry) SetHealthSettings(ctx context.Context, s HealthSettings) error {
	if err := s.Validate(); err != nil {
		return err
	}
	err := r.rdb.HSet(ctx, r.keys.Settings(),
		settingMaxSuspended, s.MaxSuspended, settingMaxCooldown, s.MaxCooldown.Milliseconds()).Err()
	return wrap(err, "store health settings")
}
