package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
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

// fakeLLM is an OpenAI-like upstream: it answers with a fixed usage, as one
// JSON document or as a stream whose last chunk carries the usage (only when
// asked for with stream_options.include_usage, as OpenAI does).
type fakeLLM struct {
	mu    sync.Mutex
	auth  []string
	asked []map[string]any
	total int64
}

func (f *fakeLLM) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var req map[string]any
	_ = json.NewDecoder(r.Body).Decode(&req)
	f.mu.Lock()
	f.auth = append(f.auth, r.Header.Get("Authorization"))
	f.asked = append(f.asked, req)
	total := f.total
	f.mu.Unlock()
	usage := fmt.Sprintf(`{"prompt_tokens":%d,"completion_tokens":%d,"total_tokens":%d}`, total/2, total-total/2, total)
	if req["stream"] == true {
		w.Header().Set("Content-Type", "text/event-stream")
		for _, word := range []string{"Hel", "lo"} {
			fmt.Fprintf(w, "data: {\"choices\":[{\"delta\":{\"content\":%q}}]}\n\n", word)
		}
		if so, _ := req["stream_options"].(map[string]any); so["include_usage"] == true {
			fmt.Fprintf(w, "data: {\"choices\":[],\"usage\":%s}\n\n", usage)
		}
		fmt.Fprint(w, "data: [DONE]\n\n")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"choices":[{"message":{"role":"assistant","content":"Hello"}}],"usage":%s}`, usage)
}

func TestChatReservesAndSettles(t *testing.T) {
	s := redistest.Start(t)
	rdb := s.Client(t)
	reg := registry.New(rdb)
	ctx := context.Background()
	q := "100/m, 2000 tokens/h"
	_, err := reg.Add(ctx, "llm-1", registry.Change{Set: map[string]string{"api_key": "sk-llm-1"}, Quota: &q}, "test")
	require.NoError(t, err)

	llm := &fakeLLM{total: 150}
	up := httptest.NewServer(llm)
	defer up.Close()
	u, _ := url.Parse(up.URL)

	c, err := client.New(rdb, client.WithNodeID("proxy-1"),
		client.WithHeartbeat(heartbeat.Config{Interval: 100 * time.Millisecond, TTL: 300 * time.Millisecond}))
	require.NoError(t, err)
	defer c.Close(ctx)
	require.NoError(t, c.Start(ctx))
	require.Eventually(t, func() bool { return c.Assignment().Holds("llm-1") }, 5*time.Second, 5*time.Millisecond)
	p := &proxy{c: c, upstream: u, http: up.Client(), log: slog.New(slog.DiscardHandler)}
	srv := httptest.NewServer(p.handler())
	defer srv.Close()

	tokens := func() int64 {
		m, err := reg.Usage(ctx, "llm-1", time.Hour)
		require.NoError(t, err)
		var n int64
		for _, x := range m {
			n += x.Tokens
		}
		return n
	}
	post := func(body string) *http.Response {
		res, err := http.Post(srv.URL+"/v1/chat/completions", "application/json", strings.NewReader(body))
		require.NoError(t, err)
		t.Cleanup(func() { res.Body.Close() })
		return res
	}

	// A plain answer: reserved prompt/4 + max_tokens = 10 + 500, settled at 150.
	prompt := strings.Repeat("x", 38)
	res := post(`{"model":"m","max_tokens":500,"messages":[{"role":"user","content":"` + prompt + `"}]}`)
	require.Equal(t, http.StatusOK, res.StatusCode)
	b, _ := io.ReadAll(res.Body)
	assert.Contains(t, string(b), `"total_tokens":150`)
	assert.Equal(t, int64(150), tokens(), "settled with usage.total_tokens")

	// A streamed answer: relayed chunk by chunk, settled with the last chunk's usage.
	llm.mu.Lock()
	llm.total = 80
	llm.mu.Unlock()
	res = post(`{"model":"m","stream":true,"max_tokens":300,"messages":[{"role":"user","content":"hi"}]}`)
	require.Equal(t, http.StatusOK, res.StatusCode)
	assert.Equal(t, "text/event-stream", res.Header.Get("Content-Type"))
	var events []string
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		if line := sc.Text(); line != "" {
			events = append(events, line)
		}
	}
	require.Len(t, events, 4)
	assert.Equal(t, "data: [DONE]", events[3])
	assert.Contains(t, events[2], `"total_tokens":80`)
	require.Eventually(t, func() bool { return tokens() == 230 }, 5*time.Second, 10*time.Millisecond, "stream settled at 80")
	llm.mu.Lock()
	assert.Equal(t, map[string]any{"include_usage": true}, llm.asked[1]["stream_options"], "asked for the usage chunk")
	assert.Equal(t, []string{"Bearer sk-llm-1", "Bearer sk-llm-1"}, llm.auth)
	llm.mu.Unlock()

	// A request whose estimate can never fit in 2000 tokens/h: 413 at once.
	res = post(`{"model":"m","max_tokens":5000,"messages":[]}`)
	assert.Equal(t, http.StatusRequestEntityTooLarge, res.StatusCode)

	// Spend the rest of the token budget: 230 used, 1770 left; each call
	// reserves 1 + 900 and the second one is refused with Retry-After.
	llm.mu.Lock()
	llm.total = 900
	llm.mu.Unlock()
	res = post(`{"model":"m","max_tokens":900,"messages":[]}`)
	require.Equal(t, http.StatusOK, res.StatusCode)
	res = post(`{"model":"m","max_tokens":900,"messages":[]}`)
	require.Equal(t, http.StatusTooManyRequests, res.StatusCode)
	assert.NotEmpty(t, res.Header.Get("Retry-After"))
	b, _ = io.ReadAll(res.Body)
	assert.Contains(t, string(b), "2000 tokens/h")
	assert.Len(t, llm.auth, 3, "refused calls never reach the upstream")

	res = post(`not json`)
	assert.Equal(t, http.StatusBadRequest, res.StatusCode)
}
