package client

import (
	"context"
	"fmt"
	"slices"
	"sync"
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

// slowHB makes beats rare, so that what a test sees within a fraction of an
// interval came from a pushed event, not from a beat.
var slowHB = heartbeat.Config{Interval: 2 * time.Second, TTL: 6 * time.Second}

// nextAssignmentEvent returns the next assignment event on sub.
func nextAssignmentEvent(t *testing.T, sub *redis.PubSub) registry.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		msg, err := sub.ReceiveMessage(ctx)
		require.NoError(t, err)
		ev, err := registry.ParseEvent(msg.Payload)
		require.NoError(t, err)
		if ev.Type == registry.EventAssignment {
			return ev
		}
	}
}

func subscribeEvents(t *testing.T, p *pool) *redis.PubSub {
	t.Helper()
	sub := p.rdb.Subscribe(context.Background(), keys.New(keys.DefaultNamespace).Events())
	t.Cleanup(func() { _ = sub.Close() })
	_, err := sub.Receive(context.Background())
	require.NoError(t, err)
	return sub
}

// TestUnnamedNodesAdoptWithoutRead: after a graceful leave, every node the
// assignment event does not name adopts the new epoch without reading —
// a holder of a group that lost a holder takes its new share from the
// event's holder counts — the node the plan moved reads once, and the
// shares they end with are what Redis holds.
func TestUnnamedNodesAdoptWithoutRead(t *testing.T) {
	p := newPool(t)
	for i := range 5 {
		p.addGroup(fmt.Sprintf("g%d", i), registry.Change{})
	}
	// 11 nodes over 5 groups: one group has 3, the others 2. One of a
	// 2-node group leaves, so the plan moves a node of the 3-node group.
	cs := p.startClients("a", 11, WithHeartbeat(slowHB))
	settled := func() bool {
		a, err := p.reg.Assignment(context.Background())
		if err != nil || len(a.Nodes) != len(cs) {
			return false
		}
		for _, c := range cs {
			if c.Assignment().Epoch != a.Epoch || len(c.Assignment().Groups) != 1 {
				return false
			}
			// And OnChange has delivered it: until then the beat reports
			// the groups it dropped as held too, so its entry is not what
			// it holds and it must read. (A possible cause of a rare
			// "no read" failure in loaded -race runs: dispatch lagging
			// past the leave below.)
			c.mu.Lock()
			held := c.heldLocked()
			c.mu.Unlock()
			if !slices.Equal(held, c.Assignment().Names()) {
				return false
			}
		}
		return true
	}
	require.Eventually(t, settled, 20*time.Second, 10*time.Millisecond)

	for i, c := range cs {
		if len(holdersOf(cs)[c.Assignment().Names()[0]]) == 2 {
			cs[0], cs[i] = cs[i], cs[0]
			break
		}
	}
	sub := subscribeEvents(t, p)
	before := make([]int64, len(cs))
	held := make([][]string, len(cs))
	calls := make([]atomic.Int64, len(cs))
	for i, c := range cs {
		before[i] = c.fetches.Load()
		held[i] = c.Assignment().Names()
		c.OnChange(func(_, _ Assignment) { calls[i].Add(1) })
	}
	leaver, rest := cs[0], cs[1:]
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, leaver.Close(ctx))
	ev := nextAssignmentEvent(t, sub)
	require.Equal(t, registry.ScopeNodes, ev.Scope)
	assert.NotEmpty(t, ev.Groups, "the leaver's group lost a holder")

	require.NotEmpty(t, ev.Holders, "the event carries the new holder counts")
	require.Len(t, ev.Nodes, 1, "one node moves into the leaver's group")
	newShares, epochOnly := 0, []int(nil)
	for i, c := range rest {
		concerned := slices.Contains(ev.Nodes, c.o.nodeID) || slices.ContainsFunc(held[i+1], func(g string) bool { return slices.Contains(ev.Groups, g) })
		if concerned {
			// The event reaches it (its own channel, its group's): at once.
			within(t, slowHB.Interval/2, func() bool { return c.Assignment().Epoch >= ev.Epoch }, "epoch adopted or read")
		} else {
			// No event for it: its next beat brings the epoch.
			within(t, 2*slowHB.Interval+time.Second, func() bool { return c.Assignment().Epoch >= ev.Epoch }, "epoch from the beat")
			assert.Positive(t, c.beatAdopted.Load(), "%s took the epoch from a beat", c.o.nodeID)
		}
		if slices.Contains(ev.Nodes, c.o.nodeID) {
			// Its entry changed: it reads, once, though the event may reach
			// it on its own channel and on a group's.
			within(t, slowHB.Interval/2, func() bool { return c.Assignment().Epoch == ev.Epoch }, "named node read")
			assert.Equal(t, before[i+1]+1, c.fetches.Load(), "%s reads once", c.o.nodeID)
			continue
		}
		assert.False(t, ev.Concerns(c.o.nodeID, held[i+1]))
		assert.Equal(t, before[i+1], c.fetches.Load(), "%s's entry did not change: no read", c.o.nodeID)
		assert.Equal(t, held[i+1], c.Assignment().Names())
		shareMoved := false
		for _, g := range held[i+1] {
			if n, ok := ev.Holders[g]; ok {
				newShares++
				shareMoved = true
				got, _ := c.Assignment().Group(g)
				assert.Equal(t, 1/float64(n), got.Share, "%s's share of %s, from the event", c.o.nodeID, g)
			}
		}
		if shareMoved {
			// The new share is in place (above); this waits for the
			// callback, whose delivery took over a second once in a full
			// -race run of every package.
			within(t, slowHB.Interval, func() bool { return calls[i+1].Load() == 1 }, "OnChange for the new share")
		} else {
			epochOnly = append(epochOnly, i+1)
		}
	}
	assert.Positive(t, newShares, "a holder of a group that lost a holder took its new share without a read")
	// Those calls are made; a node for which only the epoch moved got none.
	require.NotEmpty(t, epochOnly)
	for _, i := range epochOnly {
		assert.Zero(t, calls[i].Load(), "%s: OnChange for an epoch alone", cs[i].o.nodeID)
	}

	// A config change: only the holders read, even at their next beat (the
	// others adopted the revision from the event).
	for i, c := range rest {
		before[i+1] = c.fetches.Load()
	}
	target := rest[0].Assignment().Names()[0]
	g, err := p.reg.Update(context.Background(), target, registry.Change{Set: set("v", "1")}, "test")
	require.NoError(t, err)
	cnt, err := p.reg.Counters(context.Background())
	require.NoError(t, err)
	for i, c := range rest {
		within(t, 2*slowHB.Interval+time.Second, func() bool {
			c.mu.Lock()
			defer c.mu.Unlock()
			return c.seenRev == cnt.Rev
		}, "a beat saw the new revision")
		if c.Assignment().Holds(target) {
			within(t, time.Second, func() bool { got, _ := c.Assignment().Group(target); return got.Version == g.Version }, "holder read")
			continue
		}
		assert.Equal(t, before[i+1], c.fetches.Load(), "%s does not hold %s: no read", c.o.nodeID, target)
	}

	// Every survivor's share is what Redis says.
	for _, c := range rest {
		view, err := p.reg.NodeAssignment(context.Background(), c.o.nodeID)
		require.NoError(t, err)
		for _, g := range view.Groups {
			got, ok := c.Assignment().Group(g.Name)
			require.True(t, ok)
			assert.Equal(t, 1/float64(view.Holders[g.Name]), got.Share, "%s share of %s", c.o.nodeID, g.Name)
		}
	}
}

