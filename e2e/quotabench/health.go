package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/allot-io/allot/client"
	"github.com/allot-io/allot/heartbeat"
	"github.com/allot-io/allot/registry"
)

// The key health scenario: what the upstream says reaches every holder.
//
// Keys: key 0 is over-configured (its real limit is half its allot quota:
// the upstream answers 429 with Retry-After in seconds), key 1 is revoked
// mid-run (401 from then on), the others are healthy. Every strategy runs
// the same allot pool (Allow for the configured quota) and differs only in
// what it does with the answers:
//
//   - allot with reports: ObserveHTTP on every answer; the shared cooldown
//     refuses every holder's Allow (the limiter script reads it, no extra
//     round trip) and the revoked key is suspended for the whole pool;
//   - allot without reports: the answers are ignored;
//   - per-process cooldown: each node alone waits out its own 429s and, after
//     3 of its own 401s within a minute, stops using the key for 5 s before
//     trying it again (a router with allowed_fails=3, cooldown_time=5s, as
//     LiteLLM's is configured).

// healthConfig is one run of the scenario.
type healthConfig struct {
	Nodes      int
	Keys       int
	Quota      int           // configured calls per second per key
	RealQuota  int           // what the upstream lets key 0 do
	Warmup     time.Duration // before the window
	Window     time.Duration
	RevokeAt   time.Duration // into the window, key 1 is revoked
	Heartbeat  heartbeat.Config
	ProbeAfter time.Duration
	Redis      *redis.Options
}

func shortHealthConfig() healthConfig {
	return healthConfig{
		Nodes: 12, Keys: 4, Quota: 50, RealQuota: 25,
		Warmup: time.Second, Window: 6 * time.Second, RevokeAt: 2 * time.Second,
		Heartbeat:  heartbeat.Config{Interval: 250 * time.Millisecond, TTL: 750 * time.Millisecond},
		ProbeAfter: time.Minute, // no probe inside the window
	}
}

// healthResult is what one strategy achieved.
type healthResult struct {
	Strategy string
	// Throttled429s is the upstream's 429s on key 0 inside the window, and
	// Bursts how many distinct seconds had any.
	Throttled429s int64
	Bursts        int
	// RevokedCalls counts calls on key 1 after its revocation; AfterThreshold
	// those after its third 401 (the eject_after threshold).
	RevokedCalls, AfterThreshold int64
	// Moved is the time from the threshold until no node held key 1 (-1:
	// never within the window).
	Moved time.Duration
	// Healthy is the utilisation of the healthy keys (2..Keys-1) in the window.
	Healthy float64
}

// healthUpstream is the upstream of the scenario: per-key token buckets
// (key 0 with the lower real limit), Retry-After in whole seconds, and key 1
// answering 401 once revoked.
type healthUpstream struct {
	keys      []string
	over      *upstream // key 0
	normal    *upstream // the others
	revokedAt atomic.Int64
	counting  atomic.Bool

	mu         sync.Mutex
	bursts     map[int64]bool // unix seconds with a 429 on key 0
	throttled  int64
	revoked    int64     // calls on key 1 after revocation
	threshold  time.Time // time of the third 401
	afterThres int64
	okHealthy  int64
}

func newHealthUpstream(keyList []string, quota, real int) *healthUpstream {
	return &healthUpstream{
		keys:   keyList,
		over:   newUpstream(keyList[:1], real, 0.1),
		normal: newUpstream(keyList[1:], quota, 0.1),
		bursts: map[int64]bool{},
	}
}

func (u *healthUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	key := r.Header.Get("X-Api-Key")
	now := time.Now()
	if key == u.keys[1] && u.revokedAt.Load() != 0 {
		u.mu.Lock()
		u.revoked++
		switch {
		case u.revoked == 3:
			u.threshold = now
		case u.revoked > 3:
			u.afterThres++
		}
		u.mu.Unlock()
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	up := u.normal
	if key == u.keys[0] {
		up = u.over
	}
	ok, known, retry := up.takeOrWait(key, now)
	switch {
	case !known:
		w.WriteHeader(http.StatusUnauthorized)
	case !ok:
		if key == u.keys[0] && u.counting.Load() {
			u.mu.Lock()
			u.throttled++
			u.bursts[now.Unix()] = true
			u.mu.Unlock()
		}
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(retry.Seconds()))))
		w.WriteHeader(http.StatusTooManyRequests)
	default:
		if key != u.keys[0] && key != u.keys[1] && u.counting.Load() {
			u.mu.Lock()
			u.okHealthy++
			u.mu.Unlock()
		}
		w.WriteHeader(http.StatusOK)
	}
}

