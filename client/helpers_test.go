package client

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/heartbeat"
	"github.com/allot-io/allot/internal/redistest"
	"github.com/allot-io/allot/registry"
)

// fastHB keeps the suite quick: a node is reaped 300 ms after its last beat.
var fastHB = heartbeat.Config{Interval: 100 * time.Millisecond, TTL: 300 * time.Millisecond}

// pool is one namespace on one real redis-server, with a registry to edit
// groups and helpers to start nodes.
type pool struct {
	t   *testing.T
	s   *redistest.Server
	rdb redis.UniversalClient
	reg *registry.Registry
}

func newPool(t *testing.T, opts ...redistest.Option) *pool {
	t.Helper()
	s := redistest.Start(t, opts...)
	o := s.Options()
	o.PoolSize = 256
	o.MaxRetries = -1 // an outage must show up at once, not after retries
	rdb := redis.NewClient(o)
	t.Cleanup(func() { _ = rdb.Close() })
	return &pool{t: t, s: s, rdb: rdb, reg: registry.New(rdb)}
}

func (p *pool) addGroup(name string, c registry.Change) registry.Group {
	p.t.Helper()
	g, err := p.reg.Add(context.Background(), name, c, "test")
	require.NoError(p.t, err)
	return g
}

func set(kv ...string) map[string]string {
	m := make(map[string]string)
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

func ptr[T any](v T) *T { return &v }

// testLogger logs to stderr when ALLOT_TEST_LOG is set; silent otherwise.
func testLogger() *slog.Logger {
	if os.Getenv("ALLOT_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// newClient builds a node on p with the fast heartbeat; it is closed when
// the test ends.
func (p *pool) newClient(id string, opts ...Option) *Client {
	p.t.Helper()
	base := []Option{WithNodeID(id), WithIP("10.0.0." + fmt.Sprint(len(id)%250)), WithHeartbeat(fastHB), WithLogger(testLogger())}
	c, err := New(p.rdb, append(base, opts...)...)
	require.NoError(p.t, err)
	p.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = c.Close(ctx)
	})
	return c
}

func (p *pool) startClient(id string, opts ...Option) *Client {
	p.t.Helper()
	c := p.newClient(id, opts...)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(p.t, c.Start(ctx))
	return c
}

// startClients starts n nodes concurrently.
func (p *pool) startClients(prefix string, n int, opts ...Option) []*Client {
	p.t.Helper()
	cs := make([]*Client, n)
	for i := range cs {
		cs[i] = p.newClient(fmt.Sprintf("%s%03d", prefix, i), opts...)
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i, c := range cs {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			errs[i] = c.Start(ctx)
		})
	}
	wg.Wait()
	// Registered last, so it runs before the per-client cleanups: close
	// every node at once rather than one by one.
	p.t.Cleanup(func() { closeAll(cs) })
	for _, err := range errs {
		require.NoError(p.t, err)
	}
	return cs
}

// closeAll closes cs concurrently.
func closeAll(cs []*Client) {
	var wg sync.WaitGroup
	for _, c := range cs {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = c.Close(ctx)
		})
	}
	wg.Wait()
}

// percentile returns the p-th percentile (0..100) of ds.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(float64(len(s)-1) * p / 100)
	return s[i]
}

// bound is a timing promise d plus room for scheduling noise on a loaded
// 2-core machine shared with other builds (200 nodes live in this one
// process, so every node's fetch competes with 199 others): 250 ms, and
// 4 × d more under the race detector, which runs the Go code 5-10x slower.
func bound(d time.Duration) time.Duration {
	if raceEnabled {
		return 5*d + 250*time.Millisecond
	}
	return d + 250*time.Millisecond
}

// within polls cond every millisecond for up to limit and returns how long
// it took to hold; the test fails if it never does. Callers compare the
// result with the bound they promise, so a failure still reports the time.
func within(t *testing.T, limit time.Duration, cond func() bool, what string) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > limit {
			t.Fatalf("%s: not reached within %v", what, limit)
		}
		time.Sleep(time.Millisecond)
	}
	return time.Since(start)
}

func (p *pool) hbTracker() *heartbeat.Tracker {
	p.t.Helper()
	hb, err := heartbeat.New(p.rdb, "default", fastHB)
	require.NoError(p.t, err)
	return hb
}

func (c *Client) fromCacheNow() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.fromCache
}
