package allocator_test

import (
	"cmp"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/cespare/xxhash/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/allocator"
)

// nodesN returns nodes n0..n(count-1) with distinct IPs.
func nodesN(count int) []allocator.Node {
	out := make([]allocator.Node, count)
	for i := range out {
		out[i] = allocator.Node{ID: fmt.Sprintf("n%d", i), IP: fmt.Sprintf("10.0.0.%d", i)}
	}
	return out
}

// byScore returns the IDs of nodes ordered best first for group g.
func byScore(nodes []allocator.Node, g string) []string {
	ns := slices.Clone(nodes)
	slices.SortFunc(ns, func(a, b allocator.Node) int {
		if higher(a, b, g) {
			return -1
		}
		return 1
	})
	ids := make([]string, len(ns))
	for i, n := range ns {
		ids[i] = n.ID
	}
	return ids
}

// bestGroup returns the group of gs n scores highest for (ties: name).
func bestGroup(n allocator.Node, gs ...string) string {
	best := ""
	for _, g := range gs {
		if best == "" || score(n.IP, g) > score(n.IP, best) || (score(n.IP, g) == score(n.IP, best) && g < best) {
			best = g
		}
	}
	return best
}

func TestTargets(t *testing.T) {
	tests := []struct {
		name   string
		groups []allocator.Group
		nodes  []allocator.Node
		want   map[string]int
	}{
		{
			name:   "no nodes",
			groups: []allocator.Group{{Name: "a"}, {Name: "b"}},
			want:   map[string]int{"a": 0, "b": 0},
		},
		{
			name:   "no groups",
			groups: nil,
			nodes:  nodesN(3),
			want:   map[string]int{},
		},
		{
			name:   "fewer nodes than groups: one each",
			groups: []allocator.Group{{Name: "a", Weight: 5}, {Name: "b", MaxNodes: 3}, {Name: "c"}},
			nodes:  nodesN(2),
			want:   map[string]int{"a": 1, "b": 1, "c": 1},
		},
		{
			name:   "largest weight/(count+1), ties by name",
			groups: []allocator.Group{{Name: "b", Weight: 3}, {Name: "a", Weight: 1}},
			nodes:  nodesN(8),
			// a=1 b=1, then b (1.5), b (1), b (.75), b (.6), a (.5 ties b .5, name), b (.5).
			want: map[string]int{"a": 2, "b": 6},
		},
		{
			name:   "pins starve empty groups, which are served heaviest first",
			groups: []allocator.Group{{Name: "a"}, {Name: "b", Weight: 1}, {Name: "c", Weight: 5}},
			nodes:  []allocator.Node{{ID: "n1", Preferred: "a"}, {ID: "n2", Preferred: "a"}, {ID: "n3"}},
			want:   map[string]int{"a": 2, "b": 0, "c": 1},
		},
		{
			name:   "empty groups ties by name",
			groups: []allocator.Group{{Name: "c"}, {Name: "b"}, {Name: "a"}},
			nodes:  []allocator.Node{{ID: "n1", Preferred: "c"}, {ID: "n2", Preferred: "c"}, {ID: "n3"}},
			want:   map[string]int{"a": 1, "b": 0, "c": 2},
		},
		{
			name:   "pin only while the preferred group has room",
			groups: []allocator.Group{{Name: "a", MaxNodes: 1}, {Name: "b"}},
			nodes:  []allocator.Node{{ID: "n1", Preferred: "a"}, {ID: "n2", Preferred: "a"}, {ID: "n3", Preferred: "x"}},
			want:   map[string]int{"a": 1, "b": 2},
		},
		{
			name:   "caps then standby",
			groups: []allocator.Group{{Name: "a", MaxNodes: 1, Weight: 9}, {Name: "b", MaxNodes: 2}},
			nodes:  nodesN(5),
			want:   map[string]int{"a": 1, "b": 2},
		},
		{
			name:   "weight <= 0, NaN and Inf mean 1",
			groups: []allocator.Group{{Name: "a", Weight: -1}, {Name: "b", Weight: math.NaN()}, {Name: "c", Weight: math.Inf(1)}, {Name: "d", Weight: 1}},
			nodes:  nodesN(8),
			want:   map[string]int{"a": 2, "b": 2, "c": 2, "d": 2},
		},
		{
			name:   "duplicate groups: first by sort order (name, weight, max nodes) wins",
			groups: []allocator.Group{{Name: "a", Weight: 5}, {Name: "a", Weight: 1, MaxNodes: 1}, {Name: "b"}, {Name: ""}},
			nodes:  nodesN(4),
			want:   map[string]int{"a": 1, "b": 3},
		},
		{
			name:   "duplicate and empty node IDs count once",
			groups: []allocator.Group{{Name: "a"}, {Name: "b"}},
			nodes:  []allocator.Node{{ID: "n1"}, {ID: "n1", IP: "x"}, {ID: "n2"}, {ID: ""}},
			want:   map[string]int{"a": 1, "b": 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, allocator.Targets(tt.groups, tt.nodes))
		})
	}
}

