package client

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/heartbeat"
	"github.com/allot-io/allot/registry"
)

// exclusive records, from the nodes' own OnChange views, who holds one
// group, and counts any instant where two nodes hold it.
type exclusive struct {
	group string

	mu         sync.Mutex
	holders    map[string]bool
	violations []string
	grants     int
}

func (e *exclusive) watch(c *Client) {
	c.OnChange(func(old, new Assignment) {
		had, has := old.Holds(e.group), new.Holds(e.group)
		e.mu.Lock()
		defer e.mu.Unlock()
		switch {
		case !had && has:
			if len(e.holders) > 0 {
				e.violations = append(e.violations, fmt.Sprintf("%s took %s while %v held it", c.NodeID(), e.group, e.holders))
			}
			e.holders[c.NodeID()] = true
			e.grants++
		case had && !has:
			delete(e.holders, c.NodeID())
		}
	})
}

func (e *exclusive) holder() (string, int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for id := range e.holders {
		return id, e.grants
	}
	return "", e.grants
}

// TestCappedGroupNeverHeldTwice forces a max_nodes=1 group to move again and
// again — holder closes, holder freezes past its lease (and later comes
// back), a new node prefers the group and the holder closes — and checks from the nodes' own
// OnChange views that no two nodes ever hold it at once.
func TestCappedGroupNeverHeldTwice(t *testing.T) {
	const moves = 12
	p := newPool(t)
	p.addGroup("solo", registry.Change{Set: set("api_key", "only-one"), MaxNodes: ptr(1)})
	p.addGroup("wide", registry.Change{Set: set("api_key", "many")})
	e := &exclusive{group: "solo", holders: map[string]bool{}}

	byID := map[string]*Client{}
	seq := 0
	start := func(opts ...Option) *Client {
		seq++
		c := p.newClient(fmt.Sprintf("x%02d", seq), opts...)
		e.watch(c)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, c.Start(ctx))
		byID[c.NodeID()] = c
		return c
	}
	for range 3 {
		start()
	}
	var frozen []*Client
	for i := range moves {
		var id string
		var grants int
		within(t, 10*time.Second, func() bool { id, grants = e.holder(); return id != "" }, "solo held")
		h := byID[id]
		switch i % 3 {
		case 0: // graceful leave
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			require.NoError(t, h.Close(ctx))
			cancel()
			delete(byID, id)
			start()
		case 1: // stalls past its lease; comes back later
			h.pause()
			frozen = append(frozen, h)
		case 2: // someone else asks for it: it waits for room (a preference
			// never takes a capped group from its live holder), which the
			// holder's leave makes
			start(WithPreferredGroup("solo"))
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			require.NoError(t, h.Close(ctx))
			cancel()
			delete(byID, id)
		}
		within(t, 10*time.Second, func() bool {
			now, g := e.holder()
			return now != "" && now != id && g > grants
		}, fmt.Sprintf("move %d: solo moved away from %s", i, id))
		for _, f := range frozen {
			f.resume() // rejoins: must not take solo back while another holds it
		}
		frozen = nil
	}
	// Let the last moves settle, then check.
	within(t, 5*time.Second, func() bool { id, _ := e.holder(); return id != "" }, "solo held at the end")
	e.mu.Lock()
	defer e.mu.Unlock()
	assert.Empty(t, e.violations)
	assert.GreaterOrEqual(t, e.grants, moves+1)
	t.Logf("solo granted %d times across %d forced moves", e.grants, moves)
}

// TestLapsedReadNotTrustedAfterRejoin is the race the chaos test found
// after a Redis restart: a node whose lease lapsed reads its assignment
// (nobody has reaped it yet, so the read still names its capped group), is
// then reaped and the group handed on, and beats again — a rejoin. What it
// read before the rejoin describes a membership that has ended: a write to
// the group must not bring the group back while the new holder has it.
func TestLapsedReadNotTrustedAfterRejoin(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	p, a := lapsedSoloHolder(ctx, t)

	b := p.startClient("b") // reaps a and takes solo
	within(t, 5*time.Second, func() bool { return b.Assignment().Holds("solo") }, "b holds solo")

	reply, err := a.beat(ctx)
	require.NoError(t, err)
	require.True(t, reply.Joined, "a's beat after the reap rejoins it")

	_, err = p.reg.Update(ctx, "solo", registry.Change{Set: set("api_key", "rotated")}, "test")
	require.NoError(t, err)
	cnt, err := p.reg.Counters(ctx)
	require.NoError(t, err)
	within(t, 5*time.Second, func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		return a.eventRev >= cnt.Rev || a.lastRev >= cnt.Rev
	}, "a heard solo's write")
	assert.False(t, a.Assignment().Holds("solo"), "a took solo back from a read made before it rejoined, while b holds it")
	assert.True(t, b.Assignment().Holds("solo"))

	a.resume()
	within(t, 5*time.Second, func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		return a.raw != nil && a.trusted && a.raw.Epoch >= reply.Epoch
	}, "a reads the assignment that rejoined it")
	assert.False(t, a.Assignment().Holds("solo"))
}

