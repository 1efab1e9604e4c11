package client

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/heartbeat"
	"github.com/allot-io/allot/registry"
)

// TestConfigPropagation updates groups while 50 nodes hold them and
// measures, per holder, the time from the update call to its OnChange
// showing the new version. The heartbeat is slow (1 s) so the figures
// measure the push path, not beat polling: p99 must stay far below one
// interval (target 100 ms).
func TestConfigPropagation(t *testing.T) {
	const nodes, groups, updates = 50, 10, 30
	slow := heartbeat.Config{Interval: time.Second, TTL: 3 * time.Second}
	p := newPool(t)
	for i := range groups {
		p.addGroup(fmt.Sprintf("cfg%02d", i), registry.Change{Set: set("api_key", "v0")})
	}

	var mu sync.Mutex
	var lat []time.Duration
	var updatedAt time.Time
	var target string
	var version int64
	seen := map[string]bool{} // holders that saw the current update

	cs := make([]*Client, nodes)
	for i := range cs {
		c := p.newClient(fmt.Sprintf("p%03d", i), WithHeartbeat(slow))
		c.OnChange(func(old, new Assignment) {
			mu.Lock()
			defer mu.Unlock()
			g, ok := new.Group(target)
			if ok && g.Version == version && !seen[c.NodeID()] {
				seen[c.NodeID()] = true
				lat = append(lat, time.Since(updatedAt))
			}
		})
		cs[i] = c
	}
	var wg sync.WaitGroup
	for _, c := range cs {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			assert.NoError(t, c.Start(ctx))
		})
	}
	wg.Wait()
	t.Cleanup(func() { closeAll(cs) })
	// Settled: every node holds a group and the epoch is stable.
	within(t, 10*time.Second, func() bool {
		a, err := p.reg.Assignment(context.Background())
		if err != nil || a.PlannedMVer != a.MVer {
			return false
		}
		for _, c := range cs {
			if c.Assignment().Epoch != a.Epoch || len(c.Assignment().Groups) == 0 {
				return false
			}
		}
		return true
	}, "pool settled")

	for i := range updates {
		name := fmt.Sprintf("cfg%02d", i%groups)
		holders := len(holdersOf(cs)[name])
		require.Positive(t, holders)
		mu.Lock()
		target, version, updatedAt = name, 0, time.Now()
		clear(seen)
		mu.Unlock()
		// The version is known only once Update returns; a holder that
		// sees it earlier is recorded by the check below.
		g, err := p.reg.Update(context.Background(), name, registry.Change{Set: set("api_key", fmt.Sprint("v", i+1))}, "test")
		require.NoError(t, err)
		mu.Lock()
		version = g.Version
		for _, c := range cs {
			if got, ok := c.Assignment().Group(name); ok && got.Version == g.Version && !seen[c.NodeID()] {
				seen[c.NodeID()] = true
				lat = append(lat, time.Since(updatedAt))
			}
		}
		mu.Unlock()
		within(t, 5*time.Second, func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(seen) == holders
		}, "every holder sees the new version")
		for _, c := range holdersOf(cs)[name] {
			v, _ := c.Assignment().Group(name)
			assert.Equal(t, fmt.Sprint("v", i+1), v.Config["api_key"])
		}
	}
	mu.Lock()
	defer mu.Unlock()
	p50, p99 := percentile(lat, 50), percentile(lat, 99)
	t.Logf("config propagation over %d holder updates: p50 %v, p99 %v, max %v", len(lat), p50, p99, percentile(lat, 100))
	assert.LessOrEqual(t, p99, bound(100*time.Millisecond), "p99 propagation")
}