func TestPlanSpread(t *testing.T) {
	n := nodesN(6)

	t.Run("empty inputs give an empty plan", func(t *testing.T) {
		assert.Equal(t, allocator.Assignment{}, allocator.Plan(nil, n, nil))
		assert.Equal(t, allocator.Assignment{}, allocator.Plan([]allocator.Group{{Name: "a"}}, nil, allocator.Assignment{"n0": {"a"}}))
	})

	t.Run("fresh node takes its highest scoring group", func(t *testing.T) {
		groups := []allocator.Group{{Name: "a"}, {Name: "b"}, {Name: "c"}}
		got := allocator.Plan(groups, n[:1], nil)
		// One node, three groups: nodes < groups, it holds them all.
		assert.Equal(t, allocator.Assignment{"n0": {"a", "b", "c"}}, got)

		prev := allocator.Assignment{"n0": {"a"}, "n1": {"b"}}
		got = allocator.Plan(groups, n[:3], prev)
		assert.Equal(t, allocator.Assignment{"n0": {"a"}, "n1": {"b"}, "n2": {"c"}}, got)
	})

	t.Run("a preference never takes a capped group from its live holder", func(t *testing.T) {
		groups := []allocator.Group{{Name: "a", MaxNodes: 1}, {Name: "b", MaxNodes: 1}}
		nodes := []allocator.Node{{ID: "n0", IP: "1"}, {ID: "n1", IP: "2", Preferred: "a"}}
		prev := allocator.Assignment{"n0": {"a"}, "n1": {"b"}}
		assert.Equal(t, prev, allocator.Plan(groups, nodes, prev))
		// Once the holder is gone the preferrer takes the room it left.
		got := allocator.Plan(groups, []allocator.Node{nodes[1], {ID: "n2", IP: "3"}}, prev)
		assert.Equal(t, []string{"a"}, got["n1"])
	})

	t.Run("a preference for a capped group uses only room its holders leave", func(t *testing.T) {
		groups := []allocator.Group{{Name: "a", MaxNodes: 2}, {Name: "b", Weight: 5}, {Name: "c", Weight: 5}}
		require.Equal(t, 1, allocator.Targets(groups, nodesN(6))["a"], "balance alone gives a one node")
		nodes := []allocator.Node{{ID: "n0", IP: "1"}, {ID: "n1", IP: "2"}, {ID: "n2", IP: "3", Preferred: "a"}, {ID: "n3", IP: "4", Preferred: "a"}, {ID: "n4", IP: "5"}, {ID: "n5", IP: "6"}}
		// One holder: one preferrer (the lower ID) gets the second place.
		prev := allocator.Assignment{"n0": {"a"}, "n1": {"b"}, "n2": {"b"}, "n3": {"c"}, "n4": {"c"}, "n5": {"c"}}
		got := allocator.Plan(groups, nodes, prev)
		assert.Equal(t, []string{"a"}, got["n0"], "the holder keeps it")
		assert.Equal(t, []string{"a"}, got["n2"], "the preferrer takes the room")
		assert.NotEqual(t, []string{"a"}, got["n3"], "no room is left")
		assert.Equal(t, got, allocator.Plan(groups, nodes, got), "the plan of a plan")
		// Two holders: the group is full and both stay (the preference keeps
		// them pinned, though balance alone gives a one node); no preferrer
		// gets in.
		prev = allocator.Assignment{"n0": {"a"}, "n1": {"a"}, "n2": {"b"}, "n3": {"c"}, "n4": {"c"}, "n5": {"b"}}
		got = allocator.Plan(groups, nodes, prev)
		assert.Equal(t, []string{"a"}, got["n0"])
		assert.Equal(t, []string{"a"}, got["n1"])
		assert.NotEqual(t, []string{"a"}, got["n2"])
		assert.NotEqual(t, []string{"a"}, got["n3"])
		assert.Equal(t, got, allocator.Plan(groups, nodes, got), "the plan of a plan")
	})

	t.Run("an uncapped preferred group pins as before, beside its holders", func(t *testing.T) {
		groups := []allocator.Group{{Name: "a"}, {Name: "b"}}
		nodes := []allocator.Node{{ID: "n0", IP: "1"}, {ID: "n1", IP: "2", Preferred: "a"}}
		got := allocator.Plan(groups, nodes, allocator.Assignment{"n0": {"a"}, "n1": {"b"}})
		assert.Equal(t, allocator.Assignment{"n0": {"b"}, "n1": {"a"}}, got)
	})

	t.Run("surplus holders with the lowest scores are released to the group with room", func(t *testing.T) {
		groups := []allocator.Group{{Name: "a"}, {Name: "b"}}
		prev := allocator.Assignment{"n0": {"a"}, "n1": {"a"}, "n2": {"a"}, "n3": {"a"}}
		got := allocator.Plan(groups, n[:4], prev)
		order := byScore(n[:4], "a")
		want := allocator.Assignment{order[0]: {"a"}, order[1]: {"a"}, order[2]: {"b"}, order[3]: {"b"}}
		assert.Equal(t, want, got)
		assert.Equal(t, 2, allocator.Moved(prev, got))
	})

	t.Run("a dead node's group is refilled by the released surplus only", func(t *testing.T) {
		groups := []allocator.Group{{Name: "a"}, {Name: "b"}, {Name: "c"}}
		prev := allocator.Plan(groups, n, nil)
		require.Len(t, prev, 6)
		// Drop a node of a group that keeps its target: nothing else moves.
		var dead string
		for id, gs := range prev {
			if gs[0] == "a" {
				dead = id
			}
		}
		live := slices.DeleteFunc(slices.Clone(n), func(x allocator.Node) bool { return x.ID == dead })
		got := allocator.Plan(groups, live, prev)
		// 5 nodes over 3 equal groups: a=2 b=2 c=1, so one b or c node... or none moves.
		targets := allocator.Targets(groups, live)
		assert.Equal(t, map[string]int{"a": 2, "b": 2, "c": 1}, targets)
		moved := allocator.Moved(prev, got)
		assert.LessOrEqual(t, moved, 2, "the dead node and at most one released node")
		assert.True(t, allocator.Balanced(groups, live, got))
	})

	t.Run("new nodes in ID order take the highest scoring group with room", func(t *testing.T) {
		groups := []allocator.Group{{Name: "a"}, {Name: "b"}, {Name: "c"}}
		prev := allocator.Assignment{"n0": {"a"}}
		got := allocator.Plan(groups, n[:3], prev)
		first := bestGroup(n[1], "b", "c")
		second := "b"
		if first == "b" {
			second = "c"
		}
		assert.Equal(t, allocator.Assignment{"n0": {"a"}, "n1": {first}, "n2": {second}}, got)
	})

	t.Run("node holding several groups is kept by the first group by name", func(t *testing.T) {
		groups := []allocator.Group{{Name: "a"}, {Name: "b"}}
		prev := allocator.Assignment{"n0": {"b", "a"}}
		got := allocator.Plan(groups, n[:2], prev)
		assert.Equal(t, allocator.Assignment{"n0": {"a"}, "n1": {"b"}}, got)
	})

	t.Run("unknown nodes and groups in prev are ignored", func(t *testing.T) {
		groups := []allocator.Group{{Name: "a"}, {Name: "b"}}
		prev := allocator.Assignment{"gone": {"a"}, "n0": {"zz", "b"}, "n1": {"a", "a"}}
		got := allocator.Plan(groups, n[:2], prev)
		assert.Equal(t, allocator.Assignment{"n0": {"b"}, "n1": {"a"}}, got)
	})

	t.Run("capped groups leave standby nodes, latest IDs first", func(t *testing.T) {
		groups := []allocator.Group{{Name: "a", MaxNodes: 1}, {Name: "b", MaxNodes: 1}}
		got := allocator.Plan(groups, n[:4], nil)
		assert.Len(t, got, 2)
		assert.Contains(t, got, "n0")
		assert.Contains(t, got, "n1")
		// A standby node does not displace a holder.
		again := allocator.Plan(groups, append([]allocator.Node{{ID: "m", IP: "9"}}, n[:4]...), got)
		assert.Equal(t, got, again)
	})

	t.Run("lowering a cap releases the lowest scores to standby", func(t *testing.T) {
		groups := []allocator.Group{{Name: "a"}}
		prev := allocator.Plan(groups, n[:4], nil)
		got := allocator.Plan([]allocator.Group{{Name: "a", MaxNodes: 2}}, n[:4], prev)
		order := byScore(n[:4], "a")
		assert.Equal(t, allocator.Assignment{order[0]: {"a"}, order[1]: {"a"}}, got)
	})

	t.Run("equal IPs tie by node ID", func(t *testing.T) {
		groups := []allocator.Group{{Name: "a", MaxNodes: 1}}
		nodes := []allocator.Node{{ID: "y", IP: "same"}, {ID: "x", IP: "same"}}
		prev := allocator.Assignment{"x": {"a"}, "y": {"a"}}
		assert.Equal(t, allocator.Assignment{"x": {"a"}}, allocator.Plan(groups, nodes, prev))
	})
}

