package main

import (
	"context"
	"fmt"
	"io"
	"math"
	mrand "math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/allot-io/allot/client"
	"github.com/allot-io/allot/proxy"
)

// tokenConfig is the tokens scenario: an LLM-like upstream that limits every
// key to Quota calls/s (RPM) and TPS tokens/s (TPM); each call costs a
// random number of tokens in [MinCost, MaxCost], and the caller only knows
// the upper bound (Estimate, like max_tokens) before the call.
type tokenConfig struct {
	TPS      int
	MinCost  int
	MaxCost  int
	Estimate int
}

// tokensConfig is the short tokens scenario: the token limit binds (mean
// cost 100 × 50 calls/s would be 5000 tokens/s; the key allows 3000).
func tokensConfig() config {
	c := shortConfig()
	c.Tokens = &tokenConfig{TPS: 3000, MinCost: 20, MaxCost: 180, Estimate: 200}
	return c
}

// tokenUpstream is the fake LLM API: per key a request bucket and a token
// bucket, each holding (1 + tolerance) s of its rate and refilled
// continuously, starting full. A call (X-Api-Key, X-Tokens: its cost) that
// finds a request and its tokens takes both and gets 200 with an
// OpenAI-shaped answer whose usage.total_tokens is the cost (what allot
// proxy --openai settles from); otherwise 429 and nothing is taken.
type tokenUpstream struct {
	rps, tps     float64
	rcap, tcap   float64
	mu           sync.Mutex
	keys         map[string]*tokenBuckets
	limited      atomic.Int64
	limitedByTok atomic.Int64
}

type tokenBuckets struct {
	reqs, toks float64
	last       time.Time
}

func newTokenUpstream(keys []string, rps, tps int, tolerance float64) *tokenUpstream {
	u := &tokenUpstream{rps: float64(rps), tps: float64(tps),
		rcap: float64(rps) * (1 + tolerance), tcap: float64(tps) * (1 + tolerance),
		keys: make(map[string]*tokenBuckets, len(keys))}
	now := time.Now()
	for _, k := range keys {
		u.keys[k] = &tokenBuckets{reqs: u.rcap, toks: u.tcap, last: now}
	}
	return u
}

// take spends one request and cost tokens of key, or nothing.
func (u *tokenUpstream) take(key string, cost float64, now time.Time) (ok, known, byTokens bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	b, known := u.keys[key]
	if !known {
		return false, false, false
	}
	if d := now.Sub(b.last).Seconds(); d > 0 {
		b.reqs = math.Min(u.rcap, b.reqs+d*u.rps)
		b.toks = math.Min(u.tcap, b.toks+d*u.tps)
		b.last = now
	}
	if b.reqs < 1 || b.toks < cost {
		return false, true, b.toks < cost
	}
	b.reqs--
	b.toks -= cost
	return true, true, false
}

func (u *tokenUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	cost, err := strconv.Atoi(r.Header.Get("X-Tokens"))
	if err != nil || cost < 0 {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	ok, known, byTokens := u.take(r.Header.Get("X-Api-Key"), float64(cost), time.Now())
	switch {
	case !known:
		w.WriteHeader(http.StatusUnauthorized)
	case !ok:
		u.limited.Add(1)
		if byTokens {
			u.limitedByTok.Add(1)
		}
		w.WriteHeader(http.StatusTooManyRequests)
	default:
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		fmt.Fprintf(w, `{"object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"total_tokens":%d}}`, cost)
	}
}

// callTokens makes one call costing cost tokens; ok is a 200.
func (b *bench) callTokens(ctx context.Context, n *node, key string, cost int) (ok bool) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, b.srv.URL+"/v1/chat/completions", nil)
	if err != nil {
		return false
	}
	req.Header.Set("X-Api-Key", key)
	req.Header.Set("X-Tokens", strconv.Itoa(cost))
	resp, err := b.http.Do(req)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false
	}
	if b.counting.Load() {
		n.ok.Add(1)
		n.tok.Add(int64(cost))
	}
	return true
}

// costs is a node's source of random call costs.
func costs(b *bench, n *node) func() int {
	rng := mrand.New(mrand.NewPCG(b.cfg.Seed, uint64(n.id)+1000))
	t := b.cfg.Tokens
	return func() int { return t.MinCost + rng.IntN(t.MaxCost-t.MinCost+1) }
}

