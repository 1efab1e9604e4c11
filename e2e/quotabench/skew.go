package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	mrand "math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/allot-io/allot/heartbeat"
	"github.com/allot-io/allot/internal/redistest"
)

// The demand skew scenario (-skew, issue 23): the pool has room for every
// call, but the demand is uneven. 12 nodes share 6 keys of 600/m burst 10
// (60 calls/s in all); 2 hot nodes want 20 calls/s each and 10 cold nodes
// 1.5/s each (55 calls/s wanted). Variants:
//
//   - steady: the hot nodes stay hot for the whole run;
//   - moving: the hot nodes change every 15 s of the window;
//   - uniform: every node wants the same (55/12 calls/s), under the quota.
//
// The hot nodes are two nodes placed on the same key when demand starts
// (the case the issue met: the IP hash does not know demand), and at each
// move two cold nodes sharing another key. Strategies that place nodes on
// no key (router) take them in node order.
//
// Calls arrive at each node as a Poisson process of the node's rate (open
// loop: a refused call does not slow the arrivals). A node works through its
// calls in order, one in flight; a call not served within Patience of its
// arrival is lost. On a refusal it waits what the refusal says. Calls
// wanted and served count the calls that arrived inside the window.
//
// The fake upstream enforces the real limits per key, independently of
// allot: a token bucket of rate 10/s and capacity burst + Tolerance × rate
// (GCRA 600/m burst 10, plus 100 ms of rate by default for clock edges and
// calls reordered in flight, as the other scenarios allow), and counts its
// 429s. No strategy reports to allot's key health here (the -health
// scenario measures that): a 429 only makes the node wait.

// Skew variants.
const (
	skewSteady  = "steady"
	skewMoving  = "moving"
	skewUniform = "uniform"
)

// skewVariants lists every variant, in the table's order.
var skewVariants = []string{skewSteady, skewMoving, skewUniform}

// skewConfig is one run of the skew scenario.
type skewConfig struct {
	Variant   string  // steady, moving or uniform
	Nodes     int     // nodes calling the upstream
	Keys      int     // keys (allot groups key-00, key-01...)
	PerMinute int     // each key's quota: calls per minute
	Burst     int     // each key's burst
	Hot       int     // hot nodes
	HotRate   float64 // calls per second each hot node wants
	ColdRate  float64 // calls per second each other node wants
	// Warmup runs the demand before the window (placement settles there).
	Warmup time.Duration
	// Window is measured.
	Window time.Duration
	// Move is how often the hot nodes change in the moving variant.
	Move time.Duration
	// Patience is how long a call may wait to be served before it is lost.
	Patience time.Duration
	// Tolerance is the upstream's extra capacity, in seconds of rate.
	Tolerance float64
	// Settle is how long the allot strategies wait at most, before demand
	// starts, for every node to hold a group and the holder counts to be
	// balanced.
	Settle    time.Duration
	Heartbeat heartbeat.Config
	Redis     *redis.Options // every node of a strategy gets its own client on it
	Seed      uint64
}

// defaultSkewConfig is the set-up: 20 s of warm-up, then 40 s
// measured, default heartbeat.
func defaultSkewConfig() skewConfig {
	return skewConfig{
		Variant: skewSteady,
		Nodes:   12, Keys: 6, PerMinute: 600, Burst: 10,
		Hot: 2, HotRate: 20, ColdRate: 1.5,
		Warmup: 20 * time.Second, Window: 40 * time.Second, Move: 15 * time.Second,
		Patience: time.Second, Tolerance: 0.1, Settle: 30 * time.Second,
		Heartbeat: heartbeat.DefaultConfig(),
		Seed:      23,
	}
}

// shortSkewConfig runs in a few seconds per strategy (go test).
func shortSkewConfig() skewConfig {
	c := defaultSkewConfig()
	c.Warmup, c.Window, c.Move = 2*time.Second, 4*time.Second, 2*time.Second
	c.Settle = 10 * time.Second
	c.Heartbeat = heartbeat.Config{Interval: 250 * time.Millisecond, TTL: 750 * time.Millisecond}
	return c
}