// TestRenewedLeaseRestoresCappedGroups is the other half of a lapse: a
// node whose lease lapsed, but that nobody reaped, reads its assignment
// (still naming its capped group, which it withholds without a lease) and
// then beats again. Its membership never ended, so the beat that renews
// the lease gives the group back at once — with no further read or event,
// which in a quiet pool may never come (a Redis restart under load once
// left a node without its only group for good).
func TestRenewedLeaseRestoresCappedGroups(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, a := lapsedSoloHolder(ctx, t)
	require.False(t, a.Assignment().Holds("solo"), "no capped group without a lease")

	reply, err := a.beat(ctx)
	require.NoError(t, err)
	require.False(t, reply.Joined, "a was not reaped")
	assert.True(t, a.Health().LeaseValid)
	assert.True(t, a.Assignment().Holds("solo"), "the beat that renews the lease gives solo back")
	a.resume()
}

// lapsedSoloHolder starts the only node of a pool, a, with the only group,
// solo (max_nodes 1); freezes its loops until its lease lapses (its
// subscription keeps listening); then has it read its assignment in the
// lapse. No other node plans, so a is not reaped yet and the read still
// names solo.
func lapsedSoloHolder(ctx context.Context, t *testing.T) (*pool, *Client) {
	t.Helper()
	p := newPool(t)
	p.addGroup("solo", registry.Change{Set: set("api_key", "only-one"), MaxNodes: ptr(1)})
	a := p.startClient("a")
	within(t, 5*time.Second, func() bool { return a.Assignment().Holds("solo") }, "a holds solo")
	a.pause()
	within(t, 5*time.Second, func() bool { return !a.Health().LeaseValid && !a.Assignment().Holds("solo") },
		"a drops solo once its lease lapses")
	require.NoError(t, a.fetch(ctx))
	a.mu.Lock()
	readSolo := a.raw.Holds("solo")
	a.mu.Unlock()
	require.True(t, readSolo, "the read in the lapse still names solo")
	return p, a
}

// TestReadBeforeJoinNotTrusted: a process that reads before its first beat
// may see the entry of an earlier process with the same node ID (expired,
// not yet reaped), naming a capped group. If that ID is then reaped and the
// group handed on, the new process's first beat joins it afresh: the read
// before it must not give the group to the new process.
func TestReadBeforeJoinNotTrusted(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	p := newPool(t)
	p.addGroup("solo", registry.Change{Set: set("api_key", "only-one"), MaxNodes: ptr(1)})
	old := p.startClient("x")
	within(t, 5*time.Second, func() bool { return old.Assignment().Holds("solo") }, "the first x holds solo")
	old.pause() // it stops beating: its ID expires, nobody reaps it yet
	within(t, 5*time.Second, func() bool { return !old.Health().LeaseValid }, "the first x's lease lapses")

	next := p.newClient("x") // a new process with the same ID
	next.session = heartbeat.NewSession()
	require.NoError(t, next.fetch(ctx)) // before its first beat
	next.mu.Lock()
	readSolo := next.raw.Holds("solo")
	next.mu.Unlock()
	require.True(t, readSolo, "the read sees the first x's entry")

	b := p.startClient("b") // reaps x and takes solo
	within(t, 5*time.Second, func() bool { return b.Assignment().Holds("solo") }, "b holds solo")

	reply, err := next.beat(ctx)
	require.NoError(t, err)
	require.True(t, reply.Joined)
	assert.False(t, next.Assignment().Holds("solo"), "the new x took solo from a read made before it joined, while b holds it")
}

