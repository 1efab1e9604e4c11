package proxy

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"

	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/client"
	"github.com/allot-io/allot/internal/redistest"
	"github.com/allot-io/allot/registry"
)

// TestForward: the caller's method, path, query, headers and body reach
// the upstream under its base path with the lease's key filled into the
// auth header and query parameter; the caller's own Authorization, its
// copy of the auth parameter and hop-by-hop headers do not.
func TestForward(t *testing.T) {
	rdb := redistest.Start(t).Client(t)
	pl := newPool(t, rdb)
	_, err := pl.reg.Add(context.Background(), "k1", registry.Change{
		Set: map[string]string{"api_key": "sk-k1", "org": "org-7"}, Secret: []string{"api_key"}}, "test")
	require.NoError(t, err)
	c := pl.node("proxy-1")
	holding(t, c, "k1")
	api, up := startFakeAPI(t)
	p, srv := serve(t, c, up.URL+"/base", WithAuthHeader("OpenAI-Organization: {org}"), WithAuthQuery("key={api_key}"))

	res, body := post(t, srv.URL, "/v1/chat/completions?x=1&key=callers", `{"model":"m","messages":[]}`,
		"Authorization", "Bearer caller-secret", "X-Trace", "abc", "Connection", "X-Hop", "X-Hop", "drop me")
	require.Equal(t, http.StatusOK, res.StatusCode, body)
	assert.Contains(t, body, `"content":"Hello"`)
	calls := api.got()
	require.Len(t, calls, 1)
	got := calls[0]
	assert.Equal(t, "sk-k1", got.Key, "the lease's key, not the caller's")
	assert.Equal(t, "/base/v1/chat/completions", got.Path)
	q, _ := url.ParseQuery(got.Query)
	assert.Equal(t, url.Values{"x": {"1"}, "key": {"sk-k1"}}, q)
	assert.Equal(t, "org-7", got.Header.Get("OpenAI-Organization"))
	assert.Equal(t, "abc", got.Header.Get("X-Trace"))
	assert.Empty(t, got.Header.Get("X-Hop"), "a header Connection names is hop-by-hop")
	assert.Equal(t, map[string]any{"model": "m", "messages": []any{}}, got.Body)
	// Counted once the handler returns, which may be just after the caller
	// has read the whole answer.
	assert.Eventually(t, func() bool { return counter(t, p, "allot_proxy_requests_total", "code", "200") == 1.0 },
		5*time.Second, time.Millisecond)
	assert.Equal(t, 1.0, counter(t, p, "allot_proxy_upstream_responses_total", "code", "200", "group", "k1"))

	// The proxy's own paths are never forwarded.
	res, err = http.Get(srv.URL + "/_allot/healthz")
	require.NoError(t, err)
	var h health
	require.NoError(t, json.NewDecoder(res.Body).Decode(&h))
	res.Body.Close()
	assert.Equal(t, http.StatusOK, res.StatusCode)
	assert.Equal(t, health{Status: "ok", Node: "proxy-1", Groups: []string{"k1"}}, h)
	res, err = http.Get(srv.URL + "/_allot/metrics")
	require.NoError(t, err)
	m, _ := io.ReadAll(res.Body)
	res.Body.Close()
	assert.Contains(t, string(m), `allot_proxy_requests_total{code="200"} 1`)
	res, err = http.Get(srv.URL + "/_allot/other")
	require.NoError(t, err)
	res.Body.Close()
	assert.Equal(t, http.StatusNotFound, res.StatusCode)
	assert.Len(t, api.got(), 1)
}

// TestCheck: a template naming a config key no group of the pool has is
// refused at start, naming the keys there are.
func TestCheck(t *testing.T) {
	rdb := redistest.Start(t).Client(t)
	pl := newPool(t, rdb)
	c, err := client.New(rdb, client.WithNamespace(pl.ns))
	require.NoError(t, err)
	typo, err := New(c, "https://api.example.com", WithAuthHeader("Authorization: Bearer {api_kye}"), WithAuthQuery("k={model}"))
	require.NoError(t, err)
	ctx := context.Background()

	err = typo.Check(ctx, pl.reg)
	require.ErrorIs(t, err, ErrUnknownConfigKey)
	assert.Contains(t, err.Error(), "the pool has no groups")

	pl.add("k1", "")
	_, err = pl.reg.Update(ctx, "k1", registry.Change{Set: map[string]string{"model": "gpt"}}, "test")
	require.NoError(t, err)
	err = typo.Check(ctx, pl.reg)
	require.ErrorIs(t, err, ErrUnknownConfigKey)
	assert.Equal(t, `proxy: unknown config key: auth header Authorization names {api_kye}, which no group of the pool has (its groups' config keys: api_key, model)`, err.Error())

	good, err := New(c, "https://api.example.com", WithAuthHeader("Authorization: Bearer {api_key}"), WithAuthQuery("k={model}"))
	require.NoError(t, err)
	assert.NoError(t, good.Check(ctx, pl.reg))
}

