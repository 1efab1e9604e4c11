// Package bench compares allocator.Plan with what users would pick instead:
// Kafka's sticky assignor (IBM/sarama's BalanceStrategySticky) and consistent
// hashing with bounded loads. It is a module of its own so the library keeps
// its small dependency list.
//
// The comparison is in the regime the sticky assignor is built for — more
// groups than nodes, every group on exactly one node, equal weights — with
// groups as the partitions of one topic and nodes as consumers.
package bench

import (
	"encoding/binary"
	"fmt"
	"math"
	"sort"
	"strconv"

	"github.com/IBM/sarama"
	"github.com/cespare/xxhash/v2"

	"github.com/allot-io/allot/allocator"
)

// Assignment maps a node to the groups it holds.
type Assignment = map[string][]string

// Strategy computes a new assignment of groups to nodes given the previous one.
type Strategy interface {
	Name() string
	Plan(groups, nodes []string, prev Assignment) (Assignment, error)
}

// Allot is allocator.Plan.
type Allot struct{}

// Name implements Strategy.
func (Allot) Name() string { return "allot" }

// Plan implements Strategy.
func (Allot) Plan(groups, nodes []string, prev Assignment) (Assignment, error) {
	gs := make([]allocator.Group, len(groups))
	for i, g := range groups {
		gs[i] = allocator.Group{Name: g, Weight: 1}
	}
	ns := make([]allocator.Node, len(nodes))
	for i, n := range nodes {
		ns[i] = allocator.Node{ID: n, IP: n}
	}
	return allocator.Plan(gs, ns, prev), nil
}

// Sticky is Kafka's sticky assignor as implemented by IBM/sarama. Each node's
// previous groups travel in its member metadata, as Kafka consumers send them.
type Sticky struct{}

// Name implements Strategy.
func (Sticky) Name() string { return "kafka-sticky" }

const topic = "groups"

// Plan implements Strategy.
func (Sticky) Plan(groups, nodes []string, prev Assignment) (Assignment, error) {
	partitionOf := make(map[string]int32, len(groups))
	partitions := make([]int32, len(groups))
	for i, g := range groups {
		partitionOf[g] = int32(i)
		partitions[i] = int32(i)
	}
	members := make(map[string]sarama.ConsumerGroupMemberMetadata, len(nodes))
	for _, n := range nodes {
		var owned []int32
		for _, g := range prev[n] {
			if p, ok := partitionOf[g]; ok {
				owned = append(owned, p)
			}
		}
		members[n] = sarama.ConsumerGroupMemberMetadata{
			Version:  1,
			Topics:   []string{topic},
			UserData: stickyUserData(owned, 1),
		}
	}
	plan, err := sarama.NewBalanceStrategySticky().Plan(members, map[string][]int32{topic: partitions})
	if err != nil {
		return nil, fmt.Errorf("bench: sticky plan: %w", err)
	}
	out := make(Assignment, len(nodes))
	for n, topics := range plan {
		for _, p := range topics[topic] {
			out[n] = append(out[n], groups[p])
		}
		sort.Strings(out[n])
	}
	return out, nil
}

// stickyUserData encodes sarama.StickyAssignorUserDataV1 in Kafka's wire
// format (sarama keeps its encoder unexported): an array of (topic string,
// int32 array of partitions) followed by the int32 generation.
func stickyUserData(partitions []int32, generation int32) []byte {
	b := binary.BigEndian.AppendUint32(nil, 1) // one topic
	b = binary.BigEndian.AppendUint16(b, uint16(len(topic)))
	b = append(b, topic...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(partitions)))
	for _, p := range partitions {
		b = binary.BigEndian.AppendUint32(b, uint32(p))
	}
	return binary.BigEndian.AppendUint32(b, uint32(generation))
}

// BoundedHash is consistent hashing with bounded loads (Mirrokni, Thorup,
// Zadimoghaddam 2016), the scheme of buraksezer/consistent and HAProxy: each
// node has Replicas points on a ring; a group walks clockwise from its hash to
// the first node whose load is below ceil(Load × groups/nodes). It is stateless:
// prev is ignored, stickiness comes from the ring alone.
type BoundedHash struct {
	Replicas int     // points per node; 0 means 40
	Load     float64 // load factor; 0 means 1.25
}

// Name implements Strategy.
func (BoundedHash) Name() string { return "bounded-hash" }

// Plan implements Strategy.
func (h BoundedHash) Plan(groups, nodes []string, _ Assignment) (Assignment, error) {
	replicas, load := h.Replicas, h.Load
	if replicas == 0 {
		replicas = 40
	}
	if load == 0 {
		load = 1.25
	}
	out := make(Assignment, len(nodes))
	if len(nodes) == 0 {
		return out, nil
	}
	type point struct {
		hash uint64
		node string
	}
	ring := make([]point, 0, len(nodes)*replicas)
	for _, n := range nodes {
		for r := range replicas {
			ring = append(ring, point{xxhash.Sum64String(n + "#" + strconv.Itoa(r)), n})
		}
	}
	sort.Slice(ring, func(i, j int) bool { return ring[i].hash < ring[j].hash })
	limit := int(math.Ceil(load * float64(len(groups)) / float64(len(nodes))))
	loads := make(map[string]int, len(nodes))
	sorted := append([]string(nil), groups...)
	sort.Strings(sorted) // placement depends on order; make it deterministic
	for _, g := range sorted {
		hv := xxhash.Sum64String(g)
		i := sort.Search(len(ring), func(i int) bool { return ring[i].hash >= hv })
		for step := 0; ; step++ {
			p := ring[(i+step)%len(ring)]
			if loads[p.node] < limit {
				loads[p.node]++
				out[p.node] = append(out[p.node], g)
				break
			}
		}
	}
	for n := range out {
		sort.Strings(out[n])
	}
	return out, nil
}

// Moved counts the groups whose holder differs between two assignments in
// which every group has one holder.
func Moved(prev, next Assignment) int {
	holder := make(map[string]string)
	for n, gs := range prev {
		for _, g := range gs {
			holder[g] = n
		}
	}
	moved := 0
	for n, gs := range next {
		for _, g := range gs {
			if h, ok := holder[g]; ok && h != n {
				moved++
			}
		}
	}
	return moved
}

// Spread is the difference between the most and the least loaded node.
func Spread(a Assignment, nodes []string) int {
	lo, hi := math.MaxInt, 0
	for _, n := range nodes {
		c := len(a[n])
		lo, hi = min(lo, c), max(hi, c)
	}
	if hi < lo {
		return 0
	}
	return hi - lo
}

// Names returns prefix0001, prefix0002, ... prefixN.
func Names(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%05d", prefix, i+1)
	}
	return out
}
