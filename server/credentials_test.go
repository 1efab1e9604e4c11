package server_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/internal/redistest"
	"github.com/allot-io/allot/server"
)

// Node tokens bound to node ID patterns (issue 21, "one node token is
// every node").
const (
	apiNodeToken    = "api-node-token-0123456789"
	workerNodeToken = "worker-node-token-0123456789"
)

var boundTokens = server.Tokens{Admin: adminToken, Read: readToken, Node: nodeToken, Nodes: []server.NodeToken{
	{Token: apiNodeToken, Pattern: "api-*"},
	{Token: workerNodeToken, Pattern: "worker-?"},
}}

// joinAs sends a first heartbeat of id with token and returns its session.
func (a *api) joinAs(id, token string) string {
	a.t.Helper()
	r := a.do("POST", "/v1/nodes/"+id+"/heartbeat", token, map[string]any{"ip": "10.0.0.9"})
	require.Equal(a.t, http.StatusOK, r.status, "%s", r.body)
	var na nodeAssignment
	r.json(a.t, &na)
	require.Len(a.t, na.Session, 16)
	return na.Session
}

// TestNodeTokenBoundToPattern: 12 fresh node IDs beating twice each with
// one node token received every group's api_key, and a predictable ID
// (compose's node-1) could be squatted before its process started. A token
// bound to "api-*" gets 403 for every other ID, on every node route, before
// anything is written; the token of the IDs it names still works, and
// ALLOT_NODE_TOKEN (pattern "*") keeps working for any ID.
func TestNodeTokenBoundToPattern(t *testing.T) {
	a := newAPI(t, server.WithTokens(boundTokens), server.WithHeartbeat(slowLoop))
	for i := range 4 {
		a.addGroup(fmt.Sprintf("g%d", i), secretChange("api_key", fmt.Sprintf("%s-%d", secretValue, i)))
	}
	victim := a.joinAs("worker-1", workerNodeToken)
	before := a.settled(adminToken)

	for i := range 12 {
		for _, id := range []string{fmt.Sprintf("node-%d", i+1), fmt.Sprintf("worker-%d", i%10), "wrk-" + strconv.Itoa(i)} {
			for range 2 {
				r := a.do("POST", "/v1/nodes/"+id+"/heartbeat", apiNodeToken, map[string]any{"ip": "10.6.6.6"})
				a.refused(r, http.StatusForbidden, "forbidden", before)
				assert.Contains(t, string(r.body), `node IDs matching \"api-*\"`)
				assert.NotContains(t, string(r.body), secretValue)
			}
		}
	}
	for _, tt := range []struct{ method, path string }{
		{"GET", "/v1/nodes/worker-1/assignment?wait=0s"},
		{"DELETE", "/v1/nodes/worker-1"},
		{"POST", "/v1/nodes/worker-1/report"},
		{"POST", "/v1/nodes/worker-1/heartbeat"},
	} {
		var body any
		if tt.method == "POST" {
			body = map[string]any{"group": "g0", "outcome": "failure"}
			if strings.HasSuffix(tt.path, "heartbeat") {
				body = map[string]any{}
			}
		}
		r := a.doSession(tt.method, tt.path, apiNodeToken, victim, body)
		a.refused(r, http.StatusForbidden, "forbidden", before)
		assert.NotContains(t, string(r.body), secretValue)
	}
	// "worker-?" is one character: worker-12 is not its.
	a.refused(a.do("POST", "/v1/nodes/worker-12/heartbeat", workerNodeToken, map[string]any{}), http.StatusForbidden, "forbidden", before)

	// Within their patterns the tokens work; the any-ID token and admin too.
	a.joinAs("api-eu-1", apiNodeToken)
	a.joinAs("worker-2", workerNodeToken)
	a.joinAs("node-1", nodeToken)
	a.joinAs("misc-1", adminToken)
	r := a.doSession("GET", "/v1/nodes/worker-1/assignment?wait=0s", workerNodeToken, victim, nil)
	assert.Equal(t, http.StatusOK, r.status, "%s", r.body)
}

