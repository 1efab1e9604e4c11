package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/internal/redistest"
	"github.com/allot-io/allot/registry"
	"github.com/allot-io/allot/server"
)

// BenchmarkHeartbeat measures one HTTP node beat end to end (JSON, auth,
// the beat script, the assignment read) on a real redis-server, with 100
// nodes sharing 10 groups.
func BenchmarkHeartbeat(b *testing.B) {
	rdb := redistest.Start(b).Client(b)
	srv, err := server.New(rdb, server.WithTokens(testTokens))
	require.NoError(b, err)
	b.Cleanup(func() { _ = srv.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	go func() { _ = srv.Run(ctx) }()
	ts := httptest.NewServer(srv.Handler())
	b.Cleanup(ts.Close)
	for i := range 10 {
		_, err := srv.Registry().Add(ctx, fmt.Sprintf("g%d", i), registry.Change{Set: map[string]string{"api_key": "k"}, Secret: []string{"api_key"}}, "bench")
		require.NoError(b, err)
	}
	c := ts.Client()
	sessions := make([]string, 100) // each node's session, from its first answer
	beat := func(id int) {
		body := fmt.Sprintf(`{"ip":"10.0.0.%d"}`, id%250)
		req, _ := http.NewRequest("POST", fmt.Sprintf("%s/v1/nodes/n%d/heartbeat", ts.URL, id), bytes.NewBufferString(body))
		req.Header.Set("Authorization", "Bearer "+nodeToken)
		req.Header.Set("Content-Type", "application/json")
		if sessions[id] != "" {
			req.Header.Set(server.SessionHeader, sessions[id])
		}
		res, err := c.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		var a server.NodeAssignment
		_ = json.NewDecoder(res.Body).Decode(&a)
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			b.Fatalf("status %d", res.StatusCode)
		}
		sessions[id] = a.Session
	}
	for i := range 100 {
		beat(i)
	}
	b.ResetTimer()
	i := 0
	for b.Loop() {
		beat(i % 100)
		i++
	}
}
