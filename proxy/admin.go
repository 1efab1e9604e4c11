package proxy

import (
	"encoding/json"
	"net/http"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// health is the JSON of /_allot/healthz.
type health struct {
	Status string   `json:"status"` // ok, standby or stopped
	Node   string   `json:"node"`
	Groups []string `json:"groups"`
}

// adminHandler serves the proxy's own paths: AdminPrefix+"healthz" (200
// while the node holds a key, else 503) and AdminPrefix+"metrics"
// (Prometheus, the proxy's own registry). Other paths under AdminPrefix
// are 404; none is forwarded.
func (p *Proxy) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+AdminPrefix+"healthz", func(w http.ResponseWriter, _ *http.Request) {
		h := health{Status: "ok", Node: p.c.NodeID(), Groups: holds(p.c)}
		code := http.StatusOK
		select {
		case <-p.c.Done():
			h.Status, code = "stopped", http.StatusServiceUnavailable
		default:
			if len(h.Groups) == 0 {
				h.Status, code = "standby", http.StatusServiceUnavailable
			}
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(h)
	})
	mux.Handle("GET "+AdminPrefix+"metrics", promhttp.HandlerFor(p.m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}))
	return mux
}