// tokenStrategies are the four ways of the tokens scenario.
func tokenStrategies() []strategy {
	both := func(cfg config) string { return fmt.Sprintf("%d/s, %d tokens/s", cfg.Quota, cfg.Tokens.TPS) }
	requestsOnly := func(cfg config) string { return fmt.Sprintf("%d/s", cfg.Quota) }
	return []strategy{
		&allotStrategy{label: "allot Reserve/Settle (requests + tokens)", quota: both, run: runReserve},
		&allotStrategy{label: "allot Allow (request limit only)", quota: requestsOnly, run: runAllowOnly},
		&allotStrategy{label: "share-based local (limits × Share)", quota: both, run: runShareTokens},
		&allotStrategy{label: proxyLabel, quota: both, run: runProxy},
	}
}

// heldGroup waits for a group; false when ctx ended.
func heldGroup(ctx context.Context, c *client.Client, changed <-chan struct{}) (client.Group, bool) {
	for ctx.Err() == nil {
		if a := c.Assignment(); len(a.Groups) > 0 {
			return a.Groups[0], true
		}
		if !waitChange(ctx, changed, 50*time.Millisecond) {
			break
		}
	}
	return client.Group{}, false
}

// runReserve reserves the estimate, calls, and settles with the real cost
// (nothing when the upstream refused).
func runReserve(ctx context.Context, b *bench, n *node, c *client.Client, changed <-chan struct{}) {
	cost := costs(b, n)
	for {
		g, ok := heldGroup(ctx, c, changed)
		if !ok {
			return
		}
		r, err := c.Reserve(ctx, g.Name, int64(b.cfg.Tokens.Estimate))
		if err != nil {
			if !waitAfterRefusal(ctx, err) {
				return
			}
			continue
		}
		k := cost()
		used := int64(0)
		if b.callTokens(ctx, n, g.Config["api_key"], k) {
			used = int64(k)
		}
		_ = r.Settle(context.WithoutCancel(ctx), used)
	}
}

// runAllowOnly limits calls only, as a one-limit quota does: tokens are
// left to the upstream.
func runAllowOnly(ctx context.Context, b *bench, n *node, c *client.Client, changed <-chan struct{}) {
	cost := costs(b, n)
	for {
		g, ok := heldGroup(ctx, c, changed)
		if !ok {
			return
		}
		err := c.Allow(ctx, g.Name)
		if err != nil {
			if !waitAfterRefusal(ctx, err) {
				return
			}
			continue
		}
		b.callTokens(ctx, n, g.Config["api_key"], cost())
	}
}

// costBucket is a node's local token budget: rate tokens/s, at most one
// second of them saved up, starting empty; a call goes while the level is
// not negative and pays its real cost afterwards (a per-replica TPM counter).
type costBucket struct {
	rate, level float64
	last        time.Time
}

func (c *costBucket) refill(now time.Time) {
	if d := now.Sub(c.last).Seconds(); d > 0 {
		c.level = math.Min(c.rate, c.level+d*c.rate)
		c.last = now
	}
}

// runShareTokens limits each node locally to its share of both limits.
func runShareTokens(ctx context.Context, b *bench, n *node, c *client.Client, changed <-chan struct{}) {
	cost := costs(b, n)
	var cur client.Group
	var reqs *localLimiter
	var toks *costBucket
	for {
		g, ok := heldGroup(ctx, c, changed)
		if !ok {
			return
		}
		now := time.Now()
		if reqs == nil || g.Name != cur.Name || g.Share != cur.Share {
			// A new group or share starts with nothing saved up.
			cur = g
			reqs = newLocalLimiter(float64(b.cfg.Quota)*g.Share, now)
			toks = &costBucket{rate: float64(b.cfg.Tokens.TPS) * g.Share, last: now}
		}
		toks.refill(now)
		if toks.level < 0 {
			if sleep(ctx, time.Duration(-toks.level/max(toks.rate, 1)*float64(time.Second))+time.Millisecond) != nil {
				return
			}
			continue
		}
		if d := reqs.wait(now); d > 0 {
			if sleep(ctx, d) != nil {
				return
			}
			continue
		}
		k := cost()
		if b.callTokens(ctx, n, g.Config["api_key"], k) {
			toks.refill(time.Now())
			toks.level -= float64(k)
		}
	}
}

// compareTokens runs the tokens scenario's strategies one after the other.
func compareTokens(ctx context.Context, cfg config) ([]result, error) {
	var out []result
	for _, s := range tokenStrategies() {
		r, err := runStrategy(ctx, cfg, s)
		if err != nil {
			return out, fmt.Errorf("%s: %w", s.name(), err)
		}
		out = append(out, r)
	}
	return out, nil
}