// validate refuses a configuration the scenario cannot run.
func (c skewConfig) validate() error {
	switch {
	case !slices.Contains(skewVariants, c.Variant):
		return fmt.Errorf("skew: unknown variant %q (want one of %s)", c.Variant, strings.Join(skewVariants, ", "))
	case c.Nodes < 1 || c.Keys < 1 || c.Nodes > 1000 || c.Keys > 1000:
		return fmt.Errorf("skew: %d nodes and %d keys: want 1..1000 of each", c.Nodes, c.Keys)
	case c.PerMinute < 1 || c.Burst < 1:
		return fmt.Errorf("skew: quota %d/m burst %d: both must be positive", c.PerMinute, c.Burst)
	case c.Hot < 0 || c.Hot > c.Nodes:
		return fmt.Errorf("skew: %d hot nodes of %d", c.Hot, c.Nodes)
	case !(c.HotRate >= 0) || !(c.ColdRate >= 0) || c.HotRate > 1e6 || c.ColdRate > 1e6:
		return fmt.Errorf("skew: rates %v and %v calls/s: want 0..1e6", c.HotRate, c.ColdRate)
	case c.Warmup < 0 || c.Window <= 0 || c.Patience <= 0 || c.Settle < 0:
		return fmt.Errorf("skew: warm-up %v, window %v, patience %v, settle %v: want a positive window and patience", c.Warmup, c.Window, c.Patience, c.Settle)
	case c.Variant == skewMoving && c.Move <= 0:
		return fmt.Errorf("skew: the moving variant needs a positive move period, not %v", c.Move)
	case !(c.Tolerance >= 0) || c.Tolerance > 10:
		return fmt.Errorf("skew: tolerance %v s: want 0..10", c.Tolerance)
	}
	return c.Heartbeat.Validate()
}

// rate is each key's quota in calls per second.
func (c skewConfig) rate() float64 { return float64(c.PerMinute) / 60 }

// quotaText is each group's quota as allot writes it ("600/m burst 10").
func (c skewConfig) quotaText() string { return fmt.Sprintf("%d/m burst %d", c.PerMinute, c.Burst) }

// demand is the calls per second the whole pool wants.
func (c skewConfig) demand() float64 {
	return float64(c.Hot)*c.HotRate + float64(c.Nodes-c.Hot)*c.ColdRate
}

// quotaCalls is what the keys allow over d: Keys × rate × d.
func (c skewConfig) quotaCalls(d time.Duration) float64 {
	return float64(c.Keys) * c.rate() * d.Seconds()
}

// skewResult is what one strategy achieved in one variant.
type skewResult struct {
	Variant  string
	Strategy string
	Wanted   int64   // calls that arrived inside the window
	Served   int64   // of those, the calls the upstream answered 200
	Quota    float64 // calls the keys allow over the window
	Limited  int64   // the upstream's 429s during the window
	// Borrowed counts served calls whose lease was borrowed (from a group
	// the node did not hold); -1 where the strategy has no leases.
	Borrowed int64
	// Moves counts groups nodes gained during the window (each move of a
	// node from one group to another is one); -1 where nothing is placed.
	Moves int64
}

// servedPercent is served as a percentage of min(wanted, quota): of what
// the pool could have served.
func servedPercent(served, wanted int64, quota float64) float64 {
	d := math.Min(float64(wanted), quota)
	if d <= 0 {
		return 0
	}
	return 100 * float64(served) / d
}

// borrowedPercent is borrowed as a percentage of served (0 when nothing was
// served).
func borrowedPercent(borrowed, served int64) float64 {
	if served <= 0 {
		return 0
	}
	return 100 * float64(borrowed) / float64(served)
}

// skewTake is one pick's outcome: the key to call with, or a wait.
type skewTake struct {
	key      string
	borrowed bool          // the key's group is not one the node holds
	wait     time.Duration // > 0: no key now, try again after this
	done     func()        // runs after the call (a lease's Settle); may be nil
}

// skewPicker is one node of a strategy: it picks the key for each call.
// Its methods other than homes are only called from the node's goroutine.
type skewPicker interface {
	// pick returns the key for one call now, or how long to wait.
	pick(ctx context.Context) skewTake
	// refused says the upstream answered 429 to a call with key, retry
	// being its hint; it returns how long the node waits before its next
	// pick.
	refused(key string, retry time.Duration) time.Duration
	// homes are the groups the node is placed on now (nil: none), for
	// choosing the hot nodes. Safe for concurrent use.
	homes() []string
	// close stops the node (after its goroutine has returned).
	close(ctx context.Context)
}

// skewStrategy builds the nodes of one strategy.
type skewStrategy interface {
	name() string
	setup(ctx context.Context, sb *skewBench) error
	// node starts one node's picker.
	node(ctx context.Context, sb *skewBench, n *skewNode) (skewPicker, error)
	teardown(ctx context.Context, sb *skewBench)
}

