package server_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/heartbeat"
	"github.com/allot-io/allot/registry"
	"github.com/allot-io/allot/server"
)

// slowLoop keeps the server's safety timer quiet, so that Redis changes only
// when a request changes it and DEBUG DIGEST can prove a refusal wrote
// nothing.
var slowLoop = heartbeat.Config{Interval: 20 * time.Second, TTL: time.Minute}

// redisDigest is DEBUG DIGEST: it changes with any write to any key.
func redisDigest(t *testing.T, rdb redis.UniversalClient) string {
	t.Helper()
	d, err := rdb.Do(context.Background(), "DEBUG", "DIGEST").Text()
	require.NoError(t, err)
	return d
}

// settledDigest waits until nothing writes (a rebalance in flight, its
// lock) and returns the digest.
func (a *api) settledDigest() string {
	a.t.Helper()
	var d string
	require.Eventually(a.t, func() bool {
		d = redisDigest(a.t, a.rdb)
		a.do("GET", "/v1/status", adminToken, nil)
		return redisDigest(a.t, a.rdb) == d
	}, 10*time.Second, 20*time.Millisecond)
	return d
}

// join sends a node's first heartbeat and returns its session.
func (a *api) join(id string) string {
	a.t.Helper()
	r := a.do("POST", "/v1/nodes/"+id+"/heartbeat", nodeToken, map[string]any{"ip": "10.0.0.9"})
	require.Equal(a.t, http.StatusOK, r.status, "%s", r.body)
	var na nodeAssignment
	r.json(a.t, &na)
	require.Len(a.t, na.Session, 16)
	return na.Session
}

// The attacks of issue 10 against the node protocol: with the node token
// alone, read another node's unmasked keys, remove it, or beat in its name.
// Each is refused, and none changes anything in Redis.
func TestNodeTokenCannotUseAnotherNode(t *testing.T) {
	a := newAPI(t, server.WithTokens(testTokens), server.WithHeartbeat(slowLoop))
	const secret = "victim-key-0123456789"
	a.addGroup("maps", registry.Change{Set: map[string]string{"api_key": secret}, Secret: []string{"api_key"}})
	victim := a.join("victim")
	require.Eventually(t, func() bool {
		r := a.doSession("GET", "/v1/nodes/victim/assignment?wait=0s", nodeToken, victim, nil)
		return r.status == http.StatusOK && strings.Contains(string(r.body), secret)
	}, 10*time.Second, 20*time.Millisecond, "the victim holds maps")
	before := a.settledDigest()

	const guess = "0123456789abcdef"
	for _, tt := range []struct {
		method, path, session string
		body                  any
		status                int
		code                  string
	}{
		{"GET", "/v1/nodes/victim/assignment?wait=0s", "", nil, 403, "forbidden"},
		{"GET", "/v1/nodes/victim/assignment?wait=0s", guess, nil, 403, "forbidden"},
		{"GET", "/v1/nodes/victim/assignment?wait=0s", "bad session!", nil, 403, "forbidden"},
		{"DELETE", "/v1/nodes/victim", "", nil, 403, "forbidden"},
		{"DELETE", "/v1/nodes/victim", guess, nil, 403, "forbidden"},
		{"POST", "/v1/nodes/victim/heartbeat", "", map[string]any{"ip": "10.6.6.6"}, 409, "conflict"},
		{"POST", "/v1/nodes/victim/heartbeat", guess, map[string]any{"ip": "10.6.6.6"}, 403, "forbidden"},
		{"POST", "/v1/nodes/victim/heartbeat", strings.Repeat("a", 65), map[string]any{}, 403, "forbidden"},
		// Bad input from the victim itself changes nothing either.
		{"POST", "/v1/nodes/victim/heartbeat", victim, map[string]any{"ip": "not-an-ip"}, 422, "invalid"},
		{"POST", "/v1/nodes/victim/heartbeat", victim, map[string]any{"ip": "10.0.0.9", "preferred": "Not A Group"}, 422, "invalid"},
		{"POST", "/v1/nodes/" + strings.Repeat("x", heartbeat.MaxNodeIDLen+1) + "/heartbeat", "", map[string]any{}, 422, "invalid"},
	} {
		r := a.doSession(tt.method, tt.path, nodeToken, tt.session, tt.body)
		assert.Equal(t, tt.status, r.status, "%s %.40s session %q: %s", tt.method, tt.path, tt.session, r.body)
		assert.Equal(t, tt.code, r.code(), "%s %.40s session %q", tt.method, tt.path, tt.session)
		assert.NotContains(t, string(r.body), secret)
		assert.NotContains(t, string(r.body), victim, "an answer leaked the victim's session")
	}
	assert.Equal(t, before, redisDigest(t, a.rdb), "a refused request changed Redis")

	r := a.do("POST", "/v1/nodes/victim/heartbeat", nodeToken, map[string]any{})
	assert.Contains(t, string(r.body), "in use by another process")

	// The victim itself still reads its keys and leaves with its session;
	// then the ID is free at once.
	r = a.doSession("GET", "/v1/nodes/victim/assignment?wait=0s", nodeToken, victim, nil)
	require.Equal(t, http.StatusOK, r.status)
	assert.Contains(t, string(r.body), secret)
	r = a.doSession("DELETE", "/v1/nodes/victim", nodeToken, victim, nil)
	require.Equal(t, http.StatusNoContent, r.status, "%s", r.body)
	next := a.join("victim")
	assert.NotEqual(t, victim, next)
	r = a.doSession("GET", "/v1/nodes/victim/assignment?wait=0s", nodeToken, victim, nil)
	assert.Equal(t, http.StatusForbidden, r.status, "the old session is dead")
}

// An operator (admin token) may remove a node without its session.
func TestAdminEvictsNode(t *testing.T) {
	a := newAPI(t, server.WithTokens(testTokens), server.WithHeartbeat(slowLoop))
	session := a.join("n1")
	r := a.do("DELETE", "/v1/nodes/n1", nodeToken, nil)
	require.Equal(t, http.StatusForbidden, r.status)
	r = a.do("DELETE", "/v1/nodes/n1", adminToken, nil)
	require.Equal(t, http.StatusNoContent, r.status, "%s", r.body)
	r = a.do("GET", "/v1/nodes", adminToken, nil)
	assert.NotContains(t, string(r.body), `"n1"`)
	// The evicted process's own leave, now of an unknown node, is a no-op.
	r = a.doSession("DELETE", "/v1/nodes/n1", nodeToken, session, nil)
	assert.Equal(t, http.StatusNoContent, r.status, "%s", r.body)
	a.join("n1") // free again
}
