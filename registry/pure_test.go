package registry_test

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/quota"
	"github.com/allot-io/allot/registry"
)

// TestParseQuota: the texts of the one-limit era keep their meaning as a
// one-limit list; quota's own tests cover the many-limit grammar.
func TestParseQuota(t *testing.T) {
	req := func(rate int64, per time.Duration, burst int64) registry.Quota {
		return registry.Quota{{Kind: quota.Requests, Rate: rate, Per: per, Burst: burst}}
	}
	good := []struct {
		in   string
		want registry.Quota
		text string
	}{
		{"", registry.Quota{}, ""},
		{"600/m", req(600, time.Minute, 0), "600/m"},
		{"10/s", req(10, time.Second, 0), "10/s"},
		{"1000/h", req(1000, time.Hour, 0), "1000/h"},
		{"100/s burst 20", req(100, time.Second, 20), "100/s burst 20"},
		{"  5/MIN  Burst 2 ", req(5, time.Minute, 2), "5/m burst 2"},
		{"7/hour", req(7, time.Hour, 0), "7/h"},
		{"10/d", req(10, quota.Day, 0), "10/d"},
	}
	for _, tc := range good {
		q, err := registry.ParseQuota(tc.in)
		require.NoError(t, err, tc.in)
		assert.Equal(t, tc.want, q, tc.in)
		assert.Equal(t, tc.text, q.String(), tc.in)
		back, err := registry.ParseQuota(q.String())
		require.NoError(t, err)
		assert.Equal(t, q, back, "String round-trips")
	}
	for _, in := range []string{"600", "/m", "x/m", "-1/s", "0/s", "1.5/s", "10/w", "10/s burst", "10/s burst -1",
		"10/s burst x", "10/s limit 3", "10/s burst 2 extra", "10//s", "10/s, 20 tokns/m"} {
		_, err := registry.ParseQuota(in)
		assert.ErrorIs(t, err, registry.ErrInvalidQuota, in)
	}
}

func TestQuotaShare(t *testing.T) {
	q := registry.Quota{{Kind: quota.Requests, Rate: 600, Per: time.Minute, Burst: 10}}
	assert.Equal(t, "600/m", q.Share(1))
	assert.Equal(t, "600/m", q.Share(0))
	assert.Equal(t, "150/m", q.Share(4))
	assert.Equal(t, "85.71/m", q.Share(7))
	assert.Equal(t, "0.5/s", registry.Quota{{Kind: quota.Requests, Rate: 1, Per: time.Second}}.Share(2))
	assert.Equal(t, "", registry.Quota{}.Share(3))
	assert.True(t, registry.Quota{}.IsZero())
	assert.Equal(t, "", registry.Quota{}.String())
}

func TestMasked(t *testing.T) {
	g := registry.Group{
		Config:     map[string]string{"short": "abc", "long": "sk-1234567890abcd", "plain": "visible", "eleven": "12345678901"},
		SecretKeys: []string{"short", "long", "eleven"},
	}
	m := g.Masked()
	assert.Equal(t, map[string]string{"short": "****", "long": "****abcd", "plain": "visible", "eleven": "****"}, m.Config)
	assert.Equal(t, "sk-1234567890abcd", g.Config["long"], "the original is untouched")
	assert.True(t, g.IsSecret("long"))
	assert.False(t, g.IsSecret("plain"))
}

func TestValidateName(t *testing.T) {
	for _, ok := range []string{"a", "0", "key-1", "a.b_c-d", "z" + string(make([]byte, 0)), fmt.Sprintf("%063d", 0)} {
		assert.NoError(t, registry.ValidateName(ok), ok)
	}
	for _, bad := range []string{"", "A", "-a", ".a", "_a", "a b", "a/b", "ä", fmt.Sprintf("%064d", 0), "a:b", "a,b"} {
		assert.ErrorIs(t, registry.ValidateName(bad), registry.ErrInvalidName, bad)
	}
}

func TestGroupJSON(t *testing.T) {
	g := registry.Group{Name: "g", Version: 2, State: registry.Draining, Weight: 1.5, MaxNodes: 1, Quota: "10/s",
		Config: map[string]string{"a": "b"}, SecretKeys: []string{"a"}, UpdatedBy: "x",
		Created: time.UnixMilli(1700000000000).UTC(), Updated: time.UnixMilli(1700000000001).UTC()}
	b, err := json.Marshal(g)
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(b, &m))
	for _, k := range []string{"name", "version", "state", "weight", "max_nodes", "quota", "config", "secret_keys", "created", "updated", "updated_by"} {
		assert.Contains(t, m, k)
	}
	assert.NotContains(t, m, "drain_by", "omitted when zero")
}

func TestEventJSON(t *testing.T) {
	e := registry.Event{ID: "1-1", Type: registry.EventAssignment, By: "p", Epoch: 4, At: time.UnixMilli(1700000000123).UTC()}
	b, err := json.Marshal(e)
	require.NoError(t, err)
	assert.JSONEq(t, `{"id":"1-1","type":"assignment","group":"","node":"","by":"p","epoch":4,"version":0,"at":1700000000123}`, string(b))
	back, err := registry.ParseEvent(string(b))
	require.NoError(t, err)
	assert.Equal(t, e, back)
	rfc, err := registry.ParseEvent(`{"type":"group.added","at":"2023-11-14T22:13:20.123Z"}`)
	require.NoError(t, err)
	assert.Equal(t, e.At, rfc.At)
}

