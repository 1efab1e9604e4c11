package quota

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Minute is one minute of a group's usage.
type Minute struct {
	// Minute is the start of the minute (UTC, Redis server time).
	Minute time.Time `json:"minute"`
	// Requests is the calls allowed.
	Requests int64 `json:"requests"`
	// Tokens is the tokens taken (estimates corrected by Settle).
	Tokens int64 `json:"tokens"`
	// Rejected is the calls refused by the limiter.
	Rejected int64 `json:"rejected"`
	// Throttled is the upstream 429s reported (key health).
	Throttled int64 `json:"throttled"`
	// Failures is the upstream auth failures reported (key health).
	Failures int64 `json:"failures"`
	// Borrowed is the calls of Requests that nodes not holding the group
	// borrowed (Limiter.Acquire with a lent candidate).
	Borrowed int64 `json:"borrowed"`
}

// MinuteOf is the usage minute number of t (Unix seconds / 60).
func MinuteOf(t time.Time) int64 { return t.Unix() / 60 }

// ReadUsage returns the minutes from..to (usage minute numbers, both
// included) of the group whose usage keys start with prefix, oldest first,
// in one pipelined round trip. Minutes with no use are left out.
func ReadUsage(ctx context.Context, rdb redis.Cmdable, prefix string, from, to int64) ([]Minute, error) {
	if to < from {
		return []Minute{}, nil
	}
	if to-from > int64(UsageTTL/time.Minute) {
		from = to - int64(UsageTTL/time.Minute)
	}
	cmds := make([]*redis.MapStringStringCmd, 0, to-from+1)
	_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for m := from; m <= to; m++ {
			cmds = append(cmds, p.HGetAll(ctx, prefix+strconv.FormatInt(m, 10)))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("quota: read usage: %w", err)
	}
	out := []Minute{}
	for i, c := range cmds {
		h := c.Val()
		if len(h) == 0 {
			continue
		}
		out = append(out, minuteOf(from+int64(i), h))
	}
	return out, nil
}

// ReadMinute returns minute (a usage minute number) of every group whose
// usage keys start with prefixes[i], in one pipelined round trip; a group
// without use gets a zero Minute with its time set.
func ReadMinute(ctx context.Context, rdb redis.Cmdable, prefixes []string, minute int64) ([]Minute, error) {
	cmds := make([]*redis.MapStringStringCmd, 0, len(prefixes))
	if len(prefixes) > 0 {
		_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, pre := range prefixes {
				cmds = append(cmds, p.HGetAll(ctx, pre+strconv.FormatInt(minute, 10)))
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("quota: read usage: %w", err)
		}
	}
	out := make([]Minute, len(cmds))
	for i, c := range cmds {
		out[i] = minuteOf(minute, c.Val())
	}
	return out, nil
}

func minuteOf(minute int64, h map[string]string) Minute {
	num := func(k string) int64 { n, _ := strconv.ParseInt(h[k], 10, 64); return n }
	return Minute{Minute: time.Unix(minute*60, 0).UTC(),
		Requests: num("requests"), Tokens: num("tokens"), Rejected: num("rejected"),
		Throttled: num("throttled"), Failures: num("failures"), Borrowed: num("borrowed")}
}

// Used is the highest fraction of any limit of ls that m used: for each
// limit, what the minute took over the limit's sustained rate per minute.
// 0 for no limits.
func (ls Limits) Used(m Minute) float64 {
	used := 0.0
	for _, u := range ls.UsedEach(m) {
		used = max(used, u)
	}
	return used
}

// UsedEach is, for each limit of ls, the fraction m used of it (as Used).
func (ls Limits) UsedEach(m Minute) []float64 {
	out := make([]float64, len(ls))
	for i, l := range ls {
		c := float64(m.Requests)
		if l.Kind == Tokens {
			c = float64(m.Tokens)
		}
		out[i] = c / l.PerMinute()
	}
	return out
}
