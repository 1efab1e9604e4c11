package allocator

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/heartbeat"
	"github.com/allot-io/allot/internal/redistest"
	"github.com/allot-io/allot/internal/redisurl"
	"github.com/allot-io/allot/registry"
)

// pool is one namespace on a real redis-server, with a planner.
type pool struct {
	rdb redis.UniversalClient
	reg *registry.Registry
	hb  *heartbeat.Tracker
	rb  *Rebalancer
}

// testHeartbeat is long enough that nodes never expire during a test unless the
// test wants them to.
var testHeartbeat = heartbeat.Config{Interval: time.Second, TTL: 3 * time.Second}

func newPool(t *testing.T, rdb redis.UniversalClient) *pool {
	t.Helper()
	reg := registry.New(rdb, registry.WithNamespace("t"))
	hb, err := heartbeat.New(rdb, "t", testHeartbeat)
	require.NoError(t, err)
	return &pool{rdb: rdb, reg: reg, hb: hb, rb: NewRebalancer(rdb, reg, hb)}
}

func (p *pool) addGroup(t *testing.T, name string, weight float64, maxNodes int) {
	t.Helper()
	_, err := p.reg.Add(context.Background(), name, registry.Change{Weight: &weight, MaxNodes: &maxNodes}, "test")
	require.NoError(t, err)
}

func (p *pool) beat(t *testing.T, b heartbeat.Beat) heartbeat.Reply {
	t.Helper()
	if b.IP == "" {
		b.IP = "10.1.0." + b.Node[1:]
	}
	r, err := p.hb.Beat(context.Background(), b)
	require.NoError(t, err)
	return r
}

func (p *pool) assignment(t *testing.T) registry.Assignment {
	t.Helper()
	a, err := p.reg.Assignment(context.Background())
	require.NoError(t, err)
	return a
}

// topologies are the Redis deployments a test runs on: a standalone server
// and a 3-master Cluster, each started for the test.
var topologies = []struct {
	name string
	rdb  func(t *testing.T) redis.UniversalClient
}{
	{"standalone", func(t *testing.T) redis.UniversalClient { return redistest.Start(t).Client(t) }},
	{"cluster", func(t *testing.T) redis.UniversalClient { return redistest.StartCluster(t).Client(t) }},
}

func TestRebalancerAssignsEveryLiveNode(t *testing.T) {
	for _, tc := range topologies {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			p := newPool(t, tc.rdb(t))
			p.addGroup(t, "search", 2, 0)
			p.addGroup(t, "maps", 1, 0)
			for i := 1; i <= 5; i++ {
				reply := p.beat(t, heartbeat.Beat{Node: fmt.Sprintf("n%d", i), Session: "test"})
				assert.True(t, reply.Work, "an unplanned member means work is waiting")
			}

			res, err := p.rb.Run(ctx)
			require.NoError(t, err)
			assert.True(t, res.Changed)
			assert.Equal(t, int64(1), res.Epoch)

			a := p.assignment(t)
			require.Len(t, a.Nodes, 5)
			counts := map[string]int{}
			for _, gs := range a.Nodes {
				require.Len(t, gs, 1)
				counts[gs[0]]++
			}
			assert.Equal(t, map[string]int{"search": 3, "maps": 2}, counts)

			// Nothing changed: a second run commits nothing and the beat is quiet.
			res, err = p.rb.Run(ctx)
			require.NoError(t, err)
			assert.False(t, res.Changed)
			assert.Equal(t, int64(1), res.Epoch)
			assert.False(t, p.beat(t, heartbeat.Beat{Node: "n1", Held: a.Nodes["n1"], Ack: 1, Session: "test"}).Work)

			st, err := Inspect(ctx, p.reg, p.hb)
			require.NoError(t, err)
			assert.True(t, st.Balanced)
			assert.Equal(t, int64(1), st.Epoch)

			// Each node learns its share from the holder count of its group.
			var searchers []string
			for id, gs := range a.Nodes {
				if gs[0] == "search" {
					searchers = append(searchers, id)
				}
			}
			sort.Strings(searchers)
			view, err := p.reg.NodeAssignment(ctx, searchers[0])
			require.NoError(t, err)
			assert.Equal(t, map[string]int{"search": 3}, view.Holders)

			// A leaving node is out of the committed assignment at once: the
			// holder count drops and it can never read its old groups again.
			require.NoError(t, p.hb.Leave(ctx, searchers[0], "test"))
			view, err = p.reg.NodeAssignment(ctx, searchers[0])
			require.NoError(t, err)
			assert.Empty(t, view.Groups)
			view, err = p.reg.NodeAssignment(ctx, searchers[1])
			require.NoError(t, err)
			assert.Equal(t, map[string]int{"search": 2}, view.Holders)
			res, err = p.rb.Run(ctx)
			require.NoError(t, err)
			assert.True(t, res.Changed, "the next run rewrites the assignment")
		})
	}
}

