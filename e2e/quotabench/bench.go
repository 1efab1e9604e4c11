package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/allot-io/allot/client"
	"github.com/allot-io/allot/heartbeat"
	"github.com/allot-io/allot/internal/killswitch"
	"github.com/allot-io/allot/registry"
)

// config is one comparison run; every strategy runs with the same numbers,
// one after the other.
type config struct {
	Nodes     int           // nodes calling the upstream at once
	Keys      int           // API keys (allot groups), each with its own quota
	Quota     int           // calls per second per key
	Tolerance float64       // the upstream's extra burst, in seconds of quota
	Warmup    time.Duration // before the window: start-up bursts are spent here
	Window    time.Duration // measured
	Churn     time.Duration // every Churn one node dies (crash or leave, alternately) and a new one starts
	Heartbeat heartbeat.Config
	Redis     *redis.Options // allot strategies: every node gets its own client on it
	Seed      uint64
	// Tokens, when set, makes it the tokens scenario: the upstream also
	// limits tokens per key and every call costs a random number of them.
	Tokens *tokenConfig
}

// shortConfig runs in a few seconds per strategy (go test).
func shortConfig() config {
	return config{
		Nodes: 12, Keys: 4, Quota: 50, Tolerance: 0.1,
		Warmup: time.Second, Window: 4 * time.Second, Churn: time.Second,
		Heartbeat: heartbeat.Config{Interval: 250 * time.Millisecond, TTL: 750 * time.Millisecond},
		Seed:      1,
	}
}

// longConfig is the longer form (-quota.long / -long): default heartbeat.
func longConfig() config {
	c := shortConfig()
	c.Nodes, c.Keys = 30, 6
	c.Warmup, c.Window, c.Churn = 3*time.Second, 60*time.Second, 5*time.Second
	c.Heartbeat = heartbeat.DefaultConfig()
	return c
}

// result is what one strategy achieved.
type result struct {
	Strategy     string
	Limited      int64   // 429s over warm-up and window
	LimitedInWin int64   // 429s inside the window
	Succeeded    int64   // 200s inside the window
	Utilisation  float64 // Succeeded / (Keys × Quota × Window)
	MinPerNode   float64 // successful calls per second, nodes alive the whole window
	MaxPerNode   float64
	Jain         float64 // Jain's fairness index over the same nodes
	Steady       int     // how many nodes were alive the whole window
	Churned      int     // nodes killed or left during the window
	// Tokens scenario: tokens of successful calls inside the window and
	// their share of Keys × TPS × window (the binding limit).
	Tokens    int64
	TokenUtil float64
}

// strategy builds nodes of one kind.
type strategy interface {
	name() string
	// setup runs once before the first node starts.
	setup(ctx context.Context, b *bench) error
	// start runs one node until ctx ends (crash) or leave is called.
	start(ctx context.Context, b *bench, n *node) error
	teardown(ctx context.Context, b *bench)
}

// node is one running node of any strategy.
type node struct {
	id      int
	ip      string
	ok      atomic.Int64 // 200s inside the window
	tok     atomic.Int64 // tokens of those 200s (tokens scenario)
	cancel  context.CancelFunc
	done    chan struct{}
	leave   func(ctx context.Context) // graceful stop; nil = crash only
	crash   func()                    // extra crash work (allot: cut Redis)
	closeFn func(ctx context.Context)
	born    time.Time
	died    time.Time
}

// bench runs one strategy against a fresh upstream.
type bench struct {
	cfg      config
	keys     []string
	up       *upstream
	tup      *tokenUpstream // tokens scenario
	srv      *httptest.Server
	http     *http.Client
	counting atomic.Bool
	rng      *mrand.Rand

	mu    sync.Mutex
	nodes []*node
	live  int
	next  int
}

// limited is the upstream's 429 count so far.
func (b *bench) limited() int64 {
	if b.tup != nil {
		return b.tup.limited.Load()
	}
	return b.up.limited.Load()
}

// liveCount is the "config center" of the naive strategies: how many nodes
// are running right now.
func (b *bench) liveCount() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.live
}

