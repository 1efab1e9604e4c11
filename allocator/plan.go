package allocator

import (
	"cmp"
	"math"
	"slices"
	"strings"

	"github.com/cespare/xxhash/v2"
)

// Group is an active group as Plan sees it.
type Group struct {
	// Name identifies the group. Groups with an empty name are ignored.
	Name string
	// Weight is the group's quota relative to the others: heavier groups get
	// more nodes. Weight <= 0, NaN or ±Inf means 1; other values are clamped
	// to [MinWeight, MaxWeight].
	Weight float64
	// MaxNodes caps how many nodes hold the group; 0 (or less) means
	// unlimited, 1 means exclusive. It only matters when nodes >= groups.
	MaxNodes int
	// Capacity is the group's quota in the unit of Node.Demand (calls a
	// second, say): placement by demand steers the summed demand of each
	// group's holders towards its share of the pool's capacity. When any
	// group's Capacity is not a finite number > 0, every group's share is
	// its Weight's instead.
	Capacity float64
}

// Node is a live node as Plan sees it.
type Node struct {
	// ID identifies the node. Nodes with an empty ID are ignored.
	ID string
	// IP feeds the score s(n, g) = xxhash64(IP + "/" + group); it may be empty.
	IP string
	// Preferred names the group the node wants (ALLOT_GROUP); empty for none.
	Preferred string
	// Demand is what the node asked for lately, in the unit of
	// Group.Capacity (calls a second, say). A value that is not a finite
	// number >= 0 means the node reported none: it is never hot and does
	// not count in the mean. It only matters when nodes >= groups, and
	// only for hot nodes (see Plan): equal demands give the plan Plan
	// gives without any.
	Demand float64
}

// Assignment maps a node ID to the sorted names of the groups it holds.
// Standby nodes are absent.
type Assignment map[string][]string

// Weight bounds: finite positive weights outside [MinWeight, MaxWeight] are
// clamped so that sums of weights stay exact enough to compare.
const (
	MinWeight = 1e-6
	MaxWeight = 1e9
)

// Placement by demand (see Plan).
const (
	// HotFactor: a node is hot when its demand is above HotFactor times the
	// mean demand of the nodes that report one.
	HotFactor = 2.0
	// HotStickiness: a hot node keeps its current group while that group's
	// demand per unit of share, with the node, is at most 1+HotStickiness
	// times the best group's. Below 1, so a hot node never stays beside a
	// hotter one (2x the best) while an equal group without a hot node has
	// room.
	HotStickiness = 0.25
)

// candidateWindow bounds how many groups with room a placed node compares
// (see Plan). With at most this many groups with room, the rule is exactly the
// docs/design.md rule.
const candidateWindow = 16

