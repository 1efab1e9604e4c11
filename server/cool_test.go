package server_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/registry"
	"github.com/allot-io/allot/server"
)

// TestGroupCoolAndReportRate: POST /v1/groups/{name}/cool {"clear":true}
// ends a cooldown (admin only); a node over its report rate gets 429.
func TestGroupCoolAndReportRate(t *testing.T) {
	a := newAPI(t, server.WithTokens(testTokens))
	a.addGroup("k", registry.Change{})
	r := a.doSession("POST", "/v1/nodes/n1/heartbeat", nodeToken, "", map[string]any{"ip": "10.0.0.1"})
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	var na nodeAssignment
	r.json(t, &na)
	session := na.Session
	require.Eventually(t, func() bool {
		r := a.doSession("POST", "/v1/nodes/n1/heartbeat", nodeToken, session, map[string]any{"ip": "10.0.0.1"})
		var na nodeAssignment
		r.json(t, &na)
		return len(na.Groups) == 1
	}, 10*time.Second, 20*time.Millisecond)
	report := func() reply {
		return a.doSession("POST", "/v1/nodes/n1/report", nodeToken, session,
			map[string]any{"group": "k", "outcome": "throttled", "retry_after_ms": 30000})
	}
	r = report()
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)

	assert.Equal(t, http.StatusForbidden, a.do("POST", "/v1/groups/k/cool", readToken, map[string]any{"clear": true}).status)
	r = a.do("POST", "/v1/groups/k/cool", adminToken, map[string]any{})
	assert.Equal(t, http.StatusUnprocessableEntity, r.status, "%s", r.body)
	r = a.do("POST", "/v1/groups/k/cool", adminToken, map[string]any{"clear": true})
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	var g groupHealthJSON
	r.json(t, &g)
	assert.True(t, g.Health.CoolingUntil.IsZero(), "%s", r.body)
	assert.Equal(t, http.StatusNotFound, a.do("POST", "/v1/groups/nope/cool", adminToken, map[string]any{"clear": true}).status)

	// The report rate: past the burst, 429 and nothing written.
	var limited reply
	for range 2 * registry.ReportBurst {
		if r := report(); r.status != http.StatusOK {
			limited = r
			break
		}
	}
	assert.Equal(t, http.StatusTooManyRequests, limited.status, "%s", limited.body)
	assert.Contains(t, string(limited.body), "too_many_requests")
}
