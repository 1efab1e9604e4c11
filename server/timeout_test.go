package server_test

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/registry"
	"github.com/allot-io/allot/server"
)

// TestStreamsOutliveServerTimeouts: an event stream and a long poll keep
// working past the http.Server's read and write timeouts (they lift their
// own deadlines), while ordinary requests keep them.
func TestStreamsOutliveServerTimeouts(t *testing.T) {
	a := newAPI(t, server.WithTokens(testTokens))
	ts := httptest.NewUnstartedServer(a.srv.Handler())
	ts.Config = a.srv.HTTPServer("", a.srv.Handler())
	ts.Config.ReadTimeout, ts.Config.WriteTimeout = 300*time.Millisecond, 300*time.Millisecond
	ts.Start()
	t.Cleanup(func() { ts.CloseClientConnections(); ts.Close() })
	a.ts = ts

	br, stop := a.openEvents("")
	defer stop()
	start := time.Now()
	poll := make(chan reply, 1)
	go func() { poll <- a.do("GET", "/v1/nodes/n1/assignment?after=0&wait=60s", adminToken, nil) }()
	// Wait past both timeouts without sleeping: a long poll that must time out.
	r := a.do("GET", "/v1/nodes/n2/assignment?after=1000&wait=1s", adminToken, nil)
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	require.Greater(t, time.Since(start), 900*time.Millisecond)

	a.addGroup("late", registry.Change{})
	evs := readEvents(t, br, 1)
	assert.Equal(t, "group.added", evs[0].typ)

	// The first long poll wakes once a node beat makes an assignment.
	a.do("POST", "/v1/nodes/n1/heartbeat", nodeToken, map[string]any{"ip": "10.0.0.1"})
	select {
	case r = <-poll:
		assert.Equal(t, http.StatusOK, r.status, "%s", r.body)
	case <-time.After(20 * time.Second):
		t.Fatal("long poll never answered")
	}
}
