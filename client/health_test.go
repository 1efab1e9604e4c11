package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/heartbeat"
	"github.com/allot-io/allot/internal/redistest"
	"github.com/allot-io/allot/internal/testlog"
	"github.com/allot-io/allot/registry"
)

func TestClassify(t *testing.T) {
	now := time.Date(2026, 11, 30, 3, 0, 0, 0, time.UTC)
	resp := func(code int, retryAfter string) *http.Response {
		h := http.Header{}
		if retryAfter != "" {
			h.Set("Retry-After", retryAfter)
		}
		return &http.Response{StatusCode: code, Header: h}
	}
	for _, tc := range []struct {
		name string
		resp *http.Response
		err  error
		want Verdict
	}{
		{"429 seconds", resp(429, "30"), nil, Verdict{Outcome: registry.Throttled, RetryAfter: 30 * time.Second}},
		{"429 zero", resp(429, "0"), nil, Verdict{Outcome: registry.Throttled, RetryAfter: 0}},
		{"429 http date", resp(429, now.Add(90*time.Second).Format(http.TimeFormat)), nil, Verdict{Outcome: registry.Throttled, RetryAfter: 90 * time.Second}},
		{"429 date in the past", resp(429, now.Add(-time.Hour).Format(http.TimeFormat)), nil, Verdict{Outcome: registry.Throttled, RetryAfter: 0}},
		{"429 none", resp(429, ""), nil, Verdict{Outcome: registry.Throttled, RetryAfter: -1}},
		{"429 unreadable", resp(429, "soon"), nil, Verdict{Outcome: registry.Throttled, RetryAfter: -1}},
		{"429 negative", resp(429, "-5"), nil, Verdict{Outcome: registry.Throttled, RetryAfter: -1}},
		{"429 absurd", resp(429, "99999999999"), nil, Verdict{Outcome: registry.Throttled, RetryAfter: registry.MaxRetryAfter}},
		{"429 far date", resp(429, now.Add(48*time.Hour).Format(http.TimeFormat)), nil, Verdict{Outcome: registry.Throttled, RetryAfter: registry.MaxRetryAfter}},
		{"401", resp(401, ""), nil, Verdict{Outcome: registry.Failure, Reason: "HTTP 401 Unauthorized"}},
		{"403", resp(403, ""), nil, Verdict{Outcome: registry.Failure, Reason: "HTTP 403 Forbidden"}},
		{"200", resp(200, ""), nil, Verdict{Outcome: registry.Success}},
		{"204", resp(204, ""), nil, Verdict{Outcome: registry.Success}},
		{"500", resp(500, ""), nil, Verdict{}},
		{"503 with Retry-After", resp(503, "10"), nil, Verdict{}},
		{"404", resp(404, ""), nil, Verdict{}},
		{"transport error", nil, errors.New("connection refused"), Verdict{}},
		{"error with response", resp(200, ""), errors.New("body cut"), Verdict{}},
		{"nil", nil, nil, Verdict{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, Classify(tc.resp, tc.err, now))
		})
	}
}

// healthPool is a pool on rdb (standalone or Cluster) for the health tests.
func healthPool(t *testing.T, rdb redis.UniversalClient) *pool {
	return &pool{t: t, rdb: rdb, reg: registry.New(rdb)}
}

func TestHealthCooldownSeenByEveryHolder(t *testing.T) {
	standalone := redistest.Start(t)
	cluster := redistest.StartCluster(t)
	for name, rdb := range map[string]redis.UniversalClient{"standalone": standalone.Client(t), "cluster": cluster.Client(t)} {
		t.Run(name, func(t *testing.T) {
			p := healthPool(t, rdb)
			p.addGroup("k", registry.Change{})
			c1, c2 := p.startClient("n1"), p.startClient("n2")
			ctx := context.Background()
			for _, c := range []*Client{c1, c2} {
				require.Eventually(t, func() bool { return c.Assignment().Holds("k") }, 10*time.Second, 5*time.Millisecond)
			}
			require.NoError(t, c1.ReportThrottled(ctx, "k", 20*time.Second))
			until, cooling := c1.Cooling("k")
			assert.True(t, cooling)
			assert.WithinDuration(t, time.Now().Add(20*time.Second), until, 2*time.Second)

			_, cooling = c2.Cooling("k")
			assert.False(t, cooling, "n2 has not read the pool's cooldown yet")
			got, err := c2.CoolingUntil(ctx, "k")
			require.NoError(t, err)
			assert.Equal(t, until, got, "both holders see one cooldown")

			// A shorter Retry-After from n2 never shortens it.
			require.NoError(t, c2.ReportThrottled(ctx, "k", time.Second))
			got, err = c1.CoolingUntil(ctx, "k")
			require.NoError(t, err)
			assert.Equal(t, until, got)

			// ObserveHTTP: a 5xx costs nothing and says nothing.
			require.NoError(t, c1.ObserveHTTP(ctx, "k", &http.Response{StatusCode: 502}, nil))
			err = c1.ReportFailure(ctx, "not-mine", "x")
			assert.ErrorIs(t, err, ErrNotHeld)
		})
	}
}

