package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"sync"
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

// TestUpstream429CoolsAndRevokedKeyMoves: a 429 with Retry-After cools the
// key, and the service's calls take its other key without calling the
// upstream with the cooling one until the cooldown ends; three 401s suspend
// the key and the service moves on to its other key.
func TestUpstream429CoolsAndRevokedKeyMoves(t *testing.T) {
	s := redistest.Start(t)
	rdb := s.Client(t)
	reg := registry.New(rdb)
	ctx := context.Background()
	for _, k := range []string{"a", "b"} {
		_, err := reg.Add(ctx, "key-"+k, registry.Change{Set: map[string]string{"api_key": "sk-" + k}}, "test")
		require.NoError(t, err)
	}

	var mu sync.Mutex
	var calls []string
	answer := http.StatusTooManyRequests
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		calls = append(calls, r.Header.Get("Authorization"))
		switch {
		case r.Header.Get("Authorization") == "Bearer sk-b":
			_, _ = io.WriteString(w, "ok")
		case answer == http.StatusTooManyRequests:
			w.Header().Set("Retry-After", "2")
			w.WriteHeader(answer)
		default:
			w.WriteHeader(answer)
		}
	}))
	defer up.Close()
	u, _ := url.Parse(up.URL)
	upstreamCalls := func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(calls)
	}

	// One node, two keys: it holds both and uses the first, key-a.
	c, err := client.New(rdb, client.WithNodeID("svc-1"),
		client.WithHeartbeat(heartbeat.Config{Interval: 100 * time.Millisecond, TTL: 300 * time.Millisecond}))
	require.NoError(t, err)
	defer c.Close(ctx)
	require.NoError(t, c.Start(ctx))
	require.Eventually(t, func() bool { return len(c.Assignment().Groups) == 2 }, 5*time.Second, 5*time.Millisecond)

	svc := &service{c: c, upstream: u, http: up.Client(), log: slog.New(slog.DiscardHandler)}
	get := func() *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		svc.forward(w, httptest.NewRequest(http.MethodGet, "/v1/things", nil))
		return w
	}
	w := get()
	assert.Equal(t, http.StatusTooManyRequests, w.Code, "the upstream's 429 is passed on")
	for range 5 {
		w = get()
		assert.Equal(t, http.StatusOK, w.Code, "while key-a cools the calls take key-b")
	}
	assert.Equal(t, []string{"Bearer sk-a", "Bearer sk-b", "Bearer sk-b", "Bearer sk-b", "Bearer sk-b", "Bearer sk-b"}, upstreamCalls(),
		"no upstream call on key-a while it cools")
	until, err := c.CoolingUntil(ctx, "key-a")
	require.NoError(t, err)
	assert.WithinDuration(t, time.Now().Add(2*time.Second), until, time.Second)
	require.Eventually(t, func() bool { _, cooling := c.Cooling("key-a"); return !cooling }, 5*time.Second, 10*time.Millisecond)

	// The key is revoked: three 401s suspend it and the service uses key-b.
	mu.Lock()
	answer, calls = http.StatusUnauthorized, nil
	mu.Unlock()
	for range 3 {
		assert.Equal(t, http.StatusUnauthorized, get().Code)
	}
	require.Eventually(t, func() bool { return !c.Assignment().Holds("key-a") }, 5*time.Second, 5*time.Millisecond)
	assert.Equal(t, http.StatusOK, get().Code)
	assert.Equal(t, []string{"Bearer sk-a", "Bearer sk-a", "Bearer sk-a", "Bearer sk-b"}, upstreamCalls())
	h, err := reg.HealthOf(ctx, "key-a")
	require.NoError(t, err)
	assert.Equal(t, registry.Suspended, h.State)
	assert.Equal(t, "HTTP 401 Unauthorized", h.Reason)
}
