package client

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/allocator"
	"github.com/allot-io/allot/heartbeat"
	"github.com/allot-io/allot/registry"
)

// beatGate holds one node's beat replies while armed: Redis runs the beat,
// then the node waits for release before it hears the reply, as a node
// whose beat is queued behind thousands of others on a busy pool.
type beatGate struct {
	armed   atomic.Bool
	ran     chan struct{} // receives once a held beat has run in Redis
	release chan struct{} // closed to let the held reply through
}

func newBeatGate() *beatGate {
	return &beatGate{ran: make(chan struct{}, 1), release: make(chan struct{})}
}

func (g *beatGate) DialHook(next redis.DialHook) redis.DialHook { return next }
func (g *beatGate) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

func (g *beatGate) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		args := cmd.Args()
		if n := cmd.Name(); (n == "evalsha" || n == "eval") && len(args) > 2 && args[2] == heartbeat.BeatKeys &&
			g.armed.CompareAndSwap(true, false) {
			g.ran <- struct{}{}
			<-g.release
		}
		return err
	}
}

// TestBeatOlderThanReadReadsOnce: a node's beat runs in Redis, the pool
// changes, the node reads the change (the commit's event names it), and
// only then does the beat's reply — with the epoch before the change —
// come back. The read is newer than the reply: the node must not read
// again. (During check perf's weight changes at 10,000 nodes, beats and
// reads queued together on a busy pool, and thousands of nodes read
// twice.)
func TestBeatOlderThanReadReadsOnce(t *testing.T) {
	p := newPool(t)
	p.addGroup("g0", registry.Change{})
	gate := newBeatGate()
	rdb := redis.NewClient(p.s.Options())
	rdb.AddHook(gate)
	t.Cleanup(func() { _ = rdb.Close() })
	x, err := New(rdb, WithNodeID("x"), WithIP("10.0.0.1"), WithHeartbeat(slowHB), WithLogger(testLogger()))
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	require.NoError(t, x.Start(ctx))
	t.Cleanup(func() { _ = x.Close(context.Background()) })
	within(t, 10*time.Second, func() bool {
		x.mu.Lock()
		defer x.mu.Unlock()
		return x.raw != nil && x.trusted && x.raw.Epoch == x.seenEpoch && x.lastRev >= x.seenRev && len(x.wakeFetch) == 0
	}, "read at the beat's epoch")
	// Freeze the loops: the beat and the reads below are the test's own
	// calls, in the order it sets.
	x.pause()
	defer x.resume()
	e0 := x.Assignment().Epoch

	gate.armed.Store(true)
	beat := make(chan error, 1)
	go func() { beat <- x.tick(ctx) }()
	select {
	case <-gate.ran:
	case <-ctx.Done():
		t.Fatal("the beat never ran")
	}
	// The beat has run; before x hears its reply, x gets a second group.
	p.addGroup("g1", registry.Change{})
	rb := allocator.NewRebalancer(p.rdb, p.reg, p.hbTracker())
	res, err := rb.Run(ctx)
	require.NoError(t, err)
	require.Equal(t, e0+1, res.Epoch)
	within(t, 5*time.Second, func() bool {
		x.mu.Lock()
		defer x.mu.Unlock()
		return x.wantEpoch == e0+1
	}, "the commit's event asks x to read")
	before := x.fetches.Load()
	require.NoError(t, x.fetch(ctx))
	require.Equal(t, before+1, x.fetches.Load(), "x reads the change")
	require.Equal(t, e0+1, x.Assignment().Epoch)

	close(gate.release)
	require.NoError(t, <-beat)
	require.NoError(t, x.fetch(ctx)) // the wake-up the late reply may leave
	assert.Equal(t, before+1, x.fetches.Load(), "a beat reply older than the read reads again")
	assert.Equal(t, e0+1, x.Assignment().Epoch)
	assert.Equal(t, []string{"g0", "g1"}, x.Assignment().Names())
}

// quietHB spaces beats far enough apart that a test's steps fit between
// two regular beats of a node.
var quietHB = heartbeat.Config{Interval: 5 * time.Second, TTL: 15 * time.Second}

// startQuietNodes starts y, then x (with a hook counting its beats and
// reads) on the groups of p, and waits until each holds one group. x only
// gains a group, so it releases none and sends no extra beat: its beats are
// its first one and then one every interval.
func startQuietNodes(t *testing.T, p *pool) (x, y *Client, hook *slowReads) {
	t.Helper()
	y = p.startClient("y", WithHeartbeat(quietHB))
	hook = &slowReads{}
	rdb := redis.NewClient(p.s.Options())
	rdb.AddHook(hook)
	t.Cleanup(func() { _ = rdb.Close() })
	x, err := New(rdb, WithNodeID("x"), WithIP("10.0.0.1"), WithHeartbeat(quietHB), WithLogger(testLogger()))
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, x.Start(ctx))
	t.Cleanup(func() { _ = x.Close(context.Background()) })
	within(t, quietHB.Interval/2, func() bool {
		return len(x.Assignment().Groups) == 1 && len(y.Assignment().Groups) == 1
	}, "one group each")
	// x has seen its join's plan more than once (its beat, the event): wait
	// until no read of it is still queued, or that read could land after the
	// test's change and be counted as the read for it.
	within(t, quietHB.Interval/2, func() bool {
		x.mu.Lock()
		defer x.mu.Unlock()
		return x.readCoveredLocked() && len(x.wakeFetch) == 0
	}, "x's reads settled")
	return x, y, hook
}

