package server

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/allot-io/allot/quota"
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

// usageCollector exports the limiter's counts at scrape time: per group,
// counters that add up every full minute of usage since this server started
// counting (read from the per-minute hashes, so the limiter's hot path
// counts nothing extra), and per limit the fraction used in the last full
// minute. A Settle landing after its minute was counted is not added.
type usageCollector struct {
	s *Server

	mu   sync.Mutex
	last int64 // the last full minute added to the counters (0 = none yet)
	sums map[string]quota.Minute
}

// maxCatchUp bounds how many missed minutes one scrape reads.
const maxCatchUp = 60

// Throttle and failure reports are exported by the health collector
// (report.go) from the exact lifetime counters of health.lua, not from
// usage minutes.
var (
	descGroupRequests = prometheus.NewDesc("allot_group_requests_total", "Calls allowed by the group's limiter, by full minute since this server started counting.", []string{"group"}, nil)
	descGroupTokens   = prometheus.NewDesc("allot_group_tokens_total", "Tokens used (reserved, corrected by Settle).", []string{"group"}, nil)
	descGroupRejected = prometheus.NewDesc("allot_group_rejected_total", "Calls refused by the group's limiter.", []string{"group"}, nil)
	descGroupBorrowed = prometheus.NewDesc("allot_group_borrowed_total", "Calls of allot_group_requests_total that nodes not holding the group borrowed.", []string{"group"}, nil)
	descLimitUsed     = prometheus.NewDesc("allot_limit_used_ratio", "Fraction of a limit used in the last full minute (1 = all of its per-minute rate).", []string{"group", "limit"}, nil)
)

func (c *usageCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descGroupRequests, descGroupTokens, descGroupRejected, descGroupBorrowed, descLimitUsed} {
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
	cur, err := c.s.reg.CurrentMinute(ctx)
	if err != nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sums == nil {
		c.sums = map[string]quota.Minute{}
	}
	var lastFull map[string]quota.Minute
	for m := max(c.last+1, cur-maxCatchUp); m <= cur-1; m++ {
		use, err := c.s.reg.MinuteUsage(ctx, names, m)
		if err != nil {
			return
		}
		for n, u := range use {
			s := c.sums[n]
			s.Requests += u.Requests
			s.Tokens += max(u.Tokens, 0)
			s.Rejected += u.Rejected
			s.Borrowed += u.Borrowed
			c.sums[n] = s
		}
		c.last, lastFull = m, use
	}
	if lastFull == nil {
		if lastFull, err = c.s.reg.MinuteUsage(ctx, names, cur-1); err != nil {
			return
		}
	}
	for _, g := range groups {
		if g.Limits.IsZero() {
			continue
		}
		t := c.sums[g.Name]
		for d, v := range map[*prometheus.Desc]int64{descGroupRequests: t.Requests, descGroupTokens: t.Tokens,
			descGroupRejected: t.Rejected, descGroupBorrowed: t.Borrowed} {
			ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), g.Name)
		}
		for i, u := range g.Limits.UsedEach(lastFull[g.Name]) {
			ch <- prometheus.MustNewConstMetric(descLimitUsed, prometheus.GaugeValue, u, g.Name, g.Limits[i].String())
		}
	}
}
