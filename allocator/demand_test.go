package allocator_test

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/allocator"
)

// issuePool is issue 23's pool: 6 keys of 10 calls/s, 12 nodes, the first
// two asking 20 calls/s and the others 1.5.
func issuePool() ([]allocator.Group, []allocator.Node) {
	groups := make([]allocator.Group, 6)
	for i := range groups {
		groups[i] = allocator.Group{Name: fmt.Sprintf("key%d", i), Capacity: 10}
	}
	nodes := nodesN(12)
	for i := range nodes {
		nodes[i].Demand = 1.5
	}
	nodes[0].Demand, nodes[1].Demand = 20, 20
	return groups, nodes
}

// hotSet restates the documented hot rule: demand above HotFactor times the
// mean of the nodes that report one (finite, >= 0).
func hotSet(nodes []allocator.Node) map[string]bool {
	sum, n := 0.0, 0
	for _, nd := range nodes {
		if d := nd.Demand; !math.IsNaN(d) && !math.IsInf(d, 0) && d >= 0 {
			sum += d
			n++
		}
	}
	hot := map[string]bool{}
	if n == 0 || sum <= 0 {
		return hot
	}
	for _, nd := range nodes {
		if nd.Demand > allocator.HotFactor*sum/float64(n) && !math.IsInf(nd.Demand, 0) {
			hot[nd.ID] = true
		}
	}
	return hot
}

// holdersOf inverts an assignment.
func holdersOf(a allocator.Assignment) map[string][]string {
	out := map[string][]string{}
	for id, gs := range a {
		for _, g := range gs {
			out[g] = append(out[g], id)
		}
	}
	return out
}

// The issue's pool: both hot nodes start on one key (the IP hash put them
// there); the plan spreads them with two moves, keeps every count, and
// moves nobody once settled.
func TestPlanDemandIssuePool(t *testing.T) {
	groups, nodes := issuePool()
	prev := allocator.Assignment{}
	for i, n := range nodes {
		prev[n.ID] = []string{fmt.Sprintf("key%d", i/2)} // n0, n1 on key0
	}
	next := allocator.Plan(groups, nodes, prev)
	h := holdersOf(next)
	for _, g := range groups {
		assert.Len(t, h[g.Name], 2, "%s keeps its count", g.Name)
	}
	assert.NotEqual(t, next["n0"], next["n1"], "the two hot nodes hold different keys")
	assert.Equal(t, []string{"key0"}, next["n0"], "the hottest first: n0 stays (every key is as good)")
	assert.Equal(t, 2, allocator.Moved(prev, next), "n1 and the cold node it displaced")
	assert.True(t, allocator.Balanced(groups, nodes, next))
	assert.Equal(t, next, allocator.Plan(groups, nodes, next), "steady demand: no moves once settled")

	// Without demand the plan keeps the hot nodes together: the old rule.
	plain := slices.Clone(nodes)
	for i := range plain {
		plain[i].Demand = 0
	}
	assert.Equal(t, prev, allocator.Plan(groups, plain, prev))
}

// A demand that moves a little (the hot nodes swap order, a cold node
// warms but stays under the bar) moves nobody: the hot nodes keep their
// groups while within HotStickiness of the best.
func TestPlanDemandSticky(t *testing.T) {
	groups, nodes := issuePool()
	a := allocator.Plan(groups, nodes, nil)
	for _, change := range []func(ns []allocator.Node){
		func(ns []allocator.Node) { ns[0].Demand, ns[1].Demand = 19, 21 },
		func(ns []allocator.Node) { ns[5].Demand = 3 },
		func(ns []allocator.Node) { ns[0].Demand, ns[1].Demand = 30, 12 },
		func(ns []allocator.Node) { ns[7].Demand = math.NaN() }, // stopped reporting
	} {
		ns := slices.Clone(nodes)
		change(ns)
		assert.Equal(t, a, allocator.Plan(groups, ns, a))
	}

	// A hot node on a key as good as the one it would pick afresh stays:
	// swap n0 with a cold holder of a key neither hot node holds.
	prev := allocator.Assignment{}
	for id, gs := range a {
		prev[id] = gs
	}
	other := ""
	for _, g := range groups {
		if g.Name != a["n0"][0] && g.Name != a["n1"][0] {
			other = g.Name
			break
		}
	}
	cold := holdersOf(a)[other][0]
	prev["n0"], prev[cold] = a[cold], a["n0"]
	assert.Equal(t, prev, allocator.Plan(groups, nodes, prev), "nobody moves for a key no better")
}

