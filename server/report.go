package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/allot-io/allot/allocator"
	"github.com/allot-io/allot/registry"
)

// reportRequest is the body of POST /v1/nodes/{id}/report: what the upstream
// API answered to a call made with a group's key.
type reportRequest struct {
	Group string `json:"group"`
	// Outcome is throttled, failure or success.
	Outcome string `json:"outcome"`
	// RetryAfterMS is the upstream's Retry-After in ms for throttled;
	// absent or negative = none given (1 s, doubling on repeats up to 60 s);
	// capped at one hour.
	RetryAfterMS *int64 `json:"retry_after_ms"`
	// Reason says why a call failed; truncated to 200 bytes. Never a secret.
	Reason string `json:"reason"`
}

// ReportAnswer is the answer of POST /v1/nodes/{id}/report.
type ReportAnswer struct {
	Group string `json:"group"`
	// State is the group's health state after the report.
	State string `json:"state"`
	// CoolingUntil is the end of the shared cooldown (Unix ms; 0 = none):
	// the node should not call the upstream with this key before then.
	CoolingUntil int64 `json:"cooling_until"`
	// Failures is how many failures the group's window holds.
	Failures int `json:"failures"`
	// Transition is what the report changed ("" | suspended | recovered).
	Transition string `json:"transition,omitempty"`
	// Held says why the report did less than its outcome asks
	// (registry.ReportResult.Held: uncorroborated, ejector, capped,
	// cooldown); absent when it did not.
	Held string `json:"held,omitempty"`
}

// healthRequest is the optional body of POST /v1/groups/{name}/suspend.
type healthRequest struct {
	Reason string `json:"reason"`
}

// nodeReport records one report of an HTTP node. Reports from a node whose
// lease lapsed, or about a group it does not hold, are answered 409 and
// change nothing.
func (s *Server) nodeReport(w http.ResponseWriter, r *http.Request) error {
	var req reportRequest
	if err := decodeJSON(w, r, MaxBodyBytes, &req, false); err != nil {
		return err
	}
	o, err := registry.ParseOutcome(req.Outcome)
	if err != nil {
		return errInvalid("outcome %q: want throttled, failure or success", req.Outcome)
	}
	if err := registry.ValidateName(req.Group); err != nil {
		return err
	}
	ra := time.Duration(-1)
	if req.RetryAfterMS != nil && *req.RetryAfterMS >= 0 {
		ra = time.Duration(min(*req.RetryAfterMS, registry.MaxRetryAfter.Milliseconds())) * time.Millisecond
	}
	id := r.PathValue("id")
	if err := s.checkSession(r, id); err != nil {
		return err
	}
	return s.report(w, r, registry.Report{
		Node: id, TTL: s.hbCfg.TTL, Group: req.Group, Outcome: o, RetryAfter: ra, Reason: req.Reason,
	})
}

// report runs one node report (the report route's, or a lease's observe)
// and answers it: a ReportAnswer, or why it was ignored (409, 403 for a
// lease of another session, 429 past the report rate).
func (s *Server) report(w http.ResponseWriter, r *http.Request, rep registry.Report) error {
	id := rep.Node
	res, err := s.reg.Report(r.Context(), rep)
	switch {
	case errors.Is(err, registry.ErrNodeLapsed):
		return errConflict("node %q is not live (its lease lapsed or it never beat): report ignored", id)
	case errors.Is(err, registry.ErrNotHolder):
		return errConflict("node %q does not hold group %q: report ignored", id, rep.Group)
	case errors.Is(err, registry.ErrReportSession):
		return errSession("the lease is of another session of node %q: report ignored", id)
	case errors.Is(err, registry.ErrLeaseExpired):
		return errConflict("the lease has expired: report ignored")
	case errors.Is(err, registry.ErrReportLimited):
		return &apiError{status: http.StatusTooManyRequests, code: CodeTooManyRequests,
			message: fmt.Sprintf("node %q reports faster than %v a report (burst %d): report ignored", id, registry.ReportInterval, registry.ReportBurst), err: err}
	case err != nil:
		return err
	}
	if res.Transition == registry.TransitionSuspended || res.Transition == registry.TransitionRecovered {
		s.log.Info("group health changed", "group", rep.Group, "to", res.Transition, "node", id)
		s.Nudge()
	}
	a := ReportAnswer{Group: rep.Group, State: string(res.State), Failures: res.Failures, Transition: res.Transition, Held: res.Held}
	if !res.CoolingUntil.IsZero() {
		a.CoolingUntil = res.CoolingUntil.UnixMilli()
	}
	writeJSON(w, http.StatusOK, a)
	return nil
}

