package server_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/server"
)

// fakeFleet is a DevController that records what it was asked.
type fakeFleet struct {
	mu    sync.Mutex
	nodes []server.DevNode
	calls []string
}

func (f *fakeFleet) Nodes() []server.DevNode {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.nodes)
}

func (f *fakeFleet) find(id string) (int, error) {
	i := slices.IndexFunc(f.nodes, func(n server.DevNode) bool { return n.ID == id })
	if i < 0 {
		return 0, fmt.Errorf("%w: %q", server.ErrDevNodeNotFound, id)
	}
	return i, nil
}

func (f *fakeFleet) Stop(_ context.Context, id string, graceful bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	i, err := f.find(id)
	if err != nil {
		return err
	}
	f.nodes[i].Running = false
	f.calls = append(f.calls, fmt.Sprintf("stop %s graceful=%v", id, graceful))
	return nil
}

func (f *fakeFleet) Start(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	i, err := f.find(id)
	if err != nil {
		return err
	}
	f.nodes[i].Running = true
	f.calls = append(f.calls, "start "+id)
	return nil
}

func (f *fakeFleet) Add(context.Context) (server.DevNode, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := server.DevNode{ID: fmt.Sprintf("demo-%d", len(f.nodes)+1), Running: true, Groups: []string{}}
	f.nodes = append(f.nodes, n)
	f.calls = append(f.calls, "add")
	return n, nil
}

func TestDevRoutes(t *testing.T) {
	fleet := &fakeFleet{}
	a := newAPI(t, server.WithDev(fleet), server.WithTokens(testTokens))

	r := a.do("POST", "/v1/dev/nodes", adminToken, nil)
	require.Equal(t, http.StatusCreated, r.status, "%s", r.body)
	var n server.DevNode
	r.json(t, &n)
	assert.Equal(t, "demo-1", n.ID)

	r = a.do("POST", "/v1/dev/nodes/demo-1/stop", adminToken, nil)
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	r.json(t, &n)
	assert.False(t, n.Running)
	r = a.do("POST", "/v1/dev/nodes/demo-1/start", adminToken, nil)
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	r.json(t, &n)
	assert.True(t, n.Running)
	r = a.do("POST", "/v1/dev/nodes/demo-1/stop?graceful=true", adminToken, nil)
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)

	r = a.do("GET", "/v1/dev/nodes", readToken, nil)
	require.Equal(t, http.StatusOK, r.status)
	var list []server.DevNode
	r.json(t, &list)
	assert.Len(t, list, 1)

	assert.Equal(t, http.StatusForbidden, a.do("POST", "/v1/dev/nodes/demo-1/stop", readToken, nil).status)
	r = a.do("POST", "/v1/dev/nodes/nope/stop", adminToken, nil)
	assert.Equal(t, http.StatusNotFound, r.status)
	assert.Equal(t, "not_found", r.code())
	assert.Equal(t, []string{"add", "stop demo-1 graceful=false", "start demo-1", "stop demo-1 graceful=true"}, fleet.calls)
}

func TestDevRoutesOffOutsideDevMode(t *testing.T) {
	a := newAPI(t)
	for _, tt := range []struct{ method, path string }{
		{"GET", "/v1/dev/nodes"}, {"POST", "/v1/dev/nodes"}, {"POST", "/v1/dev/nodes/x/stop"}, {"POST", "/v1/dev/nodes/x/start"},
	} {
		r := a.do(tt.method, tt.path, "", nil)
		assert.Equal(t, http.StatusNotFound, r.status, "%s %s", tt.method, tt.path)
		assert.Equal(t, "not_found", r.code())
	}
}

// TestCloseEndsStreams: Close must end open event streams and long polls,
// or http.Server.Shutdown would wait for them forever.
func TestCloseEndsStreams(t *testing.T) {
	a := newAPI(t, server.WithTokens(testTokens))
	br, stop := a.openEvents("")
	defer stop()
	poll := make(chan reply, 1)
	go func() { poll <- a.do("GET", "/v1/nodes/n1/assignment?after=99&wait=60s", adminToken, nil) }()

	require.NoError(t, a.srv.Close())
	_, err := br.ReadString(0) // reads until the stream ends
	assert.Error(t, err)
	r := <-poll
	assert.Equal(t, http.StatusServiceUnavailable, r.status, "%s", r.body)
}
