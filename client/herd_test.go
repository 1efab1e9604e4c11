package client

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/heartbeat"
	"github.com/allot-io/allot/internal/keys"
	"github.com/allot-io/allot/registry"
)

// lockCounter counts, on one Redis client, the attempts to take the
// rebalance lock (redsync's SET NX) and the beats.
type lockCounter struct {
	lockKey         string
	attempts, beats atomic.Int64
}

func (l *lockCounter) DialHook(next redis.DialHook) redis.DialHook { return next }
func (l *lockCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

func (l *lockCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		args := cmd.Args()
		switch cmd.Name() {
		case "set":
			if len(args) > 1 && args[1] == l.lockKey {
				l.attempts.Add(1)
			}
		case "evalsha", "eval":
			if len(args) > 2 && args[2] == heartbeat.BeatKeys {
				l.beats.Add(1)
			}
		}
		return next(ctx, cmd)
	}
}

// TestNoHerdAtTheLock: after a membership change (a leave, a join, a node
// reaped) at most 3 of 24 nodes try the rebalance lock, where every node
// that beat before the plan was committed used to. (A leaver plans without
// it.)
func TestNoHerdAtTheLock(t *testing.T) {
	p := newPool(t)
	lc := &lockCounter{lockKey: keys.New(keys.DefaultNamespace).Lock()}
	p.rdb.AddHook(lc)
	for _, g := range []string{"g0", "g1", "g2", "g3"} {
		p.addGroup(g, registry.Change{})
	}
	hb := heartbeat.Config{Interval: 300 * time.Millisecond, TTL: 900 * time.Millisecond}
	cs := p.startClients("h", 24, WithHeartbeat(hb))

	// settled: the committed assignment covers exactly the live nodes,
	// nothing is pending, and every node uses what it was given.
	settled := func(live []*Client) func() bool {
		return func() bool {
			a, err := p.reg.Assignment(context.Background())
			if err != nil || len(a.Nodes) != len(live) || a.MVer != a.PlannedMVer || a.Rev != a.PlannedRev {
				return false
			}
			for _, c := range live {
				if _, ok := a.Nodes[c.o.nodeID]; !ok || c.Assignment().Epoch != a.Epoch {
					return false
				}
			}
			return true
		}
	}
	// measure counts the lock attempts from change() until the pool settled
	// and every node beat twice more (any late planner would have tried).
	measure := func(what string, was, live []*Client, change func()) int64 {
		t.Helper()
		within(t, 20*time.Second, settled(was), what+": settled before")
		before := lc.attempts.Load()
		change()
		within(t, 20*time.Second, settled(live), what+": settled after")
		beats := lc.beats.Load()
		within(t, 20*time.Second, func() bool { return lc.beats.Load() >= beats+2*int64(len(live)) }, what+": two more beats each")
		n := lc.attempts.Load() - before
		t.Logf("%s: %d lock attempts", what, n)
		return n
	}

	live := cs[1:]
	// The leaver plans without the lock (allocator.LeaveAndPlan), and its
	// leave claims the change: "settled after" is that plan committed.
	n := measure("leave", cs, live, func() { closeAll(cs[:1]) })
	assert.LessOrEqual(t, n, int64(3), "leave")

	joiner := p.newClient("h-new", WithHeartbeat(hb))
	was := live
	live = append(live[:len(live):len(live)], joiner)
	n = measure("join", was, live, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, joiner.Start(ctx))
	})
	assert.LessOrEqual(t, n, int64(3), "join")

	// A join while another planner holds the lock for 250 ms (a slow plan):
	// the joiner's attempt fails, and instead of every node that beats
	// meanwhile trying, one takes over once the claim lapses (TTL/3).
	joiner2 := p.newClient("h-new2", WithHeartbeat(hb))
	was = live
	live = append(live[:len(live):len(live)], joiner2)
	n = measure("join behind a held lock", was, live, func() {
		require.NoError(t, p.rdb.Set(context.Background(), lc.lockKey, "slow-planner", 250*time.Millisecond).Err())
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, joiner2.Start(ctx))
	})
	assert.LessOrEqual(t, n, int64(3+1), "join behind a held lock (the test's own SET counts once)")

	frozen := live[0]
	n = measure("reap", live, live[1:], func() { frozen.pause() })
	assert.LessOrEqual(t, n, int64(3), "reap")
	frozen.resume()
}
