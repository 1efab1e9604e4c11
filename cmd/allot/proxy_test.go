package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/internal/redistest"
	"github.com/allot-io/allot/internal/testlog"
)

var proxyListening = regexp.MustCompile(`allot proxy: listening on (http://\S+),`)

// TestProxyRefusesAtStart: what cannot work is refused before the proxy
// joins, with one line saying why: an unknown {config_key} above all.
func TestProxyRefusesAtStart(t *testing.T) {
	url := redistest.Start(t).URL()
	mustRun(t, url, "group", "add", "k1", "--secret", "api_key=sk-1", "--set", "model=m")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown config key", []string{"--auth-header", "Authorization: Bearer {api_kye}"},
			"allot: unknown config key: auth header Authorization names {api_kye}, which no group of the pool has (its groups' config keys: api_key, model)"},
		{"unknown query key", []string{"--auth-query", "key={token}"},
			"allot: unknown config key: auth query key names {token}, which no group of the pool has (its groups' config keys: api_key, model)"},
		{"bad template", []string{"--auth-header", "Authorization: Bearer {api_key"}, "unclosed {"},
		{"bad max body", []string{"--max-body", "10MB"}, `invalid --max-body "10MB": want a number of bytes, or with KiB, MiB or GiB (10MiB)`},
		{"open beyond loopback", []string{"--listen", "0.0.0.0:0"}, "refusing to listen on 0.0.0.0:0 without a client token"},
		{"bad upstream", []string{"--upstream", "api.openai.com"}, "want an absolute http or https URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"proxy", "--upstream", "http://127.0.0.1:1", "--listen", "127.0.0.1:0"}, tt.args...)
			_, stderr, code := runCLI(t, url, args...)
			assert.Equal(t, exitUsage, code)
			assert.Contains(t, oneStderrLine(t, stderr), tt.want)
		})
	}
	_, stderr, code := runCLI(t, url, "proxy")
	assert.Equal(t, exitUsage, code)
	assert.Contains(t, oneStderrLine(t, stderr), "missing --upstream")
	assert.Equal(t, "no live nodes\n", mustRun(t, url, "node", "list"), "nothing joined")
}

// TestProxyServesAndLeaves: `allot proxy` forwards with the pool's key
// and, on SIGTERM, finishes the call in flight before it leaves the pool.
func TestProxyServesAndLeaves(t *testing.T) {
	url := redistest.Start(t).URL()
	mustRun(t, url, "group", "add", "k1", "--secret", "api_key=sk-1")
	arrived, release := make(chan string, 4), make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- r.Header.Get("Authorization")
		if r.URL.Path == "/slow" {
			<-release
		}
		_, _ = io.WriteString(w, "answer "+r.URL.Path)
	}))
	defer up.Close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errb testlog.Buffer
	code := make(chan int, 1)
	getenv := func(k string) string {
		return map[string]string{"ALLOT_HEARTBEAT_INTERVAL": "100ms"}[k]
	}
	go func() {
		code <- execute(ctx, []string{"--redis", url, "proxy", "--upstream", up.URL, "--listen", "127.0.0.1:0",
			"--node-id", "proxy-cli", "--auth-header", "Authorization: Bearer {api_key}"},
			env{stdout: &out, stderr: &errb, getenv: getenv})
	}()
	var base string
	require.Eventually(t, func() bool {
		m := proxyListening.FindStringSubmatch(out.String())
		if m != nil {
			base = m[1]
		}
		return m != nil
	}, 15*time.Second, 10*time.Millisecond, "stderr: %s", errb.String())
	assert.Contains(t, mustRun(t, url, "node", "list"), "proxy-cli")

	get := func(path string) (int, string) {
		req, err := http.NewRequest(http.MethodGet, base+path, nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer callers")
		res, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	status, body := get("/fast")
	assert.Equal(t, http.StatusOK, status)
	assert.Equal(t, "answer /fast", body)
	assert.Equal(t, "Bearer sk-1", <-arrived)

	// A call in flight when SIGTERM comes is finished, then the node leaves.
	slow := make(chan string, 1)
	go func() {
		_, b := get("/slow")
		slow <- b
	}()
	<-arrived
	cancel()
	require.Eventually(t, func() bool { return strings.Contains(errb.String(), "shutting down") }, 10*time.Second, 10*time.Millisecond)
	assert.Contains(t, mustRun(t, url, "node", "list"), "proxy-cli", "still a node while a call is in flight")
	close(release)
	assert.Equal(t, "answer /slow", <-slow)
	select {
	case c := <-code:
		assert.Equal(t, exitOK, c, "stderr: %s", errb.String())
	case <-time.After(20 * time.Second):
		t.Fatal("proxy did not stop within 20s")
	}
	assert.Equal(t, "no live nodes\n", mustRun(t, url, "node", "list"), "left at once, not reaped later")
}