// Plan returns the assignment of groups to nodes that docs/design.md "Allocation"
// describes, moving as few nodes as possible away from prev.
//
// Plan is pure and deterministic: the result depends only on the sets of
// groups and nodes and on prev, never on slice order. Inputs are sorted
// internally (groups by name, weight, max nodes; nodes by ID, IP, preferred);
// when two entries share a name or ID the first in that order wins. Entries
// of prev naming unknown nodes or groups are ignored. The score of node n for
// group g is s(n, g) = xxhash64(n.IP + "/" + g.Name), ties broken by the
// lower node ID.
//
// Nodes >= groups: each node holds exactly one group (or none: standby).
// Targets gives the node count of each group:
//  1. a node whose Preferred names an uncapped group is pinned there. A
//     capped group is never taken from a live holder by a preference: in ID
//     order, first the nodes preferring a capped group that prev gives them
//     are pinned there while it is under MaxNodes; then, for every capped
//     group some node prefers, its other live holders in prev (each to its
//     first such group) while under MaxNodes; last, the other nodes
//     preferring a capped group, only while it is still under MaxNodes —
//     into room no live holder uses;
//  2. every group still at 0 gets one node, heaviest first (then name), while
//     free nodes remain;
//  3. each further node goes to the group under its cap with the largest
//     Weight/(count+1) (ties: a group prev already gives more than count live
//     nodes, then name); nodes left when every group is capped are standby.
//     The first tie rule keeps a balanced pool as it is: after a leave that
//     leaves the pool balanced, nobody moves.
//
// Pinned nodes take their group. Then hot nodes are spread (placement by
// demand): a node is hot when its Demand is above HotFactor (2) times the
// mean Demand of the nodes that report one, and it is not pinned. A group's
// share is its Capacity (when every group has one, else its Weight); its
// load starts as the summed demand of its pinned nodes. Hot nodes, the
// highest demand first (ties: ID), each take a group with room left by the
// targets: the one whose (load + demand)/share is the lowest (ties: the
// first from xxhash64(node IP) on the ring of xxhash64(group name), as the
// candidate window orders them, then name) — unless a group prev gives the node has room
// and its (load + demand)/share is within 1+HotStickiness (1.25) of that
// lowest, then that group (the lowest such). The group's load grows by the
// node's demand. So the hottest node goes first and a hot node never joins
// a hotter one while a group of equal share without a hot node has room.
// With no hot node (equal demands, or none reported) this step places
// nobody and the plan is the plan without demand; cold nodes are never
// moved for demand.
//
// Then, group by group in name order, the current holders not yet kept
// elsewhere are kept up to the target, highest score first; the surplus is
// released. Released, new and orphaned nodes, in
// ID order, each take a group with remaining room: the one with the highest
// score (ties: name) among the candidate groups. When at most 16 groups have
// room the candidates are all of them: exactly the docs/design.md rule. That covers
// every pool of at most 16 groups and the usual single change (a join or a
// leave typically leaves one group with room). With more groups with room
// (a fresh plan, deleting a group held by many nodes) the candidates are the
// first 16 groups with room on a ring ordered by xxhash64(group name) (ties:
// name), starting at the first position >= xxhash64(node IP) and wrapping
// around. That keeps a fresh plan of N nodes over G groups at about 16·N
// score evaluations instead of N·G, and still spreads nodes by IP hash.
// Nothing else moves.
//
// Nodes < groups: each group is held by exactly one node and each node holds
// at least one group; Preferred, MaxNodes, Demand and Capacity play no part
// (every node holds several keys and Acquire spreads its calls over them). A group stays on its
// live holder (the highest scoring one if several held it). Orphaned groups,
// heaviest first (then name), go to the least loaded node (load = sum of
// weights; ties: ID). A node left with no group takes the lightest group
// (then name) of the node holding the most groups (ties: higher load, then
// ID). Then, while the plan is not balanced, the heaviest group (then the last
// name) of the most loaded node whose move improves the balance moves to the
// least loaded node. Balanced means that for every group g on a most loaded
// node, weight(g) >= load(max) - load(min), up to a relative tolerance of
// 1e-9 (equal weights: node counts differ by at most one).
//
// The result never has an empty group list; the caller owns it.
func Plan(groups []Group, nodes []Node, prev Assignment) Assignment {
	p := newPlanner(groups, nodes)
	switch {
	case len(p.groups) == 0 || len(p.nodes) == 0:
		return Assignment{}
	case len(p.nodes) >= len(p.groups):
		return p.spread(prev)
	default:
		return p.pack(prev)
	}
}

// Targets returns the node count Plan wants for each group of a pool that
// holds nothing yet: TargetsFrom with no previous assignment.
func Targets(groups []Group, nodes []Node) map[string]int {
	return TargetsFrom(groups, nodes, nil)
}

// TargetsFrom returns the node count Plan(groups, nodes, prev) gives each
// group, by the same rules: when nodes >= groups the counts of steps 1–3
// (ties go to the counts prev already has), otherwise 1 for every group; 0
// for every group when there are no nodes.
func TargetsFrom(groups []Group, nodes []Node, prev Assignment) map[string]int {
	p := newPlanner(groups, nodes)
	out := make(map[string]int, len(p.groups))
	var counts []int
	switch {
	case len(p.nodes) == 0:
	case len(p.nodes) >= len(p.groups):
		counts, _ = p.targets(prev)
	}
	for g, gr := range p.groups {
		switch {
		case counts != nil:
			out[gr.Name] = counts[g]
		case len(p.nodes) > 0:
			out[gr.Name] = 1
		default:
			out[gr.Name] = 0
		}
	}
	return out
}