func TestErrorsWrapWithContext(t *testing.T) {
	// Every exported sentinel is prefixed with the package.
	for _, err := range []error{registry.ErrNotFound, registry.ErrExists, registry.ErrInvalidName, registry.ErrInvalidWeight,
		registry.ErrInvalidMaxNodes, registry.ErrInvalidQuota, registry.ErrConfigTooLarge, registry.ErrInvalidConfig,
		registry.ErrVersionMismatch, registry.ErrStaleEpoch, registry.ErrInvalidSchedule, registry.ErrInvalidState, registry.ErrConflict} {
		assert.Regexp(t, `^registry: [a-z]`, err.Error())
	}
}

func TestEventConcerns(t *testing.T) {
	named := registry.Event{Type: registry.EventAssignment, Scope: registry.ScopeNodes, Nodes: []string{"n1"}, Groups: []string{"g"}}
	for _, c := range []struct {
		ev   registry.Event
		node string
		held []string
		want bool
	}{
		{named, "n1", nil, true},
		{named, "n2", []string{"g"}, true},
		{named, "n2", []string{"h"}, false},
		{named, "n2", nil, false},
		// With the new count of g, a holder of g whose entry is unchanged
		// takes its share from the event; n1's own entry changed.
		{withHolders(named, map[string]int{"g": 3}), "n2", []string{"g", "h"}, false},
		{withHolders(named, map[string]int{"g": 3}), "n1", []string{"g"}, true},
		{withHolders(named, map[string]int{"x": 3}), "n2", []string{"g"}, true},
		{withHolders(named, map[string]int{"g": 0}), "n2", []string{"g"}, true},
		{registry.Event{Type: registry.EventAssignment}, "n2", []string{"h"}, true},
		{registry.Event{Type: registry.EventAssignment, Scope: registry.ScopeGroups, Groups: []string{"g"}}, "n2", nil, true},
		{registry.Event{Type: registry.EventAssignment, Scope: registry.ScopeGroups, Groups: []string{"g"}}, "n2", []string{"h"}, false},
		{registry.Event{Type: registry.EventGroupUpdated, Group: "g"}, "n2", []string{"g"}, false},
	} {
		assert.Equal(t, c.want, c.ev.Concerns(c.node, c.held), "%+v %s %v", c.ev, c.node, c.held)
	}
}

func withHolders(e registry.Event, counts map[string]int) registry.Event {
	e.Holders = counts
	return e
}

func TestEventAdoptCounts(t *testing.T) {
	ev := registry.Event{Type: registry.EventAssignment, Scope: registry.ScopeNodes, Nodes: []string{"n1"},
		Groups: []string{"a", "b"}, Holders: map[string]int{"a": 4, "b": 2}}
	counts, ok := ev.Adopt("n2", []string{"b", "c"})
	assert.True(t, ok)
	assert.Equal(t, map[string]int{"b": 2}, counts, "only held groups whose count changed")
	_, ok = ev.Adopt("n1", []string{"c"})
	assert.False(t, ok, "a named node reads its entry")
	ev.Scope = registry.ScopeGroups
	_, ok = ev.Adopt("n2", []string{"b"})
	assert.False(t, ok, "under scope groups a named group's holders read")
}

func TestEventNamesJSON(t *testing.T) {
	e := registry.Event{ID: "1-1", Type: registry.EventAssignment, Epoch: 4, Scope: registry.ScopeNodes, Nodes: []string{"n1"},
		Groups: []string{"a", "b"}, Holders: map[string]int{"a": 3, "b": 1}}
	b, err := json.Marshal(e)
	require.NoError(t, err)
	assert.JSONEq(t, `{"id":"1-1","type":"assignment","group":"","node":"","by":"","epoch":4,"version":0,"at":0,"scope":"nodes","nodes":["n1"],"groups":["a","b"],"holders":{"a":3,"b":1}}`, string(b))
	back, err := registry.ParseEvent(string(b))
	require.NoError(t, err)
	assert.Equal(t, e, back)

	// A scope it does not know, or lists that are not lists, name nothing:
	// every node reads.
	for _, payload := range []string{
		`{"type":"assignment","epoch":5,"scope":"zones","nodes":["n1"]}`,
		`{"type":"assignment","epoch":5,"scope":"nodes","nodes":"n1"}`,
		`{"type":"assignment","epoch":5,"scope":"nodes","groups":[1,2]}`,
	} {
		ev, err := registry.ParseEvent(payload)
		require.NoError(t, err, payload)
		assert.Empty(t, ev.Scope, payload)
		assert.True(t, ev.Concerns("n9", []string{"z"}), payload)
	}
	// Counts that are not counts are dropped: the named groups' holders read.
	ev, err := registry.ParseEvent(`{"type":"assignment","epoch":5,"scope":"nodes","groups":["a"],"holders":{"a":"many"}}`)
	require.NoError(t, err)
	assert.Nil(t, ev.Holders)
	assert.True(t, ev.Concerns("n9", []string{"a"}))
}
