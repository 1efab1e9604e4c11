package server_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/heartbeat"
	"github.com/allot-io/allot/internal/redistest"
	"github.com/allot-io/allot/registry"
	"github.com/allot-io/allot/server"
)

// Tokens of the role tests.
const (
	adminToken = "admin-token-0123456789"
	readToken  = "read-token-0123456789"
	nodeToken  = "node-token-0123456789"
)

var testTokens = server.Tokens{Admin: adminToken, Read: readToken, Node: nodeToken}

// api is one server under test: real redis-server, the loop running,
// an httptest listener.
type api struct {
	t     *testing.T
	redis *redistest.Server
	rdb   redis.UniversalClient
	srv   *server.Server
	ts    *httptest.Server
	reg   *registry.Registry
}

// fastBeat lets the loop's safety timer tick often while keeping nodes that
// the test beats by hand alive for the whole test.
var fastBeat = heartbeat.Config{Interval: 100 * time.Millisecond, TTL: time.Minute}

func newAPI(t *testing.T, opts ...server.Option) *api {
	t.Helper()
	rs := redistest.Start(t)
	a := newAPIOn(t, rs.Client(t), opts...)
	a.redis = rs
	return a
}

// newAPIOn is newAPI on a Redis of the caller's (a Cluster, a client with
// hooks).
func newAPIOn(t *testing.T, rdb redis.UniversalClient, opts ...server.Option) *api {
	t.Helper()
	opts = append([]server.Option{server.WithHeartbeat(fastBeat)}, opts...)
	srv, err := server.New(rdb, opts...)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- srv.Run(ctx) }()
	h := srv.Handler()
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), inRequest{}, true)))
	}))
	t.Cleanup(func() {
		ts.CloseClientConnections()
		cancel()
		assert.NoError(t, <-ran)
		assert.NoError(t, srv.Close())
		ts.Close()
	})
	return &api{t: t, rdb: rdb, srv: srv, ts: ts, reg: srv.Registry()}
}

// inRequest marks the context of every request the test server serves,
// so a Redis hook tells the requests' commands from the loop's.
type inRequest struct{}

// reply is one HTTP answer.
type reply struct {
	status int
	header http.Header
	body   []byte
}

func (r reply) json(t *testing.T, v any) {
	t.Helper()
	require.NoError(t, json.Unmarshal(r.body, v), "body: %s", r.body)
}

// code is the error code of an error answer ("" when there is none).
func (r reply) code() string {
	var e struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	_ = json.Unmarshal(r.body, &e)
	return e.Error.Code
}

// do sends a request; body is JSON-encoded unless it is a string or []byte,
// and sent with the Content-Type the web UI would give it.
func (a *api) do(method, path, token string, body any) reply {
	a.t.Helper()
	return a.send(method, path, token, body, nil)
}

// doSession is do with a node session in the Allot-Session header ("" = none).
func (a *api) doSession(method, path, token, session string, body any) reply {
	a.t.Helper()
	return a.send(method, path, token, body, http.Header{server.SessionHeader: {session}})
}

