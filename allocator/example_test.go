package allocator_test

import (
	"fmt"
	"slices"

	"github.com/allot-io/allot/allocator"
)

func ExamplePlan() {
	groups := []allocator.Group{
		{Name: "openai-a", Weight: 2},
		{Name: "openai-b", Weight: 1},
		{Name: "search", MaxNodes: 1},
	}
	nodes := []allocator.Node{
		{ID: "node-1", IP: "10.0.0.1"},
		{ID: "node-2", IP: "10.0.0.2"},
		{ID: "node-3", IP: "10.0.0.3"},
		{ID: "node-4", IP: "10.0.0.4", Preferred: "search"},
		{ID: "node-5", IP: "10.0.0.5"},
	}
	a := allocator.Plan(groups, nodes, nil)
	printAssignment(a)

	// node-3 dies: openai-b is orphaned and openai-a's target drops to 2,
	// so its lowest scoring holder takes openai-b. Nothing else moves.
	live := slices.Delete(slices.Clone(nodes), 2, 3)
	b := allocator.Plan(groups, live, a)
	fmt.Println("after node-3 died, moved:", allocator.Moved(a, b))
	printAssignment(b)
	// Output:
	// node-1 [openai-a]
	// node-2 [openai-a]
	// node-3 [openai-b]
	// node-4 [search]
	// node-5 [openai-a]
	// after node-3 died, moved: 2
	// node-1 [openai-a]
	// node-2 [openai-a]
	// node-4 [search]
	// node-5 [openai-b]
}

func ExamplePlan_fewerNodesThanGroups() {
	groups := []allocator.Group{
		{Name: "a", Weight: 3},
		{Name: "b", Weight: 2},
		{Name: "c", Weight: 2},
		{Name: "d", Weight: 1},
	}
	nodes := []allocator.Node{{ID: "node-1", IP: "10.0.0.1"}, {ID: "node-2", IP: "10.0.0.2"}}
	a := allocator.Plan(groups, nodes, nil)
	printAssignment(a)
	fmt.Println("balanced:", allocator.Balanced(groups, nodes, a))
	// Output:
	// node-1 [a d]
	// node-2 [b c]
	// balanced: true
}

func ExampleTargets() {
	groups := []allocator.Group{{Name: "big", Weight: 3}, {Name: "small", Weight: 1}, {Name: "solo", MaxNodes: 1}}
	t := allocator.Targets(groups, nodesN(7))
	fmt.Println(t["big"], t["small"], t["solo"])
	// Output: 5 1 1
}

func ExampleShares() {
	a := allocator.Assignment{"node-1": {"a"}, "node-2": {"a"}, "node-3": {"a", "b"}, "node-4": {"b"}}
	s := allocator.Shares(a)
	fmt.Printf("%.3f %.3f %.1f\n", s["node-1"]["a"], s["node-3"]["a"], s["node-3"]["b"])
	// Output: 0.333 0.333 0.5
}

func ExampleMoved() {
	prev := allocator.Assignment{"node-1": {"a"}, "node-2": {"b"}}
	next := allocator.Assignment{"node-1": {"a"}, "node-2": {"a"}, "node-3": {"b"}}
	fmt.Println(allocator.Moved(prev, next))
	// Output: 2
}

func ExampleBalanced() {
	groups := []allocator.Group{{Name: "a"}, {Name: "b"}, {Name: "c"}}
	nodes := []allocator.Node{{ID: "node-1"}, {ID: "node-2"}}
	fmt.Println(allocator.Balanced(groups, nodes, allocator.Assignment{"node-1": {"a", "b"}, "node-2": {"c"}}))
	fmt.Println(allocator.Balanced(groups, nodes, allocator.Assignment{"node-1": {"a", "b", "c"}}))
	// Output:
	// true
	// false
}

// printAssignment prints one node per line, by ID.
func printAssignment(a allocator.Assignment) {
	ids := make([]string, 0, len(a))
	for id := range a {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		fmt.Println(id, a[id])
	}
}
