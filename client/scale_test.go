package client

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/allocator"
	"github.com/allot-io/allot/heartbeat"
	"github.com/allot-io/allot/registry"
)

// holdersOf maps each group to the nodes of cs holding it in their own views.
func holdersOf(cs []*Client) map[string][]*Client {
	m := make(map[string][]*Client)
	for _, c := range cs {
		for _, g := range c.Assignment().Groups {
			m[g.Name] = append(m[g.Name], c)
		}
	}
	return m
}

// allHeldBy reports whether every group in names is held by a node of cs.
func allHeldBy(cs []*Client, names []string) bool {
	h := holdersOf(cs)
	for _, n := range names {
		if len(h[n]) == 0 {
			return false
		}
	}
	return true
}

// without returns cs minus the nodes in drop.
func without(cs, drop []*Client) []*Client {
	gone := make(map[*Client]bool, len(drop))
	for _, c := range drop {
		gone[c] = true
	}
	var out []*Client
	for _, c := range cs {
		if !gone[c] {
			out = append(out, c)
		}
	}
	return out
}

// TestScale200 runs 200 nodes in one process over 100 groups (two holders
// each): every node holds a group within two intervals of start and the
// pool is balanced; the nodes holding 10 groups stop beating without
// leaving and those groups reach live nodes within TTL + 1 interval; the
// nodes holding 10 other groups Close and those groups move within 1 s.
func TestScale200(t *testing.T) {
	const nodes, groups = 200, 100
	p := newPool(t)
	names := make([]string, groups)
	var planGroups []allocator.Group
	for i := range names {
		names[i] = fmt.Sprintf("g%03d", i)
		p.addGroup(names[i], registry.Change{Set: set("api_key", "key-"+names[i])})
		planGroups = append(planGroups, allocator.Group{Name: names[i], Weight: 1})
	}

	// Under -race 200 nodes in one process on 2 shared cores cannot keep a
	// 300 ms TTL (late beats get nodes reaped and rejoined): use 250/750 ms.
	hb := fastHB
	if raceEnabled {
		hb = heartbeat.Config{Interval: 250 * time.Millisecond, TTL: 750 * time.Millisecond}
	}
	start := time.Now()
	cs := p.startClients("n", nodes, WithHeartbeat(hb))
	started := time.Now()
	took := within(t, 10*time.Second, func() bool {
		for _, c := range cs {
			if len(c.Assignment().Groups) == 0 {
				return false
			}
		}
		return true
	}, "every node holds a group")
	counters, err := p.reg.Counters(context.Background())
	require.NoError(t, err)
	t.Logf("200 nodes: every Start returned after %v; all holding a group %v later (epoch %d, membership changes %d)",
		started.Sub(start), took, counters.Epoch, counters.MVer)
	assert.LessOrEqual(t, took, bound(2*hb.Interval), "every node holds a group within 2 intervals of start")

	var planNodes []allocator.Node
	for _, c := range cs {
		planNodes = append(planNodes, allocator.Node{ID: c.NodeID(), IP: c.o.ip})
	}
	within(t, 10*time.Second, func() bool {
		view := allocator.Assignment{}
		for _, c := range cs {
			view[c.NodeID()] = c.Assignment().Names()
		}
		return allocator.Balanced(planGroups, planNodes, view)
	}, "balanced, judged from the nodes' own views")

	// Pick every holder of 10 groups to freeze and of 10 others to close.
	h := holdersOf(cs)
	var frozen, leaving []*Client
	for _, g := range names[:10] {
		frozen = append(frozen, h[g]...)
	}
	for _, g := range names[10:20] {
		leaving = append(leaving, h[g]...)
	}
	require.Len(t, frozen, 20)
	require.Len(t, leaving, 20)
	gone := func(ids []*Client) bool {
		a, err := p.reg.Assignment(context.Background())
		if err != nil {
			return false
		}
		for _, c := range ids {
			if _, ok := a.Nodes[c.NodeID()]; ok {
				return false
			}
		}
		return true
	}

	live := without(cs, frozen)
	for _, c := range frozen {
		c.pause()
	}
	took = within(t, 10*time.Second, func() bool { return gone(frozen) && allHeldBy(live, names) },
		"groups of frozen nodes reach live nodes")
	t.Logf("20 nodes frozen: their groups held by live nodes after %v (TTL %v + interval %v)",
		took, hb.TTL, hb.Interval)
	assert.LessOrEqual(t, took, bound(hb.TTL+hb.Interval), "frozen nodes' groups move within TTL + 1 interval")

	live = without(live, leaving)
	var wg sync.WaitGroup
	for _, c := range leaving {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			assert.NoError(t, c.Close(ctx))
		})
	}
	took = within(t, 10*time.Second, func() bool { return gone(leaving) && allHeldBy(live, names) },
		"groups of closed nodes reach live nodes")
	t.Logf("20 nodes closed: their groups held by live nodes after %v", took)
	assert.LessOrEqual(t, took, bound(time.Second), "closed nodes' groups move within 1 s")
	wg.Wait()
}
