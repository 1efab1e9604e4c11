package main

import (
	"math"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// upstream is the fake third-party API: every key has its own quota and
// answers 429 once it is spent.
//
// The rule, per key: a token bucket holding at most quota × (1 + tolerance)
// tokens (one second of quota plus tolerance seconds for clock edges and
// calls reordered in flight), refilled continuously at quota tokens per
// second, starting full. A call that finds at least one token takes it and
// gets 200; otherwise 429. This is GCRA with rate = quota/s and burst =
// quota × (1 + tolerance), the same algorithm allot's Allow runs in Redis
// with burst = quota.
type upstream struct {
	quota     float64 // calls per second per key
	capacity  float64
	mu        sync.Mutex
	buckets   map[string]*bucket
	limited   atomic.Int64 // 429s answered
	succeeded atomic.Int64 // 200s answered
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newUpstream(keys []string, quota int, tolerance float64) *upstream {
	return newRateUpstream(keys, float64(quota), float64(quota)*(1+tolerance))
}

// newRateUpstream is an upstream whose keys each allow rate calls per
// second with a bucket of capacity calls: GCRA with burst = capacity.
func newRateUpstream(keys []string, rate, capacity float64) *upstream {
	u := &upstream{
		quota:    rate,
		capacity: capacity,
		buckets:  make(map[string]*bucket, len(keys)),
	}
	now := time.Now()
	for _, k := range keys {
		u.buckets[k] = &bucket{tokens: u.capacity, last: now}
	}
	return u
}

// take spends one token of key; false means 429.
func (u *upstream) take(key string, now time.Time) (ok, known bool) {
	ok, known, _ = u.takeOrWait(key, now)
	return ok, known
}

// takeOrWait is take that also says, on a 429, when the next token comes.
func (u *upstream) takeOrWait(key string, now time.Time) (ok, known bool, retry time.Duration) {
	u.mu.Lock()
	defer u.mu.Unlock()
	b, known := u.buckets[key]
	if !known {
		return false, false, 0
	}
	if d := now.Sub(b.last); d > 0 {
		b.tokens = math.Min(u.capacity, b.tokens+d.Seconds()*u.quota)
		b.last = now
	}
	if b.tokens < 1 {
		return false, true, time.Duration((1 - b.tokens) / u.quota * float64(time.Second))
	}
	b.tokens--
	return true, true, 0
}

// ServeHTTP answers one call authenticated by its X-Api-Key header. A 429
// says in X-Retry-After-Ms when the key's next token comes.
func (u *upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ok, known, retry := u.takeOrWait(r.Header.Get("X-Api-Key"), time.Now())
	switch {
	case !known:
		w.WriteHeader(http.StatusUnauthorized)
	case !ok:
		u.limited.Add(1)
		w.Header().Set("X-Retry-After-Ms", strconv.FormatInt(max(retry.Milliseconds(), 1), 10))
		w.WriteHeader(http.StatusTooManyRequests)
	default:
		u.succeeded.Add(1)
		w.WriteHeader(http.StatusOK)
	}
}

// localLimiter is a node's own token bucket (strategies b, c and d): rate
// calls per second, at most one second of them saved up, starting empty.
type localLimiter struct {
	rate   float64
	tokens float64
	last   time.Time
}

func newLocalLimiter(rate float64, now time.Time) *localLimiter {
	return &localLimiter{rate: rate, last: now}
}

// wait returns how long to wait before the next call may go (0 = now, and
// the token is taken).
func (l *localLimiter) wait(now time.Time) time.Duration {
	if l.rate <= 0 {
		return 50 * time.Millisecond
	}
	if d := now.Sub(l.last); d > 0 {
		l.tokens = math.Min(math.Max(l.rate, 1), l.tokens+d.Seconds()*l.rate)
		l.last = now
	}
	if l.tokens >= 1 {
		l.tokens--
		return 0
	}
	return time.Duration((1 - l.tokens) / l.rate * float64(time.Second))
}
