package client

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/heartbeat"
	"github.com/allot-io/allot/internal/redistest"
	"github.com/allot-io/allot/internal/testlog"
	"github.com/allot-io/allot/quota"
	"github.com/allot-io/allot/registry"
)

// The meter on a fake clock: a steady rate reads as itself once past the
// warm-up, a stopped one decays by 1/e per DemandWindow, and the figures
// of two nodes keep their ratio during the warm-up.
func TestDemandMeter(t *testing.T) {
	var now time.Time
	clock := func() time.Time { return now }
	now = time.Unix(1000, 0)
	hot, cold := newDemandMeter(clock, slog.New(slog.DiscardHandler)), newDemandMeter(clock, slog.New(slog.DiscardHandler))
	ctx := context.Background()
	run := func(d time.Duration, hotRate, coldRate int) heartbeat.Demand {
		var h heartbeat.Demand
		for step := time.Duration(0); step < d; step += 100 * time.Millisecond {
			now = now.Add(100 * time.Millisecond)
			for range hotRate / 10 {
				hot.ask(ctx, 100)
			}
			if coldRate > 0 && int(now.Sub(time.Unix(1000, 0))/(100*time.Millisecond))%(10/coldRate) == 0 {
				cold.ask(ctx, 0)
			}
			if now.UnixMilli()%2000 == 0 { // a beat every 2 s
				h = hot.rate()
				c := cold.rate()
				if h.Calls > 0 && c.Calls > 0 {
					assert.InDelta(t, 20, h.Calls/c.Calls, 2, "the ratio holds from the first beats")
				}
			}
		}
		return h
	}
	d := run(4*time.Second, 20, 1)
	assert.Less(t, d.Calls, 20.0, "the warm-up reads low, never high")
	d = run(16*time.Second, 20, 1)
	assert.InDelta(t, 20, d.Calls, 0.2, "past the warm-up: 20 calls a second")
	assert.InDelta(t, 2000, d.Tokens, 20)
	d = run(3*time.Minute, 20, 1)
	assert.InDelta(t, 20, d.Calls, 0.2)

	d = run(DemandWindow, 0, 0)
	assert.InDelta(t, 20/math.E, d.Calls, 0.3, "a minute after the calls stop: 1/e")
}

// A Wait or AcquireWait counts once however often it tries, and an
// Acquire's own use of the primitives is not counted again.
func TestDemandCountedOnce(t *testing.T) {
	m := newDemandMeter(time.Now, slog.New(slog.DiscardHandler))
	ctx := m.once(context.Background(), 7)
	for range 5 {
		m.ask(ctx, 7)
		ctx = m.once(ctx, 7)
	}
	m.ask(context.Background(), -3) // a bad estimate still asked for a call
	assert.Equal(t, int64(2), m.calls.Load())
	assert.Equal(t, int64(7), m.tokens.Load())
}

// A Go node's beats carry its demand: what it asked for (refused or not)
// reaches its record; a node that asked nothing reports 0.
func TestDemandReachesRecord(t *testing.T) {
	redistest.Topologies(t, func(t *testing.T, rdb redis.UniversalClient) {
		ctx := context.Background()
		reg := registry.New(rdb)
		_, err := reg.Add(ctx, "g", registry.Change{Quota: ptr("600/m burst 10")}, "test")
		require.NoError(t, err)
		busy := demandClient(t, rdb, "busy", "10.0.1.1", nil)
		idle := demandClient(t, rdb, "idle", "10.0.1.2", nil)
		tr, err := heartbeat.New(rdb, "", fastHB)
		require.NoError(t, err)
		for range 50 {
			_ = busy.Allow(ctx, "g") // most are refused: they count all the same
		}
		_, _ = busy.Reserve(ctx, "g", 40)
		require.Eventually(t, func() bool {
			nodes, _, err := tr.Live(ctx)
			require.NoError(t, err)
			for _, n := range nodes {
				if n.ID == "busy" && (n.Demand == nil || n.Demand.Calls < 3) {
					return false
				}
			}
			return len(nodes) == 2
		}, 5*time.Second, 10*time.Millisecond)
		nodes, _, err := tr.Live(ctx)
		require.NoError(t, err)
		assert.Greater(t, nodes[0].Demand.Tokens, 0.0, "the tokens Reserve estimated")
		assert.Equal(t, &heartbeat.Demand{}, nodes[1].Demand, "the idle node reports 0, not nothing")
		_ = idle
	})
}

// A figure the beat refuses (here, tokens above 10^9 a second) is logged
// once, and the node beats on without it: its liveness never hangs on it.
func TestDemandRefusedFigureLoggedOnce(t *testing.T) {
	p := newPool(t)
	var logs testlog.Buffer
	c := p.startClient("n1", WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	ctx := context.Background()
	for range 20 {
		_, err := c.Reserve(ctx, "none", quota.MaxCost) // not held: refused, still asked
		require.ErrorIs(t, err, ErrNotHeld)
	}
	first := c.Health().LastBeat
	require.Eventually(t, func() bool {
		return c.Health().LastBeat.After(first.Add(3 * fastHB.Interval))
	}, 5*time.Second, 10*time.Millisecond, "beats go on")
	assert.True(t, c.Health().Connected)
	assert.Equal(t, 1, strings.Count(logs.String(), "refused this node's demand"), "%s", logs.String())
	assert.Contains(t, logs.String(), "tokens per second")
}

// demandClient starts a node on rdb with the fast heartbeat and its own IP.
func demandClient(t *testing.T, rdb redis.UniversalClient, id, ip string, log *slog.Logger) *Client {
	t.Helper()
	if log == nil {
		log = testLogger()
	}
	c, err := New(rdb, WithNodeID(id), WithIP(ip), WithHeartbeat(fastHB), WithLogger(log))
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, c.Start(ctx))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = c.Close(ctx)
	})
	return c
}