// Balanced reports whether a satisfies docs/design.md's balance rules for these
// groups and nodes, ignoring entries of a for unknown nodes or groups. When
// nodes >= groups, every node holds at most one group and every group has
// exactly its Targets count. When nodes < groups, every group has exactly one
// holder, every node holds a group, and the weight rule described in Plan
// holds.
func Balanced(groups []Group, nodes []Node, a Assignment) bool {
	p := newPlanner(groups, nodes)
	if len(p.groups) == 0 || len(p.nodes) == 0 {
		return true
	}
	if len(p.nodes) >= len(p.groups) {
		targets, _ := p.targets(a)
		counts := make([]int, len(p.groups))
		for _, n := range p.nodes {
			held := 0
			for _, name := range a[n.ID] {
				if g, ok := p.gidx[name]; ok {
					held++
					counts[g]++
				}
			}
			if held > 1 {
				return false
			}
		}
		return slices.Equal(targets, counts)
	}
	owners := make([]int, len(p.groups))
	load := make([]float64, len(p.nodes))
	for i, n := range p.nodes {
		for _, name := range a[n.ID] {
			if g, ok := p.gidx[name]; ok {
				owners[g]++
				load[i] += p.weight[g]
			}
		}
	}
	for _, c := range owners {
		if c != 1 {
			return false
		}
	}
	maxLoad, minLoad := math.Inf(-1), math.Inf(1)
	for _, l := range load {
		if l == 0 {
			return false
		}
		maxLoad, minLoad = max(maxLoad, l), min(minLoad, l)
	}
	eps := tolerance(maxLoad)
	threshold := maxLoad - minLoad - eps
	for i, n := range p.nodes {
		if load[i] < maxLoad-eps {
			continue
		}
		for _, name := range a[n.ID] {
			if g, ok := p.gidx[name]; ok && p.weight[g] < threshold {
				return false
			}
		}
	}
	return true
}

// tolerance is the slack allowed when comparing loads around maxLoad.
func tolerance(maxLoad float64) float64 { return 1e-9 * maxLoad }

// normWeight applies Group.Weight's rules.
func normWeight(w float64) float64 {
	switch {
	case math.IsNaN(w) || math.IsInf(w, 0) || w <= 0:
		return 1
	case w < MinWeight:
		return MinWeight
	case w > MaxWeight:
		return MaxWeight
	}
	return w
}

// normCapacity applies Group.Capacity's rules: 0 for none.
func normCapacity(c float64) float64 {
	if math.IsNaN(c) || math.IsInf(c, 0) || c <= 0 {
		return 0
	}
	return c
}

// normDemand applies Node.Demand's rules: -1 for none.
func normDemand(d float64) float64 {
	if math.IsNaN(d) || math.IsInf(d, 0) || d < 0 {
		return -1
	}
	return d
}

// planner holds the normalised inputs of one Plan call.
type planner struct {
	groups []Group // sorted by name, unique, Weight normalised
	weight []float64
	gidx   map[string]int32
	nodes  []Node // sorted by ID, unique, Demand normalised (-1: none)
	buf    []byte
}

func newPlanner(groups []Group, nodes []Node) *planner {
	gs := make([]Group, 0, len(groups))
	for _, g := range groups {
		if g.Name == "" {
			continue
		}
		g.Weight = normWeight(g.Weight)
		g.MaxNodes = max(g.MaxNodes, 0)
		g.Capacity = normCapacity(g.Capacity)
		gs = append(gs, g)
	}
	cmpGroup := func(a, b Group) int {
		return cmp.Or(strings.Compare(a.Name, b.Name), cmp.Compare(a.Weight, b.Weight), cmp.Compare(a.MaxNodes, b.MaxNodes),
			cmp.Compare(a.Capacity, b.Capacity))
	}
	if !slices.IsSortedFunc(gs, cmpGroup) {
		slices.SortFunc(gs, cmpGroup)
	}
	gs = slices.CompactFunc(gs, func(a, b Group) bool { return a.Name == b.Name })

	ns := make([]Node, 0, len(nodes))
	for _, n := range nodes {
		if n.ID != "" {
			n.Demand = normDemand(n.Demand)
			ns = append(ns, n)
		}
	}
	cmpNode := func(a, b Node) int {
		return cmp.Or(strings.Compare(a.ID, b.ID), strings.Compare(a.IP, b.IP), strings.Compare(a.Preferred, b.Preferred),
			cmp.Compare(a.Demand, b.Demand))
	}
	if !slices.IsSortedFunc(ns, cmpNode) {
		slices.SortFunc(ns, cmpNode)
	}
	ns = slices.CompactFunc(ns, func(a, b Node) bool { return a.ID == b.ID })

	p := &planner{groups: gs, nodes: ns, weight: make([]float64, len(gs)), gidx: make(map[string]int32, len(gs))}
	for i, g := range gs {
		p.weight[i] = g.Weight
		p.gidx[g.Name] = int32(i)
	}
	return p
}

// score is s(n, g) = xxhash64(n.IP + "/" + g.Name).
func (p *planner) score(n, g int32) uint64 {
	return p.scoreFrom(p.prefix(n), g)
}

