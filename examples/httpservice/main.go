// Command httpservice is an HTTP service that calls a metered upstream API
// with the API key of the group allot assigned to it. Each request:
//
//  1. acquires a lease for one call (client.Acquire): a held group with
//     room in its quota (shared by every node holding the group), the one
//     with the most room first — 429 with Retry-After when every held group
//     is used up or cooling down after an upstream 429 (no upstream call);
//  2. takes the group's api_key from the lease;
//  3. forwards the request to UPSTREAM_URL with "Authorization: Bearer
//     <api_key>" and copies the answer back;
//  4. tells the pool what the upstream answered (Lease.Observe): a 429 cools
//     the key for every holder, 401/403 count towards suspending it (its
//     holders then move to other keys), 2xx confirm a probe.
//
// The key is never logged. A key change (allot group update) is used by the
// next request; no restart. GET /healthz answers 200 while a group is held.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/allot-io/allot/client"
)

func main() {
	os.Exit(run())
}

func run() int {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	upstream, err := url.Parse(os.Getenv("UPSTREAM_URL"))
	if err != nil || upstream.Scheme == "" || upstream.Host == "" {
		fmt.Fprintln(os.Stderr, "httpservice: UPSTREAM_URL must be an absolute URL, e.g. https://api.example.com")
		return 2
	}
	listen := os.Getenv("LISTEN_ADDR")
	if listen == "" {
		listen = "127.0.0.1:8080"
	}

	c, err := client.FromEnv(client.WithLogger(log))
	if err != nil {
		fmt.Fprintln(os.Stderr, "httpservice:", err)
		return 1
	}
	c.OnChange(func(_, now client.Assignment) {
		log.Info("assignment changed", "assignment", now.String()) // names and versions only
	})
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := c.Start(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "httpservice:", err)
		return 1
	}

	svc := &service{c: c, upstream: upstream, http: &http.Client{Timeout: 10 * time.Second}, log: log}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", svc.healthz)
	mux.HandleFunc("/", svc.forward)
	srv := &http.Server{Addr: listen, Handler: mux, ReadHeaderTimeout: 5 * time.Second}

	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	log.Info("listening", "addr", listen, "node", c.NodeID())
	code := 0
	select {
	case <-ctx.Done():
	case err := <-errc:
		fmt.Fprintln(os.Stderr, "httpservice:", err)
		code = 1
	}

	shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = srv.Shutdown(shutdown) // finish in-flight calls before giving the group away
	if err := c.Close(shutdown); err != nil {
		fmt.Fprintln(os.Stderr, "httpservice: leave:", err)
		code = 1
	}
	return code
}

type service struct {
	c        *client.Client
	upstream *url.URL
	http     *http.Client
	log      *slog.Logger
}

func (s *service) healthz(w http.ResponseWriter, _ *http.Request) {
	if len(s.c.Assignment().Groups) == 0 {
		http.Error(w, "no group assigned (standby)", http.StatusServiceUnavailable)
		return
	}
	_, _ = io.WriteString(w, s.c.Assignment().String()+"\n")
}

func (s *service) forward(w http.ResponseWriter, r *http.Request) {
	// One lease per upstream call: a held group with room (the pool's
	// limits, and any cooldown a holder's 429 started), its key inside.
	lease, err := s.c.Acquire(r.Context(), 0)
	var rl *client.RateLimitError
	switch {
	case errors.As(err, &rl):
		msg := "quota used up"
		if rl.Limit == "cooling" {
			msg = "upstream asked to slow down"
		}
		tooMany(w, rl.RetryAfter, msg)
		return
	case errors.Is(err, client.ErrNothingHeld):
		http.Error(w, "no group assigned (standby)", http.StatusServiceUnavailable)
		return
	case err != nil:
		// Only with the closed quota fallback while Redis is away (the
		// default local fallback keeps limiting in process).
		s.log.Warn("no lease", "err", err)
		http.Error(w, "quota check unavailable", http.StatusServiceUnavailable)
		return
	}
	group := lease.Group()
	key, ok := lease.Config("api_key")
	if !ok {
		s.log.Error("group has no api_key", "group", group)
		http.Error(w, "misconfigured group", http.StatusInternalServerError)
		return
	}

	target := *s.upstream
	target.Path = s.upstream.Path + r.URL.Path
	target.RawQuery = r.URL.RawQuery
	req, err := http.NewRequestWithContext(r.Context(), r.Method, target.String(), r.Body)
	if err != nil {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	req.Header.Set("Content-Type", r.Header.Get("Content-Type"))
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := s.http.Do(req)
	// Report on a context of its own: a caller hanging up must not lose it.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), time.Second)
	if rerr := lease.Observe(rctx, resp, err); rerr != nil {
		s.log.Debug("health report not recorded", "group", group, "err", rerr)
	}
	cancel()
	if err != nil {
		s.log.Warn("upstream call failed", "group", group, "err", err) // err never contains the header
		http.Error(w, "upstream unavailable", http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "" {
		w.Header().Set("Content-Type", ct)
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, resp.Body)
}

// tooMany answers 429 with Retry-After in whole seconds (at least 1).
func tooMany(w http.ResponseWriter, wait time.Duration, msg string) {
	w.Header().Set("Retry-After", strconv.Itoa(max(1, int(math.Ceil(wait.Seconds())))))
	http.Error(w, msg, http.StatusTooManyRequests)
}