// skewBench runs one strategy in one variant against a fresh upstream.
type skewBench struct {
	cfg  skewConfig
	keys []string // the API keys; group key-NN carries keys[NN]
	up   *upstream
	srv  *httptest.Server
	http *http.Client
	// window is [begin, end) once demand starts (nil before).
	window atomic.Pointer[[2]time.Time]
	// moves counts groups nodes gained inside the window.
	moves atomic.Int64
}

// inWindow reports whether t falls inside the measured window.
func (sb *skewBench) inWindow(t time.Time) bool {
	w := sb.window.Load()
	return w != nil && !t.Before(w[0]) && t.Before(w[1])
}

// groupName is the allot group that carries keys[i].
func groupName(i int) string { return fmt.Sprintf("key-%02d", i) }

// skewNode is one node of the scenario, whatever its strategy.
type skewNode struct {
	id   int
	ip   string
	p    skewPicker
	rng  *mrand.Rand   // arrivals; only the node's goroutine uses it
	rate atomic.Uint64 // calls per second wanted, math.Float64bits
	wake chan struct{} // the rate changed
	done chan struct{}

	wanted, served, borrowed atomic.Int64 // calls that arrived in the window
}

// setRate changes the calls per second the node wants, at once.
func (n *skewNode) setRate(r float64) {
	if math.Float64bits(r) == n.rate.Swap(math.Float64bits(r)) {
		return
	}
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

// after is the next arrival after t: Poisson arrivals at the node's rate
// (none while the rate is 0).
func (n *skewNode) after(t time.Time) time.Time {
	r := math.Float64frombits(n.rate.Load())
	if r <= 0 {
		return t.Add(time.Hour)
	}
	return t.Add(time.Duration(n.rng.ExpFloat64() / r * float64(time.Second)))
}

// arrival is one call a node wants to make.
type arrival struct {
	at      time.Time
	counted bool // it arrived inside the window
}

// runNode is a node's life: calls arrive, and it serves them in order, one
// in flight, until ctx ends.
func (sb *skewBench) runNode(ctx context.Context, n *skewNode) {
	defer close(n.done)
	var (
		queue   []arrival
		retryAt time.Time
		next    = n.after(time.Now())
	)
	for ctx.Err() == nil {
		now := time.Now()
		for !next.After(now) {
			a := arrival{at: next, counted: sb.inWindow(next)}
			if a.counted {
				n.wanted.Add(1)
			}
			queue = append(queue, a)
			next = n.after(next)
		}
		for len(queue) > 0 && now.Sub(queue[0].at) > sb.cfg.Patience {
			queue = queue[1:] // lost
		}
		if len(queue) == 0 || now.Before(retryAt) {
			until := next
			if len(queue) > 0 && retryAt.Before(until) {
				until = retryAt
			}
			t := time.NewTimer(time.Until(until))
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-n.wake:
				// Arrivals are memoryless: drawing the next one again
				// from now at the new rate is exact.
				next = n.after(time.Now())
			case <-t.C:
			}
			t.Stop()
			continue
		}
		tk := n.p.pick(ctx)
		if tk.wait > 0 {
			retryAt = now.Add(tk.wait)
			continue
		}
		status, retry := callUpstream(ctx, sb.http, sb.srv.URL, tk.key)
		if tk.done != nil {
			tk.done()
		}
		switch status {
		case http.StatusOK:
			if queue[0].counted {
				n.served.Add(1)
				if tk.borrowed {
					n.borrowed.Add(1)
				}
			}
			queue = queue[1:]
		case http.StatusTooManyRequests:
			retryAt = time.Now().Add(n.p.refused(tk.key, retry))
		default:
			retryAt = time.Now().Add(10 * time.Millisecond)
		}
	}
}