// prefix puts n.IP + "/" in the scratch buffer and returns its length, so
// that scoring one node against many groups copies the IP once.
func (p *planner) prefix(n int32) int {
	p.buf = append(append(p.buf[:0], p.nodes[n].IP...), '/')
	return len(p.buf)
}

// scoreFrom scores group g for the node whose prefix (of length k) is in the
// scratch buffer.
func (p *planner) scoreFrom(k int, g int32) uint64 {
	p.buf = append(p.buf[:k], p.groups[g].Name...)
	return xxhash.Sum64(p.buf)
}

// capOf returns the effective cap of group g (MaxNodes, or the node count).
func (p *planner) capOf(g int) int {
	if c := p.groups[g].MaxNodes; c > 0 && c < len(p.nodes) {
		return c
	}
	return len(p.nodes)
}

// targets computes the per-group node counts for nodes >= groups, and the
// group each node is pinned to (-1 if none). Tied claims go first to groups
// prev gives more live nodes than they have so far.
func (p *planner) targets(prev Assignment) (counts []int, pinned []int32) {
	counts = make([]int, len(p.groups))
	pinned = p.pin(prev, counts)
	free := 0
	for _, g := range pinned {
		if g < 0 {
			free++
		}
	}

	var empty []int32
	for g := range p.groups {
		if counts[g] == 0 {
			empty = append(empty, int32(g))
		}
	}
	slices.SortFunc(empty, func(a, b int32) int {
		return cmp.Or(cmp.Compare(p.weight[b], p.weight[a]), cmp.Compare(a, b))
	})
	for _, g := range empty {
		if free == 0 {
			break
		}
		counts[g] = 1
		free--
	}
	if free == 0 {
		return counts, pinned
	}

	// Largest Weight/(count+1) first, ties by name, among groups under cap.
	// Handing out nodes one at a time is a merge of each group's decreasing
	// claims w/(c+1), so it picks the free largest claims overall. Every
	// claim above lambda = (sum of weights)/free is among them (there are at
	// most free such claims), so those are granted in bulk first and the
	// heap only places the last few nodes.
	free -= p.grantAbove(counts, free)
	if free == 0 {
		return counts, pinned
	}
	cur := p.liveHolders(prev)
	h := make(prioHeap, 0, len(p.groups))
	for g := range p.groups {
		if counts[g] < p.capOf(g) {
			h = append(h, prioItem{p.weight[g] / float64(counts[g]+1), cur[g] > counts[g], int32(g)})
		}
	}
	for k := len(h)/2 - 1; k >= 0; k-- {
		h.down(k)
	}
	for ; free > 0 && len(h) > 0; free-- {
		g := h[0].g
		counts[g]++
		if counts[g] >= p.capOf(int(g)) {
			h[0] = h[len(h)-1]
			h = h[:len(h)-1]
		} else {
			h[0].prio = p.weight[g] / float64(counts[g]+1)
			h[0].held = cur[g] > counts[g]
		}
		h.down(0)
	}
	return counts, pinned
}

// pin is step 1: the group each node is pinned to (-1 if none), counted in
// counts. In ID order throughout:
//   - a node whose Preferred names an uncapped group is pinned there;
//   - a node whose Preferred names a capped group it holds now (prev) is
//     pinned there while the group is under its cap;
//   - every other live holder of a capped group that some node prefers is
//     pinned to it (its first such group in prev) while under the cap: the
//     current holders keep a capped group ahead of a preferrer;
//   - the remaining nodes preferring a capped group are pinned there while it
//     is still under its cap, that is only into room no live holder uses.
//
// So a preference never takes a capped group from a live holder, and the
// plan of a plan pins the same nodes (the holders of the last step are
// holders that prefer the group next time).
func (p *planner) pin(prev Assignment, counts []int) []int32 {
	pinned := make([]int32, len(p.nodes))
	var preferred map[int32]bool // capped groups some node prefers
	var newcomers []int32        // nodes preferring a capped group they do not hold
	for i, n := range p.nodes {
		pinned[i] = -1
		g, ok := p.gidx[n.Preferred]
		switch {
		case !ok:
		case p.groups[g].MaxNodes == 0:
			pinned[i] = g
			counts[g]++
		case !slices.Contains(prev[n.ID], n.Preferred):
			newcomers = append(newcomers, int32(i))
			fallthrough
		default:
			if preferred == nil {
				preferred = make(map[int32]bool)
			}
			preferred[g] = true
			if pinned[i] < 0 && slices.Contains(prev[n.ID], n.Preferred) && counts[g] < p.capOf(int(g)) {
				pinned[i] = g
				counts[g]++
			}
		}
	}
	if len(preferred) == 0 {
		return pinned
	}
	for i, n := range p.nodes {
		if pinned[i] >= 0 {
			continue
		}
		for _, name := range prev[n.ID] {
			if g, ok := p.gidx[name]; ok && preferred[g] && counts[g] < p.capOf(int(g)) {
				pinned[i] = g
				counts[g]++
				break
			}
		}
	}
	for _, i := range newcomers {
		if g := p.gidx[p.nodes[i].Preferred]; pinned[i] < 0 && counts[g] < p.capOf(int(g)) {
			pinned[i] = g
			counts[g]++
		}
	}
	return pinned
}

