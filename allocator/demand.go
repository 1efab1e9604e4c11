package allocator

import (
	"cmp"
	"slices"

	"github.com/cespare/xxhash/v2"
)

// spreadHot is the demand step of spread (see Plan): it places the hot
// nodes, hottest first, into the room the targets leave after the pinned
// nodes, and counts them in kept and assigned. It places nobody when no
// node is hot.
func (p *planner) spreadHot(prev Assignment, target, kept []int, assigned []int32) {
	hot := p.hotNodes(assigned)
	if len(hot) == 0 {
		return
	}
	share := p.shares()
	ring := make([]uint64, len(p.groups))
	for g, gr := range p.groups {
		ring[g] = xxhash.Sum64String(gr.Name)
	}
	load := make([]float64, len(p.groups))
	for i, g := range assigned {
		if g >= 0 && p.nodes[i].Demand > 0 {
			load[g] += p.nodes[i].Demand
		}
	}
	for _, i := range hot {
		d := p.nodes[i].Demand
		best := p.leastLoaded(i, d, target, kept, load, share, ring)
		if best < 0 {
			return // no room left anywhere: the rest go as cold nodes do
		}
		limit := (load[best] + d) / share[best] * (1 + HotStickiness)
		stay, stayRatio := int32(-1), 0.0
		for _, name := range prev[p.nodes[i].ID] {
			g, ok := p.gidx[name]
			if !ok || kept[g] >= target[g] {
				continue
			}
			if r := (load[g] + d) / share[g]; r <= limit && (stay < 0 || r < stayRatio || r == stayRatio && g < stay) {
				stay, stayRatio = g, r
			}
		}
		if stay >= 0 {
			best = stay
		}
		assigned[i] = best
		kept[best]++
		load[best] += d
	}
}

// leastLoaded returns the group with room whose (load + d)/share is the
// lowest for node i, or -1 when no group has room. Ties go to the group
// first on the ring of xxhash64(group name) from xxhash64(node IP) on
// (then name), as the candidate window of fill orders them: one hash per
// node, not one per group, and tied nodes still spread by IP.
func (p *planner) leastLoaded(i int32, d float64, target, kept []int, load, share []float64, ring []uint64) int32 {
	best, bestRatio := int32(-1), 0.0
	start := xxhash.Sum64String(p.nodes[i].IP)
	var bestDist uint64
	for g := range int32(len(p.groups)) {
		if kept[g] >= target[g] {
			continue
		}
		r := (load[g] + d) / share[g]
		dist := ring[g] - start // wraps: the distance clockwise from start
		if best < 0 || r < bestRatio || r == bestRatio && dist < bestDist {
			best, bestRatio, bestDist = g, r, dist
		}
	}
	return best
}

// hotNodes returns the nodes not yet assigned whose demand is above
// HotFactor times the mean demand of the nodes that report one, highest
// demand first (ties: ID).
func (p *planner) hotNodes(assigned []int32) []int32 {
	sum, n := 0.0, 0
	for _, nd := range p.nodes {
		if nd.Demand >= 0 {
			sum += nd.Demand
			n++
		}
	}
	if n == 0 || sum <= 0 {
		return nil
	}
	bar := HotFactor * sum / float64(n)
	var hot []int32
	for i, nd := range p.nodes {
		if assigned[i] < 0 && nd.Demand > bar {
			hot = append(hot, int32(i))
		}
	}
	slices.SortFunc(hot, func(a, b int32) int {
		return cmp.Or(cmp.Compare(p.nodes[b].Demand, p.nodes[a].Demand), cmp.Compare(a, b))
	})
	return hot
}

// shares is each group's share of the pool for placement by demand: its
// Capacity when every group has one, else its Weight.
func (p *planner) shares() []float64 {
	for _, g := range p.groups {
		if g.Capacity <= 0 {
			return p.weight
		}
	}
	out := make([]float64, len(p.groups))
	for g, gr := range p.groups {
		out[g] = gr.Capacity
	}
	return out
}