// TestNewRefusesBadOptions: each option that cannot work is an error
// naming it, before anything runs.
func TestNewRefusesBadOptions(t *testing.T) {
	c, err := client.New(redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}))
	require.NoError(t, err)
	tests := []struct {
		name, upstream string
		opts           []Option
		want           string
	}{
		{"relative upstream", "api.openai.com", nil, "absolute http or https URL"},
		{"ftp upstream", "ftp://x", nil, "absolute http or https URL"},
		{"credentials in URL", "https://u:p@x", nil, "auth header"},
		{"header without colon", "https://x", []Option{WithAuthHeader("Bearer {api_key}")}, "want \"Name: value\""},
		{"bad header name", "https://x", []Option{WithAuthHeader("Auth orization: {api_key}")}, "not a header name"},
		{"connection header", "https://x", []Option{WithAuthHeader("Host: {api_key}")}, "not a header the proxy may set"},
		{"unclosed brace", "https://x", []Option{WithAuthHeader("Authorization: Bearer {api_key")}, "unclosed {"},
		{"stray brace", "https://x", []Option{WithAuthHeader("Authorization: Bearer }")}, "stray }"},
		{"empty key", "https://x", []Option{WithAuthQuery("key={}")}, "empty {}"},
		{"header twice", "https://x", []Option{WithAuthHeader("A: {k}"), WithAuthHeader("a: {k}")}, "given twice"},
		{"query without =", "https://x", []Option{WithAuthQuery("key")}, "want \"name=value\""},
		{"max body", "https://x", []Option{WithMaxBody(0)}, "max body 0"},
		{"timeout", "https://x", []Option{WithUpstreamTimeout(-time.Second)}, "upstream timeout"},
		{"token with space", "https://x", []Option{WithClientToken("a b")}, "white space"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(c, tt.upstream, tt.opts...)
			require.ErrorIs(t, err, ErrInvalidOption)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
	_, err = New(nil, "https://x")
	assert.ErrorIs(t, err, ErrInvalidOption)
}

// TestBodyLimit: a body over the limit gets 413 and never reaches the
// upstream, whether its length was announced or not.
func TestBodyLimit(t *testing.T) {
	rdb := redistest.Start(t).Client(t)
	pl := newPool(t, rdb)
	pl.add("k1", "")
	c := pl.node("proxy-1")
	holding(t, c, "k1")
	api, up := startFakeAPI(t)
	p, srv := serve(t, c, up.URL, WithMaxBody(100))

	res, body := post(t, srv.URL, "/v1/x", strings.Repeat("a", 101))
	assert.Equal(t, http.StatusRequestEntityTooLarge, res.StatusCode)
	assert.JSONEq(t, `{"error":{"message":"allot proxy: the request body is over 100 bytes (allot proxy --max-body)","type":"invalid_request_error","param":null,"code":"request_too_large"}}`, body)

	// Chunked: no length announced.
	req, err := http.NewRequest(http.MethodPost, srv.URL+"/v1/x", io.MultiReader(strings.NewReader(strings.Repeat("a", 60)), strings.NewReader(strings.Repeat("b", 60))))
	require.NoError(t, err)
	req.ContentLength = -1
	res, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	res.Body.Close()
	assert.Equal(t, http.StatusRequestEntityTooLarge, res.StatusCode)
	assert.Empty(t, api.got())
	assert.Equal(t, 2.0, counter(t, p, "allot_proxy_refusals_total", "reason", "body_too_large"))

	res, _ = post(t, srv.URL, "/v1/x", `{"a":"`+strings.Repeat("a", 92)+`"}`)
	assert.Equal(t, http.StatusOK, res.StatusCode, "100 bytes pass")
}

// TestUpstreamTimeout: an upstream that never answers hits the timeout:
// the caller gets 504 and the lease is settled at its estimate (the
// upstream may have counted the call).
func TestUpstreamTimeout(t *testing.T) {
	rdb := redistest.Start(t).Client(t)
	pl := newPool(t, rdb)
	pl.add("k1", "600/m, 100000 tokens/m")
	c := pl.node("proxy-1")
	holding(t, c, "k1")
	api := newFakeAPI()
	block := make(chan struct{})
	api.set(func(f *fakeAPI) { f.block = block })
	up := httptest.NewServer(api)
	defer up.Close()
	defer close(block)
	p, srv := serve(t, c, up.URL, WithOpenAI(), WithUpstreamTimeout(300*time.Millisecond))

	const body = `{"model":"m","max_tokens":100,"messages":[{"role":"user","content":"hi"}]}` // 75 bytes: 19 + 100
	start := time.Now()
	res, got := post(t, srv.URL, "/v1/chat/completions", body)
	assert.Equal(t, http.StatusGatewayTimeout, res.StatusCode)
	assert.GreaterOrEqual(t, time.Since(start), 300*time.Millisecond)
	assert.Contains(t, got, `"code":"upstream_timeout"`)
	assert.Equal(t, 1.0, counter(t, p, "allot_proxy_upstream_errors_total", "kind", "timeout"))
	assert.Equal(t, int64(119), pl.tokens("k1"), "settled at the estimate")
}

// TestRetryOnceOnAnotherKey: an upstream 429 (or 401/403) about the
// proxy's key is sent again once on another key, and the refused key
// cools for every holder; a second refusal goes to the caller as it is.
func TestRetryOnceOnAnotherKey(t *testing.T) {
	rdb := redistest.Start(t).Client(t)
	pl := newPool(t, rdb)
	for _, g := range []string{"k1", "k2", "k3"} {
		pl.add(g, "60/m") // refills one a second: the room each call leaves orders the keys
	}
	c := pl.node("proxy-1")
	holding(t, c, "k1", "k2", "k3")
	api := newFakeAPI()
	api.set(func(f *fakeAPI) { f.refuse["sk-k1"], f.retryAfter = http.StatusTooManyRequests, "30" })
	up := httptest.NewServer(api)
	defer up.Close()
	p, srv := serve(t, c, up.URL)

	res, body := post(t, srv.URL, "/v1/chat/completions", `{"model":"m"}`)
	require.Equal(t, http.StatusOK, res.StatusCode, body)
	assert.Equal(t, []string{"sk-k1", "sk-k2"}, api.keys(), "k1 refused, k2 answered")
	assert.Equal(t, 1.0, counter(t, p, "allot_proxy_retries_total", "status", "429"))
	assert.WithinDuration(t, time.Now().Add(30*time.Second), pl.health("k1").CoolingUntil, 5*time.Second, "k1 cools for every holder")

	// k3 and k2 refuse too: the call is tried on k3 (never called: the
	// most room; k1 cools), then once on k2, and no more.
	api.set(func(f *fakeAPI) {
		f.refuse["sk-k2"], f.refuse["sk-k3"] = http.StatusTooManyRequests, http.StatusUnauthorized
	})
	res, body = post(t, srv.URL, "/v1/chat/completions", `{"model":"m"}`)
	assert.Equal(t, []string{"sk-k1", "sk-k2", "sk-k3", "sk-k2"}, api.keys(), "one retry, no more")
	assert.Equal(t, http.StatusTooManyRequests, res.StatusCode, "the second refusal is the caller's")
	assert.Equal(t, "30", res.Header.Get("Retry-After"))
	assert.Contains(t, body, "refused by the fake")
	assert.Equal(t, 1.0, counter(t, p, "allot_proxy_retries_total", "status", "401"))
	assert.Equal(t, 1, pl.health("k3").Failures, "k3's 401 is reported before the retry")
	require.Eventually(t, func() bool { return pl.health("k2").CoolingUntil.After(time.Now().Add(20 * time.Second)) },
		5*time.Second, 10*time.Millisecond, "k2's 429 is reported after the answer")
}

// TestNoRetryWithoutAnotherKey: with one key, the upstream's 429 goes to
// the caller; the next call is refused by the proxy itself while the key
// cools, without reaching the upstream.
func TestNoRetryWithoutAnotherKey(t *testing.T) {
	rdb := redistest.Start(t).Client(t)
	pl := newPool(t, rdb)
	pl.add("k1", "6000/m")
	c := pl.node("proxy-1")
	holding(t, c, "k1")
	api := newFakeAPI()
	api.set(func(f *fakeAPI) { f.refuse["sk-k1"], f.retryAfter = http.StatusTooManyRequests, "20" })
	up := httptest.NewServer(api)
	defer up.Close()
	_, srv := serve(t, c, up.URL, WithOpenAI())

	res, body := post(t, srv.URL, "/v1/chat/completions", `{"model":"m"}`)
	assert.Equal(t, http.StatusTooManyRequests, res.StatusCode)
	assert.Equal(t, "20", res.Header.Get("Retry-After"), "the upstream's own answer")
	assert.Contains(t, body, "refused by the fake")
	res, body = post(t, srv.URL, "/v1/chat/completions", `{"model":"m"}`)
	assert.Equal(t, http.StatusTooManyRequests, res.StatusCode)
	assert.Contains(t, body, `"code":"rate_limit_exceeded"`)
	assert.Contains(t, body, "cools down")
	ms, err := strconv.Atoi(res.Header.Get("retry-after-ms"))
	require.NoError(t, err)
	assert.Greater(t, ms, 15000)
	assert.Len(t, api.got(), 1, "the cooling key is not called again")
}

// TestRefusal: a call over the pool's limit gets an OpenAI-shaped 429
// with Retry-After, retry-after-ms (the limiter's wait plus a jitter of
// up to half of it, at most 1 s) and the pool's x-ratelimit headers, and
// never reaches the upstream.
func TestRefusal(t *testing.T) {
	rdb := redistest.Start(t).Client(t)
	pl := newPool(t, rdb)
	pl.add("k1", "30/m burst 1") // one call every 2 s
	c := pl.node("proxy-1")
	holding(t, c, "k1")
	api, up := startFakeAPI(t)
	draws := []float64{0, 0.999}
	p, srv := serve(t, c, up.URL, WithOpenAI(), withRandom(func() float64 {
		f := draws[0]
		draws = draws[1:]
		return f
	}))

	res, _ := post(t, srv.URL, "/v1/chat/completions", `{"model":"m"}`)
	require.Equal(t, http.StatusOK, res.StatusCode)
	assert.Equal(t, "1", res.Header.Get("x-ratelimit-limit-requests"))
	assert.Equal(t, "0", res.Header.Get("x-ratelimit-remaining-requests"), "the pool's, not the upstream's 999")

	var waits []int
	for range 2 {
		res, body := post(t, srv.URL, "/v1/chat/completions", `{"model":"m"}`)
		require.Equal(t, http.StatusTooManyRequests, res.StatusCode)
		var e errorBody
		require.NoError(t, json.Unmarshal([]byte(body), &e))
		assert.Equal(t, "requests", e.Error.Type)
		assert.Equal(t, "rate_limit_exceeded", e.Error.Code)
		assert.Contains(t, e.Error.Message, "30/m burst 1")
		assert.Equal(t, "application/json", res.Header.Get("Content-Type"))
		ms, err := strconv.Atoi(res.Header.Get("retry-after-ms"))
		require.NoError(t, err)
		secs, err := strconv.Atoi(res.Header.Get("Retry-After"))
		require.NoError(t, err)
		assert.Equal(t, (ms+999)/1000, secs, "whole seconds, rounded up")
		assert.Equal(t, "0", res.Header.Get("x-ratelimit-remaining-requests"))
		waits = append(waits, ms)
	}
	assert.LessOrEqual(t, waits[0], 2000, "no jitter drawn: the limiter's wait")
	assert.Greater(t, waits[0], 1000)
	assert.InDelta(t, waits[0]+999, waits[1], 200, "the largest draw adds about 1 s (half of 2 s)")
	assert.Len(t, api.got(), 1)
	assert.Equal(t, 2.0, counter(t, p, "allot_proxy_refusals_total", "reason", "rate_limited"))
}

// TestJitter: the wait a refusal asks for is d plus up to half of d, the
// spread at least 10 ms and at most 1 s.
func TestJitter(t *testing.T) {
	tests := []struct {
		d    time.Duration
		draw float64
		want time.Duration
	}{
		{2 * time.Second, 0, 2 * time.Second},
		{2 * time.Second, 0.5, 2500 * time.Millisecond},
		{time.Millisecond, 0.5, 6 * time.Millisecond},
		{100 * time.Millisecond, 0.5, 125 * time.Millisecond},
		{30 * time.Second, 0.5, 30500 * time.Millisecond},
	}
	for _, tt := range tests {
		p := &Proxy{o: options{random: func() float64 { return tt.draw }}}
		assert.Equal(t, tt.want, p.jittered(tt.d), "%v draw %v", tt.d, tt.draw)
	}
}

// TestOpenAITokens: a call reserves its estimate and settles at the
// upstream's usage, streamed or not; a stream the caller did not ask usage
// for gets it asked upstream and loses the usage chunk on the way back.
func TestOpenAITokens(t *testing.T) {
	rdb := redistest.Start(t).Client(t)
	pl := newPool(t, rdb)
	pl.add("k1", "6000/m, 1000000 tokens/m")
	c := pl.node("proxy-1")
	holding(t, c, "k1")
	api, up := startFakeAPI(t)
	_, srv := serve(t, c, up.URL, WithOpenAI())

	res, body := post(t, srv.URL, "/v1/chat/completions", `{"model":"m","max_tokens":300,"messages":[{"role":"user","content":"hi"}]}`)
	require.Equal(t, http.StatusOK, res.StatusCode)
	assert.Contains(t, body, `"usage":{`)
	require.Eventually(t, func() bool { return pl.tokens("k1") == api.reported() }, 5*time.Second, 10*time.Millisecond)
	require.NotZero(t, api.reported())

	for _, asked := range []bool{false, true} {
		req := `{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}`
		if asked {
			req = `{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}`
		}
		res, body := post(t, srv.URL, "/v1/chat/completions", req)
		require.Equal(t, http.StatusOK, res.StatusCode)
		assert.Equal(t, "text/event-stream", res.Header.Get("Content-Type"))
		calls := api.got()
		assert.Equal(t, map[string]any{"include_usage": true}, calls[len(calls)-1].Body["stream_options"], "usage asked upstream")
		events := strings.Split(strings.TrimSpace(body), "\n\n")
		assert.Equal(t, "data: [DONE]", events[len(events)-1])
		if asked {
			require.Len(t, events, 6)
			assert.Contains(t, events[4], `"choices":[],"usage":`, "asked for: kept")
		} else {
			require.Len(t, events, 5)
			assert.NotContains(t, body, `"choices":[]`, "not asked for: dropped")
		}
		require.Eventually(t, func() bool { return pl.tokens("k1") == api.reported() }, 5*time.Second, 10*time.Millisecond)
	}
}

// TestStreamFlushed: each event of a stream reaches the caller as the
// upstream sends it, in plain and OpenAI mode.
func TestStreamFlushed(t *testing.T) {
	rdb := redistest.Start(t).Client(t)
	for _, openAI := range []bool{false, true} {
		t.Run("openai="+strconv.FormatBool(openAI), func(t *testing.T) {
			pl := newPool(t, rdb)
			pl.add("k1", "")
			c := pl.node("proxy-1")
			holding(t, c, "k1")
			next := make(chan struct{})
			up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/event-stream")
				fmt.Fprint(w, "data: {\"n\":1}\n\n")
				_ = http.NewResponseController(w).Flush()
				select {
				case <-next:
				case <-r.Context().Done():
					return
				}
				fmt.Fprint(w, "data: {\"n\":2}\n\ndata: [DONE]\n\n")
			}))
			defer up.Close()
			var opts []Option
			if openAI {
				opts = append(opts, WithOpenAI())
			}
			_, srv := serve(t, c, up.URL, opts...)
			res, err := http.Post(srv.URL+"/v1/chat/completions", "application/json", strings.NewReader(`{"stream":true}`))
			require.NoError(t, err)
			defer res.Body.Close()
			lines := make(chan string)
			go func() {
				defer close(lines)
				sc := bufio.NewScanner(res.Body)
				for sc.Scan() {
					if sc.Text() != "" {
						lines <- sc.Text()
					}
				}
			}()
			receive := func() string {
				select {
				case l := <-lines:
					return l
				case <-time.After(10 * time.Second):
					t.Fatal("no event within 10 s: the proxy holds the stream back")
					return ""
				}
			}
			assert.Equal(t, `data: {"n":1}`, receive(), "before the upstream sends the rest")
			close(next)
			assert.Equal(t, `data: {"n":2}`, receive())
			assert.Equal(t, `data: [DONE]`, receive())
		})
	}
}

