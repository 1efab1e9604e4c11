package allocator

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/allot-io/allot/heartbeat"
	"github.com/allot-io/allot/registry"
)

// The unit placement by demand weighs a pool in: the resource the nodes
// ask the largest part of, with the groups' rates as capacities, or calls
// by weight when some group has no limit of the kind.
func TestPlacementOf(t *testing.T) {
	q := func(texts ...string) []registry.Group {
		out := make([]registry.Group, len(texts))
		for i, s := range texts {
			out[i] = registry.Group{Name: string(rune('a' + i)), Quota: s, State: registry.Active, Weight: 1}
		}
		return out
	}
	asking := func(calls, tokens float64) []heartbeat.Node {
		return []heartbeat.Node{{ID: "n1", Demand: &heartbeat.Demand{Calls: calls, Tokens: tokens}}, {ID: "n2"}}
	}
	tests := []struct {
		name   string
		groups []registry.Group
		nodes  []heartbeat.Node
		want   placementUnit
	}{
		{"request limits: calls", q("600/m", "10/s, 1000/d"), asking(5, 0),
			placementUnit{capacity: []float64{10, 1000.0 / 86400}}},
		{"one group without a quota: calls by weight", q("600/m", ""), asking(5, 0), placementUnit{}},
		{"token limits only: tokens", q("60000 tokens/m", "120000 tokens/m"), asking(5, 100),
			placementUnit{tokens: true, capacity: []float64{1000, 2000}}},
		{"both, tokens the tighter", q("600/m, 60000 tokens/m", "600/m, 60000 tokens/m"), asking(1, 1500),
			placementUnit{tokens: true, capacity: []float64{1000, 1000}}},
		{"both, calls the tighter", q("600/m, 60000 tokens/m", "600/m, 60000 tokens/m"), asking(15, 100),
			placementUnit{capacity: []float64{10, 10}}},
		{"no demand reported: calls", q("600/m, 60000 tokens/m"), []heartbeat.Node{{ID: "n1"}},
			placementUnit{capacity: []float64{10}}},
		{"some token limits only: calls by weight", q("60000 tokens/m", "600/m"), asking(1, 1), placementUnit{}},
		{"no groups", nil, asking(1, 1), placementUnit{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := placementOf(tt.groups, tt.nodes)
			assert.Equal(t, tt.want.tokens, got.tokens)
			assert.InDeltaSlice(t, tt.want.capacity, got.capacity, 1e-9)
			assert.Equal(t, tt.want.capacity == nil, got.capacity == nil)
			if len(tt.nodes) > 1 {
				want := tt.nodes[0].Demand.Calls
				if tt.want.tokens {
					want = tt.nodes[0].Demand.Tokens
				}
				assert.Equal(t, want, got.demand(tt.nodes[0]))
				assert.Equal(t, -1.0, got.demand(tt.nodes[1]), "none reported")
			}
		})
	}
}

// planInputs carries the demand and the capacities into Plan's inputs.
func TestPlanInputsCarryDemand(t *testing.T) {
	st := state{
		groups: []registry.Group{
			{Name: "a", Quota: "600/m", State: registry.Active, Weight: 1},
			{Name: "b", Quota: "1200/m", State: registry.Active, Weight: 1},
			{Name: "s", Quota: "60/s", State: registry.Suspended, Weight: 1},
		},
		nodes: []heartbeat.Node{{ID: "n1", Demand: &heartbeat.Demand{Calls: 20}}, {ID: "n2"}},
	}
	groups, nodes := st.planInputs()
	assert.Equal(t, []Group{{Name: "a", Weight: 1, Capacity: 10}, {Name: "b", Weight: 1, Capacity: 20}}, groups,
		"a suspended group's limits play no part")
	assert.Equal(t, []Node{{ID: "n1", Demand: 20}, {ID: "n2", Demand: -1}}, nodes)
}

// Status shows each node's demand and each group's summed demand against
// its quota; a holder of several groups counts an equal part towards each.
func TestStatusDemand(t *testing.T) {
	st := state{
		groups: []registry.Group{
			{Name: "a", Quota: "600/m, 60000 tokens/m", State: registry.Active, Weight: 1},
			{Name: "b", State: registry.Active, Weight: 1},
			{Name: "c", Quota: "10/s", State: registry.Active, Weight: 1},
		},
		nodes: []heartbeat.Node{
			{ID: "n1", Demand: &heartbeat.Demand{Calls: 12, Tokens: 600}},
			{ID: "n2", Demand: &heartbeat.Demand{Calls: 3, Tokens: 300}},
			{ID: "n3"},
		},
		assign: registry.Assignment{Nodes: map[string][]string{"n1": {"a"}, "n2": {"a", "b"}, "n3": {"c"}}},
	}
	s := st.status()
	assert.Equal(t, &heartbeat.Demand{Calls: 12, Tokens: 600}, s.Nodes[0].Demand)
	assert.Nil(t, s.Nodes[2].Demand, "none reported")
	assert.Equal(t, heartbeat.Demand{Calls: 13.5, Tokens: 750}, s.Groups[0].Demand)
	assert.InDelta(t, 1.35, s.Groups[0].Wanted, 1e-9, "13.5 calls/s of 10/s; 750 tokens/s of 1000/s")
	assert.Equal(t, heartbeat.Demand{Calls: 1.5, Tokens: 150}, s.Groups[1].Demand)
	assert.Zero(t, s.Groups[1].Wanted, "no quota")
	assert.Equal(t, heartbeat.Demand{}, s.Groups[2].Demand)
}