func TestPlanPack(t *testing.T) {
	n := nodesN(4)

	t.Run("groups stay on their live holder", func(t *testing.T) {
		groups := []allocator.Group{{Name: "a"}, {Name: "b"}, {Name: "c"}, {Name: "d"}}
		prev := allocator.Assignment{"n0": {"a", "d"}, "n1": {"b", "c"}}
		assert.Equal(t, prev, allocator.Plan(groups, n[:2], prev))
	})

	t.Run("several holders: the highest score keeps it", func(t *testing.T) {
		groups := []allocator.Group{{Name: "a"}, {Name: "b"}, {Name: "c"}}
		prev := allocator.Assignment{"n0": {"a", "b"}, "n1": {"a", "c"}}
		got := allocator.Plan(groups, n[:2], prev)
		if byScore(n[:2], "a")[0] == "n0" {
			// n0 holds a, b (2), n1 holds c (1): balanced.
			assert.Equal(t, allocator.Assignment{"n0": {"a", "b"}, "n1": {"c"}}, got)
		} else {
			assert.Equal(t, allocator.Assignment{"n0": {"b"}, "n1": {"a", "c"}}, got)
		}
	})

	t.Run("orphans heaviest first to the least loaded node", func(t *testing.T) {
		groups := []allocator.Group{{Name: "a", Weight: 3}, {Name: "b", Weight: 1}, {Name: "c", Weight: 2}, {Name: "d", Weight: 2}, {Name: "e", Weight: 1}}
		prev := allocator.Assignment{"n0": {"a"}, "n1": {"c"}, "dead": {"b", "d", "e"}}
		got := allocator.Plan(groups, n[:2], prev)
		// Loads 3 / 2. d (2) -> n1 (4); b (1, name before e) -> n0 (4); e -> n0 (tie, ID) = 5 / 4.
		assert.Equal(t, allocator.Assignment{"n0": {"a", "b", "e"}, "n1": {"c", "d"}}, got)
	})

	t.Run("empty node takes the lightest group of the node holding the most", func(t *testing.T) {
		groups := []allocator.Group{{Name: "a", Weight: 1}, {Name: "b", Weight: 1}, {Name: "c", Weight: 2}, {Name: "d", Weight: 5}}
		prev := allocator.Assignment{"n0": {"a", "b", "c"}, "n1": {"d"}}
		got := allocator.Plan(groups, n[:3], prev)
		// n2 takes a from n0 (most groups); loads 3 / 5 / 1; d alone cannot move.
		assert.Equal(t, allocator.Assignment{"n0": {"b", "c"}, "n1": {"d"}, "n2": {"a"}}, got)
	})

	t.Run("balance moves the heaviest improving group", func(t *testing.T) {
		groups := []allocator.Group{{Name: "a", Weight: 1}, {Name: "b", Weight: 2}, {Name: "c", Weight: 3}, {Name: "d", Weight: 4}, {Name: "e", Weight: 1}}
		prev := allocator.Assignment{"n0": {"a", "b", "c", "d"}, "n1": {"e"}}
		got := allocator.Plan(groups, n[:2], prev)
		// 10 / 1: d (4 < 9) moves: 6 / 5, balanced.
		assert.Equal(t, allocator.Assignment{"n0": {"a", "b", "c"}, "n1": {"d", "e"}}, got)
		assert.True(t, allocator.Balanced(groups, n[:2], got))
	})

	t.Run("equal weights: counts differ by at most one", func(t *testing.T) {
		var groups []allocator.Group
		for i := range 10 {
			groups = append(groups, allocator.Group{Name: fmt.Sprintf("g%d", i)})
		}
		got := allocator.Plan(groups, n[:3], allocator.Assignment{"n0": {"g0", "g1", "g2", "g3", "g4", "g5", "g6", "g7", "g8", "g9"}})
		var counts []int
		for _, id := range []string{"n0", "n1", "n2"} {
			counts = append(counts, len(got[id]))
		}
		assert.Equal(t, []int{4, 3, 3}, counts)
	})

	t.Run("preferred and max nodes play no part", func(t *testing.T) {
		groups := []allocator.Group{{Name: "a", MaxNodes: 1}, {Name: "b", MaxNodes: 1}, {Name: "c"}}
		nodes := []allocator.Node{{ID: "n0", IP: "1", Preferred: "c"}, {ID: "n1", IP: "2", Preferred: "c"}}
		prev := allocator.Assignment{"n0": {"a", "b"}, "n1": {"c"}}
		assert.Equal(t, prev, allocator.Plan(groups, nodes, prev))
	})
}