// TestClientToken: with a client token the proxy answers only callers
// that send it, and never forwards it.
func TestClientToken(t *testing.T) {
	rdb := redistest.Start(t).Client(t)
	pl := newPool(t, rdb)
	pl.add("k1", "")
	c := pl.node("proxy-1")
	holding(t, c, "k1")
	api, up := startFakeAPI(t)
	_, srv := serve(t, c, up.URL, WithClientToken("tok-123"))

	for _, auth := range []string{"", "Bearer tok-12", "tok-123"} {
		res, body := post(t, srv.URL, "/v1/x", `{}`, "Authorization", auth)
		assert.Equal(t, http.StatusUnauthorized, res.StatusCode, auth)
		assert.Contains(t, body, `"code":"invalid_api_key"`)
	}
	assert.Empty(t, api.got())
	res, _ := post(t, srv.URL, "/v1/x", `{}`, "Authorization", "Bearer tok-123")
	assert.Equal(t, http.StatusOK, res.StatusCode)
	assert.Equal(t, []string{"sk-k1"}, api.keys())
}

// TestStandby: a node that holds no key answers 503 with a wait, and its
// health check says standby.
func TestStandby(t *testing.T) {
	rdb := redistest.Start(t).Client(t)
	pl := newPool(t, rdb)
	c := pl.node("proxy-1")
	api, up := startFakeAPI(t)
	_, srv := serve(t, c, up.URL, WithOpenAI())

	res, body := post(t, srv.URL, "/v1/x", `{}`)
	assert.Equal(t, http.StatusServiceUnavailable, res.StatusCode)
	assert.Contains(t, body, `"code":"no_key"`)
	assert.NotEmpty(t, res.Header.Get("retry-after-ms"))
	res, err := http.Get(srv.URL + "/_allot/healthz")
	require.NoError(t, err)
	res.Body.Close()
	assert.Equal(t, http.StatusServiceUnavailable, res.StatusCode)
	assert.Empty(t, api.got())
}