// send is do with extra request headers; a Content-Type among them
// replaces the one do picks ("" sends none).
func (a *api) send(method, path, token string, body any, header http.Header) reply {
	a.t.Helper()
	var rd io.Reader
	ctype := "application/json"
	switch b := body.(type) {
	case nil:
		ctype = ""
	case string:
		rd = strings.NewReader(b)
		if t := strings.TrimSpace(b); t != "" && t[0] != '{' && t[0] != '[' {
			ctype = "application/yaml"
		}
	case []byte:
		rd = bytes.NewReader(b)
	default:
		buf, err := json.Marshal(b)
		require.NoError(a.t, err)
		rd = bytes.NewReader(buf)
	}
	req, err := http.NewRequest(method, a.ts.URL+path, rd)
	require.NoError(a.t, err)
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	for k, vs := range header {
		req.Header.Del(k)
		for _, v := range vs {
			if v != "" {
				req.Header.Add(k, v)
			}
		}
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := a.ts.Client().Do(req)
	require.NoError(a.t, err)
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	require.NoError(a.t, err)
	return reply{status: res.StatusCode, header: res.Header, body: b}
}

// addGroup creates a group through the registry.
func (a *api) addGroup(name string, c registry.Change) registry.Group {
	a.t.Helper()
	g, err := a.reg.Add(context.Background(), name, c, "test")
	require.NoError(a.t, err)
	return g
}

func secretChange(key, value string) registry.Change {
	return registry.Change{Set: map[string]string{key: value, "region": "eu"}, Secret: []string{key}}
}

// groupJSON is the group JSON of docs/design.md.
type groupJSON struct {
	Name       string            `json:"name"`
	Version    int64             `json:"version"`
	State      string            `json:"state"`
	Weight     float64           `json:"weight"`
	MaxNodes   int               `json:"max_nodes"`
	Quota      string            `json:"quota"`
	Config     map[string]string `json:"config"`
	SecretKeys []string          `json:"secret_keys"`
	Nodes      []string          `json:"nodes"`
	Updated    time.Time         `json:"updated"`
}

func TestGroupLifecycle(t *testing.T) {
	a := newAPI(t)
	const key = "sk-live-abcdefghijkl1234"

	r := a.do("POST", "/v1/groups", "", map[string]any{
		"name": "search-a", "weight": 2, "max_nodes": 3, "quota": "600/m",
		"config": map[string]string{"api_key": key, "region": "eu"}, "secret_keys": []string{"api_key"},
	})
	require.Equal(t, http.StatusCreated, r.status, "%s", r.body)
	assert.Equal(t, "/v1/groups/search-a", r.header.Get("Location"))
	var g groupJSON
	r.json(t, &g)
	assert.Equal(t, groupJSON{Name: "search-a", Version: 1, State: "active", Weight: 2, MaxNodes: 3, Quota: "600/m",
		Config: map[string]string{"api_key": "****1234", "region": "eu"}, SecretKeys: []string{"api_key"},
		Nodes: []string{}, Updated: g.Updated}, g)
	assert.NotContains(t, string(r.body), key)

	r = a.do("GET", "/v1/groups", "", nil)
	require.Equal(t, http.StatusOK, r.status)
	var list []groupJSON
	r.json(t, &list)
	require.Len(t, list, 1)
	assert.Equal(t, "****1234", list[0].Config["api_key"])

	r = a.do("GET", "/v1/groups/search-a?reveal=true", "", nil)
	require.Equal(t, http.StatusOK, r.status)
	r.json(t, &g)
	assert.Equal(t, key, g.Config["api_key"])

	r = a.do("PATCH", "/v1/groups/search-a", "", map[string]any{"set": map[string]string{"region": "us"}, "weight": 3, "if_version": 1})
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	r.json(t, &g)
	assert.Equal(t, int64(2), g.Version)
	assert.Equal(t, "us", g.Config["region"])
	assert.Equal(t, 3.0, g.Weight)

	r = a.do("GET", "/v1/groups/search-a/history", "", nil)
	require.Equal(t, http.StatusOK, r.status)
	var hist []groupJSON
	r.json(t, &hist)
	require.Len(t, hist, 2)
	assert.Equal(t, []int64{2, 1}, []int64{hist[0].Version, hist[1].Version})
	assert.NotContains(t, string(r.body), key)

	r = a.do("POST", "/v1/groups/search-a/rollback", "", map[string]any{"version": 1})
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	r.json(t, &g)
	assert.Equal(t, int64(3), g.Version)
	assert.Equal(t, "eu", g.Config["region"])
	assert.Equal(t, 2.0, g.Weight)

	r = a.do("POST", "/v1/groups/search-a/retire", "", map[string]any{"drain_timeout": "1m"})
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	r.json(t, &g)
	assert.Contains(t, []string{"draining", "retired"}, g.State)
	// Nobody holds it, so the loop finishes the retire.
	require.Eventually(t, func() bool {
		got, err := a.reg.Get(context.Background(), "search-a")
		return err == nil && got.State == registry.Retired
	}, 10*time.Second, 20*time.Millisecond)

	// ?wait=true answers only once the group is retired.
	a.addGroup("search-b", registry.Change{})
	r = a.do("POST", "/v1/groups/search-b/retire?wait=true", "", map[string]any{"drain_timeout": "1m"})
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	r.json(t, &g)
	assert.Equal(t, "retired", g.State)

	r = a.do("DELETE", "/v1/groups/search-a", "", nil)
	assert.Equal(t, http.StatusNoContent, r.status)
	r = a.do("GET", "/v1/groups/search-a", "", nil)
	assert.Equal(t, http.StatusNotFound, r.status)
	assert.Equal(t, "not_found", r.code())
}

func TestErrors(t *testing.T) {
	a := newAPI(t)
	a.addGroup("taken", registry.Change{})

	big := `{"name":"x","config":{"k":"` + strings.Repeat("a", server.MaxBodyBytes) + `"}}`
	tests := []struct {
		name, method, path string
		body               any
		status             int
		code               string
	}{
		{"malformed json", "POST", "/v1/groups", `{"name":`, 400, "bad_request"},
		{"empty body", "POST", "/v1/groups", ``, 400, "bad_request"},
		{"unknown field", "POST", "/v1/groups", `{"name":"a","wieght":2}`, 400, "bad_request"},
		{"wrong type", "POST", "/v1/groups", `{"name":"a","weight":"heavy"}`, 400, "bad_request"},
		{"trailing data", "POST", "/v1/groups", `{"name":"a"} {}`, 400, "bad_request"},
		{"oversized body", "POST", "/v1/groups", big, 413, "too_large"},
		{"invalid name", "POST", "/v1/groups", `{"name":"Bad Name"}`, 422, "invalid"},
		{"invalid weight", "POST", "/v1/groups", `{"name":"a","weight":-1}`, 422, "invalid"},
		{"invalid quota", "POST", "/v1/groups", `{"name":"a","quota":"lots"}`, 422, "invalid"},
		{"secret not in config", "POST", "/v1/groups", `{"name":"a","secret_keys":["k"]}`, 422, "invalid"},
		{"exists", "POST", "/v1/groups", `{"name":"taken"}`, 409, "conflict"},
		{"version mismatch", "PATCH", "/v1/groups/taken", `{"weight":2,"if_version":7}`, 409, "conflict"},
		{"empty change", "PATCH", "/v1/groups/taken", `{}`, 422, "invalid"},
		{"update unknown", "PATCH", "/v1/groups/nope", `{"weight":2}`, 404, "not_found"},
		{"get unknown", "GET", "/v1/groups/nope", nil, 404, "not_found"},
		{"delete unknown", "DELETE", "/v1/groups/nope", nil, 404, "not_found"},
		{"history unknown", "GET", "/v1/groups/nope/history", nil, 404, "not_found"},
		{"rollback unknown version", "POST", "/v1/groups/taken/rollback", `{"version":99}`, 404, "not_found"},
		{"rollback no version", "POST", "/v1/groups/taken/rollback", `{}`, 422, "invalid"},
		{"retire wait with at", "POST", "/v1/groups/taken/retire?wait=true", `{"at":"1h"}`, 422, "invalid"},
		{"bad drain timeout", "POST", "/v1/groups/taken/retire", `{"drain_timeout":"soon"}`, 422, "invalid"},
		{"bad reveal", "GET", "/v1/groups?reveal=maybe", nil, 400, "bad_request"},
		{"unknown route", "GET", "/v1/nothing", nil, 404, "not_found"},
		{"wrong method", "PUT", "/v1/groups", `{}`, 405, "bad_request"},
		{"bad schedule op", "POST", "/v1/schedule", `{"group":"taken","op":"explode","at":"1h"}`, 422, "invalid"},
		{"bad schedule time", "POST", "/v1/schedule", `{"group":"taken","op":"delete","at":"someday"}`, 422, "invalid"},
		{"past schedule time", "POST", "/v1/schedule", `{"group":"taken","op":"delete","at":"2020-01-01T00:00:00Z"}`, 422, "invalid"},
		{"schedule time years ahead", "POST", "/v1/schedule", `{"group":"taken","op":"delete","at":"20000h"}`, 422, "invalid"},
		{"no schedule time", "POST", "/v1/schedule", `{"group":"taken","op":"delete"}`, 422, "invalid"},
		{"cancel unknown schedule", "DELETE", "/v1/schedule/nope", nil, 404, "not_found"},
		{"bad long poll", "GET", "/v1/nodes/n1/assignment?after=x", nil, 400, "bad_request"},
		{"bad node id", "POST", "/v1/nodes/a,b/heartbeat", `{}`, 422, "invalid"},
		{"bad event id", "GET", "/v1/events?after=zzz", nil, 400, "bad_request"},
		{"bad export format", "GET", "/v1/export?format=xml", nil, 400, "bad_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := a.do(tt.method, tt.path, "", tt.body)
			assert.Equal(t, tt.status, r.status, "%s", r.body)
			assert.Equal(t, tt.code, r.code(), "%s", r.body)
			assert.Equal(t, "application/json", r.header.Get("Content-Type"))
		})
	}

	t.Run("internal", func(t *testing.T) {
		// A key of the wrong type makes Redis answer with an error that is
		// not an outage.
		require.NoError(t, a.rdb.Set(context.Background(), "{allot:default}:groups", "x", 0).Err())
		defer a.rdb.Del(context.Background(), "{allot:default}:groups")
		r := a.do("GET", "/v1/groups", "", nil)
		assert.Equal(t, http.StatusInternalServerError, r.status, "%s", r.body)
		assert.Equal(t, "internal", r.code())
		assert.NotContains(t, string(r.body), "WRONGTYPE", "internal details leak")
	})

	t.Run("unavailable", func(t *testing.T) {
		a.redis.Stop(t)
		r := a.do("GET", "/v1/groups", "", nil)
		assert.Equal(t, http.StatusServiceUnavailable, r.status, "%s", r.body)
		assert.Equal(t, "unavailable", r.code())
		r = a.do("GET", "/readyz", "", nil)
		assert.Equal(t, http.StatusServiceUnavailable, r.status)
		r = a.do("GET", "/healthz", "", nil)
		assert.Equal(t, http.StatusOK, r.status)
	})
}

