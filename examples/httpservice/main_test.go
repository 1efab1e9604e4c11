package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/client"
	"github.com/allot-io/allot/heartbeat"
	"github.com/allot-io/allot/internal/redistest"
	"github.com/allot-io/allot/registry"
)

func TestForwardUsesTheGroupKeyWithinItsQuota(t *testing.T) {
	s := redistest.Start(t)
	rdb := s.Client(t)
	reg := registry.New(rdb)
	ctx := context.Background()
	_, err := reg.Add(ctx, "key-a", registry.Change{Set: map[string]string{"api_key": "sk-aaa"}, Quota: ptr("2/s")}, "test")
	require.NoError(t, err)

	var auth []string
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth = append(auth, r.Header.Get("Authorization"))
		_, _ = io.WriteString(w, "hello "+r.URL.Path)
	}))
	defer up.Close()
	u, _ := url.Parse(up.URL)

	c, err := client.New(rdb, client.WithNodeID("svc-1"),
		client.WithHeartbeat(heartbeat.Config{Interval: 100 * time.Millisecond, TTL: 300 * time.Millisecond}))
	require.NoError(t, err)
	defer c.Close(ctx)
	require.NoError(t, c.Start(ctx))
	require.Eventually(t, func() bool { return c.Assignment().Holds("key-a") }, 5*time.Second, 5*time.Millisecond)

	svc := &service{c: c, upstream: u, http: up.Client(), log: slog.New(slog.DiscardHandler)}
	get := func(path string) *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		svc.forward(w, httptest.NewRequest(http.MethodGet, path, nil))
		return w
	}
	for range 2 {
		w := get("/v1/things")
		assert.Equal(t, http.StatusOK, w.Code)
		assert.Equal(t, "hello /v1/things", w.Body.String())
	}
	w := get("/v1/things")
	assert.Equal(t, http.StatusTooManyRequests, w.Code)
	assert.Equal(t, "1", w.Header().Get("Retry-After"))
	assert.Equal(t, []string{"Bearer sk-aaa", "Bearer sk-aaa"}, auth)

	h := httptest.NewRecorder()
	svc.healthz(h, httptest.NewRequest(http.MethodGet, "/healthz", nil))
	assert.Equal(t, http.StatusOK, h.Code)
	assert.NotContains(t, h.Body.String(), "sk-")
}

func ptr[T any](v T) *T { return &v }
