package server

import (
	"context"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/allot-io/allot/registry"
)

// groupUsage answers GET /v1/groups/{name}/usage?since=1h: the group's use
// per minute, [{minute, requests, tokens, rejected, throttled, failures}],
// oldest first, minutes without use left out.
func (s *Server) groupUsage(w http.ResponseWriter, r *http.Request) error {
	since := time.Hour
	if v := r.URL.Query().Get("since"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 || d > registry.MaxUsageWindow {
			return errInvalid("invalid since %q: want a duration above 0, at most 24h (e.g. 15m, 1h)", v)
		}
		since = d
	}
	name := r.PathValue("name")
	if _, err := s.reg.Get(r.Context(), name); err != nil {
		return err
	}
	u, err := s.reg.Usage(r.Context(), name, since)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, u)
	return nil
}

// usageCollector exports the limiter's counts at scrape time: running
// totals per group as counters, and per limit the fraction used in the last
// full minute.
type usageCollector struct{ s *Server }

var (
	descGroupRequests = prometheus.NewDesc("allot_group_requests_total", "Calls allowed by the group's limiter (totals reset at most daily).", []string{"group"}, nil)
	descGroupTokens   = prometheus.NewDesc("allot_group_tokens_total", "Tokens taken by Reserve or debited by Settle.", []string{"group"}, nil)
	descGroupRefunded = prometheus.NewDesc("allot_group_tokens_refunded_total", "Tokens given back by Settle (net use = tokens - refunded).", []string{"group"}, nil)
	descGroupRejected = prometheus.NewDesc("allot_group_rejected_total", "Calls refused by the group's limiter.", []string{"group"}, nil)
	descGroupThrottle = prometheus.NewDesc("allot_group_throttled_total", "Upstream throttling reported by holders.", []string{"group"}, nil)
	descGroupFailures = prometheus.NewDesc("allot_group_failures_total", "Upstream failures reported by holders.", []string{"group"}, nil)
	descLimitUsed     = prometheus.NewDesc("allot_limit_used_ratio", "Fraction of a limit used in the last full minute (1 = all of its per-minute rate).", []string{"group", "limit"}, nil)
)

func (c *usageCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descGroupRequests, descGroupTokens, descGroupRefunded, descGroupRejected, descGroupThrottle, descGroupFailures, descLimitUsed} {
		ch <- d
	}
}

func (c *usageCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(c.s.ctx, scrapeTimeout)
	defer cancel()
	groups, err := c.s.reg.List(ctx)
	if err != nil {
		return // allot_redis_up says so
	}
	var names []string
	for _, g := range groups {
		if !g.Limits.IsZero() {
			names = append(names, g.Name)
		}
	}
	totals, err := c.s.reg.Totals(ctx, names)
	if err != nil {
		return
	}
	last, err := c.s.reg.LastMinute(ctx, names)
	if err != nil {
		return
	}
	for _, g := range groups {
		if g.Limits.IsZero() {
			continue
		}
		t := totals[g.Name]
		for d, v := range map[*prometheus.Desc]int64{descGroupRequests: t.Requests, descGroupTokens: t.Tokens,
			descGroupRefunded: t.Refunded, descGroupRejected: t.Rejected, descGroupThrottle: t.Throttled, descGroupFailures: t.Failures} {
			ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), g.Name)
		}
		for i, u := range g.Limits.UsedEach(last[g.Name]) {
			ch <- prometheus.MustNewConstMetric(descLimitUsed, prometheus.GaugeValue, u, g.Name, g.Limits[i].String())
		}
	}
}
