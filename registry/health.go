package registry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/redis/go-redis/v9"

	"github.com/allot-io/allot/quota"
)

// Health states of a group, shown in place of State by views of an active
// group (the stored document keeps State active).
const (
	// Suspended groups are left out of every plan: their key failed (or an
	// operator suspended it). A probe follows after the probe wait.
	Suspended State = "suspended"
	// Probing groups are handed to exactly one node to test the key.
	Probing State = "probing"
)

// Health defaults and bounds.
const (
	// DefaultProbeAfter is the first wait before a suspended group is probed.
	// It is also how long a node whose report suspended a group cannot
	// suspend another.
	DefaultProbeAfter = 5 * time.Minute
	// MaxProbeWait is the longest wait between probes (the wait doubles after
	// every failed probe).
	MaxProbeWait = 6 * time.Hour
	// MaxRetryAfter caps a reported Retry-After: a longer (absurd) value
	// cools the group for this long. One node alone cools a group for at most
	// the namespace's max_cooldown (HealthSettings); a longer wait needs a
	// second holder's report.
	MaxRetryAfter = time.Hour
	// MaxReasonBytes is the longest reason kept; longer ones are truncated.
	MaxReasonBytes = 200
	// ProbeSuccesses is how many successes in a row bring a probing group back.
	ProbeSuccesses = 3
	// ReportInterval and ReportBurst are the per-node report rate health.lua
	// enforces: one report per ReportInterval (10 a second) with a burst of
	// ReportBurst. A report over it writes nothing but a counter and returns
	// ErrReportLimited.
	ReportInterval = 100 * time.Millisecond
	ReportBurst    = 20
	// ThrottleEventGap is the least time between two group.throttled
	// events of a group: a cooldown extended sooner after the last event is
	// announced by none (a node that heard one keeps checking for as long).
	ThrottleEventGap = time.Second
	// maxEjectFailures bounds N of eject_after (the script keeps N times).
	maxEjectFailures = 1000
)

// healthTunables are the numbers health.lua decides with, passed as ARGV in
// this order (ARGV[14] on): the script hard-codes no policy.
var healthTunables = []any{
	DefaultEjectAfter.String(),                         // eject_after of a group that sets none
	time.Minute.Milliseconds(),                         // failure window of eject_after "0" (display only)
	100,                                                // failures kept for eject_after "0"
	ProbeSuccesses,                                     // successes that bring a probing group back
	time.Second.Milliseconds(),                         // first default throttle wait (no Retry-After)
	time.Minute.Milliseconds(),                         // longest default throttle wait
	time.Minute.Milliseconds(),                         // a throttle this soon after a cooldown doubles the wait
	ThrottleEventGap.Milliseconds(),                    // least time between two group.throttled events
	DefaultHealthSettings().MaxSuspended,               // max_suspended default, percent
	DefaultHealthSettings().MaxCooldown.Milliseconds(), // max_cooldown default
	ReportInterval.Milliseconds(),                      // report rate per node
	ReportBurst,                                        // report burst per node
}

// Outcome is what a node reports about a call made with a group's key.
type Outcome string

// Outcomes of a report.
const (
	// Throttled: the upstream answered 429; the group cools down.
	Throttled Outcome = "throttled"
	// Failure: the key was refused (401/403); counted towards eject_after.
	Failure Outcome = "failure"
	// Success: the key worked; three in a row bring a probing group back.
	Success Outcome = "success"
)

// OutcomeOf is what an upstream HTTP status says about the key that made
// the call: 429 → Throttled, 401 and 403 → Failure (reason "HTTP 401
// Unauthorized", built from the status only, so never a secret), 2xx →
// Success, anything else "" (not the key's fault: 5xx, other statuses).
// The one rule for Go nodes (client.Classify) and HTTP nodes' observe.
func OutcomeOf(status int) (o Outcome, reason string) {
	switch {
	case status == http.StatusTooManyRequests:
		return Throttled, ""
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return Failure, "HTTP " + strconv.Itoa(status) + " " + http.StatusText(status)
	case status >= 200 && status < 300:
		return Success, ""
	}
	return "", ""
}

