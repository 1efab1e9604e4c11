package allocator_test

import (
	"encoding/binary"
	"fmt"
	"math"
	"testing"

	"github.com/allot-io/allot/allocator"
)

// decodePool turns fuzz bytes into a pool: weights come from raw float bits,
// so NaN, ±Inf, subnormals and huge values all occur.
func decodePool(data []byte) ([]allocator.Group, []allocator.Node, allocator.Assignment) {
	next := func() byte {
		if len(data) == 0 {
			return 0
		}
		b := data[0]
		data = data[1:]
		return b
	}
	nG, nN := int(next()%24), int(next()%32)
	groups := make([]allocator.Group, nG)
	for i := range groups {
		var bits [8]byte
		for k := range bits {
			bits[k] = next()
		}
		groups[i] = allocator.Group{
			Name:     fmt.Sprintf("g%d", next()%20),
			Weight:   math.Float64frombits(binary.LittleEndian.Uint64(bits[:])),
			MaxNodes: int(int8(next())) % 5,
		}
	}
	nodes := make([]allocator.Node, nN)
	for i := range nodes {
		nodes[i] = allocator.Node{
			ID:        fmt.Sprintf("n%d", next()%40),
			IP:        fmt.Sprintf("10.0.0.%d", next()%16),
			Preferred: fmt.Sprintf("g%d", next()%30),
		}
	}
	prev := allocator.Assignment{}
	for range next() % 40 {
		id := fmt.Sprintf("n%d", next()%45)
		prev[id] = append(prev[id], fmt.Sprintf("g%d", next()%25))
	}
	return groups, nodes, prev
}

func FuzzPlan(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{3, 5, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f, 1, 0, 0, 0, 0, 0, 0, 0, 0x00, 0x40, 2, 1, 0, 0, 0, 0, 0, 0, 0xf8, 0x7f, 3, 2})
	f.Add([]byte{20, 3, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30})
	f.Add([]byte{2, 30, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xef, 0x7f, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 10, 4, 1, 2, 3, 4, 5, 6})
	f.Fuzz(func(t *testing.T, data []byte) {
		groups, nodes, prev := decodePool(data)
		next := allocator.Plan(groups, nodes, prev)
		if !checkPlan(t, groups, nodes, prev, next) {
			t.Fatalf("groups %+v nodes %+v prev %v next %v", groups, nodes, prev, next)
		}
		if _, ok := allocator.Targets(groups, nodes)[""]; ok {
			t.Fatal("target for an empty group name")
		}
		for id, shares := range allocator.Shares(next) {
			for g, s := range shares {
				if !(s > 0 && s <= 1) {
					t.Fatalf("share of %s in %s = %v", id, g, s)
				}
			}
		}
	})
}
