package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/allot-io/allot/registry"
)

// NoRetryAfter is Verdict.RetryAfter (and the retryAfter of ReportThrottled)
// when the upstream gave no usable Retry-After: the pool then cools the
// group 1 s, doubling on repeats up to 60 s.
const NoRetryAfter time.Duration = -1

// Verdict is what an upstream answer says about the key that made the call.
type Verdict struct {
	// Outcome is throttled, failure or success; "" means the answer says
	// nothing about the key (5xx, transport errors, other statuses).
	Outcome registry.Outcome
	// RetryAfter is the upstream's wait for a throttled answer;
	// NoRetryAfter when it gave none.
	RetryAfter time.Duration
	// Reason describes a failure ("HTTP 401 Unauthorized"). It is built
	// from the status only, never from the body or headers, so it cannot
	// carry a secret.
	Reason string
}

// Classify is the rule ObserveHTTP applies to an upstream answer: 429 →
// throttled (Retry-After in seconds or as an HTTP date, relative to now;
// none or unreadable → NoRetryAfter), 401 and 403 → failure, 2xx →
// success, anything else and transport errors → nothing (not the key's
// fault). Pure: no I/O, the clock is an argument.
func Classify(resp *http.Response, err error, now time.Time) Verdict {
	if err != nil || resp == nil {
		return Verdict{}
	}
	o, reason := registry.OutcomeOf(resp.StatusCode)
	v := Verdict{Outcome: o, Reason: reason}
	if o == registry.Throttled {
		v.RetryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), now)
	}
	return v
}

// parseRetryAfter reads a Retry-After value: delay-seconds or an HTTP date.
// Unreadable or missing gives NoRetryAfter; a date in the past gives 0; anything
// above registry.MaxRetryAfter is capped there.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return NoRetryAfter
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n < 0 {
			return NoRetryAfter
		}
		if n > int64(registry.MaxRetryAfter/time.Second) {
			return registry.MaxRetryAfter
		}
		return time.Duration(n) * time.Second
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return NoRetryAfter
	}
	return min(max(t.Sub(now), 0), registry.MaxRetryAfter)
}

// ObserveHTTP tells the pool what the upstream answered to a call made
// with group's key (resp and err as http.Client.Do returned them), by
// Classify: a 429 cools the group for every holder, 401/403 count towards
// its eject_after, 2xx count for a probe. Answers that say nothing about
// the key cost nothing (no round trip, nil). The body is never read.
// Errors are those of the Report methods (one wrapping
// registry.ErrReportLimited past 10 reports a second from this node, 2xx
// about a healthy group not counted: the report was ignored); a caller may
// ignore them.
func (c *Client) ObserveHTTP(ctx context.Context, group string, resp *http.Response, err error) error {
	return c.observe(ctx, group, resp, err, c.report)
}

// observe classifies an upstream answer and sends it by report.
func (c *Client) observe(ctx context.Context, group string, resp *http.Response, err error,
	report func(ctx context.Context, group string, o registry.Outcome, retryAfter time.Duration, reason string) error) error {
	v := Classify(resp, err, time.Now())
	switch v.Outcome {
	case registry.Throttled:
		return report(ctx, group, registry.Throttled, v.RetryAfter, "")
	case registry.Failure:
		return report(ctx, group, registry.Failure, 0, v.Reason)
	case registry.Success:
		return report(ctx, group, registry.Success, 0, "")
	}
	return nil
}

// ReportThrottled says the upstream throttled group's key: every holder's
// calls are refused until the shared cooldown ends (now + retryAfter, Redis
// server time, only ever extended; retryAfter < 0 (NoRetryAfter) means the
// upstream gave none: 1 s, doubling on repeats up to 60 s; capped at 1 h, and
// at the namespace's max_cooldown (default 60 s) unless a second holder also
// asks for a long wait). One round trip, bounded by ctx; safe for concurrent
// use.
func (c *Client) ReportThrottled(ctx context.Context, group string, retryAfter time.Duration) error {
	return c.report(ctx, group, registry.Throttled, retryAfter, "")
}

// ReportFailure says the upstream refused group's key (revoked, out of
// credit): failures are counted in a shared window and at the group's
// eject_after it is suspended and this node runs a rebalance so every holder
// moves to another group — when another holder's failures corroborate it
// (a group held by two or more nodes), when this node suspended no other
// group within the probe wait, and while fewer than max_suspended of the
// pool's groups are suspended (see docs/design.md, "Key health"). reason is kept (≤ 200 bytes) and shown in events
// and the UI: never put a secret in it.
func (c *Client) ReportFailure(ctx context.Context, group, reason string) error {
	return c.report(ctx, group, registry.Failure, 0, reason)
}