func TestBalanced(t *testing.T) {
	groups := []allocator.Group{{Name: "a", Weight: 3}, {Name: "b"}}
	n := nodesN(3)
	tests := []struct {
		name  string
		nodes []allocator.Node
		a     allocator.Assignment
		want  bool
	}{
		{"empty pool", nil, nil, true},
		{"targets met", n, allocator.Assignment{"n0": {"a"}, "n1": {"a"}, "n2": {"b"}}, true},
		{"targets missed", n, allocator.Assignment{"n0": {"a"}, "n1": {"b"}, "n2": {"b"}}, false},
		{"node with two groups", n[:2], allocator.Assignment{"n0": {"a", "b"}, "n1": {"a"}}, false},
		{"unknown entries ignored", n[:2], allocator.Assignment{"n0": {"a", "x"}, "n1": {"b"}, "gone": {"a"}}, true},
		{"one node holds all", n[:1], allocator.Assignment{"n0": {"a", "b"}}, true},
		{"group unheld", n[:1], allocator.Assignment{"n0": {"a"}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, allocator.Balanced(groups, tt.nodes, tt.a))
		})
	}

	four := []allocator.Group{{Name: "a", Weight: 1}, {Name: "b", Weight: 1}, {Name: "c", Weight: 2}, {Name: "d", Weight: 4}}
	assert.True(t, allocator.Balanced(four, n[:2], allocator.Assignment{"n0": {"a", "b", "c"}, "n1": {"d"}}))
	assert.False(t, allocator.Balanced(four, n[:2], allocator.Assignment{"n0": {"a", "b", "d"}, "n1": {"c"}}), "6 vs 2: a (1) < 4 could move")
	assert.False(t, allocator.Balanced(four, n[:3], allocator.Assignment{"n0": {"a", "b", "c", "d"}}), "empty node")
	assert.False(t, allocator.Balanced(four, n[:3], allocator.Assignment{"n0": {"a", "c"}, "n1": {"b", "c"}, "n2": {"d"}}), "c held twice")
	// Tie for the highest load: the second node's light group makes it unbalanced.
	five := append(slices.Clone(four), allocator.Group{Name: "e", Weight: 2})
	assert.False(t, allocator.Balanced(five, n[:3], allocator.Assignment{"n0": {"d"}, "n1": {"a", "b", "c"}, "n2": {"e"}}))
}