// TestCostTooLarge: an estimate no key's token limit can ever take is 413
// at once, not a 429 to retry forever.
func TestCostTooLarge(t *testing.T) {
	rdb := redistest.Start(t).Client(t)
	pl := newPool(t, rdb)
	pl.add("k1", "1000 tokens/m")
	c := pl.node("proxy-1")
	holding(t, c, "k1")
	api, up := startFakeAPI(t)
	_, srv := serve(t, c, up.URL, WithOpenAI())

	res, body := post(t, srv.URL, "/v1/chat/completions", `{"model":"m","max_tokens":5000}`)
	assert.Equal(t, http.StatusRequestEntityTooLarge, res.StatusCode)
	assert.Contains(t, body, `"code":"request_too_large"`)
	assert.Empty(t, api.got())
}

// TestCallerAuthorizationDropped: the caller's Authorization never reaches
// the upstream, even when no auth header replaces it.
func TestCallerAuthorizationDropped(t *testing.T) {
	rdb := redistest.Start(t).Client(t)
	pl := newPool(t, rdb)
	pl.add("k1", "")
	c := pl.node("proxy-1")
	holding(t, c, "k1")
	api, up := startFakeAPI(t)
	p, err := New(c, up.URL, WithAuthQuery("key={api_key}"))
	require.NoError(t, err)
	srv := httptest.NewServer(p)
	defer srv.Close()
	defer p.Close(context.Background())

	res, _ := post(t, srv.URL, "/v1/x", `{}`, "Authorization", "Bearer caller-secret", "Proxy-Authorization", "Basic eA==")
	require.Equal(t, http.StatusOK, res.StatusCode)
	got := api.got()[0]
	assert.Empty(t, got.Header.Values("Authorization"))
	assert.Empty(t, got.Header.Values("Proxy-Authorization"))
	assert.Equal(t, "key=sk-k1", got.Query)
}
