package client

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/heartbeat"
	"github.com/allot-io/allot/internal/keys"
	"github.com/allot-io/allot/internal/redistest"
	"github.com/allot-io/allot/registry"
)

// deadRedis is a client for a port nothing listens on.
func deadRedis(t *testing.T) redis.UniversalClient {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", redistest.FreePort(t)), MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

func TestNewRejectsInvalidOptions(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer rdb.Close()
	tests := []struct {
		name string
		rdb  redis.UniversalClient
		opts []Option
	}{
		{"nil redis", nil, nil},
		{"namespace", rdb, []Option{WithNamespace("bad ns")}},
		{"node id", rdb, []Option{WithNodeID("has space")}},
		{"preferred group", rdb, []Option{WithPreferredGroup("Bad!")}},
		{"heartbeat ttl", rdb, []Option{WithHeartbeat(heartbeat.Config{Interval: time.Second, TTL: time.Second})}},
		{"heartbeat interval", rdb, []Option{WithHeartbeat(heartbeat.Config{})}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.rdb, tt.opts...)
			assert.ErrorIs(t, err, ErrInvalidOption)
		})
	}
}

func TestNewDefaults(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer rdb.Close()
	c, err := New(rdb)
	require.NoError(t, err)
	host, _ := os.Hostname()
	assert.Regexp(t, "^"+host+"-[0-9a-f]{6}$", c.NodeID())
	assert.Equal(t, "default", c.Namespace())
	assert.Equal(t, heartbeat.DefaultConfig(), c.o.heartbeat)
	assert.Equal(t, Assignment{}, c.Assignment())
	_, ok := c.Config("api_key")
	assert.False(t, ok)
	require.NoError(t, c.Close(context.Background()))
	assert.ErrorIs(t, c.Start(context.Background()), ErrClosed)
}

func TestStartWithoutRedisOrCacheGivesUp(t *testing.T) {
	c, err := New(deadRedis(t), WithNodeID("lonely"), WithHeartbeat(fastHB), WithCacheDir(t.TempDir()))
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err = c.Start(ctx)
	assert.ErrorIs(t, err, ErrNoAssignment)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.NoError(t, c.Close(context.Background()))
}

// TestCacheIgnoresCorruptAndForeignFiles: a cache that is not this node's
// valid file never becomes an assignment.
func TestCacheIgnoresCorruptAndForeignFiles(t *testing.T) {
	good := Assignment{Epoch: 7, Groups: []Group{{Name: "alpha", Version: 3, Config: map[string]string{"api_key": "k"}, Share: 0.5}}}
	tests := []struct {
		name  string
		write func(c *Client)
		ok    bool
	}{
		{"valid", func(c *Client) { require.NoError(t, c.writeCache(good)) }, true},
		{"missing", func(c *Client) {}, false},
		{"corrupt", func(c *Client) { require.NoError(t, os.WriteFile(c.cachePath(), []byte("{not json"), 0o600)) }, false},
		{"foreign node", func(c *Client) {
			other, err := New(deadRedis(t), WithNodeID("someone-else"), WithCacheDir(c.o.cacheDir))
			require.NoError(t, err)
			require.NoError(t, other.writeCache(good))
			require.NoError(t, os.Rename(other.cachePath(), c.cachePath()))
		}, false},
		{"other format", func(c *Client) {
			require.NoError(t, os.WriteFile(c.cachePath(), []byte(`{"format":"x","version":1,"namespace":"default","node":"cachey"}`), 0o600))
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			c, err := New(deadRedis(t), WithNodeID("cachey"), WithHeartbeat(fastHB), WithCacheDir(dir))
			require.NoError(t, err)
			tt.write(c)
			ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
			defer cancel()
			err = c.Start(ctx)
			if tt.ok {
				require.NoError(t, err)
				assert.Equal(t, good, c.Assignment())
				v, ok := c.Config("api_key")
				assert.True(t, ok)
				assert.Equal(t, "k", v)
			} else {
				assert.ErrorIs(t, err, ErrNoAssignment)
			}
			assert.NoError(t, c.Close(context.Background()))
			// No temp files are left behind.
			files, _ := filepath.Glob(filepath.Join(dir, ".allot-cache-*"))
			assert.Empty(t, files)
		})
	}
}

func TestAllowSharesTheQuota(t *testing.T) {
	p := newPool(t)
	p.addGroup("metered", registry.Change{Set: set("api_key", "k"), Quota: ptr("5/s")})
	p.addGroup("free", registry.Change{Set: set("api_key", "k")})
	cs := p.startClients("q", 2)
	within(t, 5*time.Second, func() bool {
		h := holdersOf(cs)
		// Different nodes: while the second node joins, the first one
		// briefly holds both groups.
		return len(h["metered"]) == 1 && len(h["free"]) == 1 && h["metered"][0] != h["free"][0]
	}, "one node per group")
	// Two groups, two nodes: each holds one. Add a third node and weight so
	// both nodes share "metered"... simpler: one node holds metered.
	m := holdersOf(cs)["metered"][0]
	ctx := context.Background()
	allowed := 0
	var rl *RateLimitError
	for range 8 {
		err := m.Allow(ctx, "metered")
		if err == nil {
			allowed++
			continue
		}
		require.ErrorAs(t, err, &rl)
		assert.ErrorIs(t, err, ErrRateLimited)
	}
	assert.Equal(t, 5, allowed)
	assert.Positive(t, rl.RetryAfter)
	assert.Equal(t, "metered", rl.Group)
	assert.Equal(t, "5/s", rl.Limit)

	start := time.Now()
	wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	require.NoError(t, m.Wait(wctx, "metered"))
	assert.GreaterOrEqual(t, time.Since(start), 100*time.Millisecond, "Wait waited for the quota")

	f := holdersOf(cs)["free"][0]
	for range 20 {
		require.NoError(t, f.Allow(ctx, "free"), "no quota: always allowed")
	}
	assert.ErrorIs(t, f.Allow(ctx, "metered"), ErrNotHeld)

	// The quota is shared: the key lives in the namespace's hash slot.
	keys, err := p.rdb.Keys(ctx, "*quota:metered").Result()
	require.NoError(t, err)
	assert.Equal(t, []string{"{allot:default}:quota:metered"}, keys)

	cctx, ccancel := context.WithCancel(ctx)
	ccancel()
	assert.ErrorIs(t, m.Wait(cctx, "metered"), context.Canceled)
}

