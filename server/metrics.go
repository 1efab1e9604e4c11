package server

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
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
		&stateCollector{s: s}, &healthCollector{s: s}, &usageCollector{s: s}, &nodeEventsCollector{s: s},
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
	descLiveNodes   = prometheus.NewDesc("allot_live_nodes", "Nodes beating within their TTL.", nil, nil)
	descStandby     = prometheus.NewDesc("allot_standby_nodes", "Live nodes the plan gives no group.", nil, nil)
	descStaleNodes  = prometheus.NewDesc("allot_stale_nodes", "Live nodes that missed their beats for two heartbeat intervals.", nil, nil)
	descGroups      = prometheus.NewDesc("allot_groups", "Groups by state.", []string{"state"}, nil)
	descShortGroups = prometheus.NewDesc("allot_groups_short", "Active groups held by fewer live nodes than the plan wants (unserved included).", nil, nil)
	descBalanced    = prometheus.NewDesc("allot_pool_balanced", "1 when the committed assignment is balanced and no capped grant waits, else 0.", nil, nil)
	descEpoch       = prometheus.NewDesc("allot_epoch", "Current assignment epoch.", nil, nil)
	descRedisUp     = prometheus.NewDesc("allot_redis_up", "1 when the scrape could read Redis, else 0.", nil, nil)
)

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descLiveNodes, descStandby, descStaleNodes, descGroups, descShortGroups,
		descBalanced, descEpoch, descRedisUp} {
		ch <- d
	}
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(c.s.ctx, scrapeTimeout)
	defer cancel()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	st, err := allocator.Inspect(ctx, c.s.reg, c.s.hb)
	if err != nil {
		gauge(descRedisUp, 0)
		return
	}
	count := map[string]int{string(registry.Active): 0, string(registry.Draining): 0, string(registry.Retired): 0,
		string(registry.Suspended): 0, string(registry.Probing): 0}
	short, stale := 0, 0
	for _, g := range st.Groups {
		count[g.State]++
		if g.Short {
			short++
		}
	}
	for _, n := range st.Nodes {
		if n.Stale {
			stale++
		}
	}
	for state, n := range count {
		gauge(descGroups, float64(n), state)
	}
	balanced := 0.0
	if st.Balanced {
		balanced = 1
	}
	gauge(descLiveNodes, float64(len(st.Nodes)))
	gauge(descStandby, float64(len(st.Standby)))
	gauge(descStaleNodes, float64(stale))
	gauge(descShortGroups, float64(short))
	gauge(descBalanced, balanced)
	gauge(descEpoch, float64(st.Epoch))
	gauge(descRedisUp, 1)
}

// nodeEventsCollector counts the pool's node events (joins, leaves,
// reaps) from the node log, read at each scrape from where the last one
// stopped: every replica of serve counts every event of the pool, whoever
// wrote it. Counting starts at the first scrape.
type nodeEventsCollector struct {
	s *Server

	mu     sync.Mutex
	after  string // the last event read ("" before the first scrape)
	counts map[string]float64
}

var descNodeEvents = prometheus.NewDesc("allot_node_events_total",
	"Node events of the pool seen in its node log since this server started counting, by type (joined, left, reaped): a high rate of joins and reaps is a flapping fleet.",
	[]string{"type"}, nil)

// nodeEventReads bounds the log reads of one scrape (sseBatch events each).
const nodeEventReads = 100

func (c *nodeEventsCollector) Describe(ch chan<- *prometheus.Desc) { ch <- descNodeEvents }

func (c *nodeEventsCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(c.s.ctx, scrapeTimeout)
	defer cancel()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.counts == nil {
		c.counts = map[string]float64{"joined": 0, "left": 0, "reaped": 0}
	}
	if c.after == "" {
		if last, err := c.s.reg.LastEventID(ctx); err == nil {
			c.after = last
		}
	}
	for i := 0; c.after != "" && i < nodeEventReads; i++ {
		evs, err := c.s.reg.Events(ctx, c.after, sseBatch, 0)
		if err != nil {
			break
		}
		for _, e := range evs {
			switch e.Type {
			case registry.EventNodeJoined, registry.EventNodeLeft, registry.EventNodeReaped:
				c.counts[strings.TrimPrefix(e.Type, "node.")]++
			}
			c.after = e.ID
		}
		if len(evs) < sseBatch {
			break
		}
	}
	for t, n := range c.counts {
		ch <- prometheus.MustNewConstMetric(descNodeEvents, prometheus.CounterValue, n, t)
	}
}