// ReportSuccess says a call with group's key worked; three in a row bring a
// probing group back to active.
func (c *Client) ReportSuccess(ctx context.Context, group string) error {
	return c.report(ctx, group, registry.Success, 0, "")
}

// report runs one report script. Reports about a group the node does not
// hold return ErrNotHeld without a round trip; the script also checks the
// node's lease and its holding, as the pool sees them.
func (c *Client) report(ctx context.Context, group string, o registry.Outcome, retryAfter time.Duration, reason string) error {
	if !c.Assignment().Holds(group) {
		return fmt.Errorf("%w: %q", ErrNotHeld, group)
	}
	return c.rep.report(ctx, group, o, retryAfter, reason)
}

// reporter is a node's side of key health, a small type on the Client as
// etcd's Election sits on a Session: it sends the node's reports, remembers
// the cooldowns they set, and asks for a plan when one suspended or
// recovered a group. Safe for concurrent use.
type reporter struct {
	reg  *registry.Registry
	node string
	ttl  time.Duration
	log  *slog.Logger
	// cooling: group -> time.Time, cooling_until as this node's reports
	// (and CoolingUntil reads) last saw it.
	cooling sync.Map
	// rebalance plans now, under the client's rebalancing guard.
	rebalance func(why string)
}

func (r *reporter) report(ctx context.Context, group string, o registry.Outcome, retryAfter time.Duration, reason string) error {
	res, err := r.reg.Report(ctx, registry.Report{
		Node: r.node, TTL: r.ttl, Group: group, Outcome: o, RetryAfter: retryAfter, Reason: reason,
	})
	if errors.Is(err, registry.ErrNotHolder) {
		return fmt.Errorf("%w: %q (%w)", ErrNotHeld, group, err)
	}
	if err != nil {
		return fmt.Errorf("client: %w", err)
	}
	if !res.CoolingUntil.IsZero() {
		r.cooling.Store(group, res.CoolingUntil)
	}
	switch res.Transition {
	case registry.TransitionSuspended:
		r.log.Warn("allot: group suspended; rebalancing", "group", group, "reason", registry.TruncateReason(reason))
		r.rebalance("suspension")
	case registry.TransitionRecovered:
		r.log.Info("allot: group recovered", "group", group)
		r.rebalance("recovery")
	}
	return nil
}

// rebalanceNow moves the holders of a group this node just suspended (or
// spreads a recovered one) now rather than at the next beat, without making
// the reporting caller wait for the plan. It takes the same guard as the
// beats' plans (at most one rebalance at a time per client): when a plan is
// in flight it may have read the pool before the change, so the plan that
// holds the guard runs once more when it is done.
func (c *Client) rebalanceNow(why string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || !c.started {
		return
	}
	// Ask first, then try the guard: a holder that releases it in between
	// sees the request (see releaseRebalancing).
	c.rebalanceAgain.Store(why)
	if !c.rebalancing.CompareAndSwap(false, true) {
		return
	}
	c.workers.Add(1)
	go func() {
		defer c.workers.Done()
		c.releaseRebalancing()
	}()
}

// releaseRebalancing is how the holder of the rebalancing guard lets it go:
// a plan rebalanceNow asked for meanwhile runs first, under the guard.
func (c *Client) releaseRebalancing() {
	for {
		if why, _ := c.rebalanceAgain.Swap("").(string); why != "" {
			c.rebalanceRetrying(c.ctx, why)
			c.forceFetch()
			continue
		}
		c.rebalancing.Store(false)
		why, _ := c.rebalanceAgain.Load().(string)
		if why == "" || !c.rebalancing.CompareAndSwap(false, true) {
			return
		}
	}
}

// Cooling returns when group's shared cooldown ends as far as this node
// knows from its own reports (lock-free, no round trip), and whether it is
// still running. Other holders' throttles reach it through Allow, which
// refuses while the pool's cooldown runs; CoolingUntil reads that value.
func (c *Client) Cooling(group string) (until time.Time, cooling bool) {
	v, ok := c.rep.cooling.Load(group)
	if !ok {
		return time.Time{}, false
	}
	until = v.(time.Time)
	return until, time.Now().Before(until)
}

// CoolingUntil reads the end of group's shared cooldown from Redis (zero
// if it was never throttled): what every holder's limiter checks.
func (c *Client) CoolingUntil(ctx context.Context, group string) (time.Time, error) {
	h, err := c.reg.HealthOf(ctx, group)
	if err != nil {
		return time.Time{}, fmt.Errorf("client: %w", err)
	}
	if !h.CoolingUntil.IsZero() {
		c.rep.cooling.Store(group, h.CoolingUntil)
	}
	return h.CoolingUntil, nil
}