// A pinned hot node stays where it prefers; the other hot node avoids it,
// and a node that reports no demand is never hot nor counted in the mean.
func TestPlanDemandPinnedAndUnknown(t *testing.T) {
	groups, nodes := issuePool()
	nodes[0].Preferred = "key3"
	prev := allocator.Assignment{}
	for i, n := range nodes {
		prev[n.ID] = []string{fmt.Sprintf("key%d", (i+3)/2%6)} // n1, n2 on key2; n0 on key1
	}
	prev["n1"] = []string{"key3"}
	next := allocator.Plan(groups, nodes, prev)
	assert.Equal(t, []string{"key3"}, next["n0"], "pinned")
	assert.NotEqual(t, []string{"key3"}, next["n1"], "the other hot node leaves the pinned one's key")

	// Ten nodes that report nothing: the mean is of the two that do, which
	// ask alike, so nobody is hot and the plan is the plan without demand.
	groups, nodes = issuePool()
	for i := 2; i < len(nodes); i++ {
		nodes[i].Demand = -1
	}
	plain := slices.Clone(nodes)
	for i := range plain {
		plain[i].Demand = 0
	}
	prev = allocator.Assignment{}
	for i, n := range nodes {
		prev[n.ID] = []string{fmt.Sprintf("key%d", i/2)}
	}
	assert.Equal(t, allocator.Plan(groups, plain, prev), allocator.Plan(groups, nodes, prev))
}

// Shares follow Capacity when every group has one, else Weight: a key
// with twice the capacity takes the second hot node.
func TestPlanDemandShares(t *testing.T) {
	groups := []allocator.Group{{Name: "big", Capacity: 40}, {Name: "small", Capacity: 10}}
	nodes := nodesN(8)
	for i := range nodes {
		nodes[i].Demand = 1
	}
	nodes[0].Demand, nodes[1].Demand = 30, 20 // the mean is 7: both hot
	next := allocator.Plan(groups, nodes, nil)
	h := holdersOf(next)
	require.Len(t, h["big"], 4, "counts by weight")
	require.Len(t, h["small"], 4)
	assert.Equal(t, []string{"big"}, next["n0"], "the hottest: 30/40 < 30/10")
	assert.Equal(t, []string{"big"}, next["n1"], "(30+20)/40 < 20/10: share, not count, decides")

	// One group without a capacity: every share is by weight (equal here),
	// so the second hot node takes the other key.
	groups[1].Capacity = 0
	next = allocator.Plan(groups, nodes, nil)
	assert.NotEqual(t, next["n0"], next["n1"])
}

// uniqueNodes keeps the first node of each ID: the hot rule is stated on
// the nodes Plan keeps.
func uniqueNodes(nodes []allocator.Node) []allocator.Node {
	seen := map[string]bool{}
	var out []allocator.Node
	for _, n := range nodes {
		if n.ID != "" && !seen[n.ID] {
			seen[n.ID] = true
			out = append(out, n)
		}
	}
	return out
}

// uniqueGroups keeps the first group of each name.
func uniqueGroups(groups []allocator.Group) []allocator.Group {
	seen := map[string]bool{}
	var out []allocator.Group
	for _, g := range groups {
		if g.Name != "" && !seen[g.Name] {
			seen[g.Name] = true
			out = append(out, g)
		}
	}
	return out
}

// demandGen adds demands to gen's scenarios: mostly cold, some hot, some
// unreported.
func (g gen) demands(nodes []allocator.Node) []allocator.Node {
	out := slices.Clone(nodes)
	for i := range out {
		switch g.r.IntN(10) {
		case 0:
			out[i].Demand = 10 + g.r.Float64()*30
		case 1:
			out[i].Demand = 10 + float64(g.r.IntN(3))*5 // ties
		case 2:
			out[i].Demand = []float64{-1, math.NaN(), math.Inf(1)}[g.r.IntN(3)]
		default:
			out[i].Demand = g.r.Float64() * 2
		}
	}
	return out
}