// TestDroppedEventsCaughtByBeat: with every pushed event dropped, a node
// still follows a membership change and a config change within one beat
// (plus the read).
func TestDroppedEventsCaughtByBeat(t *testing.T) {
	p := newPool(t)
	p.addGroup("g0", registry.Change{Set: set("v", "0")})
	p.addGroup("g1", registry.Change{Set: set("v", "0")})
	cs := p.startClients("d", 6)
	for _, c := range cs {
		c.dropEvents.Store(true)
	}
	same := func(c *Client) bool {
		view, err := p.reg.NodeAssignment(context.Background(), c.o.nodeID)
		if err != nil {
			return false
		}
		a := c.Assignment()
		if a.Epoch != view.Epoch || len(a.Groups) != len(view.Groups) {
			return false
		}
		for _, g := range view.Groups {
			got, ok := a.Group(g.Name)
			if !ok || got.Version != g.Version || got.Share != 1/float64(view.Holders[g.Name]) {
				return false
			}
		}
		return true
	}
	all := func(cs []*Client) func() bool {
		return func() bool {
			for _, c := range cs {
				if !same(c) {
					return false
				}
			}
			return true
		}
	}
	within(t, 10*time.Second, all(cs), "settled")

	// A leave: the survivors learn their new shares from their beats.
	closeAll(cs[:1])
	took := within(t, 10*time.Second, all(cs[1:]), "leave seen without events")
	assert.LessOrEqual(t, took, bound(2*fastHB.Interval), "one beat (and the plan) after the leave")

	// A config change: the holders re-read at their next beat.
	_, err := p.reg.Update(context.Background(), "g0", registry.Change{Set: set("v", "1")}, "test")
	require.NoError(t, err)
	took = within(t, 10*time.Second, all(cs[1:]), "config change seen without events")
	assert.LessOrEqual(t, took, bound(fastHB.Interval), "one beat after the change")
}

