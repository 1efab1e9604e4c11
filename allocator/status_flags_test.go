package allocator

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/allot-io/allot/heartbeat"
	"github.com/allot-io/allot/registry"
)

// TestStatusShort: an active group held fewer times than its target is
// short (unserved included); a full one, a suspended and a draining group
// are not, whatever their holders.
func TestStatusShort(t *testing.T) {
	draining := withState(active("d", 0), registry.Draining)
	st := state{
		groups: []registry.Group{active("a", 0), active("b", 0), active("c", 0),
			withState(active("s", 0), registry.Suspended), draining},
		nodes: []heartbeat.Node{{ID: "n1", IP: "10.0.0.1"}, {ID: "n2", IP: "10.0.0.2"},
			{ID: "n3", IP: "10.0.0.3"}, {ID: "n4", IP: "10.0.0.4"}},
		// b lost its node to a; c was never given one; d still has one.
		assign: registry.Assignment{Counters: registry.Counters{Epoch: 3},
			Nodes: map[string][]string{"n1": {"a"}, "n2": {"a"}, "n3": {"a"}, "n4": {"d"}}},
	}
	s := st.status()
	short := map[string]bool{}
	for _, g := range s.Groups {
		short[g.Name] = g.Short
	}
	assert.Equal(t, map[string]bool{"a": false, "b": true, "c": true, "s": false, "d": false}, short)
}

// TestStatusStale: a live node that missed its beats for two intervals is
// stale; one that beat within them is not.
func TestStatusStale(t *testing.T) {
	now := time.Unix(1_000, 0)
	s := Status{Nodes: []NodeStatus{
		{ID: "fresh", LastSeen: now.Add(-time.Second)},
		{ID: "late", LastSeen: now.Add(-3 * time.Second)},
		{ID: "edge", LastSeen: now.Add(-4 * time.Second)},
		{ID: "gone", LastSeen: now.Add(-5 * time.Second)},
	}}
	s.markStale(now, StaleAfter*2*time.Second)
	stale := map[string]bool{}
	for _, n := range s.Nodes {
		stale[n.ID] = n.Stale
	}
	assert.Equal(t, map[string]bool{"fresh": false, "late": false, "edge": false, "gone": true}, stale)
}