func countHolders(cs []*Client, group string) int {
	n := 0
	for _, c := range cs {
		if c.Assignment().Holds(group) {
			n++
		}
	}
	return n
}

func countEvents(t *testing.T, p *pool, after string, typ string) int {
	t.Helper()
	evs, err := p.reg.Events(context.Background(), after, 10000, 0)
	require.NoError(t, err)
	n := 0
	for _, e := range evs {
		if e.Type == typ {
			n++
		}
	}
	return n
}

func lastEventID(t *testing.T, p *pool) string {
	t.Helper()
	evs, err := p.reg.Events(context.Background(), "", 10000, 0)
	require.NoError(t, err)
	if len(evs) == 0 {
		return "0"
	}
	return evs[len(evs)-1].ID
}

// TestHealthSuspensionStormMovesHolders: every holder of a revoked key
// reports failures as fast as it can; the group is suspended once, one
// rebalance moves every holder to the healthy group, and resume brings it
// back.
func TestHealthSuspensionStormMovesHolders(t *testing.T) {
	p := newPool(t)
	p.addGroup("bad", registry.Change{})
	p.addGroup("good", registry.Change{})
	// A TTL the storm (48 reporting goroutines on a loaded 2-core machine,
	// under -race) cannot starve: this test counts rebalances, and a reaped
	// node would add one.
	cs := p.startClients("n", 12, WithHeartbeat(heartbeat.Config{Interval: 200 * time.Millisecond, TTL: 3 * time.Second}))
	require.Eventually(t, func() bool { return countHolders(cs, "bad") == 6 && countHolders(cs, "good") == 6 }, 10*time.Second, 5*time.Millisecond)
	// Settle: no plan in flight when the storm starts.
	require.Eventually(t, func() bool {
		a, err := p.reg.Assignment(context.Background())
		return err == nil && a.PlannedRev == a.Rev
	}, 5*time.Second, 5*time.Millisecond)
	mark := lastEventID(t, p)

	var sent, accepted atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	for _, c := range cs {
		if !c.Assignment().Holds("bad") {
			continue
		}
		for range 8 {
			wg.Go(func() {
				for time.Since(start) < 500*time.Millisecond {
					sent.Add(1)
					if c.ReportFailure(context.Background(), "bad", "HTTP 401 Unauthorized") == nil {
						accepted.Add(1)
					}
				}
			})
		}
	}
	moved := within(t, 10*time.Second, func() bool { return countHolders(cs, "bad") == 0 && countHolders(cs, "good") == 12 }, "holders moved off the suspended group")
	wg.Wait()
	evs, err := p.reg.Events(context.Background(), mark, 1000, 0)
	require.NoError(t, err)
	var suspendedAt, committedAt time.Time
	for _, e := range evs {
		switch {
		case e.Type == registry.EventGroupSuspended:
			suspendedAt = e.At
		case e.Type == registry.EventAssignment && committedAt.IsZero():
			committedAt = e.At
		}
	}
	t.Logf("storm: %d reports sent, %d accepted (before the holders moved); suspension → plan committed %v; all moved (seen by the test, which competes with the storm) %v",
		sent.Load(), accepted.Load(), committedAt.Sub(suspendedAt), moved)
	assert.Equal(t, 1, countEvents(t, p, mark, registry.EventGroupSuspended))
	if !assert.Equal(t, 1, countEvents(t, p, mark, registry.EventAssignment), "one suspension, one rebalance") {
		evs, _ := p.reg.Events(context.Background(), mark, 1000, 0)
		for _, e := range evs {
			t.Logf("%+v", e)
		}
	}

	// Reports from nodes that no longer hold it are refused without effect.
	assert.ErrorIs(t, cs[0].ReportFailure(context.Background(), "bad", "x"), ErrNotHeld)

	// Resume: the group is spread again.
	_, err = p.reg.Resume(context.Background(), "bad", "test")
	require.NoError(t, err)
	within(t, 10*time.Second, func() bool { return countHolders(cs, "bad") == 6 }, "resumed group spread again")
}

