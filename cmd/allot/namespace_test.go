package main

import (
	"context"
	"encoding/json"
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

func TestNamespaceSetList(t *testing.T) {
	s := redistest.Start(t)
	url := s.URL()

	out := mustRun(t, url, "namespace", "list")
	assert.Equal(t, "no namespaces yet (add a group or start a node)\n", out)

	mustRun(t, url, "group", "add", "g1")
	out = mustRun(t, url, "namespace", "list")
	assert.Equal(t, "NAME     NODES  GROUPS  INTERVAL  TTL           MAX-LIVE-NODES    MAX SUSPENDED  MAX COOLDOWN  LENDING\ndefault  0      1       2s        6s (default)  100000 (default)  50%            1m0s          on\n", out)

	out = mustRun(t, url, "namespace", "set", "--interval", "5s")
	assert.Equal(t, "namespace \"default\": interval 5s, ttl 15s (processes read it when they start)\n", out)
	mustRun(t, url, "--namespace", "batch", "namespace", "set", "--interval", "10s", "--ttl", "40s")

	var list []map[string]any
	require.NoError(t, json.Unmarshal([]byte(mustRun(t, url, "namespace", "list", "-o", "json")), &list))
	require.Len(t, list, 2)
	assert.Equal(t, map[string]any{"name": "batch", "nodes": 0.0, "groups": 0.0, "interval": "10s", "ttl": "40s", "stored": true,
		"max_live_nodes": 100000.0, "max_suspended": 50.0, "max_cooldown": "1m0s", "lending": "on"}, list[0])
	assert.Equal(t, map[string]any{"name": "default", "nodes": 0.0, "groups": 1.0, "interval": "5s", "ttl": "15s", "stored": true,
		"max_live_nodes": 100000.0, "max_suspended": 50.0, "max_cooldown": "1m0s", "lending": "on"}, list[1])

	// Bad settings are usage errors and change nothing.
	for _, args := range [][]string{
		{"namespace", "set"},
		{"namespace", "set", "--ttl", "10s"}, // 5s × 3 > 10s
		{"namespace", "set", "--interval", "0s"},
		{"namespace", "set", "--interval", "2s", "--ttl", "5s"},
		{"namespace", "set", "--max-suspended", "101%"},
		{"namespace", "set", "--max-suspended", "-1%"},
		{"namespace", "set", "--max-suspended", "half"},
		{"namespace", "set", "--max-cooldown", "500ms"},
		{"namespace", "set", "--max-cooldown", "2h"},
		{"namespace", "set", "--interval", "5s", "--max-cooldown", "2h"},
		{"namespace", "set", "--max-live-nodes", "-1"},
	} {
		_, stderr, code := runCLI(t, url, args...)
		assert.Equal(t, exitUsage, code, "%v: %s", args, stderr)
	}

	// A registered node refuses a change unless --force: a reaper would
	// judge it by a TTL it does not use.
	rdb := s.Client(t)
	hb, err := heartbeat.New(rdb, "", heartbeat.Config{Interval: 5 * time.Second, TTL: 15 * time.Second})
	require.NoError(t, err)
	_, err = hb.Beat(context.Background(), heartbeat.Beat{Node: "n1", IP: "10.0.0.1", Session: "test"})
	require.NoError(t, err)
	_, stderr, code := runCLI(t, url, "namespace", "set", "--interval", "1s")
	assert.Equal(t, exitFailure, code)
	assert.Contains(t, stderr, "1 registered node(s) using interval 5s, ttl 15s; nothing written")
	mustRun(t, url, "namespace", "set", "--interval", "1s", "--force")
	cfg, _, err := heartbeat.LoadConfig(context.Background(), rdb, "")
	require.NoError(t, err)
	assert.Equal(t, heartbeat.Config{Interval: time.Second, TTL: 3 * time.Second}, cfg)

	// The live-node cap needs no --force: it never removes a live node.
	out = mustRun(t, url, "namespace", "set", "--max-live-nodes", "1")
	assert.Equal(t, "namespace \"default\": max live nodes 1 (from the next beat; 1 registered now)\n", out)
	_, err = hb.Beat(context.Background(), heartbeat.Beat{Node: "n1", IP: "10.0.0.1", Session: "test"}) // live by the stored 3 s TTL
	require.NoError(t, err)
	_, err = hb.Beat(context.Background(), heartbeat.Beat{Node: "n2", Session: "test"})
	assert.ErrorIs(t, err, heartbeat.ErrTooManyNodes)
	mustRun(t, url, "namespace", "set", "--max-live-nodes", "0")
	out = mustRun(t, url, "namespace", "list")
	assert.Regexp(t, `\ndefault .* unlimited +50%`, out)
	cfg, _, err = heartbeat.LoadConfig(context.Background(), rdb, "")
	require.NoError(t, err)
	assert.Equal(t, heartbeat.Config{Interval: time.Second, TTL: 3 * time.Second}, cfg, "the heartbeat settings are kept")
}

// TestNamespaceSetHealth: --max-suspended and --max-cooldown are stored
// without touching the heartbeat settings (no --force needed with nodes),
// and shown by list.
func TestNamespaceSetHealth(t *testing.T) {
	s := redistest.Start(t)
	url := s.URL()
	rdb := s.Client(t)
	hb, err := heartbeat.New(rdb, "", heartbeat.DefaultConfig())
	require.NoError(t, err)
	_, err = hb.Beat(context.Background(), heartbeat.Beat{Node: "n1", IP: "10.0.0.1", Session: "test"})
	require.NoError(t, err)

	out := mustRun(t, url, "namespace", "set", "--max-suspended", "20%", "--max-cooldown", "90s")
	assert.Equal(t, "namespace \"default\": max suspended 20%, max cooldown 1m30s (the next report uses them)\n", out)
	out = mustRun(t, url, "namespace", "set", "--max-suspended", "0")
	assert.Contains(t, out, "max suspended 0%, max cooldown 1m30s")
	got, stored, err := registry.New(rdb).HealthSettings(context.Background())
	require.NoError(t, err)
	assert.True(t, stored)
	assert.Equal(t, registry.HealthSettings{MaxSuspended: 0, MaxCooldown: 90 * time.Second}, got)
	_, stored, err = heartbeat.LoadConfig(context.Background(), rdb, "")
	require.NoError(t, err)
	assert.False(t, stored, "the heartbeat settings were not written")
	out = mustRun(t, url, "namespace", "list")
	assert.Regexp(t, `(?m)^default\s+1\s+0\s+2s\s+6s \(default\)\s+100000 \(default\)\s+0%\s+1m30s\s+on$`, out)
}

// TestNamespaceSetLending: --lending off stores the switch (every acquire
// script reads it), on stores it back; anything else is a usage error.
func TestNamespaceSetLending(t *testing.T) {
	s := redistest.Start(t)
	url := s.URL()
	rdb := s.Client(t)
	out := mustRun(t, url, "namespace", "set", "--lending", "off")
	assert.Equal(t, "namespace \"default\": lending off (from the next acquire)\n", out)
	on, stored, err := registry.New(rdb).Lending(context.Background())
	require.NoError(t, err)
	assert.False(t, on)
	assert.True(t, stored)
	assert.Regexp(t, `(?m)\s+off$`, mustRun(t, url, "namespace", "list"))
	var info map[string]any
	require.NoError(t, json.Unmarshal([]byte(mustRun(t, url, "-o", "json", "namespace", "set", "--lending", "on")), &info))
	assert.Equal(t, "on", info["lending"])
	_, errOut, code := runCLI(t, url, "namespace", "set", "--lending", "maybe")
	assert.Equal(t, 2, code)
	assert.Contains(t, errOut, `invalid --lending "maybe": want on or off`)
	on, _, err = registry.New(rdb).Lending(context.Background())
	require.NoError(t, err)
	assert.True(t, on, "nothing written")
}

// TestRebalanceReapsByNamespaceTTL: `allot rebalance` judges nodes by the
// namespace's TTL, not the default 6 s — a node on a 10 s interval whose
// last beat is 7 s old is live.
func TestRebalanceReapsByNamespaceTTL(t *testing.T) {
	s := redistest.Start(t)
	url := s.URL()
	rdb := s.Client(t)
	ctx := context.Background()
	mustRun(t, url, "group", "add", "g")
	mustRun(t, url, "namespace", "set", "--interval", "10s", "--ttl", "30s")
	slow := heartbeat.Config{Interval: 10 * time.Second, TTL: 30 * time.Second}
	hb, err := heartbeat.New(rdb, "", slow)
	require.NoError(t, err)
	_, err = hb.Beat(ctx, heartbeat.Beat{Node: "slow-1", IP: "10.0.0.1", Session: "test"})
	require.NoError(t, err)
	// Back-date its beat by 7 s of server time: past the default TTL, well
	// within the namespace's.
	now, err := rdb.Time(ctx).Result()
	require.NoError(t, err)
	require.NoError(t, rdb.ZAdd(ctx, keys.New("").Nodes(), redis.Z{Score: float64(now.Add(-7 * time.Second).UnixMilli()), Member: "slow-1"}).Err())

	mustRun(t, url, "rebalance")
	assert.Contains(t, mustRun(t, url, "node", "list"), "slow-1")
	var g struct{ Nodes []string }
	require.NoError(t, json.Unmarshal([]byte(mustRun(t, url, "group", "get", "g", "-o", "json")), &g))
	assert.Equal(t, []string{"slow-1"}, g.Nodes)

	// The same beat age with the default settings is a dead node.
	require.NoError(t, rdb.Del(ctx, keys.New("").Settings()).Err())
	mustRun(t, url, "rebalance")
	assert.Equal(t, "no live nodes\n", mustRun(t, url, "node", "list"))
}
