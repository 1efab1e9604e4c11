package main

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/allot-io/allot/registry"
)

// healthSettingFlags are the key health flags of `namespace set`
// (--max-suspended, --max-cooldown): registry.HealthSettings.
type healthSettingFlags struct {
	maxSuspended string
	maxCooldown  time.Duration
}

func (f *healthSettingFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.maxSuspended, "max-suspended", "", "most of the pool's groups node reports may keep suspended at once, 0%-100% (default 50%); past it a failing group cools instead")
	fs.DurationVar(&f.maxCooldown, "max-cooldown", 0, "longest cooldown one node's throttle report may cause, 1s-1h (default 60s); longer takes a second holder's report")
}

// changed reports whether any of the flags was given.
func (f *healthSettingFlags) changed(fs *pflag.FlagSet) bool {
	return fs.Changed("max-suspended") || fs.Changed("max-cooldown")
}

// apply returns cur with the given flags applied, checked at the edge: a
// usage error for a percentage outside 0-100 or a cooldown outside 1s-1h.
func (f *healthSettingFlags) apply(fs *pflag.FlagSet, cur registry.HealthSettings) (registry.HealthSettings, error) {
	next := cur
	if fs.Changed("max-suspended") {
		p, err := parsePercent(f.maxSuspended)
		if err != nil {
			return cur, usageErrorf("invalid --max-suspended %q: want a percentage from 0%% to 100%%, e.g. 50%%", f.maxSuspended)
		}
		next.MaxSuspended = p
	}
	if fs.Changed("max-cooldown") {
		next.MaxCooldown = f.maxCooldown
	}
	if next.MaxCooldown < time.Second || next.MaxCooldown > registry.MaxRetryAfter || next.MaxCooldown%time.Millisecond != 0 {
		return cur, usageErrorf("invalid --max-cooldown %v: want 1s to 1h", f.maxCooldown)
	}
	if err := next.Validate(); err != nil {
		return cur, usageErrorf("%v", err)
	}
	return next, nil
}

// parsePercent reads "50%" or "50" as a whole percentage from 0 to 100.
func parsePercent(s string) (int, error) {
	n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(s), "%"))
	if err != nil || n < 0 || n > 100 {
		return 0, strconv.ErrRange
	}
	return n, nil
}

// store applies the flags to the namespace's stored health
// settings and returns what it stored.
func (f *healthSettingFlags) store(ctx context.Context, fs *pflag.FlagSet, reg *registry.Registry) (registry.HealthSettings, error) {
	cur, _, err := reg.HealthSettings(ctx)
	if err != nil {
		return cur, err
	}
	next, err := f.apply(fs, cur)
	if err != nil {
		return cur, err
	}
	return next, reg.SetHealthSettings(ctx, next)
}

// healthSettingsText is how `namespace set` and `namespace list` show them.
func healthSettingsText(h registry.HealthSettings) (maxSuspended, maxCooldown string) {
	return strconv.Itoa(h.MaxSuspended) + "%", h.MaxCooldown.String()
}