// TestLapsedLeaseClaimsNoCappedGroup: once its lease lapses a node no
// longer reports its capped groups as held, even while its OnChange for the
// drop is still running. Past the lease the server may have handed them on
// (it reaps the node), so a beat claiming them — a zombie's first beat after
// SIGCONT, in the chaos suite — would only put a second holder of an
// exclusive group on record.
func TestLapsedLeaseClaimsNoCappedGroup(t *testing.T) {
	p := newPool(t)
	p.addGroup("solo", registry.Change{Set: set("api_key", "only-one"), MaxNodes: ptr(1)})
	// a prefers a group added later: then a plan moves it off solo (a
	// preference for solo itself never takes solo from its live holder).
	a := p.startClient("a", WithPreferredGroup("later"))
	within(t, 5*time.Second, func() bool { return a.Assignment().Holds("solo") }, "a holds solo")
	dropping, release := make(chan struct{}), make(chan struct{})
	var letGo sync.Once
	free := func() { letGo.Do(func() { close(release) }) }
	t.Cleanup(free) // a failed assertion must not leave Close waiting on OnChange
	a.OnChange(func(old, new Assignment) {
		if old.Holds("solo") && !new.Holds("solo") {
			close(dropping)
			<-release // the application takes its time to let go
		}
	})
	held := func() []string {
		a.mu.Lock()
		defer a.mu.Unlock()
		return a.heldLocked()
	}
	require.Equal(t, []string{"solo"}, held())

	a.pause()
	select {
	case <-dropping:
	case <-time.After(5 * time.Second):
		t.Fatal("the lapse did not drop solo")
	}
	assert.Empty(t, held(), "a lapsed node claims its capped group")

	// Nobody reaped a: the beat that renews its lease and the read that
	// follows give solo back, and with it the claim. A move of solo now is a normal revoke: solo is
	// reported until OnChange has delivered every drop, though the lapse's
	// drop is still being delivered.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := a.beat(ctx)
	require.NoError(t, err)
	require.NoError(t, a.fetch(ctx)) // the lapse left nothing trusted: read, as the loop would
	require.True(t, a.Assignment().Holds("solo"))
	p.addGroup("later", registry.Change{Set: set("api_key", "many")})
	b := p.startClient("b") // a is pinned to later, so solo goes to b
	within(t, 5*time.Second, func() bool {
		as, err := p.reg.Assignment(ctx)
		return err == nil && !slices.Contains(as.Nodes["a"], "solo")
	}, "solo revoked from a")
	a.forceFetch() // the loops are paused: read now, whether or not the revoke's event came
	require.NoError(t, a.fetch(ctx))
	require.False(t, a.Assignment().Holds("solo"))
	assert.Contains(t, held(), "solo", "a revoked group is reported until OnChange delivers its drop")
	assert.False(t, b.Assignment().Holds("solo"))

	free()
	a.resume()
	within(t, 5*time.Second, func() bool { return b.Assignment().Holds("solo") && !slices.Contains(held(), "solo") },
		"b gets solo once a's OnChange let go of it")
}

// TestBeatPastLeaseClaimsNoCappedGroup: a beat sent once the lease has run
// out claims no capped group even when the lease watcher has not run yet —
// a SIGSTOPped process wakes with both timers due, and either may go first.
func TestBeatPastLeaseClaimsNoCappedGroup(t *testing.T) {
	p := newPool(t)
	p.addGroup("solo", registry.Change{Set: set("api_key", "only-one"), MaxNodes: ptr(1)})
	a := p.newClient("a")
	var skew atomic.Int64 // a's clock runs ahead by this much
	a.o.now = func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, a.Start(ctx))
	within(t, 5*time.Second, func() bool { return a.Assignment().Holds("solo") }, "a holds solo")

	a.pause()
	skew.Store(int64(time.Minute)) // by a's clock the lease is over; its watcher sleeps on
	_, err := a.beat(ctx)
	require.NoError(t, err)
	nodes, _, err := p.hbTracker().Live(ctx)
	require.NoError(t, err)
	require.Len(t, nodes, 1)
	assert.Empty(t, nodes[0].Held, "a beat past the lease claimed the capped group")
	assert.False(t, a.Assignment().Holds("solo"))
	a.resume()
	within(t, 5*time.Second, func() bool { return a.Assignment().Holds("solo") }, "a gets solo back with its lease")
}