func TestRoles(t *testing.T) {
	a := newAPI(t, server.WithTokens(testTokens))
	a.addGroup("g1", secretChange("api_key", "secret-value-123456"))
	a.addGroup("g2", registry.Change{})

	tests := []struct {
		method, path, token string
		body                any
		status              int
	}{
		{"GET", "/healthz", "", nil, 200},
		{"GET", "/readyz", "", nil, 200},
		{"GET", "/", "", nil, 200},
		{"GET", "/v1/groups", "", nil, 401},
		{"GET", "/v1/groups", "wrong-token", nil, 401},
		{"GET", "/metrics", "", nil, 401},
		{"GET", "/v1/groups", readToken, nil, 200},
		{"GET", "/v1/groups", adminToken, nil, 200},
		{"GET", "/v1/groups", nodeToken, nil, 403},
		{"GET", "/v1/status", nodeToken, nil, 403},
		{"GET", "/v1/status", readToken, nil, 200},
		{"GET", "/v1/nodes", readToken, nil, 200},
		{"GET", "/v1/schedule", readToken, nil, 200},
		{"GET", "/v1/export", readToken, nil, 200},
		{"GET", "/metrics", readToken, nil, 200},
		{"GET", "/v1/groups/g1?reveal=true", readToken, nil, 403},
		{"GET", "/v1/groups/g1?reveal=true", adminToken, nil, 200},
		{"GET", "/v1/export?reveal=true", readToken, nil, 403},
		{"POST", "/v1/groups", readToken, `{"name":"new"}`, 403},
		{"POST", "/v1/groups", nodeToken, `{"name":"new"}`, 403},
		{"PATCH", "/v1/groups/g1", readToken, `{"weight":2}`, 403},
		{"DELETE", "/v1/groups/g1", readToken, nil, 403},
		{"POST", "/v1/rebalance", readToken, nil, 403},
		{"POST", "/v1/import", readToken, `groups: []`, 403},
		{"POST", "/v1/nodes/n1/heartbeat", readToken, `{}`, 403},
		{"GET", "/v1/nodes/n1/assignment?wait=0s", readToken, nil, 403},
		{"DELETE", "/v1/nodes/n1", readToken, nil, 403},
		{"POST", "/v1/nodes/n1/heartbeat", nodeToken, `{"ip":"10.0.0.1"}`, 200},
		// The node token alone (no Allot-Session) reads and removes nothing.
		{"GET", "/v1/nodes/n1/assignment?wait=0s", nodeToken, nil, 403},
		{"DELETE", "/v1/nodes/n1", nodeToken, nil, 403},
		{"GET", "/v1/nodes/n1/assignment?wait=0s", adminToken, nil, 200},
		{"DELETE", "/v1/nodes/n1", adminToken, nil, 204},
		{"POST", "/v1/nodes/n2/heartbeat", adminToken, `{}`, 200},
		{"PATCH", "/v1/groups/g2", adminToken, `{"weight":2}`, 200},
		{"POST", "/v1/rebalance", adminToken, nil, 200},
		{"DELETE", "/v1/groups/g2", adminToken, nil, 204},
	}
	for _, tt := range tests {
		r := a.do(tt.method, tt.path, tt.token, tt.body)
		assert.Equal(t, tt.status, r.status, "%s %s as %q: %s", tt.method, tt.path, tt.token, r.body)
		switch tt.status {
		case 401:
			assert.Equal(t, "unauthorized", r.code())
			assert.Equal(t, `Bearer realm="allot"`, r.header.Get("WWW-Authenticate"))
		case 403:
			assert.Equal(t, "forbidden", r.code())
		}
	}

	// The node role gets its keys unmasked; the read role never sees them.
	r := a.do("GET", "/v1/groups/g1", readToken, nil)
	assert.NotContains(t, string(r.body), "secret-value-123456")
	r = a.do("GET", "/v1/export?format=json", readToken, nil)
	assert.NotContains(t, string(r.body), "secret-value-123456")
	r = a.do("GET", "/v1/schedule", readToken, nil)
	assert.NotContains(t, string(r.body), "secret-value-123456")
}

