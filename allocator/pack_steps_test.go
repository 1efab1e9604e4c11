package allocator

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The steps of planner.pack (nodes < groups), each on its own; the
// reference and property tests cover them together.

// packed runs pack's steps up to and including the named one.
func packed(groups []Group, nodes []Node, prev Assignment, upTo string) Assignment {
	k := newPlanner(groups, nodes).keepHolders(prev)
	k.placeOrphans()
	if upTo != "placeOrphans" {
		k.fillEmpty()
		if upTo != "fillEmpty" {
			k.balance()
		}
	}
	return k.assignment()
}

func weighted(ws map[string]float64) []Group {
	var gs []Group
	for name, w := range ws {
		gs = append(gs, Group{Name: name, Weight: w})
	}
	return gs
}

func TestPackKeepHolders(t *testing.T) {
	groups := weighted(map[string]float64{"a": 1, "b": 1, "c": 1})
	nodes := []Node{{ID: "n1", IP: "10.0.0.1"}, {ID: "n2", IP: "10.0.0.2"}}
	p := newPlanner(groups, nodes)
	// a has two live holders: the higher score keeps it; b one; c none;
	// gone is not live and x is not a group.
	k := p.keepHolders(Assignment{"n1": {"a", "b"}, "n2": {"a", "x"}, "gone": {"c"}})
	want := int32(0)
	if p.score(1, p.gidx["a"]) > p.score(0, p.gidx["a"]) {
		want = 1
	}
	assert.Equal(t, []int32{want, 0, -1}, k.owner)
	wantLoad := []float64{1, 0}
	wantLoad[want]++
	assert.Equal(t, wantLoad, k.load)
}

func TestPackPlaceOrphans(t *testing.T) {
	groups := weighted(map[string]float64{"big": 5, "mid": 3, "small": 1, "kept": 2})
	nodes := []Node{{ID: "n1", IP: "10.0.0.1"}, {ID: "n2", IP: "10.0.0.2"}}
	// n1 keeps "kept" (load 2); orphans heaviest first to the least loaded:
	// big -> n2 (0), mid -> n1 (2), small -> n1 (5 vs 5: lower index).
	got := packed(groups, nodes, Assignment{"n1": {"kept"}}, "placeOrphans")
	assert.Equal(t, Assignment{"n1": {"kept", "mid", "small"}, "n2": {"big"}}, got)
}

func TestPackFillEmpty(t *testing.T) {
	groups := weighted(map[string]float64{"a": 1, "b": 2, "c": 3, "d": 4})
	nodes := []Node{{ID: "n1", IP: "10.0.0.1"}, {ID: "n2", IP: "10.0.0.2"}, {ID: "n3", IP: "10.0.0.3"}}
	// n1 holds everything; the empty nodes each take n1's lightest group in turn.
	got := packed(groups, nodes, Assignment{"n1": {"a", "b", "c", "d"}}, "fillEmpty")
	assert.Equal(t, Assignment{"n1": {"c", "d"}, "n2": {"a"}, "n3": {"b"}}, got)
}

func TestPackBalance(t *testing.T) {
	groups := weighted(map[string]float64{"a": 1, "b": 1, "c": 1, "d": 1, "e": 1})
	nodes := []Node{{ID: "n1", IP: "10.0.0.1"}, {ID: "n2", IP: "10.0.0.2"}}
	got := packed(groups, nodes, Assignment{"n1": {"a", "b", "c", "d"}, "n2": {"e"}}, "balance")
	require.Len(t, got["n1"], 3, "one group moves: 4+1 becomes 3+2, and no further")
	assert.Len(t, got["n2"], 2)
	assert.Equal(t, "e", got["n2"][len(got["n2"])-1], "n2 keeps its own group")
	assert.True(t, Balanced(groups, nodes, got))
}
