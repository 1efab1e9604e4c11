package registry

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/allot-io/allot/quota"
)

// SettleMinutes is how many full minutes a UsageReader reads again on every
// Read although it read them before: a Settle lands on the minute of its
// reservation, which may have ended meanwhile (a long LLM call). A Settle
// later than that is not seen by a reader that kept the minute.
const SettleMinutes = 5

// UsageReader reads the use of many groups at once: the minutes of a recent
// span (a sparkline's hour) and the totals their limits are read over
// (quota.Totals: the last full minute, the last hour, the last day), in one
// round trip. It keeps the full minutes it read, at most a day of each
// group, so a reader asked again — a server answering refreshes — reads
// only the minutes that passed since and the last SettleMinutes again,
// instead of a day of minutes per group with a daily limit. Safe for
// concurrent use.
type UsageReader struct {
	reg *Registry

	mu   sync.Mutex
	kept map[string]*keptUse // by group name
}

// keptUse is what a UsageReader knows of one group: every minute of
// [from, to] (numbers), those with use in minutes.
type keptUse struct {
	created  time.Time // the group's; a group created again starts afresh
	from, to int64
	minutes  map[int64]quota.Minute
	lastRead int64 // the minute of the last Read that asked for the group
}

// forgetAfter is how many minutes a UsageReader keeps a group no Read
// asked for (a deleted group, one a caller stopped asking for).
const forgetAfter = 60

// GroupUse is one group's use as a UsageReader reads it.
type GroupUse struct {
	// Minutes is the span asked for, one entry per minute, oldest first,
	// the current minute last; zero where nothing was used.
	Minutes []quota.Minute
	// Totals sums the windows the group's limits are read over: LastMinute
	// always, Hour with a limit per hour or day, Day with a limit per day
	// (a sum the reader did not need stays zero).
	Totals quota.Totals
}

// PoolUse is the use of several groups over the same minutes.
type PoolUse struct {
	// From is the first minute of every group's Minutes, Now the current
	// minute (Redis server time), both minute starts in UTC.
	From, Now time.Time
	// Groups holds every group read, by name.
	Groups map[string]GroupUse
}

// NewUsageReader returns a UsageReader on reg that keeps nothing yet.
func NewUsageReader(reg *Registry) *UsageReader {
	return &UsageReader{reg: reg, kept: map[string]*keptUse{}}
}

// span is what one Read needs of a group: the minutes lo..cur.
type span struct {
	g      Group
	lo     int64
	reads  []int64 // minutes to read from Redis, ascending
	offset int     // where its reads start in the round trip
}

// Read returns the use of groups over the last since (0, or at most
// MaxUsageWindow: Minutes holds since / 1 minute entries, the current
// minute included; 0 gives no Minutes, only Totals) and their totals,
// "now" being Redis server time. Callers may ask for different groups and
// spans: what one read keeps serves the others.
func (u *UsageReader) Read(ctx context.Context, groups []Group, since time.Duration) (PoolUse, error) {
	if since < 0 || since > MaxUsageWindow {
		return PoolUse{}, fmt.Errorf("%w: %v (want 0 to %v)", ErrInvalidWindow, since, MaxUsageWindow)
	}
	now, err := u.reg.rdb.Time(ctx).Result()
	if err != nil {
		return PoolUse{}, fmt.Errorf("registry: usage: %w", err)
	}
	cur := quota.MinuteOf(now)
	shown := int64(since / time.Minute)
	settled := cur - SettleMinutes - 1 // minutes up to here are kept

	u.mu.Lock()
	plan := make([]span, 0, len(groups))
	var refs []quota.MinuteRef
	for _, g := range groups {
		need := max(shown, int64(g.Limits.WindowMinutes()))
		s := span{g: g, lo: cur - need + 1, offset: len(refs)}
		k := u.kept[g.Name]
		if k == nil || !k.created.Equal(g.Created) {
			k = nil
		}
		for m := s.lo; m <= cur; m++ {
			if k != nil && m >= k.from && m <= k.to && m <= settled {
				continue
			}
			s.reads = append(s.reads, m)
			refs = append(refs, quota.MinuteRef{Prefix: u.reg.keys.UsagePrefix(g.Name), Minute: m})
		}
		plan = append(plan, s)
	}
	u.mu.Unlock()

	read, err := quota.ReadMinutes(ctx, u.reg.rdb, refs)
	if err != nil {
		return PoolUse{}, fmt.Errorf("registry: usage: %w", err)
	}

	u.mu.Lock()
	defer u.mu.Unlock()
	out := PoolUse{From: minuteStart(cur - shown + 1), Now: minuteStart(cur), Groups: make(map[string]GroupUse, len(plan))}
	for _, s := range plan {
		// What is known after this read: the kept range, joined to [lo,
		// cur] (all of it kept or read now) when the two touch; of it, the
		// minutes up to settled are kept.
		k := u.kept[s.g.Name]
		if k == nil || !k.created.Equal(s.g.Created) {
			k = &keptUse{created: s.g.Created, from: s.lo, to: s.lo - 1, minutes: map[int64]quota.Minute{}}
		}
		switch {
		case k.to >= s.lo-1 && k.to >= k.from:
			k.from = min(k.from, s.lo)
			k.to = max(k.to, settled)
		case s.lo <= settled: // a gap before lo: start over from lo
			k.from, k.to = s.lo, settled
			clear(k.minutes)
		}
		k.from = max(k.from, cur-1439)
		k.lastRead = cur
		for m := range k.minutes {
			if m < k.from {
				delete(k.minutes, m)
			}
		}
		fresh := k
		got := map[int64]quota.Minute{}
		for i, m := range s.reads {
			if v := read[s.offset+i]; !v.IsZero() {
				got[m] = v
				if m <= settled {
					fresh.minutes[m] = v
				}
			}
		}
		at := func(m int64) quota.Minute {
			if v, ok := got[m]; ok {
				return v
			}
			if v, ok := fresh.minutes[m]; ok && m <= settled {
				return v
			}
			return quota.Minute{Minute: minuteStart(m)}
		}
		gu := GroupUse{Minutes: make([]quota.Minute, 0, shown)}
		for m := cur - shown + 1; m <= cur; m++ {
			gu.Minutes = append(gu.Minutes, at(m))
		}
		gu.Totals.LastMinute = at(cur - 1)
		sum := func(n int64) quota.Minute {
			t := quota.Minute{Minute: minuteStart(cur - n + 1)}
			for m := cur - n + 1; m <= cur; m++ {
				t = t.Add(at(m))
			}
			return t
		}
		if need := cur - s.lo + 1; need >= 60 {
			gu.Totals.Hour = sum(60)
			if need >= 1440 {
				gu.Totals.Day = sum(1440)
			}
		}
		out.Groups[s.g.Name] = gu
		if fresh.to >= fresh.from {
			u.kept[s.g.Name] = fresh
		} else {
			delete(u.kept, s.g.Name)
		}
	}
	for name, k := range u.kept {
		if k.lastRead < cur-forgetAfter {
			delete(u.kept, name)
		}
	}
	return out, nil
}

// Kept is how many minutes with use the reader keeps, over all groups (for
// tests and sizing).
func (u *UsageReader) Kept() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	n := 0
	for _, k := range u.kept {
		n += len(k.minutes)
	}
	return n
}

func minuteStart(m int64) time.Time { return time.Unix(m*60, 0).UTC() }