func TestTokensMustDiffer(t *testing.T) {
	rdb := redistest.Start(t).Client(t)
	_, err := server.New(rdb, server.WithTokens(server.Tokens{Admin: "same", Read: "same"}))
	assert.ErrorIs(t, err, server.ErrInvalidTokens)
}

func TestRebalanceEndpoint(t *testing.T) {
	a := newAPI(t)
	a.addGroup("g1", registry.Change{})
	r := a.do("POST", "/v1/nodes/n1/heartbeat", "", map[string]any{"ip": "10.0.0.1"})
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)

	r = a.do("POST", "/v1/rebalance", "", nil)
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	var res struct {
		Epoch   int64    `json:"epoch"`
		Changed bool     `json:"changed"`
		Reaped  []string `json:"reaped"`
	}
	r.json(t, &res)
	assert.Positive(t, res.Epoch)
	assert.Equal(t, []string{}, res.Reaped)

	r = a.do("GET", "/v1/status", "", nil)
	require.Equal(t, http.StatusOK, r.status)
	var st struct {
		Epoch    int64 `json:"epoch"`
		Balanced bool  `json:"balanced"`
		Groups   []struct {
			Name   string   `json:"name"`
			Target int      `json:"target"`
			Nodes  []string `json:"nodes"`
		} `json:"groups"`
		Nodes []struct {
			ID     string   `json:"id"`
			IP     string   `json:"ip"`
			Groups []string `json:"groups"`
		} `json:"nodes"`
		Standby []string `json:"standby"`
	}
	r.json(t, &st)
	assert.Equal(t, res.Epoch, st.Epoch)
	assert.True(t, st.Balanced)
	require.Len(t, st.Groups, 1)
	assert.Equal(t, 1, st.Groups[0].Target)
	assert.Equal(t, []string{"n1"}, st.Groups[0].Nodes)
	require.Len(t, st.Nodes, 1)
	assert.Equal(t, "10.0.0.1", st.Nodes[0].IP)
	assert.Equal(t, []string{"g1"}, st.Nodes[0].Groups)

	r = a.do("GET", "/v1/nodes", "", nil)
	require.Equal(t, http.StatusOK, r.status)
	assert.Contains(t, string(r.body), `"last_seen"`)
	r = a.do("GET", "/v1/groups/g1", "", nil)
	var g groupJSON
	r.json(t, &g)
	assert.Equal(t, []string{"n1"}, g.Nodes)
}