// call makes one upstream call with key and counts a success in the
// window. On a 429 it returns the upstream's X-Retry-After-Ms.
func (b *bench) call(ctx context.Context, n *node, key string) (retry time.Duration) {
	status, retry := callUpstream(ctx, b.http, b.srv.URL, key)
	if status == http.StatusOK && b.counting.Load() {
		n.ok.Add(1)
	}
	return retry
}

// callUpstream makes one call to the fake upstream at base with key and
// returns its status (0 when the call failed) and, on a 429, its
// X-Retry-After-Ms.
func callUpstream(ctx context.Context, hc *http.Client, base, key string) (status int, retry time.Duration) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/thing", nil)
	if err != nil {
		return 0, 0
	}
	req.Header.Set("X-Api-Key", key)
	resp, err := hc.Do(req)
	if err != nil {
		return 0, 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode == http.StatusTooManyRequests {
		ms, _ := strconv.Atoi(resp.Header.Get("X-Retry-After-Ms"))
		retry = time.Duration(max(ms, 1)) * time.Millisecond
	}
	return resp.StatusCode, retry
}

func (b *bench) startNode(ctx context.Context, s strategy) error {
	b.mu.Lock()
	id := b.next
	b.next++
	// Pod-like addresses: the last octet is whatever the network handed out.
	ip := fmt.Sprintf("10.%d.%d.%d", b.rng.IntN(256), b.rng.IntN(256), 1+b.rng.IntN(254))
	b.mu.Unlock()
	nctx, cancel := context.WithCancel(ctx)
	n := &node{id: id, ip: ip, cancel: cancel, done: make(chan struct{}), born: time.Now()}
	if err := s.start(nctx, b, n); err != nil {
		cancel()
		return fmt.Errorf("start node %d: %w", id, err)
	}
	b.mu.Lock()
	b.nodes = append(b.nodes, n)
	b.live++
	b.mu.Unlock()
	return nil
}

// stopNode crashes (or, with graceful, lets leave) a random live node.
func (b *bench) stopNode(ctx context.Context, graceful bool) {
	b.mu.Lock()
	var alive []*node
	for _, n := range b.nodes {
		if n.died.IsZero() {
			alive = append(alive, n)
		}
	}
	if len(alive) == 0 {
		b.mu.Unlock()
		return
	}
	n := alive[b.rng.IntN(len(alive))]
	n.died = time.Now()
	b.live--
	b.mu.Unlock()
	if graceful && n.leave != nil {
		n.cancel()
		<-n.done
		n.leave(ctx)
		return
	}
	if n.crash != nil {
		n.crash()
	}
	n.cancel()
	<-n.done
}