// TestStrayEventsIgnored: a truncated event and an event naming a node that
// does not exist change nothing a node reads; the beat keeps it true.
func TestStrayEventsIgnored(t *testing.T) {
	p := newPool(t)
	p.addGroup("g0", registry.Change{})
	cs := p.startClients("s", 3, WithHeartbeat(slowHB))
	a, err := p.reg.Assignment(context.Background())
	require.NoError(t, err)
	lastFetches := make([]int64, len(cs))
	within(t, 10*time.Second, func() bool {
		a, err = p.reg.Assignment(context.Background())
		if err != nil || len(a.Nodes) != 3 {
			return false
		}
		settled := true
		for i, c := range cs {
			// Settled means read up to the current group revision, with no
			// read queued (a beat that saw the join while a read was under
			// way leaves a wake-up behind) and none started since the last
			// poll: such a read must not land among the stray events.
			c.mu.Lock()
			behind := c.lastRev < a.Rev
			c.mu.Unlock()
			f := c.fetches.Load()
			if c.Assignment().Epoch != a.Epoch || behind || len(c.wakeFetch) > 0 || f != lastFetches[i] {
				settled = false
			}
			lastFetches[i] = f
		}
		return settled
	}, "settled")
	before := make([]int64, len(cs))
	lease := make([]time.Time, len(cs))
	for i, c := range cs {
		before[i] = c.fetches.Load()
		c.mu.Lock()
		lease[i] = c.leaseUntil
		c.mu.Unlock()
	}
	ch := keys.New(keys.DefaultNamespace).AssignmentEvents() // what the nodes follow
	ctx := context.Background()
	for _, payload := range []string{
		`{"type":"assignment","epoch":`,                                                            // truncated
		`{"type":"assignment","epoch":1,"scope":"nodes"`,                                           // truncated
		fmt.Sprintf(`{"type":"assignment","epoch":%d,"scope":"nodes","nodes":["ghost"]}`, a.Epoch), // not newer
		`{"type":"group.updated","group":"no-such-group","version":9}`,
	} {
		require.NoError(t, p.rdb.Publish(ctx, ch, payload).Err())
	}
	// A marker every node sees once the stray events were handled: an event
	// naming the (unknown) ghost for the next epoch is adopted as an epoch
	// move that concerns nobody here — no read — and the beat, which
	// carries the true epoch, corrects it.
	require.NoError(t, p.rdb.Publish(ctx, ch, fmt.Sprintf(`{"type":"assignment","epoch":%d,"scope":"nodes","nodes":["ghost"]}`, a.Epoch+1)).Err())
	for i, c := range cs {
		within(t, slowHB.Interval/2, func() bool { return c.adopted.Load() > 0 }, "marker seen")
		fetches := c.fetches.Load()
		c.mu.Lock()
		beat := !c.leaseUntil.Equal(lease[i])
		c.mu.Unlock()
		if beat {
			// A beat since the marker shows the true epoch and reads once.
			assert.LessOrEqual(t, fetches, before[i]+1, "no read for stray events")
			continue
		}
		assert.Equal(t, before[i], fetches, "no read for stray events")
	}
	for _, c := range cs {
		within(t, 2*slowHB.Interval+time.Second, func() bool { return c.Assignment().Epoch == a.Epoch }, "beat restores the true epoch")
		assert.Equal(t, []string{"g0"}, c.Assignment().Names(), "groups unchanged")
	}
}

