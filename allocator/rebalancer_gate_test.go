package allocator

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/heartbeat"
	"github.com/allot-io/allot/registry"
)

func active(name string, maxNodes int) registry.Group {
	return registry.Group{Name: name, State: registry.Active, Weight: 1, MaxNodes: maxNodes}
}

// commit applies next to st the way registry.Commit does.
func commit(st *state, next nextState) {
	if !assignEqual(st.assign.Nodes, next.nodes) || !assignEqual(st.assign.Revoked, next.revoked) {
		st.assign.Epoch++
	}
	st.assign.Nodes, st.assign.Revoked = next.nodes, next.revoked
}

func assignEqual(a, b map[string][]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || !slices.Equal(v, w) {
			return false
		}
	}
	return true
}

func TestGateUncappedMovesAtOnce(t *testing.T) {
	st := state{
		groups: []registry.Group{active("a", 0), active("b", 0)},
		nodes:  []heartbeat.Node{{ID: "n1", IP: "10.0.0.1", Held: []string{"a"}, Ack: 1}, {ID: "n2", IP: "10.0.0.2"}},
		assign: registry.Assignment{Counters: registry.Counters{Epoch: 1}, Nodes: map[string][]string{"n1": {"a"}}},
	}
	next := st.next()
	assert.Equal(t, []string{"a"}, next.nodes["n1"])
	assert.Equal(t, []string{"b"}, next.nodes["n2"])
	assert.Empty(t, next.revoked)
	assert.Zero(t, next.waiting)
}

func TestGateCappedWaitsForRelease(t *testing.T) {
	// n1 holds the exclusive group x but now prefers y; n2 prefers x.
	st := state{
		groups: []registry.Group{active("x", 1), active("y", 0)},
		nodes: []heartbeat.Node{
			{ID: "n1", IP: "10.0.0.1", Preferred: "y", Held: []string{"x"}, Ack: 1},
			{ID: "n2", IP: "10.0.0.2", Preferred: "x", Ack: 1},
		},
		assign: registry.Assignment{Counters: registry.Counters{Epoch: 1}, Nodes: map[string][]string{"n1": {"x"}, "n2": {}}},
	}
	next := st.next()
	assert.Equal(t, []string{"y"}, next.nodes["n1"])
	assert.Empty(t, next.nodes["n2"], "x must not be granted while n1 may still use it")
	assert.Equal(t, []string{"x@2"}, next.revoked["n1"])
	assert.Equal(t, 1, next.waiting)
	commit(&st, next)

	// n1 beats before seeing epoch 2: still holds x, so n2 keeps waiting.
	next = st.next()
	assert.Empty(t, next.nodes["n2"])
	assert.Equal(t, []string{"x@2"}, next.revoked["n1"])

	// n1 acknowledges epoch 2 without x: the release lets n2 take it.
	st.nodes[0].Held, st.nodes[0].Ack = []string{"y"}, 2
	next = st.next()
	assert.Equal(t, []string{"x"}, next.nodes["n2"])
	assert.Empty(t, next.revoked)
	assert.Zero(t, next.waiting)
}

func TestGateDeadHolderReleases(t *testing.T) {
	st := state{
		groups: []registry.Group{active("x", 1)},
		nodes:  []heartbeat.Node{{ID: "n2", IP: "10.0.0.2", Ack: 3}},
		assign: registry.Assignment{
			Counters: registry.Counters{Epoch: 3},
			Nodes:    map[string][]string{"n1": {"x"}, "n2": {}},
			Revoked:  map[string][]string{"n1": {"x@3"}},
		},
	}
	next := st.next()
	assert.Equal(t, []string{"x"}, next.nodes["n2"], "a reaped holder's lease has expired")
	assert.Empty(t, next.revoked)
}