func TestShares(t *testing.T) {
	a := allocator.Assignment{"n0": {"a"}, "n1": {"a"}, "n2": {"b", "c"}, "n3": {}, "n4": {"a", "a"}}
	want := map[string]map[string]float64{
		"n0": {"a": 1.0 / 3},
		"n1": {"a": 1.0 / 3},
		"n2": {"b": 1, "c": 1},
		"n4": {"a": 1.0 / 3},
	}
	assert.Equal(t, want, allocator.Shares(a))
	assert.Empty(t, allocator.Shares(nil))
}

func TestMoved(t *testing.T) {
	prev := allocator.Assignment{"n0": {"a"}, "n1": {"b"}, "n2": {"a", "c"}, "n3": {"c"}}
	next := allocator.Assignment{"n0": {"a"}, "n1": {"c"}, "n2": {"c", "a"}, "n4": {"b"}, "n5": {}}
	// n1 changed, n3 left, n4 joined; n2 only reordered, n5 holds nothing.
	assert.Equal(t, 3, allocator.Moved(prev, next))
	assert.Equal(t, 0, allocator.Moved(prev, prev))
	assert.Equal(t, 4, allocator.Moved(nil, prev))
}

// TestPlanMatchesReference checks Plan against a direct, slow transcription
// of docs/design.md's rules on pools small enough (<= 16 groups with room) for the
// placement rule to be the exact one.
func TestPlanMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	g := gen{r}
	for i := range 10000 {
		groups := g.groups(r.IntN(14))
		nodes := g.nodes(r.IntN(22))
		prev := g.prev(groups, nodes)
		want := referencePlan(groups, nodes, prev)
		got := allocator.Plan(groups, nodes, prev)
		require.Equal(t, want, got, "scenario %d: groups %+v nodes %+v prev %v", i, groups, nodes, prev)
	}
}