// liveHolders counts, per group, the planned nodes prev gives it.
func (p *planner) liveHolders(prev Assignment) []int {
	cur := make([]int, len(p.groups))
	if len(prev) == 0 {
		return cur
	}
	for _, n := range p.nodes {
		for _, name := range prev[n.ID] {
			if g, ok := p.gidx[name]; ok {
				cur[g]++
			}
		}
	}
	return cur
}

// grantAbove raises counts by every claim w/(c+1) > sum(w)/free of groups
// under their cap and returns how many nodes that took (at most free).
func (p *planner) grantAbove(counts []int, free int) int {
	if free == 0 {
		return 0
	}
	total := 0.0
	for _, w := range p.weight {
		total += w
	}
	lambda := total / float64(free)
	raised := make([]int, len(counts))
	granted := 0
	for g, c0 := range counts {
		limit := p.capOf(g)
		if c0 >= limit {
			raised[g] = c0
			continue
		}
		w := p.weight[g]
		// c = number of claims held after the grant: claims c0..c-1 are w/(k+1) > lambda.
		c := limit
		if est := w / lambda; est < float64(limit) {
			c = max(c0, int(est))
		}
		for c > c0 && !(w/float64(c) > lambda) {
			c--
		}
		for c < limit && w/float64(c+1) > lambda {
			c++
		}
		raised[g] = c
		granted += c - c0
	}
	if granted > free {
		return 0 // rounding broke the bound: leave it all to the heap
	}
	copy(counts, raised)
	return granted
}

// prioItem is a group and its claim Weight/(count+1) on the next node;
// held says the previous assignment already gives the group that node.
type prioItem struct {
	prio float64
	held bool
	g    int32
}

// prioHeap is a max-heap of claims, ties to held claims, then by group
// index (name). It is the hot loop of Targets, hence not the generic heap.
type prioHeap []prioItem

func (h prioHeap) down(i int) {
	n := len(h)
	for {
		c := 2*i + 1
		if c >= n {
			return
		}
		if r := c + 1; r < n && h.before(r, c) {
			c = r
		}
		if !h.before(c, i) {
			return
		}
		h[i], h[c] = h[c], h[i]
		i = c
	}
}

func (h prioHeap) before(a, b int) bool {
	if h[a].prio != h[b].prio {
		return h[a].prio > h[b].prio
	}
	if h[a].held != h[b].held {
		return h[a].held
	}
	return h[a].g < h[b].g
}