// capacities sets every group's Capacity, or none, or some.
func (g gen) capacities(groups []allocator.Group) []allocator.Group {
	out := slices.Clone(groups)
	mode := g.r.IntN(3)
	for i := range out {
		switch {
		case mode == 0:
		case mode == 1 || g.r.IntN(4) > 0:
			out[i].Capacity = float64(1 + g.r.IntN(20))
		}
	}
	return out
}

// checkDemandPlan asserts what placement by demand keeps of Plan's rules:
// the counts (Targets), the caps, the pins and the balance, a fixed point
// (a steady demand moves nobody once settled), and independence of input
// order.
func checkDemandPlan(t *testing.T, r *rand.Rand, groups []allocator.Group, nodes []allocator.Node, prev, next allocator.Assignment) bool {
	t.Helper()
	ok := assert.True(t, allocator.Balanced(groups, nodes, next), "balanced")
	v := newView(groups, nodes)
	if len(v.nodes) >= len(v.groups) && len(v.groups) > 0 {
		h := holdersOf(next)
		for name, want := range allocator.TargetsFrom(groups, nodes, prev) {
			ok = assert.Len(t, h[name], want, "group %s keeps its count", name) && ok
		}
		for id, g := range v.pinned(prev) {
			ok = assert.Equal(t, []string{g}, next[id], "node %s pinned", id) && ok
		}
	}
	ok = assert.Equal(t, next, allocator.Plan(groups, nodes, next), "a fixed point") && ok
	ok = assert.Equal(t, next, allocator.Plan(shuffled(r, groups), shuffled(r, nodes), prev), "order-independent") && ok
	return ok
}

func TestPlanDemandProperties(t *testing.T) {
	r := rand.New(rand.NewPCG(23, 3))
	g := gen{r}
	for i := range 5000 {
		groups := g.capacities(g.groups(r.IntN(10)))
		nodes := g.demands(g.nodes(r.IntN(24)))
		prev := g.prev(groups, nodes)
		next := allocator.Plan(groups, nodes, prev)
		if !checkDemandPlan(t, r, groups, nodes, prev, next) {
			t.Fatalf("scenario %d: groups %+v nodes %+v prev %v next %v", i, groups, nodes, prev, next)
		}
	}
}

// Equal demands (any value, or none reported) give exactly the plan
// without demand: every reference plan of plan_test.go still holds.
func TestPlanEqualDemandIsPlainPlan(t *testing.T) {
	r := rand.New(rand.NewPCG(23, 4))
	g := gen{r}
	for i := range 5000 {
		groups := g.capacities(g.groups(r.IntN(10)))
		nodes := g.nodes(r.IntN(24))
		prev := g.prev(groups, nodes)
		want := allocator.Plan(groups, nodes, prev)
		d := []float64{0, 1.5, 20, 1e9, -1, math.NaN()}[r.IntN(6)]
		same := slices.Clone(nodes)
		for k := range same {
			same[k].Demand = d
		}
		require.Equal(t, want, allocator.Plan(groups, same, prev), "scenario %d, demand %v", i, d)
	}
}