// pickHot chooses the hot nodes: hot nodes placed on one group, none of
// them in prev (the hot nodes until now), from the first such group after
// prev's group in name order (wrapping); homes[i] is node i's groups. When
// no group has enough such nodes (nothing is placed), the hot nodes not in
// prev that follow the last of prev in node order, wrapping.
func pickHot(homes [][]string, hot int, prev []int) []int {
	if hot <= 0 {
		return nil
	}
	byGroup := map[string][]int{}
	for i, hs := range homes {
		if slices.Contains(prev, i) {
			continue
		}
		for _, g := range hs {
			byGroup[g] = append(byGroup[g], i)
		}
	}
	var candidates []string
	for g, ns := range byGroup {
		if len(ns) >= hot {
			candidates = append(candidates, g)
		}
	}
	if len(candidates) > 0 {
		slices.Sort(candidates)
		after := ""
		if len(prev) > 0 && prev[0] < len(homes) && len(homes[prev[0]]) > 0 {
			after = homes[prev[0]][0]
		}
		i, _ := slices.BinarySearch(candidates, after+"\x00")
		return byGroup[candidates[i%len(candidates)]][:hot]
	}
	var free []int
	for i := range homes {
		if !slices.Contains(prev, i) {
			free = append(free, i)
		}
	}
	last := -1
	if len(prev) > 0 {
		last = slices.Max(prev)
	}
	start, _ := slices.BinarySearch(free, last+1)
	var out []int
	for k := 0; k < len(free) && len(out) < hot; k++ {
		out = append(out, free[(start+k)%len(free)])
	}
	slices.Sort(out)
	return out
}

// balanced reports whether every node holds a group and the holder counts
// of the keys groups differ by at most one.
func balanced(homes [][]string, keys int) bool {
	count := map[string]int{}
	for _, hs := range homes {
		if len(hs) == 0 {
			return false
		}
		for _, g := range hs {
			count[g]++
		}
	}
	lo, hi := math.MaxInt, 0
	for i := range keys {
		c := count[groupName(i)]
		lo, hi = min(lo, c), max(hi, c)
	}
	return hi-lo <= 1
}

// runSkew runs strategy s in cfg's variant: nodes start, the pool settles,
// demand starts (warm-up), then the window is measured.
func runSkew(ctx context.Context, cfg skewConfig, s skewStrategy) (skewResult, error) {
	if err := cfg.validate(); err != nil {
		return skewResult{}, err
	}
	sb := &skewBench{cfg: cfg}
	for i := range cfg.Keys {
		sb.keys = append(sb.keys, fmt.Sprintf("sk-live-%02d-%s", i, randomHex(6)))
	}
	sb.up = newRateUpstream(sb.keys, cfg.rate(), float64(cfg.Burst)+cfg.Tolerance*cfg.rate())
	sb.srv = httptest.NewServer(sb.up)
	defer sb.srv.Close()
	sb.http = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 2 * cfg.Nodes}, Timeout: 5 * time.Second}
	defer sb.http.CloseIdleConnections()

	if err := s.setup(ctx, sb); err != nil {
		return skewResult{}, err
	}
	defer s.teardown(context.WithoutCancel(ctx), sb)
	runCtx, stopAll := context.WithCancel(ctx)
	var nodes []*skewNode
	defer func() {
		stopAll()
		for _, n := range nodes {
			<-n.done
			n.p.close(context.WithoutCancel(ctx))
		}
	}()

	rng := mrand.New(mrand.NewPCG(cfg.Seed, 23))
	for i := range cfg.Nodes {
		// Pod-like addresses: the last octet is whatever the network handed out.
		ip := fmt.Sprintf("10.%d.%d.%d", rng.IntN(256), rng.IntN(256), 1+rng.IntN(254))
		n := &skewNode{id: i, ip: ip, rng: mrand.New(mrand.NewPCG(cfg.Seed, uint64(100+i))),
			wake: make(chan struct{}, 1), done: make(chan struct{})}
		p, err := s.node(runCtx, sb, n)
		if err != nil {
			return skewResult{}, fmt.Errorf("start node %d: %w", i, err)
		}
		n.p = p
		nodes = append(nodes, n)
		go sb.runNode(runCtx, n)
	}
	homes := func() [][]string {
		out := make([][]string, len(nodes))
		for i, n := range nodes {
			out[i] = n.p.homes()
		}
		return out
	}
	if _, placed := s.(*skewAllot); placed {
		deadline := time.Now().Add(cfg.Settle)
		for !balanced(homes(), cfg.Keys) && time.Now().Before(deadline) {
			if err := sleep(ctx, 50*time.Millisecond); err != nil {
				return skewResult{}, err
			}
		}
	}

	begin := time.Now().Add(cfg.Warmup)
	end := begin.Add(cfg.Window)
	sb.window.Store(&[2]time.Time{begin, end})
	var hot []int
	setDemand := func() {
		for i, n := range nodes {
			switch {
			case cfg.Variant == skewUniform:
				n.setRate(cfg.demand() / float64(cfg.Nodes))
			case slices.Contains(hot, i):
				n.setRate(cfg.HotRate)
			default:
				n.setRate(cfg.ColdRate)
			}
		}
	}
	if cfg.Variant != skewUniform {
		hot = pickHot(homes(), cfg.Hot, nil)
	}
	setDemand()

	if err := sleep(ctx, time.Until(begin)); err != nil {
		return skewResult{}, err
	}
	limitedBefore := sb.up.limited.Load()
	for round := 1; cfg.Variant == skewMoving; round++ {
		at := begin.Add(time.Duration(round) * cfg.Move)
		if !at.Before(end) {
			break
		}
		if err := sleep(ctx, time.Until(at)); err != nil {
			return skewResult{}, err
		}
		hot = pickHot(homes(), cfg.Hot, hot)
		setDemand()
	}
	if err := sleep(ctx, time.Until(end)); err != nil {
		return skewResult{}, err
	}
	limited := sb.up.limited.Load() - limitedBefore
	// Calls that arrived in the window may still be served: wait them out.
	if err := sleep(ctx, cfg.Patience+100*time.Millisecond); err != nil {
		return skewResult{}, err
	}
	stopAll()

	r := skewResult{Variant: cfg.Variant, Strategy: s.name(), Quota: cfg.quotaCalls(cfg.Window),
		Limited: limited, Borrowed: -1, Moves: -1}
	var borrowed int64
	for _, n := range nodes {
		<-n.done
		r.Wanted += n.wanted.Load()
		r.Served += n.served.Load()
		borrowed += n.borrowed.Load()
	}
	if a, ok := s.(*skewAllot); ok {
		r.Moves = sb.moves.Load()
		if a.acquire {
			r.Borrowed = borrowed
		}
	}
	return r, nil
}