// failingReads fails every assignment read of one node's Redis client
// while on, and counts the attempts.
type failingReads struct {
	on       atomic.Bool
	attempts atomic.Int64
	beats    atomic.Int64
}

func (f *failingReads) DialHook(next redis.DialHook) redis.DialHook { return next }
func (f *failingReads) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

func (f *failingReads) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		args := cmd.Args()
		if n := cmd.Name(); (n == "evalsha" || n == "eval") && len(args) > 2 {
			switch args[2] {
			case 3: // node_assignment.lua: state, assign, holders
				f.attempts.Add(1)
				if f.on.Load() {
					err := fmt.Errorf("test: read refused")
					cmd.SetErr(err)
					return err
				}
			case heartbeat.BeatKeys:
				f.beats.Add(1)
			}
		}
		return next(ctx, cmd)
	}
}

// TestFailedReadRetriesWithBackoff: a node whose read fails after an event
// named it retries with backoff (several times within one interval), and
// keeps beating meanwhile.
func TestFailedReadRetriesWithBackoff(t *testing.T) {
	p := newPool(t)
	p.addGroup("g0", registry.Change{Set: set("v", "0")})
	hook := &failingReads{}
	rdb := redis.NewClient(p.s.Options())
	rdb.AddHook(hook)
	t.Cleanup(func() { _ = rdb.Close() })
	hb := heartbeat.Config{Interval: time.Second, TTL: 3 * time.Second}
	c, err := New(rdb, WithNodeID("r1"), WithIP("10.0.0.1"), WithHeartbeat(hb), WithLogger(testLogger()))
	require.NoError(t, err)
	c.ignoreDocs.Store(true) // the write's event wakes a read, as from an older writer
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, c.Start(ctx))
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	within(t, 5*time.Second, func() bool { return c.Assignment().Holds("g0") }, "holds g0")

	hook.on.Store(true)
	attempts, beats := hook.attempts.Load(), hook.beats.Load()
	_, err = p.reg.Update(context.Background(), "g0", registry.Change{Set: set("v", "1")}, "test")
	require.NoError(t, err)
	// Backoff from an eighth of the interval: at least three tries in well
	// under two intervals, where beats alone would give one or two.
	within(t, bound(2*hb.Interval), func() bool { return hook.attempts.Load() >= attempts+4 }, "retries")
	within(t, bound(2*hb.Interval), func() bool { return hook.beats.Load() >= beats+1 }, "beats go on")
	v, _ := c.Config("v")
	assert.Equal(t, "0", v, "still serving the last good config")

	hook.on.Store(false)
	within(t, bound(2*hb.Interval), func() bool { v, _ := c.Config("v"); return v == "1" }, "read succeeds once Redis answers")
}