// Two hot nodes never share a key while a key with only cold holders
// exists (groups of equal share, no preferences), whatever prev was.
func TestPlanHotNodesNeverShare(t *testing.T) {
	r := rand.New(rand.NewPCG(23, 5))
	g := gen{r}
	for i := range 5000 {
		nG := 1 + r.IntN(8)
		groups := make([]allocator.Group, nG)
		capacity := float64(r.IntN(3)) * 10 // 0: by weight, all 1
		for k := range groups {
			groups[k] = allocator.Group{Name: fmt.Sprintf("g%02d", k), Capacity: capacity}
			if r.IntN(5) == 0 {
				groups[k].MaxNodes = 1 + r.IntN(3)
			}
		}
		nodes := uniqueNodes(g.nodes(nG + r.IntN(20)))
		for k := range nodes {
			nodes[k].Preferred = ""
		}
		nodes = g.demands(nodes)
		prev := g.prev(groups, nodes)
		next := allocator.Plan(groups, nodes, prev)
		hot := hotSet(nodes)
		coldOnly, shared := "", ""
		for name, ids := range holdersOf(next) {
			n := 0
			for _, id := range ids {
				if hot[id] {
					n++
				}
			}
			switch {
			case n == 0:
				coldOnly = name
			case n > 1:
				shared = name
			}
		}
		if coldOnly != "" && shared != "" {
			t.Fatalf("scenario %d: %s has two hot nodes while %s has only cold ones: nodes %+v prev %v next %v",
				i, shared, coldOnly, nodes, prev, next)
		}
	}
}

// A demand change on a settled pool moves at most two nodes per hot node
// (the hot node and the cold node it displaces), three with standby nodes
// (the fill takes released and standby nodes in ID order, so a standby node
// may take the room and the displaced node go standby), and a demand
// change that makes nobody hot moves nobody.
func TestPlanDemandMovesBounded(t *testing.T) {
	r := rand.New(rand.NewPCG(23, 6))
	g := gen{r}
	for i := range 3000 {
		groups := uniqueGroups(g.capacities(g.groups(1 + r.IntN(10))))
		nodes := uniqueNodes(g.demands(g.nodes(r.IntN(24))))
		settled := allocator.Plan(groups, nodes, g.prev(groups, nodes))
		changed := g.demands(nodes)
		next := allocator.Plan(groups, changed, settled)
		limit := 2 * len(hotSet(changed))
		if len(settled) < len(nodes) || len(next) < len(nodes) {
			limit = 3 * len(hotSet(changed))
		}
		require.LessOrEqual(t, allocator.Moved(settled, next), limit,
			"scenario %d: groups %+v nodes %+v settled %v next %v", i, groups, changed, settled, next)
	}
}

// BenchmarkPlanDemand is BenchmarkPlan's settled pool with a tenth of the
// nodes hot: what the demand step costs on top.
func BenchmarkPlanDemand(b *testing.B) {
	for _, sz := range [][2]int{{1000, 100}, {10000, 1000}} {
		groups, nodes := benchPool(sz[0], sz[1])
		for i := range nodes {
			nodes[i].Demand = 1
			if i%10 == 0 {
				nodes[i].Demand = 20
			}
		}
		prev := allocator.Plan(groups, nodes, nil)
		b.Run(fmt.Sprintf("nodes=%d/groups=%d/settled", sz[0], sz[1]), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				allocator.Plan(groups, nodes, prev)
			}
		})
	}
}

// FuzzPlanDemand is FuzzPlan with demands and capacities from raw float
// bits (NaN, ±Inf, subnormals, huge values): placement by demand keeps the
// counts, pins and balance, and settles at once.
func FuzzPlanDemand(f *testing.F) {
	f.Add([]byte{}, []byte{})
	f.Add([]byte{3, 12, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f, 1, 0}, []byte{0, 0, 0, 0, 0, 0, 0x34, 0x40, 0, 0, 0, 0, 0, 0, 0xf8, 0x7f})
	f.Add([]byte{20, 3, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xef, 0x7f, 1, 2, 3})
	f.Fuzz(func(t *testing.T, pool, floats []byte) {
		groups, nodes, prev := decodePool(pool)
		float := func() float64 {
			var bits [8]byte
			n := copy(bits[:], floats)
			floats = floats[n:]
			return math.Float64frombits(binary.LittleEndian.Uint64(bits[:]))
		}
		for i := range groups {
			groups[i].Capacity = float()
		}
		for i := range nodes {
			nodes[i].Demand = float()
		}
		next := allocator.Plan(groups, nodes, prev)
		if !checkDemandPlan(t, rand.New(rand.NewPCG(1, 1)), groups, nodes, prev, next) {
			t.Fatalf("groups %+v nodes %+v prev %v next %v", groups, nodes, prev, next)
		}
	})
}
