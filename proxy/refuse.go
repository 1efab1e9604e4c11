package proxy

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/allot-io/allot/client"
	"github.com/allot-io/allot/quota"
)

// Jitter of the waits the proxy's refusals ask for: a refused caller is
// told to wait the limiter's RetryAfter plus a random part of up to half
// of it (at least jitterMin, at most jitterMax), so refused callers do not
// all come back in the same instant. Never less than RetryAfter: a retry
// before it is refused for sure.
const (
	jitterMin = 10 * time.Millisecond
	jitterMax = time.Second
)

// standbyWait is the wait a refusal asks for while the node holds no key.
const standbyWait = time.Second

// jittered is d plus its jitter (see jitterMin).
func (p *Proxy) jittered(d time.Duration) time.Duration {
	spread := min(max(d/2, jitterMin), jitterMax)
	return d + time.Duration(p.o.random()*float64(spread))
}

// errorBody is the JSON of the proxy's own errors: the OpenAI API's shape,
// so the OpenAI SDKs read its type and code.
type errorBody struct {
	Error struct {
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Param   *string `json:"param"`
		Code    string  `json:"code"`
	} `json:"error"`
}

// fail answers one of the proxy's own errors.
func (p *Proxy) fail(w http.ResponseWriter, status int, typ, code, msg string) {
	var b errorBody
	b.Error.Message, b.Error.Type, b.Error.Code = msg, typ, code
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(b)
}

// setWait sets Retry-After (whole seconds, rounded up) and retry-after-ms
// (the OpenAI SDKs honour it to the millisecond) for a jittered d.
func (p *Proxy) setWait(w http.ResponseWriter, d time.Duration) time.Duration {
	wait := p.jittered(d)
	ms := int64(math.Ceil(float64(wait) / float64(time.Millisecond)))
	w.Header().Set("Retry-After", strconv.FormatInt(max(1, int64(math.Ceil(wait.Seconds()))), 10))
	w.Header().Set("retry-after-ms", strconv.FormatInt(max(1, ms), 10))
	return wait
}

// refuse answers 429 for a call the pool's limits refused.
func (p *Proxy) refuse(w http.ResponseWriter, rl *client.RateLimitError) {
	reason, kind := "rate_limited", kindOf(rl.Limit)
	if rl.Limit == "cooling" {
		reason = "cooling"
	}
	p.m.refusals.WithLabelValues(reason).Inc()
	wait := p.setWait(w, rl.RetryAfter)
	if p.o.openAI {
		rateHeaders(w.Header(), rl.Limit, rl.Remaining, rl.ResetAfter)
	}
	msg := fmt.Sprintf("allot proxy: rate limit %s of key group %s reached; retry in %v", rl.Limit, rl.Group, wait.Round(time.Millisecond))
	if reason == "cooling" {
		msg = fmt.Sprintf("allot proxy: the upstream throttled key group %s, which cools down; retry in %v", rl.Group, wait.Round(time.Millisecond))
	}
	p.fail(w, http.StatusTooManyRequests, kind, "rate_limit_exceeded", msg)
}

// unavailable answers 503 with a jittered wait.
func (p *Proxy) unavailable(w http.ResponseWriter, code, msg string) {
	p.setWait(w, standbyWait)
	p.fail(w, http.StatusServiceUnavailable, "api_error", code, msg)
}

// kindOf is the kind of a limit text: "tokens" for a token limit,
// "requests" for a request limit or a cooldown.
func kindOf(limit string) string {
	if ls, err := quota.Parse(limit); err == nil && len(ls) == 1 {
		return string(ls[0].Kind)
	}
	return string(quota.Requests)
}

// rateHeaders sets the OpenAI-style x-ratelimit-* headers of the pool's
// tightest limit (limit, as Reservation.Limit or RateLimitError.Limit):
// limit-KIND is the limit's burst (what a full limit holds),
// remaining-KIND what it has left, reset-KIND how long until it is full
// again, as a Go duration ("1.2s", "6m0s"). The upstream's own
// x-ratelimit-* headers (one key's view) are dropped when the pool has
// one. No limit (a group without a quota): nothing is set.
func rateHeaders(h http.Header, limit string, remaining int64, reset time.Duration) {
	if limit == "" {
		return
	}
	for k := range h {
		if strings.HasPrefix(strings.ToLower(k), "x-ratelimit-") {
			delete(h, k)
		}
	}
	kind := kindOf(limit)
	if ls, err := quota.Parse(limit); err == nil && len(ls) == 1 {
		h.Set("x-ratelimit-limit-"+kind, strconv.FormatInt(ls[0].EffectiveBurst(), 10))
	}
	h.Set("x-ratelimit-remaining-"+kind, strconv.FormatInt(max(remaining, 0), 10))
	h.Set("x-ratelimit-reset-"+kind, max(reset, 0).Round(time.Millisecond).String())
}