// spread plans the nodes >= groups regime.
func (p *planner) spread(prev Assignment) Assignment {
	target, pinned := p.targets(prev)
	nG, nN := len(p.groups), len(p.nodes)
	assigned := slices.Clone(pinned)
	kept := make([]int, nG)
	for _, g := range pinned {
		if g >= 0 {
			kept[g]++
		}
	}
	p.spreadHot(prev, target, kept, assigned)

	// Current holders per group, in node ID order (CSR layout).
	type holding struct{ g, i int32 }
	var held []holding
	off := make([]int32, nG+1)
	for i, n := range p.nodes {
		if pinned[i] >= 0 {
			continue
		}
		for _, name := range prev[n.ID] {
			if g, ok := p.gidx[name]; ok {
				held = append(held, holding{g, int32(i)})
				off[g+1]++
			}
		}
	}
	for g := range nG {
		off[g+1] += off[g]
	}
	holders := make([]int32, len(held))
	fill := slices.Clone(off[:nG])
	for _, h := range held {
		if g := h.g; fill[g] == off[g] || holders[fill[g]-1] != h.i {
			holders[fill[g]] = h.i
			fill[g]++
		}
	}

	var avail []int32
	var scores []uint64
	for g := range nG {
		need := target[g] - kept[g]
		if need <= 0 {
			continue
		}
		avail = avail[:0]
		for _, i := range holders[off[g]:fill[g]] {
			if assigned[i] < 0 {
				avail = append(avail, i)
			}
		}
		if len(avail) > need {
			// Keep the highest scores; ties by node ID (index order).
			scores = scores[:0]
			for _, i := range avail {
				scores = append(scores, p.score(i, int32(g)))
			}
			idx := make([]int, len(avail))
			for k := range idx {
				idx[k] = k
			}
			slices.SortFunc(idx, func(a, b int) int {
				return cmp.Or(cmp.Compare(scores[b], scores[a]), cmp.Compare(avail[a], avail[b]))
			})
			for _, k := range idx[:need] {
				assigned[avail[k]] = int32(g)
			}
			kept[g] += need
			continue
		}
		for _, i := range avail {
			assigned[i] = int32(g)
		}
		kept[g] += len(avail)
	}

	p.fill(target, kept, assigned)

	out := make(Assignment, nN)
	names := make([]string, 0, nN)
	for i, g := range assigned {
		if g >= 0 {
			names = append(names, p.groups[g].Name)
			k := len(names)
			out[p.nodes[i].ID] = names[k-1 : k : k]
		}
	}
	return out
}

// fill gives every unassigned node, in ID order, a group with room until no
// group has room (see Plan for the candidate rule).
func (p *planner) fill(target, kept []int, assigned []int32) {
	var open []int32 // groups with room, in name order
	room := 0
	for g := range p.groups {
		if r := target[g] - kept[g]; r > 0 {
			open = append(open, int32(g))
			room += r
		}
	}
	if room == 0 {
		return
	}
	if len(open) <= candidateWindow {
		for i := range assigned {
			if room == 0 {
				return
			}
			if assigned[i] >= 0 {
				continue
			}
			best, bestScore := -1, uint64(0)
			pre := p.prefix(int32(i))
			for k, g := range open {
				if s := p.scoreFrom(pre, g); best < 0 || s > bestScore {
					best, bestScore = k, s
				}
			}
			g := open[best]
			assigned[i] = g
			kept[g]++
			room--
			if kept[g] == target[g] {
				open = slices.Delete(open, best, best+1)
			}
		}
		return
	}

	r := newRing(p, open)
	for i := range assigned {
		if room == 0 {
			return
		}
		if assigned[i] >= 0 {
			continue
		}
		pos := r.start(xxhash.Sum64String(p.nodes[i].IP))
		best, bestScore := int32(-1), uint64(0)
		pre := p.prefix(int32(i))
		for c := 0; c < min(candidateWindow, r.open); c++ {
			pos = r.find(pos)
			g := r.groups[pos]
			if s := p.scoreFrom(pre, g); best < 0 || s > bestScore || (s == bestScore && g < r.groups[best]) {
				best, bestScore = pos, s
			}
			pos = r.succ(pos)
		}
		g := r.groups[best]
		assigned[i] = g
		kept[g]++
		room--
		if kept[g] == target[g] {
			r.close(best)
		}
	}
}

// ring is the groups with room ordered by xxhash64(name), with a
// union-find "next group with room" over positions.
type ring struct {
	groups []int32
	hash   []uint64
	next   []int32 // for closed positions: a position at or before the next open one
	closed []bool
	open   int
}

func newRing(p *planner, open []int32) *ring {
	r := &ring{groups: slices.Clone(open), open: len(open)}
	h := make([]uint64, len(p.groups))
	for _, g := range open {
		h[g] = xxhash.Sum64String(p.groups[g].Name)
	}
	slices.SortFunc(r.groups, func(a, b int32) int { return cmp.Or(cmp.Compare(h[a], h[b]), cmp.Compare(a, b)) })
	r.hash = make([]uint64, len(open))
	r.next = make([]int32, len(open))
	r.closed = make([]bool, len(open))
	for k, g := range r.groups {
		r.hash[k] = h[g]
		r.next[k] = r.succ(int32(k))
	}
	return r
}

func (r *ring) succ(pos int32) int32 {
	if int(pos)+1 == len(r.groups) {
		return 0
	}
	return pos + 1
}

// start returns the first position whose hash is >= h, wrapping to 0.
func (r *ring) start(h uint64) int32 {
	k, _ := slices.BinarySearch(r.hash, h)
	if k == len(r.hash) {
		k = 0
	}
	return int32(k)
}

