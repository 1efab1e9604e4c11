package allocator

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/allot-io/allot/heartbeat"
	"github.com/allot-io/allot/registry"
)

// The steps of state.next, each on its own. TestGate* cover them together.

func TestNextGuards(t *testing.T) {
	draining := active("d", 0)
	draining.State = registry.Draining
	probing := active("p", 0)
	probing.State = registry.Probing
	st := state{groups: []registry.Group{active("free", 0), active("x", 2), draining, probing}}
	gd := st.guards()
	assert.Equal(t, map[string]int{"x": 2, "p": 1}, gd.maxNodes, "a probing group is capped at one node")
	assert.Equal(t, map[string]bool{"x": true, "d": true, "p": true}, gd.guarded)
}

func TestNextUnreleased(t *testing.T) {
	st := state{
		groups: []registry.Group{active("x", 1), active("y", 1), active("free", 0)},
		nodes: []heartbeat.Node{
			{ID: "acked", Ack: 5},                            // acknowledged epoch 5 without x: released
			{ID: "holding", Ack: 5, Held: []string{"x"}},     // still reports x: not released
			{ID: "behind", Ack: 4},                           // has not seen epoch 5 yet
			{ID: "uncapped", Ack: 9, Held: []string{"free"}}, // free is no longer guarded
		},
		assign: registry.Assignment{Revoked: map[string][]string{
			"acked":    {"x@5"},
			"holding":  {"x@5"},
			"behind":   {"y@5"},
			"uncapped": {"free@3"},
			"gone":     {"x@2"}, // not live: its lease expired
		}},
	}
	assert.Equal(t, map[string]map[string]int64{
		"holding": {"x": 5},
		"behind":  {"y": 5},
	}, st.unreleased(st.guards()))
}

func TestNextMayHold(t *testing.T) {
	st := state{
		groups: []registry.Group{active("x", 1), active("free", 0)},
		nodes: []heartbeat.Node{
			{ID: "granted"},
			{ID: "reports", Held: []string{"x", "free"}},
			{ID: "revoked"},
			{ID: "other"},
		},
		assign: registry.Assignment{Nodes: map[string][]string{"granted": {"x"}, "other": {"free"}}},
	}
	revoked := map[string]map[string]int64{"revoked": {"x": 3}}
	assert.Equal(t, map[string]map[string]bool{
		"x": {"granted": true, "reports": true, "revoked": true},
	}, st.mayHold(st.guards(), revoked), "only guarded groups are counted")
}

func TestNextGrant(t *testing.T) {
	st := state{
		groups: []registry.Group{active("x", 1), active("y", 2), active("free", 0)},
		nodes:  []heartbeat.Node{{ID: "a"}, {ID: "b"}, {ID: "c"}},
	}
	desired := Assignment{"a": {"free", "x"}, "b": {"x", "y"}, "c": {"y"}}
	mayHold := map[string]map[string]bool{"x": {"a": true}, "y": {"old": true}}
	granted, waiting := st.grant(desired, st.guards(), mayHold)
	assert.Equal(t, map[string][]string{
		"a": {"free", "x"}, // may hold x already: kept
		"b": {"y"},         // x is full (a); y has room for one more, b first by ID
		"c": {},            // y is full now (old, b)
	}, granted)
	assert.Equal(t, 2, waiting)
	assert.Equal(t, map[string]bool{"old": true, "b": true}, mayHold["y"], "grants are counted as they are made")
}

func TestNextRevokeMoved(t *testing.T) {
	st := state{
		groups: []registry.Group{active("x", 1), active("free", 0)},
		nodes: []heartbeat.Node{
			{ID: "moved"},
			{ID: "reports", Held: []string{"x"}},
			{ID: "back"},
		},
		assign: registry.Assignment{Counters: registry.Counters{Epoch: 7},
			Nodes: map[string][]string{"moved": {"x", "free"}}},
	}
	revoked := map[string]map[string]int64{"back": {"x": 3}}
	granted := map[string][]string{"moved": {}, "reports": {}, "back": {"x"}}
	st.revokeMoved(granted, st.guards(), revoked)
	assert.Equal(t, map[string]map[string]int64{
		"moved":   {"x": 8}, // at the epoch this commit makes; free is not guarded
		"reports": {"x": 8}, // reported held without a grant
		"back":    {},       // granted again: the old entry is moot
	}, revoked)
	assert.Equal(t, map[string][]string{"moved": {"x@8"}, "reports": {"x@8"}}, flattenRevoked(revoked))
}

func TestNextDrained(t *testing.T) {
	d1, d2, d3 := active("d1", 0), active("d2", 0), active("d3", 0)
	d1.State, d2.State, d3.State = registry.Draining, registry.Draining, registry.Draining
	st := state{groups: []registry.Group{d1, d2, d3, active("x", 0)}}
	mayHold := map[string]map[string]bool{"d1": {"a": true}, "d2": {"b": true}}
	granted := map[string][]string{"a": {"d1"}}
	revoked := map[string]map[string]int64{"b": {}}
	assert.Equal(t, []string{"d2", "d3"}, st.drained(granted, mayHold, revoked),
		"d1 is still granted; d2's holder released it; nobody held d3")
}
