package allocator

import "slices"

// Shares returns each node's share of each group's quota, as a fraction:
// for node n holding group g, which c nodes hold in a, 1/c. The result maps
// node ID to group name to share; nodes holding nothing are absent. A group
// listed twice for one node counts once.
func Shares(a Assignment) map[string]map[string]float64 {
	holders := make(map[string]int)
	for _, groups := range a {
		for _, g := range unique(groups) {
			holders[g]++
		}
	}
	out := make(map[string]map[string]float64, len(a))
	for id, groups := range a {
		if len(groups) == 0 {
			continue
		}
		m := make(map[string]float64, len(groups))
		for _, g := range groups {
			m[g] = 1 / float64(holders[g])
		}
		out[id] = m
	}
	return out
}

// unique returns groups without repeated names, sorted (groups itself if it
// already is sorted and repeat-free).
func unique(groups []string) []string {
	strict := true
	for k := 1; k < len(groups) && strict; k++ {
		strict = groups[k-1] < groups[k]
	}
	if strict {
		return groups
	}
	u := slices.Clone(groups)
	slices.Sort(u)
	return slices.Compact(u)
}

// Moved returns how many nodes hold a different set of groups in next than
// in prev. A node absent from one side holds nothing there, so a node that
// left or went standby while holding a group counts, and so does a new node
// that received one. Order and repetition within a list do not matter.
func Moved(prev, next Assignment) int {
	moved := 0
	for id, groups := range prev {
		if !sameSet(groups, next[id]) {
			moved++
		}
	}
	for id, groups := range next {
		if _, ok := prev[id]; !ok && len(groups) > 0 {
			moved++
		}
	}
	return moved
}

// sameSet reports whether a and b hold the same names.
func sameSet(a, b []string) bool {
	if len(a) == 1 && len(b) == 1 {
		return a[0] == b[0]
	}
	if slices.Equal(a, b) {
		return true
	}
	return slices.Equal(unique(a), unique(b))
}
