package allocator_test

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/cespare/xxhash/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/allocator"
)

// score is docs/design.md's s(n, g), computed independently of the package.
func score(ip, group string) uint64 { return xxhash.Sum64String(ip + "/" + group) }

// higher reports whether node a beats node b for group g: higher score, then
// lower ID.
func higher(a, b allocator.Node, g string) bool {
	sa, sb := score(a.IP, g), score(b.IP, g)
	if sa != sb {
		return sa > sb
	}
	return a.ID < b.ID
}

// normWeight restates Group.Weight's documented rules.
func normWeight(w float64) float64 {
	switch {
	case math.IsNaN(w) || math.IsInf(w, 0) || w <= 0:
		return 1
	case w < allocator.MinWeight:
		return allocator.MinWeight
	case w > allocator.MaxWeight:
		return allocator.MaxWeight
	}
	return w
}

// view is the inputs as Plan documents it sees them: empty names dropped,
// sorted, first by sort order wins.
type view struct {
	groups []allocator.Group // by name
	nodes  []allocator.Node  // by ID
	byName map[string]allocator.Group
	byID   map[string]allocator.Node
}

func newView(groups []allocator.Group, nodes []allocator.Node) view {
	v := view{byName: map[string]allocator.Group{}, byID: map[string]allocator.Node{}}
	for _, g := range groups {
		if g.Name != "" {
			g.Weight, g.MaxNodes = normWeight(g.Weight), max(g.MaxNodes, 0)
			v.groups = append(v.groups, g)
		}
	}
	slices.SortFunc(v.groups, func(a, b allocator.Group) int {
		return cmp.Or(strings.Compare(a.Name, b.Name), cmp.Compare(a.Weight, b.Weight), cmp.Compare(a.MaxNodes, b.MaxNodes))
	})
	v.groups = slices.CompactFunc(v.groups, func(a, b allocator.Group) bool { return a.Name == b.Name })
	for _, n := range nodes {
		if n.ID != "" {
			v.nodes = append(v.nodes, n)
		}
	}
	slices.SortFunc(v.nodes, func(a, b allocator.Node) int {
		return cmp.Or(strings.Compare(a.ID, b.ID), strings.Compare(a.IP, b.IP), strings.Compare(a.Preferred, b.Preferred))
	})
	v.nodes = slices.CompactFunc(v.nodes, func(a, b allocator.Node) bool { return a.ID == b.ID })
	for _, g := range v.groups {
		v.byName[g.Name] = g
	}
	for _, n := range v.nodes {
		v.byID[n.ID] = n
	}
	return v
}

