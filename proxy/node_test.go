package proxy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/client"
	"github.com/allot-io/allot/internal/redistest"
	"github.com/allot-io/allot/registry"
)

// sdkDir holds the Node test program and its npm packages.
const sdkDir = "testdata/node"

// sdkResult is one call of testdata/node/sdk.mjs, as the SDK saw it.
type sdkResult struct {
	OK           bool            `json:"ok"`
	Text         string          `json:"text"`
	Usage        *sdkUsage       `json:"usage"`
	Chunks       int             `json:"chunks"`
	EmptyChoices int             `json:"empty_choices"`
	ErrorName    string          `json:"error_name"`
	Message      string          `json:"message"`
	Status       int             `json:"status"`
	Type         string          `json:"type"`
	Code         json.RawMessage `json:"code"`
	ElapsedMS    int64           `json:"elapsed_ms"`
}

type sdkUsage struct {
	Total int64 `json:"total_tokens"`
}

// sdkCall is one call the program makes.
type sdkCall struct {
	Stream       bool `json:"stream,omitempty"`
	IncludeUsage bool `json:"include_usage,omitempty"`
	MaxTokens    int  `json:"max_tokens,omitempty"`
}

// requireNode fails the test, saying how to fix it, when node or the
// openai package is missing.
func requireNode(t *testing.T) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node is not installed: run .ci/install-deps (it installs Debian's nodejs and npm, and the openai package into proxy/testdata/node)")
	}
	if _, err := os.Stat(filepath.Join(sdkDir, "node_modules", "openai", "package.json")); err != nil {
		t.Fatalf("the openai npm package is not installed in %s: run .ci/install-deps (npm ci there)", sdkDir)
	}
	return node
}

// runSDK runs the program against the proxy at url with calls and
// returns what the SDK saw of each.
func runSDK(t *testing.T, node, url, apiKey string, maxRetries int, calls ...sdkCall) []sdkResult {
	t.Helper()
	spec, err := json.Marshal(map[string]any{"calls": calls, "maxRetries": maxRetries})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "sdk.mjs", string(spec))
	cmd.Dir = sdkDir
	cmd.Env = append(os.Environ(), "ALLOT_PROXY_URL="+url, "OPENAI_API_KEY="+apiKey, "OPENAI_BASE_URL=", "OPENAI_LOG=")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("node sdk.mjs: %v\nstderr: %s", err, stderr.String())
	}
	var out []sdkResult
	sc := bufio.NewScanner(&stdout)
	for sc.Scan() {
		var r sdkResult
		require.NoError(t, json.Unmarshal(sc.Bytes(), &r), sc.Text())
		out = append(out, r)
	}
	require.Len(t, out, len(calls), "stderr: %s", stderr.String())
	return out
}