// TestGroupEventsReachHoldersOnly: a node follows the assignment channel
// and the channels of the groups it holds, no others. A config change is
// pushed to the group's holders; a node that does not hold the group gets
// no event and does not read at its next beat either (the beat's HeldRev
// says none of its groups changed). A node given a new group follows it at
// once: the group's next change is pushed to it.
func TestGroupEventsReachHoldersOnly(t *testing.T) {
	p := newPool(t)
	p.addGroup("g0", registry.Change{})
	p.addGroup("g1", registry.Change{})
	cs := p.startClients("h", 2, WithHeartbeat(slowHB))
	k := keys.New(keys.DefaultNamespace)
	ctx := context.Background()
	subscribers := func(ch string) int64 {
		n, err := p.rdb.PubSubNumSub(ctx, ch).Result()
		require.NoError(t, err)
		return n[ch]
	}
	holderOf := func(g string) (holder, other *Client) {
		for i, c := range cs {
			if c.Assignment().Holds(g) {
				return c, cs[1-i]
			}
		}
		return nil, nil
	}
	within(t, 10*time.Second, func() bool {
		h0, _ := holderOf("g0")
		h1, _ := holderOf("g1")
		return h0 != nil && h1 != nil && h0 != h1 &&
			subscribers(k.GroupEvents("g0")) == 1 && subscribers(k.GroupEvents("g1")) == 1 &&
			subscribers(k.AssignmentEvents()) == 2
	}, "one group each, each following its own group's channel")

	holder, other := holderOf("g0")
	other.mu.Lock()
	otherFetches, otherBeat := other.fetches.Load(), other.leaseUntil
	other.mu.Unlock()
	g, err := p.reg.Update(ctx, "g0", registry.Change{Set: set("v", "1")}, "test")
	require.NoError(t, err)
	within(t, slowHB.Interval/2, func() bool { got, _ := holder.Assignment().Group("g0"); return got.Version == g.Version }, "pushed to the holder")
	cnt, err := p.reg.Counters(ctx)
	require.NoError(t, err)
	within(t, 2*slowHB.Interval+time.Second, func() bool {
		other.mu.Lock()
		defer other.mu.Unlock()
		return !other.leaseUntil.Equal(otherBeat) && other.seenRev == cnt.Rev
	}, "the other node's next beat")
	other.mu.Lock()
	lastRev := other.lastRev
	other.mu.Unlock()
	assert.Equal(t, cnt.Rev, lastRev, "the beat covers the revision")
	assert.Equal(t, otherFetches, other.fetches.Load(), "no read for a group it does not hold")

	// The g0 holder leaves: the other node takes g0 and follows its channel.
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	require.NoError(t, holder.Close(cctx))
	within(t, 10*time.Second, func() bool {
		return other.Assignment().Holds("g0") && subscribers(k.GroupEvents("g0")) == 1
	}, "g0 moved and followed")
	g, err = p.reg.Update(ctx, "g0", registry.Change{Set: set("v", "2")}, "test")
	require.NoError(t, err)
	within(t, slowHB.Interval/2, func() bool { got, _ := other.Assignment().Group("g0"); return got.Version == g.Version }, "pushed to the new holder")
}

// TestCoveredReadSkipped: a wake-up for what the node has read already (a
// beat that saw the new epoch while the read for it was queued) reads
// nothing; a forced read, or an epoch the last beat does not confirm,
// still reads.
func TestCoveredReadSkipped(t *testing.T) {
	p := newPool(t)
	p.addGroup("g0", registry.Change{})
	c := p.startClients("c", 1, WithHeartbeat(slowHB))[0]
	ctx := context.Background()
	settled := func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.raw != nil && c.raw.Epoch == c.seenEpoch && c.lastRev >= c.seenRev && len(c.wakeFetch) == 0
	}
	within(t, 10*time.Second, settled, "read at the beat's epoch")
	c.pause()
	defer c.resume()

	before := c.fetches.Load()
	require.NoError(t, c.fetch(ctx))
	assert.Equal(t, before, c.fetches.Load(), "covered: no read")

	c.forceFetch() // its wake-up waits in the paused fetch loop
	require.NoError(t, c.fetch(ctx))
	assert.Equal(t, before+1, c.fetches.Load(), "forced: read")

	// An epoch adopted from an event that no beat has confirmed yet (here
	// a stray one) is not covered: the read puts the true epoch back.
	c.mu.Lock()
	a := *c.raw
	a.Epoch++
	c.raw = &a
	c.mu.Unlock()
	require.NoError(t, c.fetch(ctx))
	assert.Equal(t, before+2, c.fetches.Load(), "unconfirmed epoch: read")
	assert.Equal(t, a.Epoch-1, c.Assignment().Epoch)
}

