package allocator

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/allot-io/allot/heartbeat"
	"github.com/allot-io/allot/registry"
)

func withState(g registry.Group, s registry.State) registry.Group {
	g.State = s
	return g
}

func TestGateSuspendedGroupMovesItsHolders(t *testing.T) {
	st := state{
		groups: []registry.Group{withState(active("bad", 0), registry.Suspended), active("good", 0)},
		nodes: []heartbeat.Node{
			{ID: "n1", IP: "10.0.0.1", Held: []string{"bad"}, Ack: 1},
			{ID: "n2", IP: "10.0.0.2", Held: []string{"bad"}, Ack: 1},
			{ID: "n3", IP: "10.0.0.3", Held: []string{"good"}, Ack: 1},
		},
		assign: registry.Assignment{Counters: registry.Counters{Epoch: 1},
			Nodes: map[string][]string{"n1": {"bad"}, "n2": {"bad"}, "n3": {"good"}}},
	}
	next := st.next()
	for _, n := range []string{"n1", "n2", "n3"} {
		assert.Equal(t, []string{"good"}, next.nodes[n], n)
	}
	assert.Empty(t, next.revoked, "an uncapped group is dropped at once")
	s := st.status()
	assert.Equal(t, "suspended", s.Groups[0].State)
	assert.Zero(t, s.Groups[0].Target)
}

func TestGateSuspendedCappedGroupKeepsTheHandoff(t *testing.T) {
	st := state{
		groups: []registry.Group{withState(active("x", 1), registry.Suspended), active("y", 0)},
		nodes:  []heartbeat.Node{{ID: "n1", IP: "10.0.0.1", Held: []string{"x"}, Ack: 1}},
		assign: registry.Assignment{Counters: registry.Counters{Epoch: 1}, Nodes: map[string][]string{"n1": {"x"}}},
	}
	next := st.next()
	assert.Equal(t, []string{"y"}, next.nodes["n1"])
	assert.Equal(t, []string{"x@2"}, next.revoked["n1"], "revoke → release → grant still applies")
}

func TestGateProbingGroupHasExactlyOneHolder(t *testing.T) {
	st := state{
		groups: []registry.Group{withState(active("p", 0), registry.Probing), active("q", 0)},
		nodes: []heartbeat.Node{
			{ID: "n1", IP: "10.0.0.1", Ack: 1}, {ID: "n2", IP: "10.0.0.2", Ack: 1},
			{ID: "n3", IP: "10.0.0.3", Ack: 1}, {ID: "n4", IP: "10.0.0.4", Ack: 1},
		},
		assign: registry.Assignment{Counters: registry.Counters{Epoch: 1},
			Nodes: map[string][]string{"n1": {"q"}, "n2": {"q"}, "n3": {"q"}, "n4": {"q"}}},
	}
	next := st.next()
	holders := 0
	for _, gs := range next.nodes {
		for _, g := range gs {
			if g == "p" {
				holders++
			}
		}
	}
	assert.Equal(t, 1, holders)
	assert.Equal(t, "probing", st.status().Groups[0].State)
}