// runStrategy runs s: nodes start, warm up, then the window is measured
// while nodes churn.
func runStrategy(ctx context.Context, cfg config, s strategy) (result, error) {
	b := &bench{cfg: cfg, rng: mrand.New(mrand.NewPCG(cfg.Seed, 7))}
	for i := range cfg.Keys {
		b.keys = append(b.keys, fmt.Sprintf("sk-live-%02d-%s", i, randomHex(6)))
	}
	var handler http.Handler
	if cfg.Tokens != nil {
		b.tup = newTokenUpstream(b.keys, cfg.Quota, cfg.Tokens.TPS, cfg.Tolerance)
		handler = b.tup
	} else {
		b.up = newUpstream(b.keys, cfg.Quota, cfg.Tolerance)
		handler = b.up
	}
	b.srv = httptest.NewServer(handler)
	defer b.srv.Close()
	b.http = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4 * cfg.Nodes}, Timeout: 5 * time.Second}
	defer b.http.CloseIdleConnections()

	if err := s.setup(ctx, b); err != nil {
		return result{}, err
	}
	defer s.teardown(context.WithoutCancel(ctx), b)
	runCtx, stopAll := context.WithCancel(ctx)
	defer func() {
		stopAll()
		b.mu.Lock()
		nodes := b.nodes
		b.mu.Unlock()
		for _, n := range nodes {
			<-n.done
			if n.closeFn != nil {
				n.closeFn(context.WithoutCancel(ctx))
			}
		}
	}()

	for range cfg.Nodes {
		if err := b.startNode(runCtx, s); err != nil {
			return result{}, err
		}
	}
	if err := sleep(ctx, cfg.Warmup); err != nil {
		return result{}, err
	}
	limitedBefore := b.limited()
	b.counting.Store(true)
	begin := time.Now()
	end := begin.Add(cfg.Window)
	churned := 0
	for i := 0; ; i++ {
		next := begin.Add(time.Duration(i+1) * cfg.Churn)
		if cfg.Churn <= 0 || !next.Before(end) {
			break
		}
		if err := sleep(ctx, time.Until(next)); err != nil {
			return result{}, err
		}
		b.stopNode(runCtx, i%2 == 1)
		churned++
		if err := b.startNode(runCtx, s); err != nil {
			return result{}, err
		}
	}
	if err := sleep(ctx, time.Until(end)); err != nil {
		return result{}, err
	}
	b.counting.Store(false)
	window := time.Since(begin)

	r := result{Strategy: s.name(), Churned: churned}
	r.Limited = b.limited()
	r.LimitedInWin = r.Limited - limitedBefore
	b.mu.Lock()
	nodes := b.nodes
	b.mu.Unlock()
	var rates []float64
	for _, n := range nodes {
		r.Succeeded += n.ok.Load()
		r.Tokens += n.tok.Load()
		if !n.born.After(begin) && n.died.IsZero() {
			rates = append(rates, float64(n.ok.Load())/window.Seconds())
		}
	}
	r.Utilisation = float64(r.Succeeded) / (float64(cfg.Keys*cfg.Quota) * window.Seconds())
	if cfg.Tokens != nil {
		r.TokenUtil = float64(r.Tokens) / (float64(cfg.Keys*cfg.Tokens.TPS) * window.Seconds())
	}
	r.Steady = len(rates)
	r.MinPerNode, r.MaxPerNode, r.Jain = fairness(rates)
	return r, nil
}

// fairness returns the min, the max and Jain's index (Σx)²/(n·Σx²).
func fairness(xs []float64) (lo, hi, jain float64) {
	if len(xs) == 0 {
		return 0, 0, 0
	}
	lo, hi = xs[0], xs[0]
	var sum, sq float64
	for _, x := range xs {
		lo, hi = min(lo, x), max(hi, x)
		sum += x
		sq += x * x
	}
	if sq == 0 {
		return lo, hi, 0
	}
	return lo, hi, sum * sum / (float64(len(xs)) * sq)
}

// compare runs every strategy, one after the other.
func compare(ctx context.Context, cfg config) ([]result, error) {
	var out []result
	for _, s := range []strategy{
		&allotStrategy{global: true}, &allotStrategy{}, naiveStrategy{}, randomStrategy{},
	} {
		r, err := runStrategy(ctx, cfg, s)
		if err != nil {
			return out, fmt.Errorf("%s: %w", s.name(), err)
		}
		out = append(out, r)
	}
	return out, nil
}

// writeTable prints the results, the target (zero 429s and >= 95%
// utilisation with allot under churn) and whether each allot strategy met it.
func writeTable(w io.Writer, cfg config, rs []result) error {
	fmt.Fprintf(w, "%d nodes, %d keys × %d calls/s (upstream: token bucket, burst %.0f%% of a second of quota), warm-up %v, window %v, one node crashes or leaves every %v; heartbeat %v/%v\n",
		cfg.Nodes, cfg.Keys, cfg.Quota, 100*(1+cfg.Tolerance), cfg.Warmup, cfg.Window, cfg.Churn, cfg.Heartbeat.Interval, cfg.Heartbeat.TTL)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "STRATEGY\t429s\t429s IN WINDOW\tOK IN WINDOW\tUTILISATION\tCALLS/S PER NODE MIN..MAX\tJAIN\tTARGET")
	for _, r := range rs {
		target := "-"
		if strings.HasPrefix(r.Strategy, "allot") {
			target = "MISS"
			if r.Limited == 0 && r.Utilisation >= 0.95 {
				target = "PASS"
			}
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%.1f%%\t%.1f..%.1f (%d nodes)\t%.3f\t%s\n",
			r.Strategy, r.Limited, r.LimitedInWin, r.Succeeded, 100*r.Utilisation,
			r.MinPerNode, r.MaxPerNode, r.Steady, r.Jain, target)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintln(w, "target (allot under churn): zero 429s and >= 95% utilisation")
	return err
}