// TestHealthProbe: a suspended group is probed by exactly one node after
// probe_after; a failed probe suspends it again with the wait doubled, three
// successes bring it back to every node it had.
func TestHealthProbe(t *testing.T) {
	p := newPool(t)
	p.addGroup("k", registry.Change{EjectAfter: ptr("1/1m")})
	p.addGroup("other", registry.Change{})
	const wait = 400 * time.Millisecond
	cs := p.startClients("n", 4, WithProbeAfter(wait))
	require.Eventually(t, func() bool { return countHolders(cs, "k") == 2 }, 10*time.Second, 5*time.Millisecond)
	holder := func() *Client {
		for _, c := range cs {
			if c.Assignment().Holds("k") {
				return c
			}
		}
		return nil
	}
	ctx := context.Background()
	// Two holders: both must report (corroboration).
	for _, c := range cs {
		if c.Assignment().Holds("k") {
			require.NoError(t, c.ReportFailure(ctx, "k", "HTTP 401 Unauthorized"))
		}
	}
	within(t, 10*time.Second, func() bool { return countHolders(cs, "k") == 0 }, "suspended group dropped")

	// Probe: one node, and only one, gets it once the wait is up.
	maxHolders := 0
	within(t, 10*time.Second, func() bool {
		n := countHolders(cs, "k")
		maxHolders = max(maxHolders, n)
		return n == 1
	}, "probe handed to one node")
	h, err := p.reg.HealthOf(ctx, "k")
	require.NoError(t, err)
	assert.Equal(t, registry.Probing, h.State)

	// A failed probe: suspended again, the wait doubled.
	require.NoError(t, holder().ReportFailure(ctx, "k", "HTTP 403 Forbidden"))
	h, err = p.reg.HealthOf(ctx, "k")
	require.NoError(t, err)
	assert.Equal(t, registry.Suspended, h.State)
	assert.Equal(t, 2*wait, h.NextProbe.Sub(h.Since))
	within(t, 10*time.Second, func() bool { return countHolders(cs, "k") == 0 }, "failed probe dropped")

	within(t, 10*time.Second, func() bool {
		n := countHolders(cs, "k")
		maxHolders = max(maxHolders, n)
		return n == 1
	}, "second probe handed to one node")
	probe := holder()
	for range registry.ProbeSuccesses {
		require.NoError(t, probe.ReportSuccess(ctx, "k"))
	}
	within(t, 10*time.Second, func() bool { return countHolders(cs, "k") == 2 }, "recovered group spread again")
	assert.Equal(t, 1, maxHolders, "a probing group is held by one node at most")
	h, err = p.reg.HealthOf(ctx, "k")
	require.NoError(t, err)
	assert.Equal(t, registry.Active, h.State)
	assert.Equal(t, 1, countEvents(t, p, "", registry.EventGroupRecovered))
	assert.Equal(t, 2, countEvents(t, p, "", registry.EventGroupProbing), fmt.Sprint("probes"))
}

// TestRebalanceNowTakesTheGuard: the plan a suspension asks for takes the
// client's rebalancing guard like the beats' plans (at most one rebalance at
// a time): while a plan is in flight it does not run beside it, and it runs
// once that plan is done (which may have read the pool before the change).
func TestRebalanceNowTakesTheGuard(t *testing.T) {
	p := newPool(t)
	p.addGroup("k", registry.Change{})
	p.addGroup("other", registry.Change{})
	c := p.startClient("n1")
	ctx := context.Background()
	require.Eventually(t, func() bool { return c.Assignment().Holds("k") }, 10*time.Second, 5*time.Millisecond)
	holdsK := func() bool {
		a, err := p.reg.Assignment(ctx)
		require.NoError(t, err)
		return slices.Contains(a.Nodes["n1"], "k")
	}
	// A plan is in flight: the guard is held, as rebalanceAsync holds it
	// (taken once the node's own start-up plan, if any, let it go).
	require.Eventually(t, func() bool { return c.rebalancing.CompareAndSwap(false, true) }, 10*time.Second, time.Millisecond)
	_, err := p.reg.Suspend(ctx, "k", "test", "t")
	require.NoError(t, err)
	c.rebalanceNow("suspension")
	assert.Never(t, func() bool { return !holdsK() }, 3*c.o.heartbeat.Interval, 20*time.Millisecond,
		"no second plan beside the one in flight")
	// The plan in flight is done: the suspension's plan runs before the
	// guard is let go.
	c.releaseRebalancing()
	assert.False(t, holdsK(), "the suspension's plan ran")
	assert.False(t, c.rebalancing.Load())
}

// TestRebalanceNowLogsItsOwnCause: a failed plan after a suspension is
// logged as such, not as "rebalance after leave failed".
func TestRebalanceNowLogsItsOwnCause(t *testing.T) {
	p := newPool(t)
	p.addGroup("k", registry.Change{})
	var logs testlog.Buffer
	c := p.startClient("n1", WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // the plan fails (not a taken lock)
	c.rebalanceRetrying(ctx, "suspension")
	assert.Equal(t, 1, logs.Count("rebalance after suspension failed"))
	assert.Zero(t, logs.Count("rebalance after leave"))
}