// nodeAssignment is the answer of the node protocol.
type nodeAssignment struct {
	Epoch   int64  `json:"epoch"`
	Node    string `json:"node"`
	Session string `json:"session"`
	Groups  []struct {
		Name       string            `json:"name"`
		Version    int64             `json:"version"`
		Config     map[string]string `json:"config"`
		Share      float64           `json:"share"`
		Quota      string            `json:"quota"`
		QuotaShare string            `json:"quota_share"`
	} `json:"groups"`
	IntervalMS int64 `json:"interval_ms"`
	TTLMS      int64 `json:"ttl_ms"`
}

func TestNodeProtocol(t *testing.T) {
	a := newAPI(t, server.WithTokens(testTokens))
	a.addGroup("maps", registry.Change{Set: map[string]string{"api_key": "maps-key-0123456789"}, Secret: []string{"api_key"},
		Quota: new("600/m")})

	sessions := map[string]string{}
	beat := func(id string, ack int64, held ...string) nodeAssignment {
		t.Helper()
		r := a.doSession("POST", "/v1/nodes/"+id+"/heartbeat", nodeToken, sessions[id], map[string]any{"ip": "10.0.0." + id[1:], "held": held, "ack": ack})
		require.Equal(t, http.StatusOK, r.status, "%s", r.body)
		var na nodeAssignment
		r.json(t, &na)
		require.NotEmpty(t, na.Session)
		if s, ok := sessions[id]; ok {
			require.Equal(t, s, na.Session, "the session stays")
		}
		sessions[id] = na.Session
		return na
	}

	// The first beat joins; the loop (nudged by the join) assigns the group.
	na := beat("n1", 0)
	assert.Equal(t, "n1", na.Node)
	assert.Equal(t, int64(100), na.IntervalMS)
	assert.Equal(t, int64(60000), na.TTLMS)
	require.Eventually(t, func() bool { na = beat("n1", na.Epoch); return len(na.Groups) == 1 },
		10*time.Second, 20*time.Millisecond)
	g := na.Groups[0]
	assert.Equal(t, "maps", g.Name)
	assert.Equal(t, "maps-key-0123456789", g.Config["api_key"], "the node role gets its keys")
	assert.Equal(t, 1.0, g.Share)
	assert.Equal(t, "600/m", g.Quota)
	assert.Equal(t, "600/m", g.QuotaShare)

	// A long poll answers at once when the epoch is already past `after`.
	r := a.doSession("GET", "/v1/nodes/n1/assignment?after=0&wait=5s", nodeToken, sessions["n1"], nil)
	require.Equal(t, http.StatusOK, r.status)
	var polled nodeAssignment
	r.json(t, &polled)
	assert.Equal(t, na.Epoch, polled.Epoch)

	// A long poll at the current epoch times out with the current assignment.
	start := time.Now()
	r = a.doSession("GET", "/v1/nodes/n1/assignment?after="+itoa(na.Epoch)+"&wait=200ms", nodeToken, sessions["n1"], nil)
	require.Equal(t, http.StatusOK, r.status)
	r.json(t, &polled)
	assert.Equal(t, na.Epoch, polled.Epoch)
	assert.GreaterOrEqual(t, time.Since(start), 200*time.Millisecond)

	// A long poll wakes when a second node joins and the group is shared.
	done := make(chan reply, 1)
	s1 := sessions["n1"]
	go func() {
		done <- a.doSession("GET", "/v1/nodes/n1/assignment?after="+itoa(na.Epoch)+"&wait=50s", nodeToken, s1, nil)
	}()
	beat("n2", 0)
	select {
	case r = <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("long poll did not wake")
	}
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	r.json(t, &polled)
	assert.Greater(t, polled.Epoch, na.Epoch)
	require.Len(t, polled.Groups, 1)
	assert.Equal(t, 0.5, polled.Groups[0].Share)
	assert.Equal(t, "300/m", polled.Groups[0].QuotaShare)

	// A long poll at the current epoch wakes on a change of a held group's
	// config, without an epoch move. (The update is repeated until one lands
	// after the poll's first read: a change before it reaches the node with
	// its next beat.)
	go func() {
		done <- a.doSession("GET", "/v1/nodes/n1/assignment?after="+itoa(polled.Epoch)+"&wait=50s", nodeToken, sessions["n1"], nil)
	}()
	v := 0
	require.Eventually(t, func() bool {
		select {
		case r = <-done:
			return true
		default:
		}
		v++
		_, err := a.reg.Update(context.Background(), "maps", registry.Change{Set: map[string]string{"region": itoa(int64(v))}}, "test")
		require.NoError(t, err)
		return false
	}, 20*time.Second, 50*time.Millisecond, "long poll did not wake on a config change")
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	var woke nodeAssignment
	r.json(t, &woke)
	assert.Equal(t, polled.Epoch, woke.Epoch, "no epoch move")
	require.Len(t, woke.Groups, 1)
	assert.Greater(t, woke.Groups[0].Version, polled.Groups[0].Version)

	// Leaving moves the group at once: the answer comes after the commit
	// of a plan without the node.
	r = a.doSession("DELETE", "/v1/nodes/n2", nodeToken, sessions["n2"], nil)
	require.Equal(t, http.StatusNoContent, r.status, "%s", r.body)
	committed, err := a.reg.Assignment(context.Background())
	require.NoError(t, err)
	assert.Greater(t, committed.Epoch, polled.Epoch)
	assert.NotContains(t, committed.Nodes, "n2")
	assert.Equal(t, []string{"maps"}, committed.Nodes["n1"])
	require.Eventually(t, func() bool {
		na = beat("n1", polled.Epoch, "maps")
		return na.Epoch > polled.Epoch && len(na.Groups) == 1 && na.Groups[0].Share == 1.0
	}, 10*time.Second, 20*time.Millisecond)
	r = a.do("GET", "/v1/nodes", adminToken, nil)
	assert.NotContains(t, string(r.body), `"n2"`)

	// Beats are counted.
	r = a.do("GET", "/metrics", readToken, nil)
	assert.Regexp(t, `allot_beats_total [1-9]`, string(r.body))
}