// waitAfterRefusal waits after a refused Allow or Reserve: a
// RateLimitError's RetryAfter, any other error 10 ms. It reports false
// once ctx has ended.
func waitAfterRefusal(ctx context.Context, err error) bool {
	d := 10 * time.Millisecond
	var rl *client.RateLimitError
	if errors.As(err, &rl) {
		d = max(rl.RetryAfter, time.Millisecond)
	}
	return sleep(ctx, d) == nil
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// allotStrategy: every node is a client.Client of one pool whose groups
// carry the keys. global: each call first takes a token from the group's
// quota in Redis (Allow, GCRA shared by all holders). Otherwise each node
// limits itself locally to quota × Share.
type allotStrategy struct {
	global bool
	ns     string
	admin  redis.UniversalClient

	// Tokens scenario: the strategy's name, the groups' quota text, and the
	// node loop (nil: the classic global or share loop).
	label string
	quota func(cfg config) string
	run   func(ctx context.Context, b *bench, n *node, c *client.Client, changed <-chan struct{})
}

func (s *allotStrategy) name() string {
	if s.label != "" {
		return s.label
	}
	if s.global {
		return "allot Allow (global GCRA)"
	}
	return "allot share (local quota × Share)"
}

func (s *allotStrategy) setup(ctx context.Context, b *bench) error {
	if b.cfg.Redis == nil {
		return errors.New("allot strategies need a Redis (-redis)")
	}
	s.ns = "quota-bench-" + randomHex(4)
	s.admin = redis.NewClient(b.cfg.Redis)
	reg := registry.New(s.admin, registry.WithNamespace(s.ns))
	quota := fmt.Sprintf("%d/s", b.cfg.Quota)
	if s.quota != nil {
		quota = s.quota(b.cfg)
	}
	for i, key := range b.keys {
		_, err := reg.Add(ctx, fmt.Sprintf("key-%02d", i), registry.Change{
			Set: map[string]string{"api_key": key}, Secret: []string{"api_key"}, Quota: &quota,
		}, "quota-bench")
		if err != nil {
			return err
		}
	}
	return nil
}

func (s *allotStrategy) teardown(ctx context.Context, b *bench) {
	if s.admin == nil {
		return
	}
	for _, pattern := range []string{"{allot:" + s.ns + "}*", "rate:{allot:" + s.ns + "}*"} {
		iter := s.admin.Scan(ctx, 0, pattern, 1000).Iterator()
		for iter.Next(ctx) {
			s.admin.Unlink(ctx, iter.Val())
		}
	}
	_ = s.admin.Close()
}

func (s *allotStrategy) start(ctx context.Context, b *bench, n *node) error {
	rdb := redis.NewClient(b.cfg.Redis)
	sw := killswitch.New(errKilled)
	rdb.AddHook(sw)
	c, err := client.New(rdb, client.WithNamespace(s.ns), client.WithNodeID(fmt.Sprintf("node-%03d", n.id)),
		client.WithIP(n.ip), client.WithHeartbeat(b.cfg.Heartbeat))
	if err != nil {
		_ = rdb.Close()
		return err
	}
	changed := make(chan struct{}, 1)
	c.OnChange(func(_, _ client.Assignment) {
		select {
		case changed <- struct{}{}:
		default:
		}
	})
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := c.Start(sctx); err != nil {
		_ = rdb.Close()
		return err
	}
	n.crash = sw.Kill // a crashed process talks to nobody
	n.leave = func(ctx context.Context) { _ = c.Close(ctx) }
	n.closeFn = func(ctx context.Context) {
		sw.Kill()
		_ = c.Close(ctx)
		_ = rdb.Close()
	}
	go func() {
		defer close(n.done)
		if s.run != nil {
			s.run(ctx, b, n, c, changed)
			return
		}
		if s.global {
			s.runGlobal(ctx, b, n, c, changed)
		} else {
			s.runShare(ctx, b, n, c, changed)
		}
	}()
	return nil
}

// waitChange waits for an assignment change, at most d.
func waitChange(ctx context.Context, changed <-chan struct{}, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-changed:
	case <-t.C:
	}
	return true
}