// TestScopeGroupsEventAsksTheBeat: an assignment event that names groups
// but not nodes (scope groups: more entries changed than an event lists)
// makes a holder of a named group ask its beat, not read: the beat says
// whether the node's entry is still what it holds and gives the new holder
// counts. Only a node whose entry changed reads. (A weight change at
// 10,000 nodes moves about 500 of them, so its event names groups, and all
// 10,000 nodes used to read.)
func TestScopeGroupsEventAsksTheBeat(t *testing.T) {
	p := newPool(t)
	p.addGroup("g0", registry.Change{})
	p.addGroup("g1", registry.Change{})
	x, _, hook := startQuietNodes(t, p)
	mine := x.Assignment().Names()[0]
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// x learns of what follows from the event only (its next regular
	// beat is seconds away).
	x.dropEvents.Store(true)
	b0 := hook.beats.Load()
	e0 := x.Assignment().Epoch
	z := p.startClient("z", WithHeartbeat(quietHB)) // joins one of the groups
	within(t, quietHB.Interval/2, func() bool { return z.Assignment().Epoch > e0 && len(z.Assignment().Groups) == 1 }, "z planned in")
	a, err := p.reg.Assignment(ctx)
	require.NoError(t, err)
	require.Equal(t, []string{mine}, a.Nodes["x"], "the join leaves x's entry as it is")
	holders := 0
	for _, gs := range a.Nodes {
		if len(gs) == 1 && gs[0] == mine {
			holders++
		}
	}

	reads, adopted := x.fetches.Load(), x.beatAdopted.Load()
	x.onAssignment(registry.Event{Type: registry.EventAssignment, Epoch: a.Epoch, Scope: registry.ScopeGroups, Groups: []string{"g0", "g1"}})
	within(t, quietHB.Interval/2, func() bool { return x.Assignment().Epoch == a.Epoch }, "x at the new epoch")
	assert.Equal(t, reads, x.fetches.Load(), "x read though its entry did not change")
	assert.Equal(t, adopted+1, x.beatAdopted.Load(), "x took the epoch from its beat")
	require.Equal(t, b0+1, hook.beats.Load(), "one beat of x since the event: the one it asked")
	g, ok := x.Assignment().Group(mine)
	require.True(t, ok)
	assert.InDelta(t, 1/float64(holders), g.Share, 1e-9, "the new share, from the beat's holder counts")
}

// TestScopeGroupsEventMovedNodeReads: the other side of the rule above — a
// holder whose entry did change, told by an event that names groups only,
// learns it from its beat and reads at once, without waiting for its next
// regular beat.
func TestScopeGroupsEventMovedNodeReads(t *testing.T) {
	p := newPool(t)
	p.addGroup("g0", registry.Change{})
	p.addGroup("g1", registry.Change{})
	x, y, hook := startQuietNodes(t, p)
	x.dropEvents.Store(true)
	b0 := hook.beats.Load()
	reads := x.fetches.Load() // settled: every read from here is for the change
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, y.Close(ctx)) // its group moves to x
	a, err := p.reg.Assignment(ctx)
	require.NoError(t, err)
	require.Equal(t, []string{"g0", "g1"}, a.Nodes["x"])

	x.onAssignment(registry.Event{Type: registry.EventAssignment, Epoch: a.Epoch, Scope: registry.ScopeGroups, Groups: []string{"g0", "g1"}})
	within(t, quietHB.Interval/2, func() bool { return x.Assignment().Epoch == a.Epoch }, "x at the new epoch")
	// x reads its changed entry: once, or twice when a read woken by its
	// own join (a beat reply ahead of its read) is still on its way as the
	// change lands; never per event, never a read per group. It learns the
	// change from the beat the event asks, or from that read.
	got := x.fetches.Load() - reads
	assert.True(t, got == 1 || got == 2, "x reads its changed entry once (twice when a read was queued): %d reads", got)
	assert.LessOrEqual(t, hook.beats.Load(), b0+1, "at most the one beat the event asked")
	assert.Equal(t, []string{"g0", "g1"}, x.Assignment().Names())
	for _, g := range x.Assignment().Groups {
		assert.InDelta(t, 1.0, g.Share, 1e-9, g.Name)
	}
}