func itoa(n int64) string { b, _ := json.Marshal(n); return string(b) }

// sseEvent is one parsed Server-Sent Event.
type sseEvent struct{ id, typ, data string }

// readEvents reads group events from an open stream until n arrived
// (assignment and node events are skipped: the loop commits at its pace).
func readEvents(t *testing.T, br *bufio.Reader, n int) []sseEvent {
	t.Helper()
	var out []sseEvent
	var cur sseEvent
	for len(out) < n {
		line, err := br.ReadString('\n')
		require.NoError(t, err)
		line = strings.TrimRight(line, "\n")
		switch {
		case line == "":
			if cur.id != "" && strings.HasPrefix(cur.typ, "group.") {
				out = append(out, cur)
			}
			cur = sseEvent{}
		case strings.HasPrefix(line, "id: "):
			cur.id = line[4:]
		case strings.HasPrefix(line, "event: "):
			cur.typ = line[7:]
		case strings.HasPrefix(line, "data: "):
			cur.data = line[6:]
		}
	}
	return out
}

func (a *api) openEvents(lastID string) (*bufio.Reader, func()) {
	a.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, "GET", a.ts.URL+"/v1/events", nil)
	require.NoError(a.t, err)
	req.Header.Set("Authorization", "Bearer "+readToken)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	res, err := a.ts.Client().Do(req)
	require.NoError(a.t, err)
	require.Equal(a.t, http.StatusOK, res.StatusCode)
	require.Equal(a.t, "text/event-stream", res.Header.Get("Content-Type"))
	return bufio.NewReader(res.Body), func() { cancel(); res.Body.Close() }
}