// ParseOutcome checks an outcome text.
func ParseOutcome(s string) (Outcome, error) {
	switch o := Outcome(s); o {
	case Throttled, Failure, Success:
		return o, nil
	}
	return "", fmt.Errorf("%w: outcome %q (want throttled, failure or success)", ErrInvalidReport, s)
}

// EjectAfter is a failure threshold: N failures within Window suspend a
// group. N == 0 means never.
type EjectAfter struct {
	N      int
	Window time.Duration
}

// DefaultEjectAfter is the threshold of a group that sets none: 3/1m.
var DefaultEjectAfter = EjectAfter{N: 3, Window: time.Minute}

// ParseEjectAfter parses "N/WINDOW" ("3/1m", "5/30s", "10/m"; WINDOW a Go
// duration of whole seconds from 1s to 24h, or a bare unit s, m, h) or "0"
// (never). "" is DefaultEjectAfter.
func ParseEjectAfter(s string) (EjectAfter, error) {
	s = strings.TrimSpace(s)
	switch s {
	case "":
		return DefaultEjectAfter, nil
	case "0":
		return EjectAfter{}, nil
	}
	bad := func() (EjectAfter, error) {
		return EjectAfter{}, fmt.Errorf("%w: %q", ErrInvalidEjectAfter, s)
	}
	ns, ws, ok := strings.Cut(s, "/")
	if !ok {
		return bad()
	}
	n, err := strconv.Atoi(ns)
	if err != nil || n < 1 || n > maxEjectFailures {
		return bad()
	}
	switch ws {
	case "s", "m", "h":
		ws = "1" + ws
	}
	w, err := time.ParseDuration(ws)
	if err != nil || w < time.Second || w > 24*time.Hour || w%time.Second != 0 {
		return bad()
	}
	return EjectAfter{N: n, Window: w}, nil
}

// String is the canonical text: "0", or N/ followed by the window in the
// largest whole unit ("3/1m", "5/90s") — the form the report script parses.
func (e EjectAfter) String() string {
	if e.N == 0 {
		return "0"
	}
	switch {
	case e.Window%time.Hour == 0:
		return fmt.Sprintf("%d/%dh", e.N, e.Window/time.Hour)
	case e.Window%time.Minute == 0:
		return fmt.Sprintf("%d/%dm", e.N, e.Window/time.Minute)
	}
	return fmt.Sprintf("%d/%ds", e.N, e.Window/time.Second)
}

// Health is a group's key health as the group JSON shows it.
type Health struct {
	// State is active, suspended or probing.
	State State `json:"state"`
	// CoolingUntil is the end of the shared cooldown (zero: none yet).
	// Calls are refused until then.
	CoolingUntil time.Time `json:"cooling_until,omitzero"`
	// Failures is how many failures the window held at the group's last
	// report (the script prunes it then, by server time).
	Failures int `json:"failures"`
	// Reason is why the group was suspended (never a secret value).
	Reason string `json:"reason,omitempty"`
	// Since is when the group was suspended.
	Since time.Time `json:"since,omitzero"`
	// NextProbe is when a suspended group will be probed (zero: not
	// scheduled — an operator's suspension lasts until resume).
	NextProbe time.Time `json:"next_probe,omitzero"`
	// Throttles, FailuresTotal and Suspensions count reports and
	// suspensions since the group was created.
	Throttles     int64 `json:"throttles_total"`
	FailuresTotal int64 `json:"failures_total"`
	Suspensions   int64 `json:"suspensions_total"`
	// Limited counts reports refused by the per-node report rate.
	Limited int64 `json:"limited_total,omitempty"`
}

// Cooling reports whether the cooldown is still running at now.
func (h Health) Cooling(now time.Time) bool { return now.Before(h.CoolingUntil) }