// TestReadsWhileChangesArrive reads the assignment from many goroutines
// while the config changes under them (run with -race): every snapshot is
// internally consistent.
func TestReadsWhileChangesArrive(t *testing.T) {
	p := newPool(t)
	p.addGroup("live", registry.Change{Set: set("n", "0")})
	c := p.startClient("reader")
	within(t, 5*time.Second, func() bool { return c.Assignment().Holds("live") }, "assigned")

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var reads sync.Map
	for r := range 4 {
		wg.Go(func() {
			n := 0
			for {
				select {
				case <-stop:
					reads.Store(r, n)
					return
				default:
				}
				a := c.Assignment()
				g, ok := a.Group("live")
				if !ok {
					continue
				}
				// Config "n" is written together with version n+1.
				if g.Config["n"] != fmt.Sprint(g.Version-1) {
					t.Errorf("torn snapshot: version %d with n=%s", g.Version, g.Config["n"])
					return
				}
				_, _ = c.Config("n")
				n++
			}
		})
	}
	for i := 1; i <= 30; i++ {
		_, err := p.reg.Update(context.Background(), "live", registry.Change{Set: set("n", fmt.Sprint(i))}, "test")
		require.NoError(t, err)
	}
	within(t, 5*time.Second, func() bool { v, _ := c.Config("n"); return v == "30" }, "last update seen")
	close(stop)
	wg.Wait()
}

// TestCloseStopsEveryGoroutine: no goroutine of a client outlives Close,
// including clients whose Redis went away.
func TestCloseStopsEveryGoroutine(t *testing.T) {
	p := newPool(t)
	p.addGroup("g", registry.Change{Set: set("k", "v")})
	before := runtime.NumGoroutine()

	cs := p.startClients("leak", 5)
	within(t, 5*time.Second, func() bool { return len(holdersOf(cs)["g"]) == 5 }, "assigned")
	cs[0].pause() // a frozen loop must stop too
	closeAll(cs)

	within(t, 5*time.Second, func() bool { return runtime.NumGoroutine() <= before }, "goroutines back to the baseline")
	for _, c := range cs {
		assert.Empty(t, c.Assignment().Groups, "Close publishes an empty assignment")
	}
}

func TestCloseFiresOnChangeBeforeLeaving(t *testing.T) {
	p := newPool(t)
	p.addGroup("g", registry.Change{Set: set("k", "v")})
	c := p.newClient("closer")
	var mu sync.Mutex
	var seen []string
	c.OnChange(func(old, new Assignment) {
		// While the callback runs, the node is still registered.
		_, err := p.rdb.ZScore(context.Background(), keys.New("").Nodes(), "closer").Result()
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, fmt.Sprintf("%s -> %s (registered %v)", old, new, err == nil))
	})
	require.NoError(t, c.Start(context.Background()))
	within(t, 5*time.Second, func() bool { return c.Assignment().Holds("g") }, "assigned")
	require.NoError(t, c.Close(context.Background()))
	mu.Lock()
	defer mu.Unlock()
	require.NotEmpty(t, seen)
	last := seen[len(seen)-1]
	assert.True(t, strings.HasSuffix(last, "groups= (registered true)"), last)
	nodes, _, err := p.hbTracker().Live(context.Background())
	require.NoError(t, err)
	assert.Empty(t, nodes, "left the pool")
}

func TestStartTwice(t *testing.T) {
	p := newPool(t)
	c := p.startClient("twice")
	assert.ErrorIs(t, c.Start(context.Background()), ErrAlreadyStarted)
	require.NoError(t, c.Close(context.Background()))
	assert.NoError(t, c.Close(context.Background()), "second Close is a no-op")
}

// TestParseEventReusesLastDecode: the process-wide decode cache gives the
// event of the payload asked for, whether it hits or misses.
func TestParseEventReusesLastDecode(t *testing.T) {
	a := `{"type":"assignment","epoch":7,"scope":"nodes","nodes":["n1"],"groups":["g"],"holders":{"g":3}}`
	b := `{"type":"assignment","epoch":8,"scope":"nodes","groups":["g"],"holders":{"g":2}}`
	for _, payload := range []string{a, a, b, a} {
		want, err := registry.ParseEvent(payload)
		require.NoError(t, err)
		got, err := parseEvent(payload)
		require.NoError(t, err)
		assert.Equal(t, want, got, payload)
	}
	_, err := parseEvent(`{"epoch":9}`)
	assert.Error(t, err, "an event without a type is still refused")
}