type healthMode int

const (
	withReports healthMode = iota
	withoutReports
	perProcess
)

func (m healthMode) String() string {
	switch m {
	case withReports:
		return "allot with reports"
	case withoutReports:
		return "allot without reports"
	}
	return "per-process cooldown"
}

// compareHealth runs the scenario for every strategy, one after the other.
func compareHealth(ctx context.Context, cfg healthConfig) ([]healthResult, error) {
	var out []healthResult
	for _, m := range []healthMode{withReports, withoutReports, perProcess} {
		r, err := runHealth(ctx, cfg, m)
		if err != nil {
			return out, fmt.Errorf("%s: %w", m, err)
		}
		out = append(out, r)
	}
	return out, nil
}

func runHealth(ctx context.Context, cfg healthConfig, mode healthMode) (healthResult, error) {
	if cfg.Redis == nil {
		return healthResult{}, errors.New("the health scenario needs a Redis (-redis)")
	}
	keyList := make([]string, cfg.Keys)
	for i := range keyList {
		keyList[i] = fmt.Sprintf("sk-live-%02d-%s", i, randomHex(6))
	}
	up := newHealthUpstream(keyList, cfg.Quota, cfg.RealQuota)
	srv := httptest.NewServer(up)
	defer srv.Close()
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4 * cfg.Nodes}, Timeout: 5 * time.Second}
	defer hc.CloseIdleConnections()

	ns := "health-bench-" + randomHex(4)
	admin := redis.NewClient(cfg.Redis)
	defer func() {
		bg := context.WithoutCancel(ctx)
		iter := admin.Scan(bg, 0, "*{allot:"+ns+"}*", 1000).Iterator()
		for iter.Next(bg) {
			admin.Unlink(bg, iter.Val())
		}
		_ = admin.Close()
	}()
	reg := registry.New(admin, registry.WithNamespace(ns))
	quota := fmt.Sprintf("%d/s", cfg.Quota)
	for i, k := range keyList {
		if _, err := reg.Add(ctx, fmt.Sprintf("key-%02d", i), registry.Change{
			Set: map[string]string{"api_key": k}, Secret: []string{"api_key"}, Quota: &quota,
		}, "quota-bench"); err != nil {
			return healthResult{}, err
		}
	}

	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var clients []*client.Client
	var rdbs []*redis.Client
	defer func() {
		stop()
		wg.Wait()
		for i, c := range clients {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			_ = c.Close(cctx)
			cancel()
			_ = rdbs[i].Close()
		}
	}()
	for i := range cfg.Nodes {
		rdb := redis.NewClient(cfg.Redis)
		c, err := client.New(rdb, client.WithNamespace(ns), client.WithNodeID(fmt.Sprintf("node-%03d", i)),
			client.WithIP(fmt.Sprintf("10.2.%d.%d", i/200, 1+i%200)), client.WithHeartbeat(cfg.Heartbeat),
			client.WithProbeAfter(cfg.ProbeAfter))
		if err != nil {
			_ = rdb.Close()
			return healthResult{}, err
		}
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err = c.Start(sctx)
		cancel()
		if err != nil {
			_ = rdb.Close()
			return healthResult{}, err
		}
		clients, rdbs = append(clients, c), append(rdbs, rdb)
		wg.Go(func() { healthNode(runCtx, mode, c, srv.URL, hc) })
	}

	if err := sleep(ctx, cfg.Warmup); err != nil {
		return healthResult{}, err
	}
	up.counting.Store(true)
	begin := time.Now()
	if err := sleep(ctx, cfg.RevokeAt); err != nil {
		return healthResult{}, err
	}
	up.revokedAt.Store(time.Now().UnixNano())
	// Poll who holds key 1 until nobody does.
	revokedGroup := "key-01"
	var freeAt time.Time
	end := begin.Add(cfg.Window)
	for time.Now().Before(end) {
		if freeAt.IsZero() {
			held := false
			for _, c := range clients {
				if c.Assignment().Holds(revokedGroup) {
					held = true
					break
				}
			}
			if !held {
				freeAt = time.Now()
			}
		}
		if err := sleep(ctx, 5*time.Millisecond); err != nil {
			return healthResult{}, err
		}
	}
	up.counting.Store(false)
	window := time.Since(begin)

	up.mu.Lock()
	defer up.mu.Unlock()
	r := healthResult{
		Strategy: mode.String(), Throttled429s: up.throttled, Bursts: len(up.bursts),
		RevokedCalls: up.revoked, AfterThreshold: up.afterThres, Moved: -1,
		Healthy: float64(up.okHealthy) / (float64((cfg.Keys-2)*cfg.Quota) * window.Seconds()),
	}
	if !freeAt.IsZero() && !up.threshold.IsZero() {
		r.Moved = max(freeAt.Sub(up.threshold), 0)
	}
	return r, nil
}