// skewStrategies are the strategies the scenario compares, by flag name.
func skewStrategies() map[string]func() skewStrategy {
	return map[string]func() skewStrategy{
		"allow":   func() skewStrategy { return &skewAllot{} },
		"acquire": func() skewStrategy { return &skewAllot{acquire: true} },
		"router":  func() skewStrategy { return &routerStrategy{} },
		"ipmod":   func() skewStrategy { return ipModStrategy{} },
	}
}

// skewStrategyOrder is the strategies' order in the table.
var skewStrategyOrder = []string{"allow", "acquire", "router", "ipmod"}

// compareSkew runs every named strategy in every named variant, one after
// the other.
func compareSkew(ctx context.Context, cfg skewConfig, variants, strategies []string) ([]skewResult, error) {
	all := skewStrategies()
	for _, s := range strategies {
		if all[s] == nil {
			return nil, fmt.Errorf("skew: unknown strategy %q (want some of %s)", s, strings.Join(skewStrategyOrder, ","))
		}
	}
	if len(variants) == 0 || len(strategies) == 0 {
		return nil, errors.New("skew: no variant or no strategy to run")
	}
	var out []skewResult
	for _, v := range variants {
		c := cfg
		c.Variant = v
		if err := c.validate(); err != nil {
			return out, err
		}
		for _, name := range strategies {
			s := all[name]()
			r, err := runSkew(ctx, c, s)
			if err != nil {
				return out, fmt.Errorf("%s, %s: %w", v, s.name(), err)
			}
			out = append(out, r)
		}
	}
	return out, nil
}

// skewVariantLabel is a variant as the table names it.
func skewVariantLabel(cfg skewConfig, v string) string {
	switch v {
	case skewMoving:
		return fmt.Sprintf("moving hotspot (every %v)", cfg.Move)
	case skewUniform:
		return "uniform"
	}
	return "steady skew"
}