// suspendGroup suspends a group until it is resumed (no automatic probe).
func (s *Server) suspendGroup(w http.ResponseWriter, r *http.Request) error {
	var req healthRequest
	if err := decodeJSON(w, r, MaxBodyBytes, &req, true); err != nil {
		return err
	}
	name := r.PathValue("name")
	if _, err := s.reg.Suspend(r.Context(), name, req.Reason, actor(r)); err != nil {
		return err
	}
	s.log.Info("group suspended", "group", name, "by", actor(r))
	s.Nudge()
	return s.writeGroup(w, r, name)
}

// resumeGroup makes a suspended or probing group active again.
func (s *Server) resumeGroup(w http.ResponseWriter, r *http.Request) error {
	var req struct{}
	if err := decodeJSON(w, r, MaxBodyBytes, &req, true); err != nil {
		return err
	}
	name := r.PathValue("name")
	if _, err := s.reg.Resume(r.Context(), name, actor(r)); err != nil {
		return err
	}
	s.log.Info("group resumed", "group", name, "by", actor(r))
	s.Nudge()
	return s.writeGroup(w, r, name)
}

// coolGroup ends a group's cooldown ({"clear": true}, the only action).
func (s *Server) coolGroup(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		Clear bool `json:"clear"`
	}
	if err := decodeJSON(w, r, MaxBodyBytes, &req, false); err != nil {
		return err
	}
	if !req.Clear {
		return errInvalid(`nothing to do: send {"clear": true}`)
	}
	name := r.PathValue("name")
	if _, err := s.reg.ClearCooldown(r.Context(), name, actor(r)); err != nil {
		return err
	}
	s.log.Info("group cooldown cleared", "group", name, "by", actor(r))
	return s.writeGroup(w, r, name)
}

// writeGroup answers with the group JSON (masked) of name, health included.
func (s *Server) writeGroup(w http.ResponseWriter, r *http.Request, name string) error {
	g, err := s.reg.Get(r.Context(), name)
	if err != nil {
		return err
	}
	gs, err := s.reg.WithHealth(r.Context(), []registry.Group{g})
	if err != nil {
		return err
	}
	holders, err := s.liveHolders(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, allocator.View(gs[0], holders[name], false))
	return nil
}

// healthCollector exports the key health counters of every group at scrape
// time (they live in Redis, counted by the report script).
type healthCollector struct{ s *Server }

var (
	descThrottles   = prometheus.NewDesc("allot_group_throttles_total", "Throttled (429) reports per group.", []string{"group"}, nil)
	descFailures    = prometheus.NewDesc("allot_group_failures_total", "Failure (401/403) reports per group.", []string{"group"}, nil)
	descSuspensions = prometheus.NewDesc("allot_group_suspensions_total", "Suspensions per group (by failures or an operator).", []string{"group"}, nil)
	descCooling     = prometheus.NewDesc("allot_group_cooling", "1 while the group's shared cooldown runs.", []string{"group"}, nil)
	descSuspended   = prometheus.NewDesc("allot_group_suspended", "1 while the group is suspended or probing (its key is out of the pool), else 0.", []string{"group"}, nil)
)

func (c *healthCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descThrottles
	ch <- descFailures
	ch <- descSuspensions
	ch <- descCooling
	ch <- descSuspended
}

func (c *healthCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(c.s.ctx, scrapeTimeout)
	defer cancel()
	groups, err := c.s.reg.List(ctx)
	if err != nil {
		return
	}
	if groups, err = c.s.reg.WithHealth(ctx, groups); err != nil {
		return
	}
	now := time.Now()
	for _, g := range groups {
		h := g.Health
		if h == nil {
			continue
		}
		cooling := 0.0
		if h.Cooling(now) {
			cooling = 1
		}
		ch <- prometheus.MustNewConstMetric(descThrottles, prometheus.CounterValue, float64(h.Throttles), g.Name)
		ch <- prometheus.MustNewConstMetric(descFailures, prometheus.CounterValue, float64(h.FailuresTotal), g.Name)
		ch <- prometheus.MustNewConstMetric(descSuspensions, prometheus.CounterValue, float64(h.Suspensions), g.Name)
		ch <- prometheus.MustNewConstMetric(descCooling, prometheus.GaugeValue, cooling, g.Name)
		suspended := 0.0
		if g.State == registry.Suspended || g.State == registry.Probing {
			suspended = 1
		}
		ch <- prometheus.MustNewConstMetric(descSuspended, prometheus.GaugeValue, suspended, g.Name)
	}
}