// TestStalePlannerCannotOverwriteNewerPlan forces the interleaving the epoch
// exists for: planner A reads and plans, loses its lock (as after a GC pause
// past the lock's expiry), planner B commits a newer plan, then A wakes up and
// tries to commit.
func TestStalePlannerCannotOverwriteNewerPlan(t *testing.T) {
	ctx := context.Background()
	rdb := redistest.Start(t).Client(t)
	p := newPool(t, rdb)
	p.addGroup(t, "a", 1, 0)
	p.addGroup(t, "b", 1, 0)
	p.beat(t, heartbeat.Beat{Node: "n1", Session: "test"})
	_, err := p.rb.Run(ctx)
	require.NoError(t, err)

	p.beat(t, heartbeat.Beat{Node: "n2", Session: "test"})
	stale := NewRebalancer(rdb, p.reg, p.hb)
	var bResult Result
	stale.beforeCommit = func() {
		// A's lock "expires" while it is paused.
		require.NoError(t, rdb.Del(ctx, stale.lockName).Err())
		p.beat(t, heartbeat.Beat{Node: "n3", Session: "test"})
		bResult, err = NewRebalancer(rdb, p.reg, p.hb).Run(ctx)
		require.NoError(t, err)
	}
	_, err = stale.Run(ctx)
	require.ErrorIs(t, err, registry.ErrStaleEpoch)
	assert.Equal(t, int64(1), stale.Counts().Stale)

	a := p.assignment(t)
	assert.Equal(t, bResult.Epoch, a.Epoch, "the newer plan stands")
	assert.Len(t, a.Nodes, 3, "B planned n3; A's plan without it was rejected")
}

// TestRacingRebalancersConverge runs ten planners at once while membership
// changes; every committed epoch is used exactly once and the end state is one
// valid, balanced plan.
func TestRacingRebalancersConverge(t *testing.T) {
	ctx := context.Background()
	rdb := redistest.Start(t).Client(t)
	p := newPool(t, rdb)
	for _, g := range []string{"a", "b", "c"} {
		p.addGroup(t, g, 1, 0)
	}

	var mu sync.Mutex
	var epochs []int64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 10 {
		wg.Go(func() {
			rb := NewRebalancer(rdb, p.reg, p.hb)
			for {
				select {
				case <-stop:
					return
				default:
				}
				res, err := rb.Run(ctx)
				if errors.Is(err, ErrLocked) || errors.Is(err, registry.ErrStaleEpoch) {
					continue
				}
				if !assert.NoError(t, err) {
					return
				}
				mu.Lock()
				for e := res.Epoch - int64(res.Commits) + 1; e <= res.Epoch; e++ {
					epochs = append(epochs, e)
				}
				mu.Unlock()
			}
		})
	}
	for i := 1; i <= 12; i++ {
		p.beat(t, heartbeat.Beat{Node: fmt.Sprintf("n%d", i), Session: "test"})
	}
	require.Eventually(t, func() bool {
		a := p.assignment(t)
		return len(a.Nodes) == 12 && a.PlannedMVer == a.MVer
	}, 10*time.Second, 10*time.Millisecond)
	close(stop)
	wg.Wait()

	sort.Slice(epochs, func(i, j int) bool { return epochs[i] < epochs[j] })
	for i, e := range epochs {
		assert.Equal(t, int64(i+1), e, "epochs are consecutive and never reused: %v", epochs)
	}
	st, err := Inspect(ctx, p.reg, p.hb)
	require.NoError(t, err)
	assert.True(t, st.Balanced)
	assert.Equal(t, int64(len(epochs)), st.Epoch)
}

