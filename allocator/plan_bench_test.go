package allocator_test

import (
	"fmt"
	"slices"
	"testing"

	"github.com/allot-io/allot/allocator"
)

// benchPool builds nodes with distinct IPs and groups of weights 1..5, every
// tenth group capped at 3 nodes.
func benchPool(nNodes, nGroups int) ([]allocator.Group, []allocator.Node) {
	groups := make([]allocator.Group, nGroups)
	for i := range groups {
		groups[i] = allocator.Group{Name: fmt.Sprintf("group-%05d", i), Weight: float64(1 + i%5)}
		if i%10 == 9 {
			groups[i].MaxNodes = 3
		}
	}
	nodes := make([]allocator.Node, nNodes)
	for i := range nodes {
		nodes[i] = allocator.Node{ID: fmt.Sprintf("node-%05d", i), IP: fmt.Sprintf("10.%d.%d.%d", i>>16, (i>>8)&255, i&255)}
	}
	return groups, nodes
}

// BenchmarkPlan measures a plan from scratch and the re-plan after one node
// dropped out of a settled pool, for both regimes.
func BenchmarkPlan(b *testing.B) {
	type size struct{ nodes, groups int }
	var sizes []size
	for _, n := range []int{100, 1000, 10000} {
		for _, g := range []int{10, 100, 1000} {
			sizes = append(sizes, size{n, g})
		}
	}
	sizes = append(sizes, size{1000, 10000})
	for _, sz := range sizes {
		groups, nodes := benchPool(sz.nodes, sz.groups)
		name := fmt.Sprintf("nodes=%d/groups=%d", sz.nodes, sz.groups)
		b.Run(name+"/scratch", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				allocator.Plan(groups, nodes, nil)
			}
		})
		b.Run(name+"/drop", func(b *testing.B) {
			prev := allocator.Plan(groups, nodes, nil)
			live := slices.Delete(slices.Clone(nodes), sz.nodes/2, sz.nodes/2+1)
			var next allocator.Assignment
			b.ReportAllocs()
			for b.Loop() {
				next = allocator.Plan(groups, live, prev)
			}
			b.ReportMetric(float64(allocator.Moved(prev, next)), "moved")
		})
	}
}