// Report is one report of a node about a group's key.
type Report struct {
	// Node is the reporting node (required); it must be live and hold
	// Group. An operator cools a group with Registry.Cool instead.
	Node string
	// TTL is the node's lease: a node silent for longer is ignored. The
	// namespace's stored TTL (heartbeat settings), when there is one, wins:
	// a caller cannot stretch a lapsed node's lease.
	TTL     time.Duration
	Group   string
	Outcome Outcome
	// RetryAfter is the upstream's wait for Throttled; < 0 means none was
	// given (1 s, doubling on repeats up to 60 s). Capped at MaxRetryAfter.
	RetryAfter time.Duration
	// Reason says why a call failed (truncated to MaxReasonBytes). Never
	// put a secret in it.
	Reason string
	// Session, when set, must be the node's current session (an HTTP
	// node's report on a lease): another is ErrReportSession.
	Session string
	// LeaseUntil, when set, is the expiry of the lease the report is made
	// on: from then on the report is ErrLeaseExpired.
	LeaseUntil time.Time
}

// ReportResult is what a report changed.
type ReportResult struct {
	// State is the group's health state after the report.
	State State
	// CoolingUntil is the end of the shared cooldown.
	CoolingUntil time.Time
	// Failures is how many failures the window holds now.
	Failures int
	// Transition is the state this report moved the group to ("" if none):
	// Suspended means a rebalance should run now.
	Transition string
	// Held says why a report did less than its outcome asks (the failure
	// reached eject_after, the Retry-After was long), "" if it did not:
	// HeldUncorroborated, HeldEjector, HeldCapped or HeldCooldown.
	Held string
}

// Reasons a report did less than its outcome asks (ReportResult.Held).
const (
	// HeldUncorroborated: the group has two or more holders and the
	// failures in its window come from one node only.
	HeldUncorroborated = "uncorroborated"
	// HeldEjector: the reporting node suspended another group within the
	// probe wait.
	HeldEjector = "ejector"
	// HeldCapped: max_suspended of the pool's groups are suspended or
	// probing already; the group cools for max_cooldown instead.
	HeldCapped = "capped"
	// HeldCooldown: the Retry-After was cut to max_cooldown (one node
	// alone).
	HeldCooldown = "cooldown"
)

// Transition names.
const (
	TransitionSuspended = "suspended"
	TransitionProbing   = "probing"
	TransitionRecovered = "recovered"
	TransitionResumed   = "resumed"
	// TransitionCleared: the cooldown was cleared (ClearCooldown).
	TransitionCleared = "cleared"
)

// TruncateReason cuts a reason to MaxReasonBytes on a rune boundary.
func TruncateReason(s string) string {
	if len(s) <= MaxReasonBytes {
		return s
	}
	s = s[:MaxReasonBytes]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}

// probeID is the ID of the schedule item that probes a suspended group.
func probeID(name string) string { return "probe-" + name }

// Report records one report about a group's key in one script: a throttle
// extends the shared cooldown, failures count towards eject_after and may
// suspend the group, successes bring a probing group back. Errors: ErrNotFound
// (no such group), ErrInvalidState (retired), ErrNodeLapsed (the node's lease
// lapsed: ignored), ErrNotHolder (the node neither holds the group nor
// borrowed it within keys.Keys.Borrowers' window: ignored),
// ErrReportSession and ErrLeaseExpired (Report.Session, LeaseUntil),
// ErrInvalidReport, ErrReportLimited (the node reports too fast: counted,
// ignored). A report about a draining group only cools it; failures and
// successes are ignored (documented no-op). A failure that reaches
// eject_after may still not suspend (ReportResult.Held says why): see
// docs/design.md, "Key health".
func (r *Registry) Report(ctx context.Context, rep Report) (ReportResult, error) {
	res, err := r.report(ctx, rep)
	return res, wrap(err, "report %s for group %q", rep.Outcome, rep.Group)
}

