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
	refs := make([]MinuteRef, len(prefixes))
	for i, p := range prefixes {
		refs[i] = MinuteRef{Prefix: p, Minute: minute}
	}
	return ReadMinutes(ctx, rdb, refs)
}

// MinuteRef names one minute of one group's usage: the group's usage key
// prefix and a usage minute number.
type MinuteRef struct {
	Prefix string
	Minute int64
}

// ReadMinutes returns the minutes refs name, in their order, in one
// pipelined round trip; a minute without use is a zero Minute with its time
// set.
func ReadMinutes(ctx context.Context, rdb redis.Cmdable, refs []MinuteRef) ([]Minute, error) {
	cmds := make([]*redis.MapStringStringCmd, 0, len(refs))
	if len(refs) > 0 {
		_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, r := range refs {
				cmds = append(cmds, p.HGetAll(ctx, r.Prefix+strconv.FormatInt(r.Minute, 10)))
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("quota: read usage: %w", err)
		}
	}
	out := make([]Minute, len(cmds))
	for i, c := range cmds {
		out[i] = minuteOf(refs[i].Minute, c.Val())
	}
	return out, nil
}

func minuteOf(minute int64, h map[string]string) Minute {
	num := func(k string) int64 { n, _ := strconv.ParseInt(h[k], 10, 64); return n }
	return Minute{Minute: time.Unix(minute*60, 0).UTC(),
		Requests: num("requests"), Tokens: num("tokens"), Rejected: num("rejected"),
		Throttled: num("throttled"), Failures: num("failures"), Borrowed: num("borrowed")}
}

// Used is the highest fraction of a per-second or per-minute limit of ls
// that minute m took: what the minute took over the limit's rate per
// minute (`allot group usage`'s USED, one minute a row). A limit per hour
// or day is not read per minute: its reading is its window's (Read). 0 for
// no such limit.
func (ls Limits) Used(m Minute) float64 {
	used := 0.0
	for _, l := range ls {
		if l.Window() != time.Minute {
			continue
		}
		c := float64(m.Requests)
		if l.Kind == Tokens {
			c = float64(m.Tokens)
		}
		used = max(used, c/l.PerMinute())
	}
	return used
}