// TestTargetsMatchesReference covers many free nodes per group, where
// Targets grants the largest claims in bulk before the one-by-one steps.
func TestTargetsMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	g := gen{r}
	for i := range 150 {
		groups := make([]allocator.Group, 1+r.IntN(40))
		for k := range groups {
			groups[k] = allocator.Group{Name: fmt.Sprintf("g%02d", k), Weight: g.weight(), MaxNodes: g.maxNodes() * r.IntN(50)}
			if r.IntN(4) == 0 {
				groups[k].Weight = 1 + r.Float64()*100
			}
		}
		nodes := nodesN(len(groups) + r.IntN(1500))
		for k := range nodes {
			if r.IntN(10) == 0 {
				nodes[k].Preferred = fmt.Sprintf("g%02d", r.IntN(len(groups)))
			}
		}
		want := referenceTargets(newView(groups, nodes), nil)
		got := allocator.Targets(groups, nodes)
		for name, c := range got {
			require.Equal(t, want[name], c, "case %d group %s: groups %+v", i, name, groups)
		}
	}
}

// TestPlanMatchesReferenceLarge covers pools where more than 16 groups have
// room, so Plan compares a window of candidates on the group ring.
func TestPlanMatchesReferenceLarge(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	g := gen{r}
	for i := range 60 {
		nG := 17 + r.IntN(80)
		groups := make([]allocator.Group, nG)
		for k := range groups {
			groups[k] = allocator.Group{Name: fmt.Sprintf("grp-%03d", k), Weight: g.weight(), MaxNodes: g.maxNodes()}
		}
		nodes := make([]allocator.Node, nG+r.IntN(3*nG))
		for k := range nodes {
			nodes[k] = allocator.Node{ID: fmt.Sprintf("node-%04d", k), IP: fmt.Sprintf("10.1.%d.%d", r.IntN(4), r.IntN(256))}
		}
		var prev allocator.Assignment
		if i%2 == 1 {
			prev = allocator.Plan(groups[:nG/2], nodes[:len(nodes)/3], nil)
		}
		want := referencePlan(groups, nodes, prev)
		got := allocator.Plan(groups, nodes, prev)
		require.Equal(t, want, got, "scenario %d", i)
		checkPlan(t, groups, nodes, prev, got)
	}
}