// TestTokensValidate: tokens that cannot work stop the server before it
// starts, with an error that names the token but never quotes it.
func TestTokensValidate(t *testing.T) {
	const tok = "tok-0123456789abcdef"
	for _, tt := range []struct {
		name string
		t    server.Tokens
		want string
	}{
		{"empty node token", server.Tokens{Nodes: []server.NodeToken{{Token: "", Pattern: "api-*"}}}, "node token 1 (pattern \"api-*\") is empty"},
		{"no pattern", server.Tokens{Nodes: []server.NodeToken{{Token: tok}}}, "node token 1 has no node ID pattern"},
		{"bad pattern", server.Tokens{Nodes: []server.NodeToken{{Token: tok, Pattern: "api-[a"}}}, "syntax error in pattern"},
		{"pattern no ID matches", server.Tokens{Nodes: []server.NodeToken{{Token: tok, Pattern: "a,b"}}}, "no node ID holds"},
		{"space in token", server.Tokens{Nodes: []server.NodeToken{{Token: "tok 0123456789", Pattern: "*"}}}, "white space"},
		{"two node tokens", server.Tokens{Nodes: []server.NodeToken{{Token: tok, Pattern: "a-*"}, {Token: tok, Pattern: "b-*"}}}, "node token 2 (pattern \"b-*\") is the same as node token 1"},
		{"node token is admin", server.Tokens{Admin: tok, Nodes: []server.NodeToken{{Token: tok, Pattern: "a-*"}}}, "is the same as the admin token"},
		{"node token is read", server.Tokens{Read: tok, Nodes: []server.NodeToken{{Token: tok, Pattern: "a-*"}}}, "is the same as the read token"},
		{"node token is ALLOT_NODE_TOKEN", server.Tokens{Node: tok, Nodes: []server.NodeToken{{Token: tok, Pattern: "a-*"}}}, "is the same as ALLOT_NODE_TOKEN"},
		{"admin is read", server.Tokens{Admin: tok, Read: tok}, "the read token is the same as the admin token"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.t.Validate()
			require.ErrorIs(t, err, server.ErrInvalidTokens)
			assert.Contains(t, err.Error(), tt.want)
			assert.NotContains(t, err.Error(), "0123456789")
		})
	}
	require.NoError(t, boundTokens.Validate())
	rdb := redistest.Start(t).Client(t)
	_, err := server.New(rdb, server.WithTokens(server.Tokens{Nodes: []server.NodeToken{{Token: tok, Pattern: "["}}}))
	assert.ErrorIs(t, err, server.ErrInvalidTokens)
}

func TestParseNodeTokens(t *testing.T) {
	got, err := server.ParseNodeTokens(" tok1=api-* , dGVzdA===worker-?,")
	require.Error(t, err, "an empty entry")
	got, err = server.ParseNodeTokens(" tok1=api-* , dGVzdA===worker-? ")
	require.NoError(t, err)
	assert.Equal(t, []server.NodeToken{{Token: "tok1", Pattern: "api-*"}, {Token: "dGVzdA==", Pattern: "worker-?"}}, got)
	_, err = server.ParseNodeTokens("tok1=api-*,secret-without-pattern")
	require.ErrorIs(t, err, server.ErrInvalidTokens)
	assert.Contains(t, err.Error(), "entry 2")
	assert.NotContains(t, err.Error(), "secret")

	got, err = server.ReadNodeTokens(strings.NewReader("# api nodes\n\ntok1 api-*\n\ttok2\tworker-?  # the workers\n"))
	require.NoError(t, err)
	assert.Equal(t, []server.NodeToken{{Token: "tok1", Pattern: "api-*"}, {Token: "tok2", Pattern: "worker-?"}}, got)
	_, err = server.ReadNodeTokens(strings.NewReader("tok1 api-*\nsecret-alone\n"))
	require.ErrorIs(t, err, server.ErrInvalidTokens)
	assert.Contains(t, err.Error(), "line 2")
	assert.NotContains(t, err.Error(), "secret")

	env := map[string]string{"ALLOT_NODE_TOKEN": " any ", "ALLOT_NODE_TOKENS": "tok1=api-*"}
	tokens, err := server.TokensFrom(func(k string) string { return env[k] })
	require.NoError(t, err)
	assert.Equal(t, server.Tokens{Node: "any", Nodes: []server.NodeToken{{Token: "tok1", Pattern: "api-*"}}}, tokens)
	assert.False(t, tokens.Open())
	assert.False(t, server.Tokens{Nodes: tokens.Nodes}.Open())
}