func (r *Registry) report(ctx context.Context, rep Report) (ReportResult, error) {
	if err := ValidateName(rep.Group); err != nil {
		return ReportResult{}, err
	}
	if _, err := ParseOutcome(string(rep.Outcome)); err != nil {
		return ReportResult{}, err
	}
	if rep.Node == "" {
		// Only a node's report is bounded by the holder checks: an empty
		// node would skip them (operators use Cool, Suspend, Resume).
		return ReportResult{}, fmt.Errorf("%w: no reporting node", ErrInvalidReport)
	}
	ra := int64(-1)
	if rep.Outcome == Throttled && rep.RetryAfter >= 0 {
		ra = min(rep.RetryAfter, MaxRetryAfter).Milliseconds()
	}
	var until int64
	if !rep.LeaseUntil.IsZero() {
		until = max(rep.LeaseUntil.UnixMilli(), 1)
	}
	return r.runHealth(ctx, healthRun{op: string(rep.Outcome), name: rep.Group, node: rep.Node, ttl: rep.TTL,
		retryMs: ra, reason: TruncateReason(rep.Reason), by: "node", session: rep.Session, leaseUntil: until})
}

// Suspend suspends an active or probing group until Resume (no automatic
// probe). Plan leaves it out from the next rebalance on. ErrInvalidState for
// a group that is draining, retired or already suspended.
func (r *Registry) Suspend(ctx context.Context, name, reason, by string) (Health, error) {
	res, err := r.runHealth(ctx, healthRun{op: "suspend", name: name, retryMs: -1, reason: TruncateReason(reason), by: by})
	if err == nil && res.Transition == "" {
		if res.State == Suspended {
			err = fmt.Errorf("%w: group is already suspended", ErrInvalidState)
		} else {
			err = fmt.Errorf("%w: group is not active", ErrInvalidState)
		}
	}
	if err != nil {
		return Health{}, wrap(err, "suspend group %q", name)
	}
	return r.healthOf(ctx, name)
}

// Resume makes a suspended or probing group active again and resets its
// failure window, probe wait and cooldown.
func (r *Registry) Resume(ctx context.Context, name, by string) (Health, error) {
	if _, err := r.runHealth(ctx, healthRun{op: "resume", name: name, retryMs: -1, by: by}); err != nil {
		return Health{}, wrap(err, "resume group %q", name)
	}
	return r.healthOf(ctx, name)
}

// Cool cools a group by hand for d (at most MaxRetryAfter), as an upstream
// 429 reported by a holder does, with no holder check and no max_cooldown
// cap: every holder's Allow/Reserve refuses until then. It counts as a
// throttle in the group's usage. ClearCooldown ends it.
func (r *Registry) Cool(ctx context.Context, name string, d time.Duration, by string) (Health, error) {
	if d <= 0 {
		return Health{}, wrap(fmt.Errorf("%w: cooldown %v is not positive", ErrInvalidReport, d), "cool group %q", name)
	}
	if _, err := r.runHealth(ctx, healthRun{op: "throttled", name: name, retryMs: min(d, MaxRetryAfter).Milliseconds(), by: by}); err != nil {
		return Health{}, wrap(err, "cool group %q", name)
	}
	return r.healthOf(ctx, name)
}

// ClearCooldown ends group name's shared cooldown now (and resets the
// doubling of default waits); its suspension, if any, stays. Event
// group.cooldown_cleared.
func (r *Registry) ClearCooldown(ctx context.Context, name, by string) (Health, error) {
	if _, err := r.runHealth(ctx, healthRun{op: "cool_clear", name: name, retryMs: -1, by: by}); err != nil {
		return Health{}, wrap(err, "clear cooldown of group %q", name)
	}
	return r.healthOf(ctx, name)
}

// probe turns a suspended group probing when its probe item is due (run by
// ApplyDue). It reports whether it did.
func (r *Registry) probe(ctx context.Context, name, by string) (bool, error) {
	res, err := r.runHealth(ctx, healthRun{op: "probe", name: name, retryMs: -1, by: by})
	if err != nil {
		return false, err
	}
	return res.Transition == TransitionProbing, nil
}