// valid returns the groups of list that exist in v, sorted and unique.
func (v view) valid(list []string) []string {
	var out []string
	for _, g := range list {
		if _, ok := v.byName[g]; ok {
			out = append(out, g)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// pinned restates step 1 of the targets: node ID -> pinned group. In ID
// order: preferences for uncapped groups; preferences for a capped group the
// node holds in prev, under the cap; every other live holder of a capped
// group some node prefers, under the cap; the other preferences for capped
// groups, under the cap.
func (v view) pinned(prev allocator.Assignment) map[string]string {
	count := map[string]int{}
	out := map[string]string{}
	pin := func(id string, g allocator.Group) {
		if _, done := out[id]; !done && (g.MaxNodes == 0 || count[g.Name] < g.MaxNodes) {
			out[id] = g.Name
			count[g.Name]++
		}
	}
	wanted := map[string]bool{}
	for _, n := range v.nodes {
		g, ok := v.byName[n.Preferred]
		switch {
		case !ok:
		case g.MaxNodes == 0:
			pin(n.ID, g)
		default:
			wanted[g.Name] = true
			if slices.Contains(prev[n.ID], g.Name) {
				pin(n.ID, g)
			}
		}
	}
	for _, n := range v.nodes {
		for _, name := range prev[n.ID] {
			if g, ok := v.byName[name]; ok && wanted[name] && count[name] < g.MaxNodes {
				pin(n.ID, g)
				break
			}
		}
	}
	for _, n := range v.nodes {
		if g, ok := v.byName[n.Preferred]; ok && g.MaxNodes > 0 {
			pin(n.ID, g)
		}
	}
	return out
}

// checkPlan asserts every documented invariant of next = Plan(groups, nodes,
// prev) and returns false if one failed.
func checkPlan(t testing.TB, groups []allocator.Group, nodes []allocator.Node, prev, next allocator.Assignment) bool {
	t.Helper()
	v := newView(groups, nodes)
	ok := true
	fail := func(format string, args ...any) {
		t.Helper()
		ok = false
		t.Errorf(format, args...)
	}
	if next == nil {
		fail("nil assignment")
		return false
	}
	holders := map[string][]string{}
	for id, list := range next {
		if _, live := v.byID[id]; !live {
			fail("unknown node %q in plan", id)
		}
		if len(list) == 0 || !slices.IsSorted(list) || len(slices.Compact(slices.Clone(list))) != len(list) {
			fail("node %q: group list %q not sorted, unique and non-empty", id, list)
		}
		for _, g := range list {
			if _, known := v.byName[g]; !known {
				fail("node %q holds unknown group %q", id, g)
			}
			holders[g] = append(holders[g], id)
		}
	}
	if !allocator.Balanced(groups, nodes, next) {
		fail("plan not balanced: %v", next)
	}
	nG, nN := len(v.groups), len(v.nodes)
	switch {
	case nG == 0 || nN == 0:
		if len(next) != 0 {
			fail("want empty plan, got %v", next)
		}
	case nN >= nG:
		targets := allocator.TargetsFrom(groups, nodes, prev)
		sum := 0
		for _, g := range v.groups {
			sum += targets[g.Name]
			if targets[g.Name] != len(holders[g.Name]) {
				fail("group %q: target %d, holders %d", g.Name, targets[g.Name], len(holders[g.Name]))
			}
			if g.MaxNodes > 0 && targets[g.Name] > g.MaxNodes {
				fail("group %q: target %d over cap %d", g.Name, targets[g.Name], g.MaxNodes)
			}
		}
		if sum > nN || len(next) != sum {
			fail("placed %d nodes, targets sum to %d of %d nodes", len(next), sum, nN)
		}
		if sum < nN {
			// Standby nodes exist only when every group is at its cap.
			for _, g := range v.groups {
				if g.MaxNodes == 0 || targets[g.Name] < g.MaxNodes {
					fail("standby nodes while group %q has room (target %d, cap %d)", g.Name, targets[g.Name], g.MaxNodes)
				}
			}
		}
		pinned := v.pinned(prev)
		for id, g := range pinned {
			if !slices.Equal([]string{g}, next[id]) {
				fail("node %q pinned to %q holds %q", id, g, next[id])
			}
		}
		// Minimal movement, for a prev where each node held at most one
		// known group: a node that left its group was surplus there.
		for _, n := range v.nodes {
			was := v.valid(prev[n.ID])
			if len(was) != 1 || pinned[n.ID] != "" || slices.Equal(was, next[n.ID]) {
				continue
			}
			g := was[0]
			if !single(v, prev) {
				continue
			}
			if len(holders[g]) != targets[g] {
				fail("node %q left %q which has room", n.ID, g)
			}
			for _, id := range holders[g] {
				m := v.byID[id]
				if pinned[id] == "" && slices.Equal([]string{g}, v.valid(prev[id])) && higher(n, m, g) {
					fail("node %q released from %q while lower scoring %q kept", n.ID, g, id)
				}
			}
		}
	default:
		for _, g := range v.groups {
			if len(holders[g.Name]) != 1 {
				fail("group %q has %d holders, want 1", g.Name, len(holders[g.Name]))
			}
		}
		for _, n := range v.nodes {
			if len(next[n.ID]) == 0 {
				fail("node %q holds nothing though nodes < groups", n.ID)
			}
		}
	}

	// Idempotent and independent of input order.
	again := allocator.Plan(groups, nodes, next)
	if !assert.Equal(t, next, again, "plan of a plan must not move anything") {
		ok = false
	}
	return ok
}

// single reports whether every live node of prev holds at most one known group.
func single(v view, prev allocator.Assignment) bool {
	for id, list := range prev {
		if _, live := v.byID[id]; live && len(v.valid(list)) > 1 {
			return false
		}
	}
	return true
}

// gen builds random scenarios from a small alphabet so that names, IPs and
// preferences collide often.
type gen struct{ r *rand.Rand }

func (g gen) weight() float64 {
	switch g.r.IntN(10) {
	case 0:
		return 0
	case 1:
		return -2
	case 2:
		return math.NaN()
	case 3:
		return g.r.Float64() * 10
	default:
		return float64(1 + g.r.IntN(4))
	}
}

func (g gen) maxNodes() int {
	if g.r.IntN(3) == 0 {
		return g.r.IntN(4) // 0..3, 0 = unlimited
	}
	return 0
}

func (g gen) groups(n int) []allocator.Group {
	out := make([]allocator.Group, n)
	for i := range out {
		out[i] = allocator.Group{Name: fmt.Sprintf("g%02d", g.r.IntN(n+3)), Weight: g.weight(), MaxNodes: g.maxNodes()}
	}
	return out
}

func (g gen) node(id string) allocator.Node {
	n := allocator.Node{ID: id, IP: fmt.Sprintf("10.0.0.%d", g.r.IntN(12))}
	if g.r.IntN(10) == 0 {
		n.IP = ""
	}
	if g.r.IntN(5) == 0 {
		n.Preferred = fmt.Sprintf("g%02d", g.r.IntN(12))
	}
	return n
}

func (g gen) nodes(n int) []allocator.Node {
	out := make([]allocator.Node, n)
	for i := range out {
		out[i] = g.node(fmt.Sprintf("n%02d", g.r.IntN(n+5)))
	}
	return out
}

// prev is a random, possibly inconsistent, earlier assignment.
func (g gen) prev(groups []allocator.Group, nodes []allocator.Node) allocator.Assignment {
	switch g.r.IntN(3) {
	case 0:
		return nil
	case 1:
		// A plan for a perturbed pool: the realistic case.
		gs, ns := slices.Clone(groups), slices.Clone(nodes)
		if len(gs) > 0 {
			gs = slices.Delete(gs, 0, g.r.IntN(len(gs)/2+1))
		}
		if len(ns) > 0 {
			ns = slices.Delete(ns, 0, g.r.IntN(len(ns)/2+1))
		}
		gs = append(gs, g.groups(g.r.IntN(3))...)
		ns = append(ns, g.nodes(g.r.IntN(3))...)
		return allocator.Plan(gs, ns, nil)
	default:
		a := allocator.Assignment{}
		for range g.r.IntN(20) {
			id := fmt.Sprintf("n%02d", g.r.IntN(25))
			for range 1 + g.r.IntN(3) {
				a[id] = append(a[id], fmt.Sprintf("g%02d", g.r.IntN(15)))
			}
		}
		return a
	}
}

func shuffled[T any](r *rand.Rand, s []T) []T {
	s = slices.Clone(s)
	r.Shuffle(len(s), func(i, j int) { s[i], s[j] = s[j], s[i] })
	return s
}

func TestPlanProperties(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	g := gen{r}
	const scenarios = 10000
	for i := range scenarios {
		groups := g.groups(r.IntN(12))
		nodes := g.nodes(r.IntN(20))
		prev := g.prev(groups, nodes)
		next := allocator.Plan(groups, nodes, prev)
		if !checkPlan(t, groups, nodes, prev, next) {
			t.Fatalf("scenario %d: groups %+v nodes %+v prev %v next %v", i, groups, nodes, prev, next)
		}
		other := allocator.Plan(shuffled(r, groups), shuffled(r, nodes), prev)
		require.Equal(t, next, other, "scenario %d: plan depends on input order", i)
	}
}

func TestPlanChurnProperties(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	g := gen{r}
	const sequences, steps = 300, 40
	for seq := range sequences {
		groups := g.groups(1 + r.IntN(8))
		nodes := g.nodes(r.IntN(14))
		nextID := 100
		var a allocator.Assignment
		for step := range steps {
			op := "start"
			if step > 0 {
				switch r.IntN(7) {
				case 0:
					op = "join"
					nodes = append(nodes, g.node(fmt.Sprintf("n%03d", nextID)))
					nextID++
				case 1:
					op = "leave"
					if len(nodes) > 0 {
						k := r.IntN(len(nodes))
						nodes = slices.Delete(nodes, k, k+1)
					}
				case 2:
					op = "add group"
					groups = append(groups, g.groups(1)...)
				case 3:
					op = "delete group"
					if len(groups) > 0 {
						k := r.IntN(len(groups))
						groups = slices.Delete(groups, k, k+1)
					}
				case 4:
					op = "reweight"
					if len(groups) > 0 {
						groups[r.IntN(len(groups))].Weight = g.weight()
					}
				case 5:
					op = "cap"
					if len(groups) > 0 {
						groups[r.IntN(len(groups))].MaxNodes = g.maxNodes()
					}
				case 6:
					op = "die and join"
					if len(nodes) > 0 {
						k := r.IntN(len(nodes))
						nodes = slices.Delete(nodes, k, k+1)
					}
					nodes = append(nodes, g.node(fmt.Sprintf("n%03d", nextID)))
					nextID++
				}
			}
			groups, nodes = shuffled(r, groups), shuffled(r, nodes)
			next := allocator.Plan(groups, nodes, a)
			if !checkPlan(t, groups, nodes, a, next) {
				t.Fatalf("sequence %d step %d (%s): groups %+v nodes %+v prev %v next %v", seq, step, op, groups, nodes, a, next)
			}
			a = next
		}
	}
}