// TestJoinSessionIsServers: a first heartbeat could bring its own
// Allot-Session, and the server kept it. Now a session sent for an ID it
// does not hold is ignored: the answer carries a session of the server's,
// and only that one reads the node's keys.
func TestJoinSessionIsServers(t *testing.T) {
	a := newAPI(t, server.WithTokens(testTokens), server.WithHeartbeat(slowLoop))
	a.addGroup("maps", secretChange("api_key", secretValue))
	const chosen = "attacker-chosen-session"
	r := a.doSession("POST", "/v1/nodes/n1/heartbeat", nodeToken, chosen, map[string]any{"ip": "10.0.0.1"})
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	var na nodeAssignment
	r.json(t, &na)
	assert.Len(t, na.Session, 16)
	assert.NotEqual(t, chosen, na.Session, "the client chose its session")

	r = a.doSession("GET", "/v1/nodes/n1/assignment?wait=0s", nodeToken, chosen, nil)
	assert.Equal(t, http.StatusForbidden, r.status, "the chosen session reads the node: %s", r.body)
	require.Eventually(t, func() bool {
		r := a.doSession("GET", "/v1/nodes/n1/assignment?wait=0s", nodeToken, na.Session, nil)
		return r.status == http.StatusOK && strings.Contains(string(r.body), secretValue)
	}, 10*time.Second, 20*time.Millisecond, "the server's session holds the node")
	// The server's session continues the node: the same session comes back.
	r = a.doSession("POST", "/v1/nodes/n1/heartbeat", nodeToken, na.Session, map[string]any{"ip": "10.0.0.1"})
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	var again nodeAssignment
	r.json(t, &again)
	assert.Equal(t, na.Session, again.Session)
	// A chosen session after the node left joins under a new one too.
	r = a.doSession("DELETE", "/v1/nodes/n1", nodeToken, na.Session, nil)
	require.Equal(t, http.StatusNoContent, r.status, "%s", r.body)
	r = a.doSession("POST", "/v1/nodes/n1/heartbeat", nodeToken, na.Session, map[string]any{"ip": "10.0.0.1"})
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	r.json(t, &again)
	assert.NotEqual(t, na.Session, again.Session, "a left session was taken back")
}

// TestNodeJoinsLimited: 10,000 distinct IDs joined in 9.8 s with no cap.
// Joins are limited per node token (429 with Retry-After); beats that
// continue a node, beats refused because the ID is in use, other tokens
// and the admin are not, and serve replicas on the same Redis share the
// budget.
func TestNodeJoinsLimited(t *testing.T) {
	const n = 5
	a := newAPI(t, server.WithTokens(boundTokens), server.WithHeartbeat(slowLoop), server.WithNodeJoinsPerMinute(n))
	// Bad input is refused before the limit counts it: nothing is written.
	before := a.settled(adminToken)
	for _, body := range []map[string]any{{"ip": "not-an-ip"}, {"preferred": "Not A Group"}} {
		a.refused(a.do("POST", "/v1/nodes/api-0/heartbeat", apiNodeToken, body), http.StatusUnprocessableEntity, "invalid", before)
	}
	sessions := map[string]string{}
	for i := range n {
		id := fmt.Sprintf("api-%d", i)
		sessions[id] = a.joinAs(id, apiNodeToken)
	}
	r := a.do("POST", "/v1/nodes/api-x/heartbeat", apiNodeToken, map[string]any{})
	assert.Equal(t, http.StatusTooManyRequests, r.status, "%s", r.body)
	assert.Equal(t, "too_many_requests", r.code())
	retry, err := strconv.Atoi(r.header.Get("Retry-After"))
	require.NoError(t, err, "Retry-After %q", r.header.Get("Retry-After"))
	assert.True(t, retry >= 1 && retry <= 60, "Retry-After %d", retry)
	st, err := a.srv.Tracker().Holder(context.Background(), "api-x")
	require.NoError(t, err)
	assert.False(t, st.Registered, "a refused join registered the node")

	// A chosen session is a join as well.
	r = a.doSession("POST", "/v1/nodes/api-x/heartbeat", apiNodeToken, "chosen-session", map[string]any{})
	assert.Equal(t, http.StatusTooManyRequests, r.status, "%s", r.body)

	// Not limited: continuing beats, a beat for a live ID (409, and it
	// writes nothing), another token, the admin.
	for id, s := range sessions {
		r := a.doSession("POST", "/v1/nodes/"+id+"/heartbeat", apiNodeToken, s, map[string]any{})
		assert.Equal(t, http.StatusOK, r.status, "%s", r.body)
	}
	before = a.settled(adminToken)
	a.refused(a.do("POST", "/v1/nodes/api-0/heartbeat", apiNodeToken, map[string]any{}), http.StatusConflict, "conflict", before)
	a.joinAs("worker-1", workerNodeToken)
	a.joinAs("api-admin", adminToken)

	// A second serve on the same Redis shares the budget.
	b, err := server.New(a.rdb, server.WithTokens(boundTokens), server.WithHeartbeat(slowLoop), server.WithNodeJoinsPerMinute(n))
	require.NoError(t, err)
	defer b.Close()
	ts := httptest.NewServer(b.Handler())
	defer ts.Close()
	other := &api{t: t, rdb: a.rdb, srv: b, ts: ts, reg: b.Registry()}
	r = other.do("POST", "/v1/nodes/api-y/heartbeat", apiNodeToken, map[string]any{})
	assert.Equal(t, http.StatusTooManyRequests, r.status, "%s", r.body)
}