// healthRun is one run of health.lua (see its header for each argument).
type healthRun struct {
	op, name, node string
	ttl            time.Duration
	retryMs        int64
	reason, by     string
	session        string // "" = not checked
	leaseUntil     int64  // ms; 0 = no lease
}

func (r *Registry) runHealth(ctx context.Context, h healthRun) (ReportResult, error) {
	op, name, node := h.op, h.name, h.node
	if err := ValidateName(name); err != nil {
		return ReportResult{}, err
	}
	k := r.keys
	item, err := encodeScheduled(Scheduled{ID: probeID(name), Group: name, Op: OpProbe, By: "health"}, false)
	if err != nil {
		return ReportResult{}, err
	}
	args := append([]any{op, node, h.ttl.Milliseconds(), h.retryMs, h.reason, r.probeAfter.Milliseconds(), MaxProbeWait.Milliseconds(),
		h.by, k.Events(), LogMaxLen, probeID(name), item, int64(quota.UsageTTL / time.Second)},
		healthTunables...)
	args = append(args, h.session, h.leaseUntil)
	vals, err := healthScript.Run(ctx, r.rdb,
		[]string{k.Group(name), k.Health(name), k.Unhealthy(), k.State(), k.Log(), k.Schedule(),
			k.ScheduleItems(), k.Nodes(), k.Assign(), k.Revoked(), k.UsagePrefix(name),
			k.Settings(), k.Holders(), k.Groups(), k.Ejectors(), k.Reporters(), k.Borrowers(name), k.Members()},
		args...,
	).StringSlice()
	if err != nil {
		return ReportResult{}, err
	}
	if len(vals) != 6 {
		return ReportResult{}, fmt.Errorf("registry: unexpected health reply %q", vals)
	}
	until, _ := strconv.ParseInt(vals[2], 10, 64)
	fails, _ := strconv.Atoi(vals[3])
	res := ReportResult{State: State(vals[1]), Failures: fails, Transition: vals[4], Held: vals[5]}
	if until > 0 {
		res.CoolingUntil = time.UnixMilli(until).UTC()
	}
	switch vals[0] {
	case "ok", "ignored":
		if res.Transition != "" {
			r.log.Info("group health changed", "group", name, "to", res.Transition, "node", node, "by", h.by)
		}
		if res.Held != "" {
			r.log.Info("report held back", "group", name, "node", node, "why", res.Held)
		}
		return res, nil
	case "limited":
		return res, ErrReportLimited
	case "missing":
		return res, ErrNotFound
	case "retired":
		return res, fmt.Errorf("%w: group is retired", ErrInvalidState)
	case "lapsed":
		return res, ErrNodeLapsed
	case "notheld":
		return res, ErrNotHolder
	case "session":
		return res, ErrReportSession
	case "expired":
		return res, ErrLeaseExpired
	case "claimed":
		return res, errClaimed
	}
	return res, fmt.Errorf("registry: unexpected health reply %q", vals)
}

// HealthOf returns the health of group name (ErrNotFound if it does not exist).
func (r *Registry) HealthOf(ctx context.Context, name string) (Health, error) {
	if err := ValidateName(name); err != nil {
		return Health{}, wrap(err, "health of group %q", name)
	}
	h, err := r.healthOf(ctx, name)
	return h, wrap(err, "health of group %q", name)
}

func (r *Registry) healthOf(ctx context.Context, name string) (Health, error) {
	g, err := r.get(ctx, name)
	if err != nil {
		return Health{}, err
	}
	gs, err := r.WithHealth(ctx, []Group{g})
	if err != nil {
		return Health{}, err
	}
	return *gs[0].Health, nil
}