// find returns the first open position at or after pos (cyclically). At
// least one position must be open.
func (r *ring) find(pos int32) int32 {
	root := pos
	for r.closed[root] {
		root = r.next[root]
	}
	for pos != root {
		nx := r.next[pos]
		r.next[pos] = root
		pos = nx
	}
	return root
}

func (r *ring) close(pos int32) {
	r.closed[pos] = true
	r.open--
}

// pack plans the nodes < groups regime, in the steps of Plan's doc comment:
// groups stay on their live holder, orphans go to the least loaded node, an
// empty node takes the lightest group of the node holding the most, then the
// heaviest improving group moves from the most to the least loaded node
// while that improves the balance.
func (p *planner) pack(prev Assignment) Assignment {
	k := p.keepHolders(prev)
	k.placeOrphans()
	k.fillEmpty()
	k.balance()
	return k.assignment()
}

// packing is the state the steps of pack share: who owns each group, each
// node's load and groups (lightest first, then index), and a heap of the
// nodes by load, least loaded first.
type packing struct {
	p      *planner
	owner  []int32 // group -> node, -1 = orphan
	load   []float64
	lists  [][]int32 // filled by placeOrphans
	minH   *heap
	sorted func(a, b int32) int // the order of lists
}

// keepHolders keeps each group on its live holder, the highest scoring one
// if several held it (ties: the lower node index).
func (p *planner) keepHolders(prev Assignment) *packing {
	nG, nN := len(p.groups), len(p.nodes)
	k := &packing{p: p, owner: make([]int32, nG), load: make([]float64, nN)}
	for g := range k.owner {
		k.owner[g] = -1
	}
	var ownerScore []uint64 // computed lazily, only for groups with several holders
	var scored []bool
	for i, n := range p.nodes {
		for _, name := range prev[n.ID] {
			g, ok := p.gidx[name]
			if !ok {
				continue
			}
			o := k.owner[g]
			switch {
			case o < 0:
				k.owner[g] = int32(i)
				continue
			case o == int32(i):
				continue
			}
			if ownerScore == nil {
				ownerScore, scored = make([]uint64, nG), make([]bool, nG)
			}
			if !scored[g] {
				ownerScore[g], scored[g] = p.score(o, g), true
			}
			// A later node wins only on a strictly higher score: ties go to the lower ID.
			if s := p.score(int32(i), g); s > ownerScore[g] {
				k.owner[g], ownerScore[g] = int32(i), s
			}
		}
	}
	for g, o := range k.owner {
		if o >= 0 {
			k.load[o] += p.weight[g]
		}
	}
	return k
}

// placeOrphans gives each group without a live holder, heaviest first (then
// index), to the least loaded node, then builds each node's list.
func (k *packing) placeOrphans() {
	w := k.p.weight
	k.minH = newIndexedHeap(len(k.load), func(a, b int32) bool {
		if k.load[a] != k.load[b] {
			return k.load[a] < k.load[b]
		}
		return a < b
	})
	var orphans []int32
	for g, o := range k.owner {
		if o < 0 {
			orphans = append(orphans, int32(g))
		}
	}
	slices.SortFunc(orphans, func(a, b int32) int { return cmp.Or(cmp.Compare(w[b], w[a]), cmp.Compare(a, b)) })
	for _, g := range orphans {
		i := k.minH.items[0]
		k.owner[g] = i
		k.load[i] += w[g]
		k.minH.down(0)
	}
	k.sorted = func(a, b int32) int { return cmp.Or(cmp.Compare(w[a], w[b]), cmp.Compare(a, b)) }
	k.lists = make([][]int32, len(k.load))
	for g, o := range k.owner {
		k.lists[o] = append(k.lists[o], int32(g))
	}
	for i := range k.lists {
		slices.SortFunc(k.lists[i], k.sorted)
	}
}

// move moves group g, at position at of node from's list, to node to.
func (k *packing) move(from int32, at int, to int32, heaps ...*heap) {
	// Change one node's keys at a time: a heap can only fix one.
	w := k.p.weight
	g := k.lists[from][at]
	k.lists[from] = slices.Delete(k.lists[from], at, at+1)
	k.load[from] -= w[g]
	for _, h := range heaps {
		h.fix(from)
	}
	pos, _ := slices.BinarySearchFunc(k.lists[to], g, k.sorted)
	k.lists[to] = slices.Insert(k.lists[to], pos, g)
	k.load[to] += w[g]
	for _, h := range heaps {
		h.fix(to)
	}
}