// writeTokensTable prints the tokens scenario and whether Reserve/Settle met
// its target: zero 429s and >= 95% of the binding (token) limit used.
func writeTokensTable(w io.Writer, cfg config, rs []result) error {
	t := cfg.Tokens
	fmt.Fprintf(w, "tokens: %d nodes, %d keys × (%d calls/s, %d tokens/s), cost %d..%d tokens (estimate %d), upstream burst %.0f%% of a second, warm-up %v, window %v, one node crashes or leaves every %v; heartbeat %v/%v\n",
		cfg.Nodes, cfg.Keys, cfg.Quota, t.TPS, t.MinCost, t.MaxCost, t.Estimate, 100*(1+cfg.Tolerance),
		cfg.Warmup, cfg.Window, cfg.Churn, cfg.Heartbeat.Interval, cfg.Heartbeat.TTL)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "STRATEGY\t429s\t429s IN WINDOW\tOK IN WINDOW\tTOKENS IN WINDOW\tTOKEN LIMIT USED\tCALL LIMIT USED\tTARGET")
	for _, r := range rs {
		target := "-"
		if strings.HasPrefix(r.Strategy, "allot Reserve") || r.Strategy == proxyLabel {
			target = "MISS"
			if r.Limited == 0 && r.TokenUtil >= 0.95 {
				target = "PASS"
			}
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%.1f%%\t%.1f%%\t%s\n", r.Strategy, r.Limited, r.LimitedInWin,
			r.Succeeded, r.Tokens, 100*r.TokenUtil, 100*r.Utilisation, target)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintln(w, "target (Reserve/Settle and allot proxy under churn): zero 429s and >= 95% of the token limit used")
	return err
}

// proxyLabel names the allot proxy strategy (its row has a target).
const proxyLabel = "allot proxy --openai (Acquire, settle from usage)"

// runProxy sends the node's calls through its own allot proxy, in process
// and over HTTP as a sidecar beside the node would be: OpenAI-style chat
// completions carrying max_tokens = Estimate (the caller's cost goes as
// X-Tokens, for the fake upstream only). The proxy takes a lease for its
// estimate (body/4 + max_tokens), puts the key in X-Api-Key, and settles
// from the answer's usage; the caller only waits out the proxy's refusals
// (retry-after-ms).
func runProxy(ctx context.Context, b *bench, n *node, c *client.Client, _ <-chan struct{}) {
	up := http.DefaultTransport.(*http.Transport).Clone()
	defer up.CloseIdleConnections()
	p, err := proxy.New(c, b.srv.URL, proxy.WithAuthHeader("X-Api-Key: {api_key}"), proxy.WithOpenAI(),
		proxy.WithTransport(up), proxy.WithUpstreamTimeout(5*time.Second))
	if err != nil {
		// Fixed options: a build whose proxy refuses them. The node makes
		// no calls and its row shows it.
		fmt.Fprintln(os.Stderr, "quota-bench: allot proxy:", err)
		return
	}
	sidecar := httptest.NewServer(p)
	hc := &http.Client{Transport: &http.Transport{}, Timeout: 10 * time.Second}
	defer func() {
		hc.CloseIdleConnections()
		sidecar.Close() // waits for the calls in flight
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_ = p.Close(cctx) // their settles
	}()
	cost := costs(b, n)
	body := fmt.Sprintf(`{"model":"fake-llm","max_tokens":%d,"messages":[{"role":"user","content":"Say ok."}]}`, b.cfg.Tokens.Estimate)
	for ctx.Err() == nil {
		k := cost()
		status, wait := callProxy(ctx, hc, sidecar.URL, body, k)
		if status == http.StatusOK {
			if b.counting.Load() {
				n.ok.Add(1)
				n.tok.Add(int64(k))
			}
			continue
		}
		if sleep(ctx, wait) != nil {
			return
		}
	}
}

// callProxy posts one chat completion costing cost tokens to the proxy at
// base; on anything but 200 it returns the wait the answer asks for
// (retry-after-ms), 10 ms without one.
func callProxy(ctx context.Context, hc *http.Client, base, body string, cost int) (status int, wait time.Duration) {
	wait = 10 * time.Millisecond
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/chat/completions", strings.NewReader(body))
	if err != nil {
		return 0, wait
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Tokens", strconv.Itoa(cost))
	resp, err := hc.Do(req)
	if err != nil {
		return 0, wait
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if ms, err := strconv.Atoi(resp.Header.Get("retry-after-ms")); err == nil && ms > 0 {
		wait = time.Duration(ms) * time.Millisecond
	}
	return resp.StatusCode, wait
}