// TestNodeSDK drives allot proxy with npm's official openai package (6.x),
// code nobody here wrote, against a fake OpenAI upstream.
func TestNodeSDK(t *testing.T) {
	node := requireNode(t)
	rdb := redistest.Start(t).Client(t)

	// Calls with and without streaming, with and without include_usage,
	// through a proxy guarded by a client token (the SDK's apiKey): the
	// text arrives, the chunk loop never meets an empty choices, and the
	// tokens settled are the upstream's usage.
	t.Run("calls", func(t *testing.T) {
		pl := newPool(t, rdb)
		pl.add("k1", "6000/m, 1000000 tokens/m")
		c := pl.node("proxy-1")
		holding(t, c, "k1")
		api, up := startFakeAPI(t)
		_, srv := serve(t, c, up.URL, WithOpenAI(), WithClientToken("tok-sdk"))

		rs := runSDK(t, node, srv.URL, "tok-sdk", 0,
			sdkCall{}, sdkCall{Stream: true}, sdkCall{Stream: true, IncludeUsage: true}, sdkCall{Stream: true})
		for i, r := range rs {
			require.True(t, r.OK, "call %d: %s %s", i, r.ErrorName, r.Message)
			assert.Equal(t, "Hello", r.Text, "call %d", i)
		}
		assert.Equal(t, []int{0, 0, 1, 0}, []int{rs[0].EmptyChoices, rs[1].EmptyChoices, rs[2].EmptyChoices, rs[3].EmptyChoices},
			"only the caller that asked for usage sees its chunk")
		calls := api.got()
		require.Len(t, calls, 4)
		require.NotNil(t, rs[0].Usage)
		assert.Equal(t, calls[0].Tokens, rs[0].Usage.Total)
		assert.Nil(t, rs[1].Usage, "not asked for, not seen")
		require.NotNil(t, rs[2].Usage, "asked for: seen")
		assert.Equal(t, calls[2].Tokens, rs[2].Usage.Total)
		assert.Equal(t, 5, rs[2].Chunks, "4 chunks and the usage chunk")
		assert.Equal(t, 4, rs[1].Chunks, "the usage chunk dropped")
		for _, i := range []int{1, 3} {
			assert.NotZero(t, calls[i].Tokens, "call %d: the proxy asked for the usage chunk", i)
			assert.Equal(t, "sk-k1", calls[i].Key)
		}
		require.Eventually(t, func() bool { return pl.tokens("k1") == api.reported() }, 5*time.Second, 10*time.Millisecond,
			"tokens settled = the upstream's usage")
	})

	// The pool's limit is used up: the proxy refuses with retry-after-ms,
	// the SDK waits that long and its one retry succeeds; the upstream,
	// which enforces the same limit, never answers 429.
	t.Run("limit used up", func(t *testing.T) {
		pl := newPool(t, rdb)
		pl.add("k1", "30/m burst 1") // one call every 2 s
		c := pl.node("proxy-1")
		holding(t, c, "k1")
		api := newFakeAPI()
		api.set(func(f *fakeAPI) { f.spacing = 2 * time.Second })
		up := httptest.NewServer(api)
		defer up.Close()
		p, srv := serve(t, c, up.URL, WithOpenAI())

		// One retry: the SDK's own backoff (0.5 s at most for the first)
		// would be refused again; only retry-after-ms gets it through.
		rs := runSDK(t, node, srv.URL, "", 1, sdkCall{}, sdkCall{})
		for i, r := range rs {
			require.True(t, r.OK, "call %d: %s %s (status %d)", i, r.ErrorName, r.Message, r.Status)
		}
		assert.GreaterOrEqual(t, rs[1].ElapsedMS, int64(1500), "the SDK waited for the pool's limit")
		assert.Equal(t, 1.0, counter(t, p, "allot_proxy_refusals_total", "reason", "rate_limited"))
		assert.Equal(t, map[int]int{http.StatusOK: 2}, api.statuses(), "the upstream never answered 429")
	})

	// An upstream 429 cools the key for every holder: another node's Allow
	// is refused, and the proxy's next call is refused by the proxy itself
	// without reaching the upstream.
	t.Run("upstream 429 cools the key", func(t *testing.T) {
		pl := newPool(t, rdb)
		pl.add("k1", "6000/m")
		c := pl.node("proxy-1")
		other := pl.node("other")
		holding(t, c, "k1")
		holding(t, other, "k1")
		api := newFakeAPI()
		api.set(func(f *fakeAPI) { f.refuse["sk-k1"], f.retryAfter = http.StatusTooManyRequests, "20" })
		up := httptest.NewServer(api)
		defer up.Close()
		_, srv := serve(t, c, up.URL, WithOpenAI())

		rs := runSDK(t, node, srv.URL, "", 0, sdkCall{}, sdkCall{Stream: true})
		assert.Equal(t, 429, rs[0].Status, "the upstream's 429, the only key")
		var rl *client.RateLimitError
		require.True(t, errors.As(other.Allow(context.Background(), "k1"), &rl), "the other holder is refused")
		assert.Equal(t, "cooling", rl.Limit)
		assert.Equal(t, 429, rs[1].Status, "the proxy's own refusal")
		assert.Equal(t, "requests", rs[1].Type)
		assert.JSONEq(t, `"rate_limit_exceeded"`, string(rs[1].Code))
		assert.Len(t, api.got(), 1, "the cooling key is not called again")
	})

	// A revoked key (401) is retried on another key at once, reported, and
	// suspended after eject_after (3 in 1 m); the node then holds the other
	// keys only, and no call reaches the revoked key again.
	t.Run("revoked key", func(t *testing.T) {
		pl := newPool(t, rdb)
		for _, g := range []string{"k1", "k2", "k3"} {
			pl.add(g, "60/m") // refills one a second: the room each call leaves orders the keys
		}
		c := pl.node("proxy-1")
		holding(t, c, "k1", "k2", "k3")
		api := newFakeAPI()
		api.set(func(f *fakeAPI) { f.refuse["sk-k2"] = http.StatusUnauthorized })
		up := httptest.NewServer(api)
		defer up.Close()
		_, srv := serve(t, c, up.URL, WithOpenAI())

		calls := make([]sdkCall, 15)
		for i, r := range runSDK(t, node, srv.URL, "", 0, calls...) {
			require.True(t, r.OK, "call %d: %s %s", i, r.ErrorName, r.Message)
		}
		require.Eventually(t, func() bool { return pl.health("k2").State == registry.Suspended }, 5*time.Second, 10*time.Millisecond, "keys %v health %+v", api.keys(), pl.health("k2"))
		holding(t, c, "k1", "k3")
		revoked := func() (n int) {
			for _, k := range api.keys() {
				if k == "sk-k2" {
					n++
				}
			}
			return n
		}
		before := revoked()
		assert.GreaterOrEqual(t, before, 3)
		for i, r := range runSDK(t, node, srv.URL, "", 0, make([]sdkCall, 6)...) {
			require.True(t, r.OK, "call %d: %s %s", i, r.ErrorName, r.Message)
		}
		assert.Equal(t, before, revoked(), "the suspended key is not called")
	})
}
