package registry

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// The rules in this file are shared by every front end (the allot CLI and the
// HTTP API): each classifies errors and parses schedule times through them, so
// the two can never disagree.

// IsUnavailable reports whether err means Redis could not be talked to (refused,
// reset, closed, pool exhausted, or no answer in time: a network timeout or a
// context deadline) or answered that it cannot serve now (LOADING,
// CLUSTERDOWN, TRYAGAIN, MASTERDOWN, READONLY), as opposed to Redis answering
// with another error, a rule refusing the request, or a reply of the wrong
// shape. It is the one rule: the CLI and server map it to "unavailable", the
// client's limiter falls back on it (WithQuotaFallback) and on nothing else.
func IsUnavailable(err error) bool {
	if err == nil {
		return false
	}
	var re redis.Error
	if errors.As(err, &re) {
		for _, p := range []string{"LOADING", "CLUSTERDOWN", "TRYAGAIN", "MASTERDOWN", "READONLY"} {
			if strings.HasPrefix(re.Error(), p+" ") || re.Error() == p {
				return true
			}
		}
		return false
	}
	var oe *net.OpError
	if errors.As(err, &oe) {
		return true
	}
	// syscall.Errno satisfies net.Error too: only the errnos of a broken
	// connection count (ENOENT reading a file is not Redis being away).
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno == syscall.ECONNREFUSED || errno == syscall.ECONNRESET ||
			errno == syscall.EPIPE || errno == syscall.ECONNABORTED || errno == syscall.ETIMEDOUT
	}
	var ne net.Error // *net.DNSError, context.DeadlineExceeded, go-redis timeouts…
	if errors.As(err, &ne) {
		return true
	}
	for _, target := range []error{
		syscall.ECONNREFUSED, syscall.ECONNRESET, syscall.EPIPE, syscall.ECONNABORTED,
		io.EOF, io.ErrUnexpectedEOF, net.ErrClosed, redis.ErrClosed, redis.ErrPoolTimeout,
	} {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}

// IsInvalidInput reports whether err is a registry validation error: the
// caller asked for something the registry's rules forbid (a bad name, weight,
// max_nodes, quota, config or schedule). Front ends answer it as a usage
// error (CLI exit 2, HTTP 422); nothing was written.
func IsInvalidInput(err error) bool {
	for _, target := range invalidInput {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}

// invalidInput lists the sentinels IsInvalidInput matches.
var invalidInput = []error{
	ErrInvalidName, ErrInvalidWeight, ErrInvalidMaxNodes, ErrInvalidQuota,
	ErrConfigTooLarge, ErrInvalidConfig, ErrInvalidSchedule,
	ErrInvalidEjectAfter, ErrInvalidReport, ErrNoQuota, ErrInvalidWindow, ErrInvalidHealthSettings,
	ErrInvalidCount,
}

// MaxScheduleAhead is how far in the future ParseAt accepts a time: a change
// due in more than a year is almost always a typo (2062 for 2026).
const MaxScheduleAhead = 366 * 24 * time.Hour

// ParseAt reads the time of a scheduled change, as `--at` of the CLI and `at`
// of the HTTP API give it: an RFC 3339 time (2026-03-01T09:00:00Z), or a Go
// duration from now with or without a leading "+" (+10m, 1h30m). The time
// must be after now and at most MaxScheduleAhead ahead; every other input is
// an error wrapping ErrInvalidSchedule that says what was expected.
func ParseAt(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, fmt.Errorf("%w: no time given: want an RFC 3339 time (2026-03-01T09:00:00Z) or a duration from now (+10m)", ErrInvalidSchedule)
	}
	var at time.Time
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		at = t
	} else if d, err := time.ParseDuration(strings.TrimPrefix(s, "+")); err == nil {
		if d <= 0 {
			return time.Time{}, fmt.Errorf("%w: %q is not in the future", ErrInvalidSchedule, s)
		}
		at = now.Add(d)
	} else {
		return time.Time{}, fmt.Errorf("%w: %q: want an RFC 3339 time (2026-03-01T09:00:00Z) or a duration from now (+10m, 1h30m)", ErrInvalidSchedule, s)
	}
	if !at.After(now) {
		return time.Time{}, fmt.Errorf("%w: %s is in the past (now is %s)", ErrInvalidSchedule, s, now.UTC().Format(time.RFC3339))
	}
	if at.Sub(now) > MaxScheduleAhead {
		return time.Time{}, fmt.Errorf("%w: %s is more than a year ahead (latest %s)", ErrInvalidSchedule, s, now.Add(MaxScheduleAhead).UTC().Format(time.RFC3339))
	}
	return at, nil
}