// TestExclusiveGroupHandoff walks a max_nodes=1 group from one node to another
// through real Redis: revoke, release reported in a beat, then grant.
func TestExclusiveGroupHandoff(t *testing.T) {
	ctx := context.Background()
	p := newPool(t, redistest.Start(t).Client(t))
	p.addGroup(t, "x", 1, 1)
	p.addGroup(t, "y", 1, 0)
	p.beat(t, heartbeat.Beat{Node: "n1", Preferred: "x", Session: "test"})
	p.beat(t, heartbeat.Beat{Node: "n3", Preferred: "y", Session: "test"})
	_, err := p.rb.Run(ctx)
	require.NoError(t, err)
	a := p.assignment(t)
	require.Equal(t, []string{"x"}, a.Nodes["n1"])
	require.Equal(t, []string{"y"}, a.Nodes["n3"])
	p.beat(t, heartbeat.Beat{Node: "n1", Preferred: "x", Held: []string{"x"}, Ack: a.Epoch, Session: "test"})

	// n1 now prefers y and n2 wants x: n2 must wait for n1's release.
	p.beat(t, heartbeat.Beat{Node: "n1", Preferred: "y", Held: []string{"x"}, Ack: a.Epoch, Session: "test"})
	p.beat(t, heartbeat.Beat{Node: "n2", Preferred: "x", Session: "test"})
	res, err := p.rb.Run(ctx)
	require.NoError(t, err)
	assert.Equal(t, 1, res.Waiting)
	a = p.assignment(t)
	assert.Equal(t, []string{"y"}, a.Nodes["n1"])
	assert.Empty(t, a.Nodes["n2"])

	// n1's beat acknowledging the revoke (x released) signals work...
	reply := p.beat(t, heartbeat.Beat{Node: "n1", Preferred: "y", Held: []string{"y"}, Ack: a.Epoch, Session: "test"})
	assert.True(t, reply.Work)
	// ...and the next run grants x to n2.
	res, err = p.rb.Run(ctx)
	require.NoError(t, err)
	assert.Zero(t, res.Waiting)
	a = p.assignment(t)
	assert.Equal(t, []string{"x"}, a.Nodes["n2"])
	assert.Empty(t, a.Revoked)
}

func TestRetiredOnceNobodyHoldsIt(t *testing.T) {
	ctx := context.Background()
	p := newPool(t, redistest.Start(t).Client(t))
	p.addGroup(t, "old", 1, 0)
	p.addGroup(t, "new", 1, 0)
	p.beat(t, heartbeat.Beat{Node: "n1", Preferred: "old", Session: "test"})
	_, err := p.rb.Run(ctx)
	require.NoError(t, err)
	a := p.assignment(t)
	p.beat(t, heartbeat.Beat{Node: "n1", Preferred: "old", Held: []string{"old"}, Ack: a.Epoch, Session: "test"})

	_, err = p.reg.Retire(ctx, "old", time.Hour, "test")
	require.NoError(t, err)
	res, err := p.rb.Run(ctx)
	require.NoError(t, err)
	assert.Empty(t, res.Retired, "n1 may still be using it")
	a = p.assignment(t)
	assert.Equal(t, []string{"new"}, a.Nodes["n1"])

	p.beat(t, heartbeat.Beat{Node: "n1", Preferred: "old", Held: []string{"new"}, Ack: a.Epoch, Session: "test"})
	res, err = p.rb.Run(ctx)
	require.NoError(t, err)
	assert.Equal(t, []string{"old"}, res.Retired)
	g, err := p.reg.Get(ctx, "old")
	require.NoError(t, err)
	assert.Equal(t, registry.Retired, g.State)
}

func TestRunReturnsErrLockedWhileAnotherPlans(t *testing.T) {
	ctx := context.Background()
	rdb := redistest.Start(t).Client(t)
	p := newPool(t, rdb)
	p.addGroup(t, "a", 1, 0)
	p.beat(t, heartbeat.Beat{Node: "n1", Session: "test"})
	other := NewRebalancer(rdb, p.reg, p.hb)
	other.beforeCommit = func() {
		_, err := p.rb.Run(ctx)
		assert.ErrorIs(t, err, ErrLocked)
	}
	_, err := other.Run(ctx)
	require.NoError(t, err)
	assert.Equal(t, int64(1), p.rb.Counts().Locked)
}

// TestRebalancerFromEveryURLForm runs the whole coordination — group write,
// beats, plan, commit, status — through clients opened from one URL each, as
// the CLI, `allot serve` and client.FromEnv open them: Sentinel, TLS and an
// ACL user.
func TestRebalancerFromEveryURLForm(t *testing.T) {
	for _, tc := range []struct {
		name string
		url  func(t *testing.T) string
	}{
		{"sentinel", func(t *testing.T) string { return redistest.StartSentinel(t).URL() }},
		{"tls", func(t *testing.T) string {
			s := redistest.Start(t, redistest.WithTLS())
			return s.URL() + "?ca_file=" + s.CAFile()
		}},
		{"acl", func(t *testing.T) string {
			return redistest.Start(t, redistest.WithPassword("allot", "s3cret")).URL()
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			rdb, err := redisurl.Open(tc.url(t))
			require.NoError(t, err)
			t.Cleanup(func() { _ = rdb.Close() })
			p := newPool(t, rdb)
			p.addGroup(t, "a", 1, 0)
			p.addGroup(t, "b", 1, 1)
			p.beat(t, heartbeat.Beat{Node: "n1", Session: "test"})
			p.beat(t, heartbeat.Beat{Node: "n2", Session: "test"})

			res, err := p.rb.Run(ctx)
			require.NoError(t, err)
			assert.True(t, res.Changed)
			st, err := Inspect(ctx, p.reg, p.hb)
			require.NoError(t, err)
			assert.True(t, st.Balanced)
			assert.Empty(t, st.Standby)
		})
	}
}