func TestEventStream(t *testing.T) {
	a := newAPI(t, server.WithTokens(testTokens))
	a.addGroup("before", registry.Change{}) // not in a stream that starts now

	br, stop := a.openEvents("")
	a.addGroup("g1", registry.Change{})
	evs := readEvents(t, br, 1)
	stop()
	assert.Equal(t, "group.added", evs[0].typ)
	var data map[string]any
	require.NoError(t, json.Unmarshal([]byte(evs[0].data), &data))
	assert.Equal(t, "g1", data["group"])
	assert.Equal(t, evs[0].id, data["id"])

	// Resuming with Last-Event-ID gets what happened in between, in order.
	a.addGroup("g2", registry.Change{})
	_, err := a.reg.Update(context.Background(), "g2", registry.Change{Weight: new(2.0)}, "test")
	require.NoError(t, err)
	br, stop = a.openEvents(evs[0].id)
	defer stop()
	evs = readEvents(t, br, 2)
	assert.Equal(t, []string{"group.added", "group.updated"}, []string{evs[0].typ, evs[1].typ})
	assert.Contains(t, evs[0].data, `"g2"`)
}

func TestSchedule(t *testing.T) {
	a := newAPI(t)
	a.addGroup("g1", secretChange("api_key", "old-secret-0000000"))

	r := a.do("POST", "/v1/schedule", "", map[string]any{
		"group": "g1", "op": "update", "at": "1h",
		"change": map[string]any{"set": map[string]string{"api_key": "new-secret-1111111"}},
	})
	require.Equal(t, http.StatusCreated, r.status, "%s", r.body)
	assert.NotContains(t, string(r.body), "new-secret-1111111")
	var sc struct {
		ID    string    `json:"id"`
		Group string    `json:"group"`
		Op    string    `json:"op"`
		At    time.Time `json:"at"`
	}
	r.json(t, &sc)
	assert.Equal(t, "g1", sc.Group)
	assert.WithinDuration(t, time.Now().Add(time.Hour), sc.At, time.Minute)

	r = a.do("GET", "/v1/schedule", "", nil)
	require.Equal(t, http.StatusOK, r.status)
	assert.Contains(t, string(r.body), sc.ID)
	assert.NotContains(t, string(r.body), "new-secret-1111111")
	r = a.do("GET", "/v1/schedule?reveal=true", "", nil)
	assert.Contains(t, string(r.body), "new-secret-1111111")

	r = a.do("DELETE", "/v1/schedule/"+sc.ID, "", nil)
	assert.Equal(t, http.StatusNoContent, r.status)
	r = a.do("DELETE", "/v1/schedule/"+sc.ID, "", nil)
	assert.Equal(t, http.StatusNotFound, r.status)

	// A change scheduled through PATCH ... "at" is applied by the loop when
	// due, with nobody connected.
	r = a.do("PATCH", "/v1/groups/g1", "", map[string]any{"weight": 5, "at": "300ms"})
	require.Equal(t, http.StatusCreated, r.status, "%s", r.body)
	require.Eventually(t, func() bool {
		g, err := a.reg.Get(context.Background(), "g1")
		return err == nil && g.Weight == 5
	}, 10*time.Second, 20*time.Millisecond)

	r = a.do("POST", "/v1/groups/g1/retire", "", map[string]any{"at": time.Now().Add(time.Hour).UTC().Format(time.RFC3339)})
	require.Equal(t, http.StatusCreated, r.status, "%s", r.body)
	r.json(t, &sc)
	assert.Equal(t, "retire", sc.Op)
}

