package client

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/internal/redistest"
	"github.com/allot-io/allot/registry"
)

// TestRedisOutage kills Redis under five nodes: they keep serving their
// uncapped config the whole time, the holder of a capped group drops it once
// its lease lapses, a node started during the outage starts from its disk
// cache, and after the restart everyone rejoins.
func TestRedisOutage(t *testing.T) {
	p := newPool(t, redistest.WithAOF())
	dir := t.TempDir()
	for i := range 4 {
		name := fmt.Sprintf("o%d", i)
		p.addGroup(name, registry.Change{Set: set("api_key", "key-"+name)})
	}
	p.addGroup("solo", registry.Change{Set: set("api_key", "key-solo"), MaxNodes: ptr(1)})

	// A node that runs once, caches its assignment, and leaves.
	cached := p.startClient("cached", WithCacheDir(dir))
	within(t, 5*time.Second, func() bool { return len(cached.Assignment().Groups) > 0 }, "cached node assigned")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, cached.Close(ctx))
	info, err := os.Stat(cached.cachePath())
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), info.Mode().Perm())

	cs := p.startClients("o", 5, WithCacheDir(dir))
	within(t, 5*time.Second, func() bool {
		h := holdersOf(cs)
		for _, c := range cs {
			if len(c.Assignment().Groups) == 0 {
				return false
			}
		}
		return len(h["solo"]) == 1
	}, "all five assigned, solo held")
	soloHolder := holdersOf(cs)["solo"][0]
	configs := map[*Client]string{}
	for _, c := range cs {
		for _, g := range c.Assignment().Groups {
			if g.MaxNodes == 0 {
				configs[c] = g.Name
			}
		}
	}

	p.s.Kill(t)
	down := time.Now()
	// Throughout the outage every node keeps the config of its uncapped
	// group; the capped group is dropped once the lease lapses.
	for time.Since(down) < 3*fastHB.TTL {
		for c, name := range configs {
			g, ok := c.Assignment().Group(name)
			require.True(t, ok, "%s lost %s during the outage", c.NodeID(), name)
			require.Equal(t, "key-"+name, g.Config["api_key"])
		}
		time.Sleep(5 * time.Millisecond)
	}
	assert.False(t, soloHolder.Assignment().Holds("solo"), "capped group dropped after the lease lapsed")

	// A node starting while Redis is down starts on its cache.
	restarted := p.newClient("cached", WithCacheDir(dir))
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	require.NoError(t, restarted.Start(sctx))
	a := restarted.Assignment()
	require.NotEmpty(t, a.Groups, "started from the cache")
	for _, g := range a.Groups {
		assert.Zero(t, g.MaxNodes, "no capped group without a lease")
		assert.Equal(t, "key-"+g.Name, g.Config["api_key"])
	}

	p.s.Restart(t)
	all := append(cs, restarted)
	// seen says what the last check saw, so a timeout tells which part of
	// the recovery was missing.
	var seen string
	rejoined := func() bool {
		nodes, _, err := p.hbTracker().Live(context.Background())
		if err != nil || len(nodes) != len(all) {
			seen = fmt.Sprintf("%d of %d nodes live (err %v)", len(nodes), len(all), err)
			return false
		}
		h := holdersOf(all)
		for _, c := range all {
			if len(c.Assignment().Groups) == 0 {
				seen = fmt.Sprintf("%s holds nothing: %v", c.NodeID(), c.Assignment())
				return false
			}
		}
		seen = fmt.Sprintf("%d nodes hold solo", len(h["solo"]))
		return len(h["solo"]) == 1
	}
	if !rejoinedWithin(10*time.Second, rejoined) {
		t.Fatalf("every node rejoined and solo is held again: not reached within 10s; last seen: %s", seen)
	}
	assert.False(t, restarted.fromCacheNow(), "the restarted node reads Redis again")
}

// rejoinedWithin polls cond every millisecond for up to limit.
func rejoinedWithin(limit time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(time.Millisecond) // polling interval
	}
	return true
}