// referenceTargets is steps 1-3 of the targets, one node at a time: the
// largest claim, ties to a group prev gives more live nodes than it has so
// far, then name.
func referenceTargets(v view, prev allocator.Assignment) map[string]int {
	cur := map[string]int{}
	for _, n := range v.nodes {
		for _, g := range prev[n.ID] {
			cur[g]++
		}
	}
	capOf := func(g allocator.Group) int {
		if g.MaxNodes > 0 {
			return g.MaxNodes
		}
		return math.MaxInt
	}
	pinned := v.pinned(prev)
	count := map[string]int{}
	for _, g := range pinned {
		count[g]++
	}
	free := len(v.nodes) - len(pinned)
	empty := slices.Clone(v.groups)
	slices.SortStableFunc(empty, func(a, b allocator.Group) int { return cmp.Compare(b.Weight, a.Weight) })
	for _, g := range empty {
		if free > 0 && count[g.Name] == 0 {
			count[g.Name] = 1
			free--
		}
	}
	for ; free > 0; free-- {
		best := -1
		held := func(g allocator.Group) bool { return cur[g.Name] > count[g.Name] }
		for k, g := range v.groups {
			if count[g.Name] >= capOf(g) {
				continue
			}
			if best < 0 {
				best = k
				continue
			}
			b := v.groups[best]
			claim, bestClaim := g.Weight/float64(count[g.Name]+1), b.Weight/float64(count[b.Name]+1)
			if claim > bestClaim || (claim == bestClaim && held(g) && !held(b)) {
				best = k
			}
		}
		if best < 0 {
			break
		}
		count[v.groups[best].Name]++
	}

	return count
}

// referencePlan is docs/design.md "Allocation" written out the slow, obvious way.
func referencePlan(groups []allocator.Group, nodes []allocator.Node, prev allocator.Assignment) allocator.Assignment {
	v := newView(groups, nodes)
	out := allocator.Assignment{}
	if len(v.groups) == 0 || len(v.nodes) == 0 {
		return out
	}
	if len(v.nodes) < len(v.groups) {
		return referencePack(v, prev)
	}

	pinned := v.pinned(prev)
	count := referenceTargets(v, prev)

	// Keep, release, place.
	kept := map[string]int{}
	for id, g := range pinned {
		out[id] = []string{g}
		kept[g]++
	}
	for _, g := range v.groups {
		var holders []allocator.Node
		for _, n := range v.nodes {
			if _, taken := out[n.ID]; !taken && slices.Contains(prev[n.ID], g.Name) {
				holders = append(holders, n)
			}
		}
		slices.SortFunc(holders, func(a, b allocator.Node) int {
			if higher(a, b, g.Name) {
				return -1
			}
			return 1
		})
		for _, n := range holders {
			if kept[g.Name] < count[g.Name] {
				out[n.ID] = []string{g.Name}
				kept[g.Name]++
			}
		}
	}
	for _, n := range v.nodes {
		if _, taken := out[n.ID]; taken {
			continue
		}
		var room []string
		for _, g := range v.groups {
			if kept[g.Name] < count[g.Name] {
				room = append(room, g.Name)
			}
		}
		if len(room) == 0 {
			break
		}
		g := bestGroup(n, ringWindow(n, room)...)
		out[n.ID] = []string{g}
		kept[g]++
	}
	return out
}

// ringWindow restates Plan's candidate rule: with more than 16 groups with
// room, the first 16 on the ring ordered by xxhash64(name) from the node's
// position xxhash64(IP).
func ringWindow(n allocator.Node, room []string) []string {
	const window = 16
	if len(room) <= window {
		return room
	}
	ring := slices.Clone(room)
	slices.SortFunc(ring, func(a, b string) int {
		return cmp.Or(cmp.Compare(xxhash.Sum64String(a), xxhash.Sum64String(b)), cmp.Compare(a, b))
	})
	start := 0
	for start < len(ring) && xxhash.Sum64String(ring[start]) < xxhash.Sum64String(n.IP) {
		start++
	}
	var out []string
	for k := range window {
		out = append(out, ring[(start+k)%len(ring)])
	}
	return out
}