// Issue 23's pool: 12 nodes on 6 keys of 600/m burst 10; two nodes that
// the IP hash put on one key ask 20 calls/s each, the ten others 1.5. The
// hot nodes end on different keys, every key keeps two holders, and once
// settled nobody moves.
func TestDemandSpreadsHotNodes(t *testing.T) {
	redistest.Topologies(t, func(t *testing.T, rdb redis.UniversalClient) {
		ctx := context.Background()
		reg := registry.New(rdb)
		for i := range 6 {
			_, err := reg.Add(ctx, fmt.Sprintf("key%d", i), registry.Change{Quota: ptr("600/m burst 10")}, "test")
			require.NoError(t, err)
		}
		nodes := make([]*Client, 12)
		var wg sync.WaitGroup
		for i := range nodes {
			wg.Go(func() { nodes[i] = demandClient(t, rdb, fmt.Sprintf("n%02d", i), fmt.Sprintf("10.1.0.%d", i+1), nil) })
		}
		wg.Wait()
		held := func(c *Client) string {
			a := c.Assignment()
			if len(a.Groups) != 1 {
				return ""
			}
			return a.Groups[0].Name
		}
		// Every key has two holders once the pool is planned: take two that
		// share one as the hot nodes, as the IP hash did in the issue.
		require.Eventually(t, func() bool {
			for _, c := range nodes {
				if held(c) == "" {
					return false
				}
			}
			return true
		}, 10*time.Second, 10*time.Millisecond)
		var hot []*Client
		for _, c := range nodes {
			if len(hot) == 0 || len(hot) == 1 && held(c) == held(hot[0]) {
				hot = append(hot, c)
			}
		}
		require.Len(t, hot, 2)

		lctx, stop := context.WithCancel(ctx)
		var load sync.WaitGroup
		defer func() { stop(); load.Wait() }()
		for _, c := range nodes {
			every := time.Second * 2 / 3 // 1.5 calls a second
			if c == hot[0] || c == hot[1] {
				every = time.Second / 20
			}
			load.Go(func() {
				tk := time.NewTicker(every)
				defer tk.Stop()
				for {
					select {
					case <-lctx.Done():
						return
					case <-tk.C:
						if g := held(c); g != "" {
							_ = c.Allow(lctx, g)
						}
					}
				}
			})
		}
		require.Eventually(t, func() bool {
			a, b := held(hot[0]), held(hot[1])
			return a != "" && b != "" && a != b
		}, 15*time.Second, 10*time.Millisecond, "the hot nodes are spread")

		// Settled: the plan and what every node holds stay put while the
		// demand keeps coming (and the meters keep warming up) for 30
		// intervals, six demand-plan gaps.
		snapshot := func() map[string]string {
			m := map[string]string{}
			for _, c := range nodes {
				m[c.NodeID()] = held(c)
			}
			return m
		}
		require.Eventually(t, func() bool {
			counts := map[string]int{}
			for _, g := range snapshot() {
				counts[g]++
			}
			return len(counts) == 6 && counts["key0"] == 2 && counts["key5"] == 2
		}, 10*time.Second, 10*time.Millisecond, "every key two holders")
		committed := func() int64 {
			a, err := reg.Assignment(ctx)
			require.NoError(t, err)
			return a.Epoch
		}
		before, epoch := snapshot(), committed()
		assert.Never(t, func() bool { return !maps.Equal(before, snapshot()) }, 30*fastHB.Interval, fastHB.Interval/4,
			"no moves after settling")
		assert.Equal(t, epoch, committed(), "no plan committed a change")
	})
}

// A node started WithoutDemand sends none, however much it asks: its
// record says "none reported", so the planner places it as before demand.
func TestWithoutDemand(t *testing.T) {
	p := newPool(t)
	ctx := context.Background()
	p.addGroup("g", registry.Change{Quota: ptr("600/m burst 10")})
	quiet := p.startClient("quiet", WithoutDemand())
	for range 30 {
		_ = quiet.Allow(ctx, "g")
	}
	tr, err := heartbeat.New(p.rdb, "", fastHB)
	require.NoError(t, err)
	seen := 0
	require.Eventually(t, func() bool { // several beats after the calls
		nodes, _, err := tr.Live(ctx)
		require.NoError(t, err)
		require.Len(t, nodes, 1)
		require.Nil(t, nodes[0].Demand, "no demand reported")
		seen++
		return seen >= 10
	}, 5*time.Second, fastHB.Interval/2)
}
