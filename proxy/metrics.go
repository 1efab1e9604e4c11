package proxy

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the proxy's Prometheus series, on a registry of its own (a
// process may run a proxy beside other servers).
type metrics struct {
	reg *prometheus.Registry
	// requests counts the answers to callers by status code.
	requests *prometheus.CounterVec
	// upstreamSeconds is the wait for the upstream's status and headers.
	upstreamSeconds prometheus.Histogram
	// upstreamResponses counts the upstream's answers by group and code.
	upstreamResponses *prometheus.CounterVec
	// upstreamErrors counts calls with no answer: timeout or transport.
	upstreamErrors *prometheus.CounterVec
	// retries counts the calls sent again on another key, by the status
	// of the first answer.
	retries *prometheus.CounterVec
	// refusals counts the proxy's own refusals by reason.
	refusals *prometheus.CounterVec
	inFlight prometheus.Gauge
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "allot_proxy_requests_total", Help: "Requests answered, by HTTP status code (499: the caller left first).",
		}, []string{"code"}),
		upstreamSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "allot_proxy_upstream_seconds", Help: "Time from sending a call upstream to its status and headers.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600},
		}),
		upstreamResponses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "allot_proxy_upstream_responses_total", Help: "Upstream answers, by the key's group and HTTP status code.",
		}, []string{"group", "code"}),
		upstreamErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "allot_proxy_upstream_errors_total", Help: "Upstream calls with no answer, by kind (timeout, transport).",
		}, []string{"kind"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "allot_proxy_retries_total", Help: "Calls sent again on another key, by the status of the first answer (429, 401, 403).",
		}, []string{"status"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "allot_proxy_refusals_total", Help: "The proxy's own refusals, by reason (rate_limited, cooling, cost_too_large, body_too_large, no_key, unavailable, unauthorized).",
		}, []string{"reason"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "allot_proxy_in_flight", Help: "Requests being served.",
		}),
	}
	m.reg.MustRegister(m.requests, m.upstreamSeconds, m.upstreamResponses, m.upstreamErrors, m.retries, m.refusals, m.inFlight)
	return m
}

// Metrics is the proxy's Prometheus registry (also served at
// AdminPrefix+"metrics"), for a program that serves metrics elsewhere.
func (p *Proxy) Metrics() *prometheus.Registry { return p.m.reg }

var _ http.Handler = (*Proxy)(nil)