func referencePack(v view, prev allocator.Assignment) allocator.Assignment {
	owner := map[string]string{} // group -> node
	load := map[string]float64{}
	for _, g := range v.groups {
		for _, n := range v.nodes {
			if slices.Contains(prev[n.ID], g.Name) && (owner[g.Name] == "" || higher(n, v.byID[owner[g.Name]], g.Name)) {
				owner[g.Name] = n.ID
			}
		}
		if owner[g.Name] != "" {
			load[owner[g.Name]] += g.Weight
		}
	}
	least := func() string {
		best := ""
		for _, n := range v.nodes {
			if best == "" || load[n.ID] < load[best] {
				best = n.ID
			}
		}
		return best
	}
	orphans := slices.Clone(v.groups)
	slices.SortStableFunc(orphans, func(a, b allocator.Group) int { return cmp.Compare(b.Weight, a.Weight) })
	for _, g := range orphans {
		if owner[g.Name] == "" {
			n := least()
			owner[g.Name] = n
			load[n] += g.Weight
		}
	}
	held := func(id string) []allocator.Group {
		var out []allocator.Group
		for _, g := range v.groups {
			if owner[g.Name] == id {
				out = append(out, g)
			}
		}
		return out
	}
	for _, e := range v.nodes {
		if len(held(e.ID)) > 0 {
			continue
		}
		donor := ""
		for _, n := range v.nodes {
			if donor == "" || len(held(n.ID)) > len(held(donor)) || (len(held(n.ID)) == len(held(donor)) && load[n.ID] > load[donor]) {
				donor = n.ID
			}
		}
		gs := held(donor)
		light := gs[0]
		for _, g := range gs {
			if g.Weight < light.Weight {
				light = g
			}
		}
		owner[light.Name] = e.ID
		load[donor] -= light.Weight
		load[e.ID] += light.Weight
	}
	for range 16 * (len(v.groups) + len(v.nodes)) {
		hi := ""
		for _, n := range v.nodes {
			if hi == "" || load[n.ID] > load[hi] {
				hi = n.ID
			}
		}
		lo := least()
		eps := 1e-9 * load[hi]
		threshold := load[hi] - load[lo] - eps
		if threshold <= 0 {
			break
		}
		heaviest := func(id string) (allocator.Group, bool) {
			var best allocator.Group
			found := false
			for _, g := range held(id) {
				if g.Weight < threshold && (!found || g.Weight >= best.Weight) {
					best, found = g, true
				}
			}
			return best, found
		}
		src := hi
		g, ok := heaviest(hi)
		if !ok {
			for _, n := range v.nodes {
				if n.ID != hi && load[n.ID] >= load[hi]-eps {
					if g, ok = heaviest(n.ID); ok {
						src = n.ID
						break
					}
				}
			}
		}
		if !ok {
			break
		}
		owner[g.Name] = lo
		load[src] -= g.Weight
		load[lo] += g.Weight
	}
	out := allocator.Assignment{}
	for _, g := range v.groups {
		out[owner[g.Name]] = append(out[owner[g.Name]], g.Name)
	}
	return out
}

// TestLeaveMovesOnlyWhatItMust: when a node leaves a pool of equal groups,
// nobody else moves if the pool is still balanced without it, and exactly
// one node moves (into the group it left) if not — whichever group it left.
// (Ties between equal claims go to the counts the pool already has, not to
// the group name, which used to move a node on most leaves.)
func TestLeaveMovesOnlyWhatItMust(t *testing.T) {
	groups := make([]allocator.Group, 20)
	for k := range groups {
		groups[k] = allocator.Group{Name: fmt.Sprintf("g%02d", k)}
	}
	nodes := nodesN(400)
	prev := allocator.Plan(groups, nodes, nil)
	r := rand.New(rand.NewPCG(3, 4))
	for range 100 {
		i := r.IntN(len(nodes))
		gone := nodes[i].ID
		live := slices.Delete(slices.Clone(nodes), i, i+1)
		stayed := maps.Clone(prev)
		delete(stayed, gone)
		counts := map[string]int{}
		for _, gs := range stayed {
			counts[gs[0]]++
		}
		lo, hi := len(live), 0
		for _, g := range groups {
			lo, hi = min(lo, counts[g.Name]), max(hi, counts[g.Name])
		}
		want := 0
		if hi-lo > 1 {
			want = 1
		}
		next := allocator.Plan(groups, live, prev)
		require.True(t, allocator.Balanced(groups, live, next))
		require.Equal(t, want, allocator.Moved(stayed, next), "%s left %v (counts %d..%d)", gone, prev[gone], lo, hi)
		nodes, prev = live, next
	}
}