// TestStreamCapPerClass: 64 idle read-token streams shut the admin's
// stream out with 503. Each token class has its own cap.
func TestStreamCapPerClass(t *testing.T) {
	a := newAPI(t, server.WithTokens(testTokens), server.WithMaxStreams(2))
	for range 2 {
		_, stop := a.openEvents("")
		defer stop()
	}
	r := a.do("GET", "/v1/events", readToken, nil)
	assert.Equal(t, http.StatusServiceUnavailable, r.status, "%s", r.body)
	assert.Equal(t, "1", r.header.Get("Retry-After"))
	for range 2 {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, "GET", a.ts.URL+"/v1/events", nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+adminToken)
		res, err := a.ts.Client().Do(req)
		require.NoError(t, err)
		defer res.Body.Close()
		assert.Equal(t, http.StatusOK, res.StatusCode, "the admin is shut out by read streams")
	}
	r = a.do("GET", "/v1/events", adminToken, nil)
	assert.Equal(t, http.StatusServiceUnavailable, r.status, "%s", r.body)
}

// TestLongPollCap: long polls had no cap. Beyond --max-long-polls per class
// a poll gets 503 with Retry-After (one heartbeat interval) at once; a read
// without a wait, heartbeats and the admin's class are not affected.
func TestLongPollCap(t *testing.T) {
	a := newAPI(t, server.WithTokens(testTokens), server.WithHeartbeat(slowLoop), server.WithMaxLongPolls(1))
	s1, s2 := a.join("n1"), a.join("n2")
	// The first poll waits (an epoch that never comes) until cancelled;
	// a 503 means a probe below held the one slot for a moment: poll again.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	polled := make(chan int, 1)
	go func() {
		for {
			req, _ := http.NewRequestWithContext(ctx, "GET", a.ts.URL+"/v1/nodes/n1/assignment?after=999999&wait=50s", nil)
			req.Header.Set("Authorization", "Bearer "+nodeToken)
			req.Header.Set(server.SessionHeader, s1)
			res, err := a.ts.Client().Do(req)
			if err != nil {
				polled <- 0 // cancelled
				return
			}
			res.Body.Close()
			if res.StatusCode != http.StatusServiceUnavailable {
				polled <- res.StatusCode
				return
			}
		}
	}()
	require.Eventually(t, func() bool {
		r := a.doSession("GET", "/v1/nodes/n2/assignment?after=999999&wait=1ms", nodeToken, s2, nil)
		if r.status == http.StatusOK {
			return false // the first poll was not waiting yet
		}
		assert.Equal(t, http.StatusServiceUnavailable, r.status, "%s", r.body)
		assert.Equal(t, "20", r.header.Get("Retry-After"), "one heartbeat interval")
		assert.Contains(t, string(r.body), "too many long polls")
		return true
	}, 30*time.Second, 20*time.Millisecond)

	assert.Equal(t, http.StatusOK, a.doSession("GET", "/v1/nodes/n2/assignment?wait=0s", nodeToken, s2, nil).status)
	assert.Equal(t, http.StatusOK, a.doSession("POST", "/v1/nodes/n2/heartbeat", nodeToken, s2, map[string]any{}).status)
	r := a.do("GET", "/v1/nodes/n2/assignment?after=999999&wait=1ms", adminToken, nil)
	assert.Equal(t, http.StatusOK, r.status, "the admin's class is its own: %s", r.body)

	// A poll that ends frees its slot.
	cancel()
	assert.Equal(t, 0, <-polled, "the first poll answered before it was cancelled")
	require.Eventually(t, func() bool {
		return a.doSession("GET", "/v1/nodes/n2/assignment?after=999999&wait=1ms", nodeToken, s2, nil).status == http.StatusOK
	}, 10*time.Second, 20*time.Millisecond)
}