// TestConfigChangeTakenFromEvent: a write's event on the group's channel
// carries the new document, and a holder that has covered every revision
// before it takes the new config from it without a read; a holder that
// missed a revision reads.
func TestConfigChangeTakenFromEvent(t *testing.T) {
	p := newPool(t)
	p.addGroup("g0", registry.Change{Set: set("v", "0")})
	p.addGroup("g1", registry.Change{Set: set("v", "0")})
	cs := p.startClients("d", 2, WithHeartbeat(slowHB))
	within(t, 10*time.Second, func() bool {
		h := holdersOf(cs)
		return len(h["g0"]) == 1 && len(h["g1"]) == 1 && h["g0"][0] != h["g1"][0]
	}, "one group each")
	holder := holdersOf(cs)["g0"][0]
	// Settled: covering the beat's revision, no read queued, and none
	// started since the last poll (one under way would land in the check).
	lastFetches := int64(-1)
	within(t, 10*time.Second, func() bool {
		holder.mu.Lock()
		defer holder.mu.Unlock()
		f := holder.fetches.Load()
		quiet := f == lastFetches
		lastFetches = f
		return quiet && holder.lastRev == holder.seenRev && len(holder.wakeFetch) == 0
	}, "holder settled")
	var versions []int64
	var mu sync.Mutex
	holder.OnChange(func(_, a Assignment) {
		g, _ := a.Group("g0")
		mu.Lock()
		versions = append(versions, g.Version)
		mu.Unlock()
	})
	fetches := holder.fetches.Load()

	g, err := p.reg.Update(context.Background(), "g0", registry.Change{Set: set("v", "1")}, "test")
	require.NoError(t, err)
	within(t, slowHB.Interval/2, func() bool { v, _ := holder.Config("v"); return v == "1" }, "new config")
	assert.Equal(t, fetches, holder.fetches.Load(), "taken from the event: no read")
	assert.Equal(t, int64(1), holder.docAdopted.Load())
	within(t, time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return len(versions) == 1 }, "OnChange")
	mu.Lock()
	assert.Equal(t, []int64{g.Version}, versions)
	mu.Unlock()

	// A write to g1, which the holder does not hear of (nor, paused, from
	// a beat), then one to g0: its event is not the next revision the
	// holder covers, so it reads.
	holder.pause()
	_, err = p.reg.Update(context.Background(), "g1", registry.Change{Set: set("v", "1")}, "test")
	require.NoError(t, err)
	g, err = p.reg.Update(context.Background(), "g0", registry.Change{Set: set("v", "2")}, "test")
	require.NoError(t, err)
	within(t, time.Second, func() bool {
		holder.mu.Lock()
		defer holder.mu.Unlock()
		return holder.eventRev > holder.lastRev
	}, "g0's event seen, not taken")
	holder.resume()
	within(t, 2*slowHB.Interval+time.Second, func() bool { v, _ := holder.Config("v"); return v == "2" }, "newest config")
	assert.Equal(t, int64(1), holder.docAdopted.Load(), "a gap: read, not taken")
	assert.Greater(t, holder.fetches.Load(), fetches)
	got, _ := holder.Assignment().Group("g0")
	assert.Equal(t, g.Version, got.Version)
}