func TestGateDrainFinishesWhenReleased(t *testing.T) {
	draining := registry.Group{Name: "old", State: registry.Draining, Weight: 1}
	st := state{
		groups: []registry.Group{draining, active("new", 0)},
		nodes:  []heartbeat.Node{{ID: "n1", IP: "10.0.0.1", Held: []string{"old"}, Ack: 4}},
		assign: registry.Assignment{Counters: registry.Counters{Epoch: 4}, Nodes: map[string][]string{"n1": {"old"}}},
	}
	next := st.next()
	assert.Equal(t, []string{"new"}, next.nodes["n1"])
	assert.Equal(t, []string{"old@5"}, next.revoked["n1"])
	assert.Empty(t, next.drained, "n1 may still be using old")
	commit(&st, next)

	st.nodes[0].Held, st.nodes[0].Ack = []string{"new"}, 5
	next = st.next()
	assert.Equal(t, []string{"old"}, next.drained)
	assert.Empty(t, next.revoked)
}

// simNode is a node as the simulation sees it: what it uses right now, which
// may lag behind the committed assignment, and what its last beat reported.
type simNode struct {
	id, ip, preferred string
	using             []string // groups the node is using now
	seen              int64    // epoch of the assignment it is using
	held              []string // reported in the last beat
	ack               int64
}

// TestGateCapNeverExceeded runs random histories in which nodes fetch, beat,
// die and join at random points between rebalances, and checks that no capped
// group is ever in use by more nodes than its cap — from the nodes' own view.
func TestGateCapNeverExceeded(t *testing.T) {
	for seed := uint64(0); seed < 300; seed++ {
		rng := rand.New(rand.NewPCG(seed, 7))
		groups := []registry.Group{active("x", 1), active("y", 2), active("z", 0), active("w", 0)}
		var nodes []*simNode
		nextID := 0
		join := func() {
			nextID++
			n := &simNode{id: fmt.Sprintf("n%03d", nextID), ip: fmt.Sprintf("10.0.%d.%d", nextID/200, nextID%200)}
			if rng.IntN(3) == 0 {
				n.preferred = groups[rng.IntN(len(groups))].Name
			}
			nodes = append(nodes, n)
		}
		for range 3 + rng.IntN(6) {
			join()
		}
		st := state{groups: groups, assign: registry.Assignment{Nodes: map[string][]string{}}}
		for step := range 200 {
			switch r := rng.IntN(10); {
			case r < 3: // a node fetches the current assignment and starts using it
				if len(nodes) > 0 {
					n := nodes[rng.IntN(len(nodes))]
					n.using, n.seen = append([]string(nil), st.assign.Nodes[n.id]...), st.assign.Epoch
				}
			case r < 6: // a node beats
				if len(nodes) > 0 {
					n := nodes[rng.IntN(len(nodes))]
					n.held, n.ack = append([]string(nil), n.using...), n.seen
				}
			case r < 7: // a node dies; its lease has expired by the time it is reaped
				if len(nodes) > 1 {
					i := rng.IntN(len(nodes))
					nodes = append(nodes[:i], nodes[i+1:]...)
				}
			case r < 8:
				join()
			case r < 9: // preferences change, forcing moves
				n := nodes[rng.IntN(len(nodes))]
				n.preferred = groups[rng.IntN(len(groups))].Name
			default: // rebalance
				st.nodes = st.nodes[:0]
				for _, n := range nodes {
					st.nodes = append(st.nodes, heartbeat.Node{ID: n.id, IP: n.ip, Preferred: n.preferred, Held: n.held, Ack: n.ack})
				}
				slices.SortFunc(st.nodes, func(a, b heartbeat.Node) int { return strings.Compare(a.ID, b.ID) })
				commit(&st, st.next())
			}
			for _, g := range groups {
				if g.MaxNodes == 0 {
					continue
				}
				var users []string
				for _, n := range nodes {
					if slices.Contains(n.using, g.Name) {
						users = append(users, n.id)
					}
				}
				require.LessOrEqualf(t, len(users), g.MaxNodes, "seed %d step %d: group %s used by %v", seed, step, g.Name, users)
			}
		}
	}
}
