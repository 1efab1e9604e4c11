package server_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/registry"
	"github.com/allot-io/allot/server"
)

type healthJSON struct {
	State        string    `json:"state"`
	CoolingUntil time.Time `json:"cooling_until"`
	Failures     int       `json:"failures"`
	Reason       string    `json:"reason"`
	Since        time.Time `json:"since"`
	NextProbe    time.Time `json:"next_probe"`
}

type groupHealthJSON struct {
	Name       string      `json:"name"`
	State      string      `json:"state"`
	EjectAfter string      `json:"eject_after"`
	Nodes      []string    `json:"nodes"`
	Health     *healthJSON `json:"health"`
}

func TestNodeReport(t *testing.T) {
	a := newAPI(t, server.WithTokens(testTokens))
	a.addGroup("bad", registry.Change{Set: map[string]string{"api_key": "bad-key-0123456789"}, Secret: []string{"api_key"}})
	a.addGroup("good", registry.Change{})

	sessions := map[string]string{}
	beat := func(id string) nodeAssignment {
		t.Helper()
		r := a.doSession("POST", "/v1/nodes/"+id+"/heartbeat", nodeToken, sessions[id], map[string]any{"ip": "10.0.0." + id[1:]})
		require.Equal(t, http.StatusOK, r.status, "%s", r.body)
		var na nodeAssignment
		r.json(t, &na)
		sessions[id] = na.Session
		return na
	}
	holds := func(id, group string) bool {
		for _, g := range beat(id).Groups {
			if g.Name == group {
				return true
			}
		}
		return false
	}
	beat("n1")
	beat("n2")
	require.Eventually(t, func() bool { return holds("n1", "bad") != holds("n2", "bad") }, 10*time.Second, 20*time.Millisecond)
	holder, other := "n1", "n2"
	if !holds("n1", "bad") {
		holder, other = "n2", "n1"
	}
	report := func(id string, body any) reply {
		t.Helper()
		return a.doSession("POST", "/v1/nodes/"+id+"/report", nodeToken, sessions[id], body)
	}

	events, stop := a.openEvents("")
	defer stop()

	// Throttled: a shared cooldown.
	r := report(holder, map[string]any{"group": "bad", "outcome": "throttled", "retry_after_ms": 30000})
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	var ans server.ReportAnswer
	r.json(t, &ans)
	assert.Equal(t, "active", ans.State)
	assert.InDelta(t, time.Now().Add(30*time.Second).UnixMilli(), ans.CoolingUntil, 2000)

	// Bad input: a clear error, nothing changed.
	for _, tc := range []struct {
		id     string
		body   any
		status int
		want   string
	}{
		{holder, map[string]any{"group": "bad", "outcome": "exploded"}, http.StatusUnprocessableEntity, "outcome"},
		{holder, map[string]any{"group": "Bad!", "outcome": "failure"}, http.StatusUnprocessableEntity, "invalid group name"},
		{holder, map[string]any{"group": "nope", "outcome": "failure"}, http.StatusNotFound, "not found"},
		{other, map[string]any{"group": "bad", "outcome": "failure"}, http.StatusConflict, "does not hold"},
		{"n9", map[string]any{"group": "bad", "outcome": "failure"}, http.StatusForbidden, "Allot-Session"},
		{holder, `{"group":`, http.StatusBadRequest, ""},
	} {
		r := report(tc.id, tc.body)
		assert.Equal(t, tc.status, r.status, "%v: %s", tc.body, r.body)
		assert.Contains(t, string(r.body), tc.want)
	}
	// The admin token needs no session: a node that never beat is not live.
	r = a.do("POST", "/v1/nodes/n9/report", adminToken, map[string]any{"group": "bad", "outcome": "failure"})
	assert.Equal(t, http.StatusConflict, r.status, "%s", r.body)
	assert.Contains(t, string(r.body), "not live")
	assert.Equal(t, http.StatusUnauthorized, a.do("POST", "/v1/nodes/"+holder+"/report", "", map[string]any{"group": "bad", "outcome": "failure"}).status)
	assert.Equal(t, http.StatusForbidden, a.do("POST", "/v1/nodes/"+holder+"/report", readToken, map[string]any{"group": "bad", "outcome": "failure"}).status)

	// Three failures: suspended; the server rebalances and both nodes get good.
	long := strings.Repeat("x", 300)
	for i := range 3 {
		r = report(holder, map[string]any{"group": "bad", "outcome": "failure", "reason": "HTTP 401 " + long})
		require.Equal(t, http.StatusOK, r.status, "%s", r.body)
		r.json(t, &ans)
		if i == 2 {
			assert.Equal(t, "suspended", ans.Transition)
		}
	}
	require.Eventually(t, func() bool { return !holds(holder, "bad") && holds(holder, "good") && holds(other, "good") },
		10*time.Second, 20*time.Millisecond)

	var g groupHealthJSON
	r = a.do("GET", "/v1/groups/bad", readToken, nil)
	require.Equal(t, http.StatusOK, r.status)
	r.json(t, &g)
	assert.Equal(t, "suspended", g.State)
	assert.Equal(t, "3/1m", g.EjectAfter)
	require.NotNil(t, g.Health)
	assert.Equal(t, 3, g.Health.Failures)
	assert.Len(t, g.Health.Reason, registry.MaxReasonBytes)
	assert.False(t, g.Health.NextProbe.IsZero())
	assert.False(t, g.Health.CoolingUntil.IsZero())
	assert.NotContains(t, string(r.body), "bad-key-0123456789")

	r = a.do("GET", "/v1/status", readToken, nil)
	assert.Contains(t, string(r.body), `"state":"suspended"`)

	seen := map[string]bool{}
	for range 10 {
		e := readEvents(t, events, 1)[0]
		seen[e.typ] = true
		if e.typ == registry.EventGroupSuspended {
			assert.Contains(t, e.data, `"reason":"HTTP 401 xxx`)
		}
		if seen[registry.EventGroupSuspended] && seen[registry.EventGroupThrottled] {
			break
		}
	}
	assert.True(t, seen[registry.EventGroupThrottled] && seen[registry.EventGroupSuspended], "events: %v", seen)

	r = a.do("GET", "/metrics", readToken, nil)
	assert.Contains(t, string(r.body), `allot_group_failures_total{group="bad"} 3`)
	assert.Contains(t, string(r.body), `allot_group_suspensions_total{group="bad"} 1`)
	assert.Contains(t, string(r.body), `allot_group_throttles_total{group="bad"} 1`)
	assert.Contains(t, string(r.body), `allot_groups{state="suspended"} 1`)

	// Resume (admin only): spread again.
	assert.Equal(t, http.StatusForbidden, a.do("POST", "/v1/groups/bad/resume", readToken, nil).status)
	r = a.do("POST", "/v1/groups/bad/resume", adminToken, nil)
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	g = groupHealthJSON{}
	r.json(t, &g)
	assert.Equal(t, "active", g.State)
	assert.Zero(t, g.Health.Failures)
	require.Eventually(t, func() bool { return holds("n1", "bad") != holds("n2", "bad") }, 10*time.Second, 20*time.Millisecond)

	// Suspend by hand, with a reason.
	r = a.do("POST", "/v1/groups/bad/suspend", adminToken, map[string]string{"reason": "credit ran out"})
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	g = groupHealthJSON{}
	r.json(t, &g)
	assert.Equal(t, "suspended", g.State)
	assert.Equal(t, "credit ran out", g.Health.Reason)
	assert.True(t, g.Health.NextProbe.IsZero())
	r = a.do("POST", "/v1/groups/bad/suspend", adminToken, nil)
	assert.Equal(t, http.StatusConflict, r.status, "%s", r.body)
	assert.Equal(t, http.StatusNotFound, a.do("POST", "/v1/groups/nope/suspend", adminToken, nil).status)
	require.Eventually(t, func() bool { return !holds("n1", "bad") && !holds("n2", "bad") }, 10*time.Second, 20*time.Millisecond)

	// eject_after through the API: validated.
	r = a.do("PATCH", "/v1/groups/good", adminToken, map[string]any{"eject_after": "5/30s"})
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	g = groupHealthJSON{}
	r.json(t, &g)
	assert.Equal(t, "5/30s", g.EjectAfter)
	r = a.do("PATCH", "/v1/groups/good", adminToken, map[string]any{"eject_after": "often"})
	assert.Equal(t, http.StatusUnprocessableEntity, r.status, "%s", r.body)
}
