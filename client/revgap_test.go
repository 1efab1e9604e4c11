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
	"github.com/allot-io/allot/registry"
)

// slowReads counts one node's assignment reads and beats and, while on,
// holds each read's reply for delay after Redis ran it: the read sees the
// state of its instant but the node learns it late, as on a pool busy with
// thousands of reads.
type slowReads struct {
	on           atomic.Bool
	delay        time.Duration
	reads, beats atomic.Int64
}

func (s *slowReads) DialHook(next redis.DialHook) redis.DialHook { return next }
func (s *slowReads) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

func (s *slowReads) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		args := cmd.Args()
		if n := cmd.Name(); (n == "evalsha" || n == "eval") && len(args) > 2 {
			switch args[2] {
			case 3: // node_assignment.lua
				s.reads.Add(1)
				if s.on.Load() {
					time.Sleep(s.delay) // latency of the reply, not a wait for a condition
				}
			case heartbeat.BeatKeys:
				s.beats.Add(1)
			}
		}
		return err
	}
}

// TestWriteDuringReadLeavesNoRevisionGap: a node reads because a group it
// holds changed; while that read is on its way back, another group it does
// not hold changes. The read covers the first revision, the event the
// second: the node's next beat must not read again. (At 10,000 nodes the
// timed rebalances of check perf left most nodes one revision behind this
// way, and the first graceful leave after them cost a read per node.)
func TestWriteDuringReadLeavesNoRevisionGap(t *testing.T) {
	p := newPool(t)
	p.addGroup("g0", registry.Change{Set: set("v", "0")})
	p.addGroup("g1", registry.Change{Set: set("v", "0")})
	hb := heartbeat.Config{Interval: 3 * time.Second, TTL: 9 * time.Second}
	hook := &slowReads{delay: 300 * time.Millisecond}
	rdb := redis.NewClient(p.s.Options())
	rdb.AddHook(hook)
	t.Cleanup(func() { _ = rdb.Close() })
	x, err := New(rdb, WithNodeID("x"), WithIP("10.0.0.1"), WithHeartbeat(hb), WithLogger(testLogger()))
	require.NoError(t, err)
	x.ignoreDocs.Store(true) // a held group's write is read, as from an older writer
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, x.Start(ctx))
	t.Cleanup(func() { _ = x.Close(context.Background()) })
	y := p.startClient("y", WithHeartbeat(hb))
	within(t, 4*hb.Interval, func() bool {
		return len(x.Assignment().Groups) == 1 && len(y.Assignment().Groups) == 1
	}, "one group each")
	mine, other := "g0", "g1"
	if !x.Assignment().Holds(mine) {
		mine, other = other, mine
	}

	// Start right after a beat of x, so that its next one comes after both
	// writes (an interval later, less at most a tenth of jitter).
	b0 := hook.beats.Load()
	within(t, 2*hb.Interval, func() bool { return hook.beats.Load() > b0 }, "a beat of x")
	hook.on.Store(true)
	reads := hook.reads.Load()
	_, err = p.reg.Update(context.Background(), mine, registry.Change{Set: set("v", "1")}, "test")
	require.NoError(t, err)
	within(t, time.Second, func() bool { return hook.reads.Load() == reads+1 }, "x reads its changed group")
	_, err = p.reg.Update(context.Background(), other, registry.Change{Set: set("v", "1")}, "test")
	require.NoError(t, err)
	within(t, 2*time.Second, func() bool { v, _ := x.Config("v"); return v == "1" }, "x uses the new config")
	hook.on.Store(false)
	cnt, err := p.reg.Counters(context.Background())
	require.NoError(t, err)

	within(t, 2*hb.Interval, func() bool {
		x.mu.Lock()
		defer x.mu.Unlock()
		return x.seenRev == cnt.Rev
	}, "a beat saw the last revision")
	assert.Never(t, func() bool { return hook.reads.Load() > reads+1 }, 600*time.Millisecond, 10*time.Millisecond,
		"the beat after both writes reads again")
	x.mu.Lock()
	assert.Equal(t, cnt.Rev, x.lastRev, "x covers the last revision")
	x.mu.Unlock()
}