// writeSkewTable prints the set-up and the results as a Markdown table
// ready for BENCHMARKS.md.
func writeSkewTable(w io.Writer, cfg skewConfig, rs []skewResult) error {
	fmt.Fprintf(w, "%d nodes, %d keys × `%s` (%.0f calls/s in all); %d hot nodes × %g calls/s, %d cold × %g (%g calls/s wanted; uniform: %.2f each); "+
		"warm-up %v, window %v, patience %v; upstream: token bucket %g/s, capacity %g; heartbeat %v/%v\n\n",
		cfg.Nodes, cfg.Keys, cfg.quotaText(), float64(cfg.Keys)*cfg.rate(), cfg.Hot, cfg.HotRate, cfg.Nodes-cfg.Hot, cfg.ColdRate,
		cfg.demand(), cfg.demand()/float64(cfg.Nodes), cfg.Warmup, cfg.Window, cfg.Patience,
		cfg.rate(), float64(cfg.Burst)+cfg.Tolerance*cfg.rate(), cfg.Heartbeat.Interval, cfg.Heartbeat.TTL)
	fmt.Fprintln(w, "| variant | strategy | calls wanted | served | served % of min(demand, quota) | upstream 429s | borrowed | group moves |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|")
	for _, r := range rs {
		borrowed, moves := "-", "-"
		if r.Borrowed >= 0 {
			borrowed = fmt.Sprintf("%.1f%%", borrowedPercent(r.Borrowed, r.Served))
		}
		if r.Moves >= 0 {
			moves = fmt.Sprint(r.Moves)
		}
		fmt.Fprintf(w, "| %s | %s | %d | %d | %.1f%% | %d | %s | %s |\n",
			skewVariantLabel(cfg, r.Variant), r.Strategy, r.Wanted, r.Served,
			servedPercent(r.Served, r.Wanted, r.Quota), r.Limited, borrowed, moves)
	}
	_, err := fmt.Fprintln(w, "\ntargets (Acquire): steady ≥ 97% and moving ≥ 90% served with 0 upstream 429s; uniform as Allow with < 1% borrowed; no moves in the window under steady skew")
	return err
}

// skewOptions are the -skew flags.
type skewOptions struct {
	on         bool
	variants   string
	strategies string
	cfg        skewConfig
}

// skewFlags declares the -skew flags; their defaults are the set-up.
func skewFlags() *skewOptions {
	o := &skewOptions{cfg: defaultSkewConfig()}
	flag.BoolVar(&o.on, "skew", false, "run the demand skew scenario (hot and cold nodes; Allow, Acquire, a router, IP mod N)")
	flag.StringVar(&o.variants, "skew-variants", strings.Join(skewVariants, ","), "skew: variants to run, comma-separated")
	flag.StringVar(&o.strategies, "skew-strategies", strings.Join(skewStrategyOrder, ","), "skew: strategies to run, comma-separated")
	flag.DurationVar(&o.cfg.Warmup, "skew-warmup", o.cfg.Warmup, "skew: demand runs this long before the window")
	flag.DurationVar(&o.cfg.Window, "skew-window", o.cfg.Window, "skew: the measured window")
	flag.DurationVar(&o.cfg.Move, "skew-move", o.cfg.Move, "skew: the moving hotspot changes its hot nodes this often")
	flag.DurationVar(&o.cfg.Patience, "skew-patience", o.cfg.Patience, "skew: a call not served within this of its arrival is lost")
	flag.DurationVar(&o.cfg.Settle, "skew-settle", o.cfg.Settle, "skew: at most this long for the allot pool to balance before demand starts")
	flag.DurationVar(&o.cfg.Heartbeat.Interval, "skew-beat", o.cfg.Heartbeat.Interval, "skew: heartbeat interval of the allot nodes (TTL = 3 × interval)")
	flag.Float64Var(&o.cfg.Tolerance, "skew-tolerance", o.cfg.Tolerance, "skew: the upstream's extra capacity per key, in seconds of its rate")
	flag.Uint64Var(&o.cfg.Seed, "skew-seed", o.cfg.Seed, "skew: seed of node addresses and arrivals")
	return o
}

// runSkewMain runs the skew scenario on the Redis at url, or on a
// redis-server of its own when url is empty, prints the table and returns
// the exit code.
func runSkewMain(url string, o *skewOptions) int {
	cfg := o.cfg
	cfg.Heartbeat.TTL = 3 * cfg.Heartbeat.Interval
	variants, strategies := splitList(o.variants), splitList(o.strategies)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if url == "" {
		srv, stopRedis, err := redistest.StartMain()
		if err != nil {
			fmt.Fprintln(os.Stderr, "quota-bench: start redis-server:", err)
			return 1
		}
		defer stopRedis()
		url = srv.URL()
	}
	opt, err := redis.ParseURL(url)
	if err != nil {
		fmt.Fprintln(os.Stderr, "quota-bench: invalid -redis:", err)
		return 2
	}
	cfg.Redis = opt
	rs, err := compareSkew(ctx, cfg, variants, strategies)
	if werr := writeSkewTable(os.Stdout, cfg, rs); werr != nil && err == nil {
		err = werr
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "quota-bench:", err)
		return 1
	}
	return 0
}

// splitList splits a comma-separated flag, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