// healthNode is one node's call loop.
func healthNode(ctx context.Context, mode healthMode, c *client.Client, url string, hc *http.Client) {
	coolUntil := map[string]time.Time{} // per-process: this node's own cooldowns
	fails := map[string][]time.Time{}
	for ctx.Err() == nil {
		a := c.Assignment()
		if len(a.Groups) == 0 {
			if sleep(ctx, 20*time.Millisecond) != nil {
				return
			}
			continue
		}
		g := a.Groups[0]
		now := time.Now()
		switch mode {
		case perProcess:
			if until := coolUntil[g.Name]; now.Before(until) {
				if sleep(ctx, min(until.Sub(now), 50*time.Millisecond)) != nil {
					return
				}
				continue
			}
		}
		if err := c.Allow(ctx, g.Name); err != nil {
			if !waitAfterRefusal(ctx, err) {
				return
			}
			continue
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/v1/thing", nil)
		if err != nil {
			return
		}
		req.Header.Set("X-Api-Key", g.Config["api_key"])
		resp, err := hc.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
		}
		switch mode {
		case withReports:
			rctx, cancel := context.WithTimeout(ctx, time.Second)
			_ = c.ObserveHTTP(rctx, g.Name, resp, err)
			cancel()
		case perProcess:
			if err != nil {
				continue
			}
			v := client.Classify(resp, nil, time.Now())
			switch v.Outcome {
			case registry.Throttled:
				coolUntil[g.Name] = time.Now().Add(max(v.RetryAfter, time.Second))
			case registry.Failure:
				recent := []time.Time{}
				for _, t := range fails[g.Name] {
					if time.Since(t) < time.Minute {
						recent = append(recent, t)
					}
				}
				recent = append(recent, time.Now())
				fails[g.Name] = recent
				if len(recent) >= 3 {
					coolUntil[g.Name] = time.Now().Add(5 * time.Second)
					fails[g.Name] = nil
				}
			}
		}
	}
}

// writeHealthTable prints the scenario's results and its targets.
func writeHealthTable(w io.Writer, cfg healthConfig, rs []healthResult) error {
	fmt.Fprintf(w, "%d nodes, %d keys configured at %d calls/s; key 0's real limit %d/s (429 + Retry-After), key 1 revoked %v into a %v window (401); heartbeat %v/%v\n",
		cfg.Nodes, cfg.Keys, cfg.Quota, cfg.RealQuota, cfg.RevokeAt, cfg.Window, cfg.Heartbeat.Interval, cfg.Heartbeat.TTL)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "STRATEGY\tKEY-0 429s\tSECONDS WITH 429s\tCALLS ON REVOKED KEY\tAFTER THRESHOLD\tHOLDERS MOVED\tHEALTHY KEYS USED")
	for _, r := range rs {
		moved := "never"
		if r.Moved >= 0 {
			moved = r.Moved.Round(time.Millisecond).String()
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%s\t%.1f%%\n", r.Strategy, r.Throttled429s, r.Bursts,
			r.RevokedCalls, r.AfterThreshold, moved, 100*r.Healthy)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintln(w, "targets (with reports): <= 3 + in-flight calls on the revoked key after the threshold, holders moved <= 1s after it, 429s in <= one burst per Retry-After period, healthy keys >= 95% used")
	return err
}
