package registry

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/allot-io/allot/quota"
)

// Quota is a group's limits, parsed from its quota text ("600/m, 90000
// tokens/m, 10000/d"); quota.Limits has the rules. Kept as a name so that
// callers of the one-limit era keep compiling: IsZero, String and Share work
// as before, and a one-limit text keeps its meaning.
type Quota = quota.Limits

// ParseQuota parses a quota text (see quota.Parse); "" gives an empty,
// non-nil Quota. Errors name the limit that is wrong and match both
// ErrInvalidQuota and quota.ErrInvalid (errors.As gives the
// *quota.ParseError).
func ParseQuota(s string) (Quota, error) {
	q, err := quota.Parse(s)
	var pe *quota.ParseError
	if errors.As(err, &pe) {
		return nil, &quotaError{pe}
	}
	if err != nil {
		return nil, err
	}
	if q == nil {
		q = Quota{}
	}
	return q, nil
}

// MaxUsageWindow is the longest usage history kept (and readable).
const MaxUsageWindow = quota.UsageTTL

// Usage returns the minutes of group name's usage over the last since
// (at most MaxUsageWindow), oldest first, the current minute included;
// minutes without use are left out. "Now" is Redis server time. It does not
// check that the group exists.
func (r *Registry) Usage(ctx context.Context, name string, since time.Duration) ([]quota.Minute, error) {
	if err := ValidateName(name); err != nil {
		return nil, err
	}
	if since <= 0 || since > MaxUsageWindow {
		return nil, fmt.Errorf("%w: %v (want above 0, at most %v)", ErrInvalidWindow, since, MaxUsageWindow)
	}
	now, err := r.rdb.Time(ctx).Result()
	if err != nil {
		return nil, fmt.Errorf("registry: usage of %q: %w", name, err)
	}
	to := quota.MinuteOf(now)
	from := quota.MinuteOf(now.Add(-since)) + 1
	m, err := quota.ReadUsage(ctx, r.rdb, r.keys.UsagePrefix(name), min(from, to), to)
	if err != nil {
		return nil, fmt.Errorf("registry: usage of %q: %w", name, err)
	}
	return m, nil
}

// CurrentMinute is the usage minute number of Redis server time now.
func (r *Registry) CurrentMinute(ctx context.Context) (int64, error) {
	now, err := r.rdb.Time(ctx).Result()
	if err != nil {
		return 0, fmt.Errorf("registry: server time: %w", err)
	}
	return quota.MinuteOf(now), nil
}

// MinuteUsage returns the usage of each named group in minute (a usage
// minute number), in one pipelined round trip; a group with no use has a
// zero Minute (with its Minute time set).
func (r *Registry) MinuteUsage(ctx context.Context, names []string, minute int64) (map[string]quota.Minute, error) {
	prefixes := make([]string, len(names))
	for i, n := range names {
		prefixes[i] = r.keys.UsagePrefix(n)
	}
	ms, err := quota.ReadMinute(ctx, r.rdb, prefixes, minute)
	if err != nil {
		return nil, fmt.Errorf("registry: minute usage: %w", err)
	}
	out := make(map[string]quota.Minute, len(names))
	for i, n := range names {
		out[n] = ms[i]
	}
	return out, nil
}

// LastMinute returns the usage of each named group in the last full minute
// (Redis server time): CurrentMinute - 1, read by MinuteUsage.
func (r *Registry) LastMinute(ctx context.Context, names []string) (map[string]quota.Minute, error) {
	if len(names) == 0 {
		return map[string]quota.Minute{}, nil
	}
	cur, err := r.CurrentMinute(ctx)
	if err != nil {
		return nil, err
	}
	return r.MinuteUsage(ctx, names, cur-1)
}

// QuotaDetail is what is wrong with a quota text, without any package
// prefix (`limit 2 ("90000 tokns/m"): unknown kind "tokns" ...`), for front
// ends that print their own "invalid --quota ...:"; err.Error() otherwise.
func QuotaDetail(err error) string {
	var pe *quota.ParseError
	if errors.As(err, &pe) {
		return pe.Detail()
	}
	return err.Error()
}