func TestMetrics(t *testing.T) {
	a := newAPI(t)
	a.addGroup("g1", registry.Change{})
	a.do("POST", "/v1/nodes/n1/heartbeat", "", map[string]any{"ip": "10.0.0.1"})
	require.Eventually(t, func() bool {
		r := a.do("GET", "/metrics", "", nil)
		return strings.Contains(string(r.body), "allot_epoch 1")
	}, 10*time.Second, 20*time.Millisecond)
	r := a.do("GET", "/metrics", "", nil)
	require.Equal(t, http.StatusOK, r.status)
	body := string(r.body)
	for _, want := range []string{
		"allot_live_nodes 1",
		`allot_groups{state="active"} 1`,
		`allot_groups{state="retired"} 0`,
		`allot_rebalances_total{outcome="ok"}`,
		`allot_rebalances_total{outcome="locked"}`,
		`allot_rebalances_total{outcome="stale"}`,
		`allot_rebalances_total{outcome="failed"}`,
		"allot_rebalance_duration_seconds_bucket",
		"allot_beats_total 1",
		"allot_handoffs_total 1",
		"allot_reaped_nodes_total 0",
		`allot_http_requests_total{code="200",route="POST /v1/nodes/{id}/heartbeat"} 1`,
		"allot_redis_up 1",
		"allot_groups_short 0",
		"allot_pool_balanced 1",
		"allot_standby_nodes 0",
		"allot_stale_nodes 0",
		`allot_node_events_total{type="joined"} 0`,
	} {
		assert.Contains(t, body, want)
	}

	// Node events are counted from the first scrape on.
	a.do("POST", "/v1/nodes/n2/heartbeat", "", map[string]any{"ip": "10.0.0.2"})
	require.Eventually(t, func() bool {
		body := string(a.do("GET", "/metrics", "", nil).body)
		return strings.Contains(body, `allot_node_events_total{type="joined"} 1`)
	}, 10*time.Second, 20*time.Millisecond)
}

func TestReapMovesGroups(t *testing.T) {
	// A node that stops beating is reaped by the loop's safety timer, with no
	// other node around to do it.
	a := newAPI(t, server.WithHeartbeat(heartbeat.Config{Interval: 50 * time.Millisecond, TTL: 300 * time.Millisecond}))
	a.addGroup("g1", registry.Change{})
	r := a.do("POST", "/v1/nodes/n1/heartbeat", "", map[string]any{"ip": "10.0.0.1"})
	require.Equal(t, http.StatusOK, r.status)
	require.Eventually(t, func() bool {
		r := a.do("GET", "/metrics", "", nil)
		return strings.Contains(string(r.body), "allot_reaped_nodes_total 1")
	}, 10*time.Second, 20*time.Millisecond)
	r = a.do("GET", "/v1/nodes", "", nil)
	assert.JSONEq(t, `[]`, string(r.body))
}