func (s *allotStrategy) runGlobal(ctx context.Context, b *bench, n *node, c *client.Client, changed <-chan struct{}) {
	for ctx.Err() == nil {
		a := c.Assignment()
		if len(a.Groups) == 0 {
			if !waitChange(ctx, changed, 50*time.Millisecond) {
				return
			}
			continue
		}
		g := a.Groups[0]
		err := c.Allow(ctx, g.Name)
		if err != nil {
			if !waitAfterRefusal(ctx, err) {
				return
			}
			continue
		}
		b.call(ctx, n, g.Config["api_key"])
	}
}

func (s *allotStrategy) runShare(ctx context.Context, b *bench, n *node, c *client.Client, changed <-chan struct{}) {
	var cur client.Group
	var lim *localLimiter
	for ctx.Err() == nil {
		a := c.Assignment()
		if len(a.Groups) == 0 {
			lim = nil
			if !waitChange(ctx, changed, 50*time.Millisecond) {
				return
			}
			continue
		}
		g := a.Groups[0]
		if lim == nil || g.Name != cur.Name || g.Share != cur.Share {
			// A new group or share starts with nothing saved up.
			cur, lim = g, newLocalLimiter(float64(b.cfg.Quota)*g.Share, time.Now())
		}
		if d := lim.wait(time.Now()); d > 0 {
			if sleep(ctx, d) != nil {
				return
			}
			continue
		}
		b.call(ctx, n, g.Config["api_key"])
	}
}

// naiveStrategy: key = keys[last octet of the IP mod number of keys], and
// each node limits itself to its even part of the pooled quota,
// keys × quota / nodes, with the node count re-read every 5 s (how small
// config centers do it).
type naiveStrategy struct{}

func (naiveStrategy) name() string                        { return "naive ip-octet mod keys" }
func (naiveStrategy) setup(context.Context, *bench) error { return nil }
func (naiveStrategy) teardown(context.Context, *bench)    {}
func (naiveStrategy) start(ctx context.Context, b *bench, n *node) error {
	octet := int(net.ParseIP(n.ip).To4()[3])
	key := b.keys[octet%len(b.keys)]
	go runLocal(ctx, b, n, func() string { return key })
	return nil
}

// randomStrategy: no coordination at all; every call uses a random key and
// a node calls as fast as the upstream answers, waiting only as long as a
// 429's X-Retry-After-Ms says.
type randomStrategy struct{}

func (randomStrategy) name() string                        { return "no coordination (random key)" }
func (randomStrategy) setup(context.Context, *bench) error { return nil }
func (randomStrategy) teardown(context.Context, *bench)    {}
func (randomStrategy) start(ctx context.Context, b *bench, n *node) error {
	rng := mrand.New(mrand.NewPCG(b.cfg.Seed, uint64(n.id)))
	go func() {
		defer close(n.done)
		for ctx.Err() == nil {
			if d := b.call(ctx, n, b.keys[rng.IntN(len(b.keys))]); d > 0 && sleep(ctx, d) != nil {
				return
			}
		}
	}()
	return nil
}

// runLocal calls pick()'s key at keys × quota / live nodes per second, the
// node count re-read every 5 s.
func runLocal(ctx context.Context, b *bench, n *node, pick func() string) {
	defer close(n.done)
	rate := func() float64 {
		return float64(b.cfg.Keys*b.cfg.Quota) / float64(max(b.liveCount(), 1))
	}
	lim := newLocalLimiter(rate(), time.Now())
	reread := time.Now().Add(5 * time.Second)
	for ctx.Err() == nil {
		if now := time.Now(); now.After(reread) {
			lim.rate, reread = rate(), now.Add(5*time.Second)
		}
		if d := lim.wait(time.Now()); d > 0 {
			if sleep(ctx, d) != nil {
				return
			}
			continue
		}
		b.call(ctx, n, pick())
	}
}

// errKilled is what a crashed allot node's Redis calls fail with.
var errKilled = errors.New("quota-bench: node crashed")