// fillEmpty gives every node left without a group the lightest group of the
// node holding the most groups (ties: the higher load, then the lower index).
func (k *packing) fillEmpty() {
	if !slices.ContainsFunc(k.lists, func(l []int32) bool { return len(l) == 0 }) {
		return
	}
	countH := newIndexedHeap(len(k.lists), func(a, b int32) bool {
		if la, lb := len(k.lists[a]), len(k.lists[b]); la != lb {
			return la > lb
		}
		if k.load[a] != k.load[b] {
			return k.load[a] > k.load[b]
		}
		return a < b
	})
	for e := range int32(len(k.lists)) {
		if len(k.lists[e]) == 0 {
			k.move(countH.items[0], 0, e, countH, k.minH)
		}
	}
}

// balance moves, while the pool is unbalanced, the heaviest group that
// improves it from the most to the least loaded node (a node tied for the
// highest load may give it instead, the lower index first). The loop is
// bounded: each move lowers the spread, and 16·(groups+nodes) moves is far
// more than any input needs.
func (k *packing) balance() {
	load, lists, w := k.load, k.lists, k.p.weight
	maxH := newIndexedHeap(len(load), func(a, b int32) bool {
		if load[a] != load[b] {
			return load[a] > load[b]
		}
		return a < b
	})
	// improving returns the position in lists[i] of the heaviest group lighter
	// than threshold, or -1.
	improving := func(i int32, threshold float64) int {
		k, _ := slices.BinarySearchFunc(lists[i], threshold, func(g int32, t float64) int { return cmp.Compare(w[g], t) })
		return k - 1
	}
	for range 16 * (len(w) + len(load)) {
		hi, lo := maxH.items[0], k.minH.items[0]
		maxLoad := load[hi]
		eps := tolerance(maxLoad)
		threshold := maxLoad - load[lo] - eps
		if threshold <= 0 {
			break
		}
		src, at := hi, improving(hi, threshold)
		if at < 0 {
			// Another node tied for the highest load may still improve.
			src = -1
			for _, i := range maxH.items {
				if i != hi && load[i] >= maxLoad-eps && (src < 0 || i < src) {
					if kk := improving(i, threshold); kk >= 0 {
						src, at = i, kk
					}
				}
			}
			if src < 0 {
				break
			}
		}
		k.move(src, at, lo, maxH, k.minH)
	}
}

// assignment renders the lists as Plan's result: node ID -> sorted group
// names, every node listed.
func (k *packing) assignment() Assignment {
	p := k.p
	out := make(Assignment, len(k.lists))
	names := make([]string, 0, len(p.groups))
	for i, l := range k.lists {
		slices.Sort(l)
		start := len(names)
		for _, g := range l {
			names = append(names, p.groups[g].Name)
		}
		out[p.nodes[i].ID] = names[start:len(names):len(names)]
	}
	return out
}

// heap is a binary heap of node indices ordered by less, tracking each
// element's position so that fix can restore order after a key changed.
type heap struct {
	items []int32
	pos   []int32
	less  func(a, b int32) bool
}

// newIndexedHeap returns a heap holding 0..n-1.
func newIndexedHeap(n int, less func(a, b int32) bool) *heap {
	h := &heap{items: make([]int32, n), pos: make([]int32, n), less: less}
	for i := range n {
		h.items[i] = int32(i)
		h.pos[i] = int32(i)
	}
	h.init()
	return h
}

func (h *heap) init() {
	for i := len(h.items)/2 - 1; i >= 0; i-- {
		h.down(i)
	}
}

func (h *heap) swap(i, j int) {
	h.items[i], h.items[j] = h.items[j], h.items[i]
	h.pos[h.items[i]] = int32(i)
	h.pos[h.items[j]] = int32(j)
}

func (h *heap) up(i int) {
	for i > 0 {
		parent := (i - 1) / 2
		if !h.less(h.items[i], h.items[parent]) {
			return
		}
		h.swap(i, parent)
		i = parent
	}
}

func (h *heap) down(i int) bool {
	start, n := i, len(h.items)
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		c := l
		if r := l + 1; r < n && h.less(h.items[r], h.items[l]) {
			c = r
		}
		if !h.less(h.items[c], h.items[i]) {
			break
		}
		h.swap(i, c)
		i = c
	}
	return i > start
}

// fix restores the order after element x's key changed.
func (h *heap) fix(x int32) {
	if i := int(h.pos[x]); !h.down(i) {
		h.up(i)
	}
}