// WithHealth returns copies of groups with Health filled in (one round trip)
// and, for an active group that is suspended or probing, State showing it.
// It is what views (group get/list, status) show; the stored documents are
// unchanged.
func (r *Registry) WithHealth(ctx context.Context, groups []Group) ([]Group, error) {
	out := make([]Group, len(groups))
	if len(groups) == 0 {
		return out, nil
	}
	pipe := r.rdb.Pipeline()
	cmds := make([]*redis.MapStringStringCmd, len(groups))
	for i, g := range groups {
		cmds[i] = pipe.HGetAll(ctx, r.keys.Health(g.Name))
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, wrap(err, "read group health")
	}
	for i, g := range groups {
		c := g.clone()
		h := parseHealth(cmds[i].Val(), g)
		c.Health = &h
		if g.State == Active && h.State != Active {
			c.State = h.State
		}
		out[i] = c
	}
	return out, nil
}

// parseHealth reads a health hash; one left by a deleted group of the same
// name (another created time) counts as empty.
func parseHealth(m map[string]string, g Group) Health {
	h := Health{State: Active}
	if m["created"] != "" && m["created"] != isoMillis(g.Created) {
		return h
	}
	ms := func(f string) time.Time {
		n, _ := strconv.ParseInt(m[f], 10, 64)
		if n <= 0 {
			return time.Time{}
		}
		return time.UnixMilli(n).UTC()
	}
	i64 := func(f string) int64 { n, _ := strconv.ParseInt(m[f], 10, 64); return n }
	if s := State(m["state"]); s == Suspended || s == Probing {
		h.State = s
	}
	h.CoolingUntil = ms("cooling_until")
	if f := m["fails"]; f != "" {
		// The failures the script kept in the window at its last run (by
		// server time): the count its reply gave.
		h.Failures = strings.Count(f, ",") + 1
	}
	if h.State != Active {
		h.Reason = m["reason"]
		h.Since = ms("since")
		h.NextProbe = ms("next_probe")
	}
	h.Throttles, h.FailuresTotal, h.Suspensions = i64("throttles_total"), i64("failures_total"), i64("suspensions_total")
	h.Limited = i64("limited_total")
	return h
}

// isoMillis formats t as the scripts stamp created (RFC 3339, ms, UTC).
func isoMillis(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

// Unhealthy returns the groups that are suspended or probing, group ->
// state, as a planner needs them: one HGETALL. Entries left by a deleted
// group are returned too; ApplyHealth matches them to the live documents.
func (r *Registry) Unhealthy(ctx context.Context) (map[string]UnhealthyEntry, error) {
	m, err := r.rdb.HGetAll(ctx, r.keys.Unhealthy()).Result()
	if err != nil {
		return nil, wrap(err, "read unhealthy groups")
	}
	return parseUnhealthy(m), nil
}

// parseUnhealthy decodes the :unhealthy hash, group -> "state\tcreated".
func parseUnhealthy(m map[string]string) map[string]UnhealthyEntry {
	out := make(map[string]UnhealthyEntry, len(m))
	for g, v := range m {
		st, created, _ := strings.Cut(v, "\t")
		out[g] = UnhealthyEntry{State: State(st), Created: created}
	}
	return out
}

// UnhealthyEntry is one suspended or probing group of Unhealthy.
type UnhealthyEntry struct {
	State State
	// Created is the created time of the group document it applies to.
	Created string
}

// ApplyHealth returns groups with the State of every active group that
// unhealthy lists as suspended or probing replaced by that state (entries of
// an older group of the same name are ignored). Pure: the planner's view.
func ApplyHealth(groups []Group, unhealthy map[string]UnhealthyEntry) []Group {
	if len(unhealthy) == 0 {
		return groups
	}
	out := make([]Group, len(groups))
	for i, g := range groups {
		out[i] = g
		e, ok := unhealthy[g.Name]
		if !ok || g.State != Active || e.Created != isoMillis(g.Created) {
			continue
		}
		if e.State == Suspended || e.State == Probing {
			out[i].State = e.State
		}
	}
	return out
}
