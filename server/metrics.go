package server

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/allot-io/allot/allocator"
	"github.com/allot-io/allot/registry"
)

// Outcomes of a rebalance, the label of allot_rebalances_total.
const (
	outcomeOK     = "ok"
	outcomeStale  = "stale"
	outcomeFailed = "failed"
	outcomeLocked = "locked"
)

func outcome(err error) string {
	switch {
	case err == nil:
		return outcomeOK
	case errors.Is(err, allocator.ErrLocked):
		return outcomeLocked
	case errors.Is(err, registry.ErrStaleEpoch):
		return outcomeStale
	}
	return outcomeFailed
}

// scrapeTimeout bounds the Redis reads of one scrape.
const scrapeTimeout = 3 * time.Second

// metrics is the server's own Prometheus registry (never the global one, so
// several servers in one process, as in tests, do not collide).
type metrics struct {
	reg        *prometheus.Registry
	handler    http.Handler
	rebalances *prometheus.CounterVec
	duration   prometheus.Histogram
	beats      prometheus.Counter
	handoffs   prometheus.Counter
	reaped     prometheus.Counter
	requests   *prometheus.CounterVec
}

func newMetrics(s *Server) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		rebalances: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "allot_rebalances_total", Help: "Rebalance runs of this server by outcome (ok, stale, failed, locked).",
		}, []string{"outcome"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "allot_rebalance_duration_seconds", Help: "Wall time of rebalance runs that committed or found nothing to change.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}),
		beats: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "allot_beats_total", Help: "Heartbeats received over the HTTP node protocol.",
		}),
		handoffs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "allot_handoffs_total", Help: "Nodes whose groups changed in rebalances run by this server.",
		}),
		reaped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "allot_reaped_nodes_total", Help: "Nodes reaped for missing their TTL by this server.",
		}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "allot_http_requests_total", Help: "HTTP requests by route pattern and status code.",
		}, []string{"route", "code"}),
	}
	for _, o := range []string{outcomeOK, outcomeStale, outcomeFailed, outcomeLocked} {
		m.rebalances.WithLabelValues(o)
	}
	m.reg.MustRegister(m.rebalances, m.duration, m.beats, m.handoffs, m.reaped, m.requests,
		&stateCollector{s: s}, &healthCollector{s: s}, &usageCollector{s: s},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.handler = promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
	return m
}

func (m *metrics) observeRebalance(res allocator.Result, err error) {
	o := outcome(err)
	m.rebalances.WithLabelValues(o).Inc()
	if o != outcomeOK {
		return
	}
	m.duration.Observe(res.Took.Seconds())
	m.handoffs.Add(float64(res.Moved))
	m.reaped.Add(float64(len(res.Reaped)))
}

func (m *metrics) serve(w http.ResponseWriter, r *http.Request) error {
	m.handler.ServeHTTP(w, r)
	return nil
}

// stateCollector reads the pool's gauges from Redis at scrape time, so they
// are never stale and cost nothing between scrapes.
type stateCollector struct{ s *Server }

var (
	descLiveNodes = prometheus.NewDesc("allot_live_nodes", "Nodes beating within their TTL.", nil, nil)
	descGroups    = prometheus.NewDesc("allot_groups", "Groups by state.", []string{"state"}, nil)
	descEpoch     = prometheus.NewDesc("allot_epoch", "Current assignment epoch.", nil, nil)
	descRedisUp   = prometheus.NewDesc("allot_redis_up", "1 when the scrape could read Redis, else 0.", nil, nil)
)

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descLiveNodes
	ch <- descGroups
	ch <- descEpoch
	ch <- descRedisUp
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(c.s.ctx, scrapeTimeout)
	defer cancel()
	up := 1.0
	if nodes, _, err := c.s.hb.Live(ctx); err == nil {
		ch <- prometheus.MustNewConstMetric(descLiveNodes, prometheus.GaugeValue, float64(len(nodes)))
	} else {
		up = 0
	}
	if groups, err := c.s.reg.List(ctx); err == nil {
		unhealthy, _ := c.s.reg.Unhealthy(ctx)
		groups = registry.ApplyHealth(groups, unhealthy)
		count := map[registry.State]int{registry.Active: 0, registry.Draining: 0, registry.Retired: 0, registry.Suspended: 0, registry.Probing: 0}
		for _, g := range groups {
			count[g.State]++
		}
		for st, n := range count {
			ch <- prometheus.MustNewConstMetric(descGroups, prometheus.GaugeValue, float64(n), string(st))
		}
	} else {
		up = 0
	}
	if cs, err := c.s.reg.Counters(ctx); err == nil {
		ch <- prometheus.MustNewConstMetric(descEpoch, prometheus.GaugeValue, float64(cs.Epoch))
	} else {
		up = 0
	}
	ch <- prometheus.MustNewConstMetric(descRedisUp, prometheus.GaugeValue, up)
}
