package quota

import (
	"sync"
	"time"
)

// Local applies limits in process, for a node that cannot reach Redis: each
// limit scaled by the node's share of the group (its rate and burst × share),
// with the same all-or-nothing GCRA as the script. It is safe for concurrent
// use. The zero value is not usable; call NewLocal.
type Local struct {
	now func() time.Time

	mu   sync.Mutex
	tats map[string]time.Time // group + "/" + limit field -> TAT
}

// NewLocal returns an empty Local on clock now (nil: time.Now).
func NewLocal(now func() time.Time) *Local {
	if now == nil {
		now = time.Now
	}
	return &Local{now: now, tats: make(map[string]time.Time)}
}

// Take takes requests and tokens from every limit of ls scaled by share
// (0 < share <= 1; anything else counts as 1), or nothing when any would go
// over. A cost above a scaled burst needs the whole scaled budget free (a
// share's burst can be below what a call costs). Result.Minute is left 0.
func (lo *Local) Take(group string, ls Limits, share float64, requests, tokens int64) (Result, error) {
	if err := ls.Validate(); err != nil {
		return Result{}, err
	}
	if err := ls.CheckCost(requests, tokens); err != nil {
		return Result{}, err
	}
	if share <= 0 || share > 1 {
		share = 1
	}
	lo.mu.Lock()
	defer lo.mu.Unlock()
	now := lo.now()
	news := make([]time.Time, len(ls))
	worst, wait := -1, time.Duration(0)
	for i, l := range ls {
		interval := time.Duration(float64(l.Per) / (float64(l.Rate) * share))
		cost := l.Cost(requests, tokens)
		burst := max(float64(l.EffectiveBurst())*share, float64(cost), 1)
		tat := lo.tats[group+"/"+l.field()]
		if tat.Before(now) {
			tat = now
		}
		news[i] = tat.Add(interval * time.Duration(cost))
		allowAt := news[i].Add(-time.Duration(float64(interval) * burst))
		if d := allowAt.Sub(now); d > 0 && d > wait {
			worst, wait = i, d
		}
	}
	if worst >= 0 {
		return Result{Limit: worst, RetryAfter: wait}, nil
	}
	for i, l := range ls {
		lo.tats[group+"/"+l.field()] = news[i]
	}
	return Result{Allowed: true}, nil
}

// Settle adds tokens (negative: gives them back) to every token limit of
// ls scaled by share, never refusing, never below empty and, as the
// script, never more than one period in debt. Invalid limits are ignored
// (Take refused them).
func (lo *Local) Settle(group string, ls Limits, share float64, tokens int64) {
	if ls.Validate() != nil {
		return
	}
	if share <= 0 || share > 1 {
		share = 1
	}
	lo.mu.Lock()
	defer lo.mu.Unlock()
	now := lo.now()
	for _, l := range ls {
		if l.Kind != Tokens {
			continue
		}
		interval := time.Duration(float64(l.Per) / (float64(l.Rate) * share))
		k := group + "/" + l.field()
		tat := lo.tats[k]
		if tat.Before(now) {
			tat = now
		}
		// In float64: interval × tokens can pass int64's range (1 token/d
		// settled at MaxCost), the clamp brings it back.
		burst := max(float64(l.EffectiveBurst())*share, 1)
		room := float64(interval)*burst + float64(l.Per) - float64(tat.Sub(now))
		tat = tat.Add(time.Duration(min(float64(interval)*float64(tokens), room)))
		if tat.Before(now) {
			tat = now
		}
		lo.tats[k] = tat
	}
}

// Reset forgets every limit's state, so the next outage starts with full
// budgets (the shared state in Redis was the truth in between).
func (lo *Local) Reset() {
	lo.mu.Lock()
	defer lo.mu.Unlock()
	clear(lo.tats)
}
