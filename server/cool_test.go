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

// TestOneNodeCannotSuspendThePool replays the attack of issue 21 over HTTP:
// 5 groups, 5 nodes, one of which reports every group it is handed as
// failing. At most one group ends up suspended (its own, held alone); the
// honest nodes keep serving.
func TestOneNodeCannotSuspendThePool(t *testing.T) {
	a := newAPI(t, server.WithTokens(testTokens))
	groups := []string{"g0", "g1", "g2", "g3", "g4"}
	for _, g := range groups {
		a.addGroup(g, registry.Change{})
	}
	sessions := map[string]string{}
	beat := func(id string) []string {
		t.Helper()
		r := a.doSession("POST", "/v1/nodes/"+id+"/heartbeat", nodeToken, sessions[id], map[string]any{"ip": "10.0.0.1"})
		require.Equal(t, http.StatusOK, r.status, "%s", r.body)
		var na nodeAssignment
		r.json(t, &na)
		sessions[id] = na.Session
		var held []string
		for _, g := range na.Groups {
			held = append(held, g.Name)
		}
		return held
	}
	nodes := []string{"n0", "n1", "n2", "n3", "n4"}
	held := map[string][]string{}
	require.Eventually(t, func() bool {
		all := true
		for _, n := range nodes {
			held[n] = beat(n)
			all = all && len(held[n]) == 1
		}
		return all
	}, 10*time.Second, 20*time.Millisecond, "%v", held)

	attacked := map[string]bool{}
	for range len(groups) {
		var target string
		// Wait for a group the attacker has not reported yet (the old code
		// handed it a fresh one after each suspension).
		ok := poll(2*time.Second, func() bool {
			for _, n := range nodes[1:] {
				beat(n)
			}
			for _, g := range beat("n0") {
				if !attacked[g] {
					target = g
					return true
				}
			}
			return false
		})
		if !ok {
			break
		}
		attacked[target] = true
		for range 3 {
			r := a.doSession("POST", "/v1/nodes/n0/report", nodeToken, sessions["n0"],
				map[string]any{"group": target, "outcome": "failure", "reason": "HTTP 401"})
			require.Equal(t, http.StatusOK, r.status, "%s", r.body)
		}
	}
	un, err := a.reg.Unhealthy(t.Context())
	require.NoError(t, err)
	assert.LessOrEqual(t, len(un), 1, "suspended: %v (attacked %v)", un, attacked)
}

// poll checks cond every 20 ms until it holds (true) or d has passed
// (false): a wait whose timeout is an answer, not a failure.
func poll(d time.Duration, cond func() bool) bool {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		<-tick.C
	}
	return true
}
