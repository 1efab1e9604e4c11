package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/internal/redistest"
	"github.com/allot-io/allot/internal/testcert"
	"github.com/allot-io/allot/internal/testlog"
	"github.com/allot-io/allot/server"
)

var (
	listeningLine = regexp.MustCompile(`allot serve: listening on (https?://\S+)`)
	// lastStdout is the stdout of the latest startServe, for the dev line.
	lastStdout *testlog.Buffer
)

// startServe runs `allot serve args...` in-process and returns its base URL
// and a stop function that ends it like SIGTERM and returns the exit code.
func startServe(t *testing.T, getenv func(string) string, args ...string) (string, *testlog.Buffer, func() int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var out, errb testlog.Buffer
	lastStdout = &out
	code := make(chan int, 1)
	go func() {
		code <- execute(ctx, append([]string{"serve"}, args...), env{stdout: &out, stderr: &errb, getenv: getenv})
	}()
	var url string
	require.Eventually(t, func() bool {
		select {
		case c := <-code:
			code <- c
			return true
		default:
		}
		m := listeningLine.FindStringSubmatch(out.String())
		if m != nil {
			url = m[1]
		}
		return m != nil
	}, 15*time.Second, 10*time.Millisecond)
	require.NotEmpty(t, url, "serve exited early; stderr: %s", errb.String())
	stopped := false
	stop := func() int {
		stopped = true
		cancel()
		select {
		case c := <-code:
			return c
		case <-time.After(20 * time.Second):
			t.Fatal("serve did not stop within 20s")
			return -1
		}
	}
	t.Cleanup(func() {
		if !stopped {
			stop()
		}
	})
	return url, &errb, stop
}

func getJSON(t *testing.T, url string, v any) int {
	t.Helper()
	res, err := http.Get(url)
	require.NoError(t, err)
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	if v != nil && res.StatusCode == http.StatusOK {
		require.NoError(t, json.Unmarshal(b, v), "%s", b)
	}
	return res.StatusCode
}

// TestServeDev is the --dev smoke test: with nothing installed, the server
// answers with demo nodes holding every sample group, and a demo node
// stopped without leaving is reaped and its groups move.
func TestServeDev(t *testing.T) {
	url, stderr, stop := startServe(t, testEnv, "--dev", "--listen", "127.0.0.1:0", "--demo-nodes", "3")
	assert.Contains(t, stderr.String(), "dev mode: in-memory Redis, state is lost on exit")
	// stdout starts with the line that points the CLI at the dev Redis, and
	// the CLI given that URL sees the dev pool and its fast heartbeat.
	m := regexp.MustCompile(`(?m)^export ALLOT_REDIS_URL=(redis://127\.0\.0\.1:\d+)$`).FindStringSubmatch(lastStdout.String())
	require.NotNil(t, m, lastStdout.String())
	assert.Contains(t, mustRun(t, m[1], "namespace", "list"), "default  ")
	assert.Regexp(t, `500ms\s+1\.5s\s+100000 \(default\)\s`, mustRun(t, m[1], "namespace", "list"))

	type status struct {
		Groups []struct {
			Name  string   `json:"name"`
			Nodes []string `json:"nodes"`
		} `json:"groups"`
		Nodes []struct {
			ID     string   `json:"id"`
			Groups []string `json:"groups"`
		} `json:"nodes"`
	}
	held := func(st status) bool {
		for _, g := range st.Groups {
			if len(g.Nodes) == 0 {
				return false
			}
		}
		return len(st.Groups) == 4
	}
	var st status
	require.Eventually(t, func() bool {
		return getJSON(t, url+"/v1/status", &st) == http.StatusOK && len(st.Nodes) == 3 && held(st)
	}, 20*time.Second, 20*time.Millisecond, "status: %+v", &st)

	var nodes []server.DevNode
	require.Equal(t, http.StatusOK, getJSON(t, url+"/v1/dev/nodes", &nodes))
	require.Len(t, nodes, 3)
	victim := nodes[0].ID
	res, err := http.Post(url+"/v1/dev/nodes/"+victim+"/stop", "", nil)
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode)
	require.Eventually(t, func() bool {
		if getJSON(t, url+"/v1/status", &st) != http.StatusOK {
			return false
		}
		for _, n := range st.Nodes {
			if n.ID == victim {
				return false
			}
		}
		return len(st.Nodes) == 2 && held(st)
	}, 20*time.Second, 20*time.Millisecond, "status: %+v", &st)

	assert.Equal(t, exitOK, stop())
}

// TestServeRedis serves a real Redis with tokens on a non-loopback address.
func TestServeRedis(t *testing.T) {
	rs := redistest.Start(t)
	getenv := func(k string) string {
		switch k {
		case "ALLOT_REDIS_URL":
			return rs.URL()
		case "ALLOT_ADMIN_TOKEN":
			return "admin-0123456789"
		}
		return testEnv(k)
	}
	url, _, stop := startServe(t, getenv, "--listen", "0.0.0.0:0", "--log-format", "json", "--tls-disable")
	url = strings.Replace(url, "0.0.0.0", "127.0.0.1", 1)
	url = strings.Replace(url, "[::]", "127.0.0.1", 1)
	assert.Equal(t, http.StatusOK, getJSON(t, url+"/readyz", nil))
	assert.Equal(t, http.StatusUnauthorized, getJSON(t, url+"/v1/status", nil))
	assert.Equal(t, exitOK, stop())
}

func TestServeUsage(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--listen", "0.0.0.0:7070"}, "refusing to listen on 0.0.0.0:7070 without ALLOT_ADMIN_TOKEN"},
		{[]string{"--listen", ":7070"}, "refusing to listen on :7070 without ALLOT_ADMIN_TOKEN"},
		{[]string{"--listen", "nonsense"}, "invalid --listen"},
		{[]string{"--demo-nodes", "2"}, "--demo-nodes needs --dev"},
		{[]string{"--dev", "--demo-nodes", "-1"}, "invalid --demo-nodes"},
		{[]string{"--dev", "--log-level", "loud"}, "invalid --log-level"},
		{[]string{"--dev", "--log-format", "xml"}, "invalid --log-format"},
		{[]string{"--dev", "--allowed-host", "http://x/"}, "invalid --allowed-host"},
		{[]string{"--dev", "--max-streams", "0"}, "invalid --max-streams"},
		{[]string{"--dev", "--max-long-polls", "0"}, "invalid --max-long-polls"},
		{[]string{"--dev", "--node-joins-per-minute", "-1"}, "invalid --node-joins-per-minute"},
		{[]string{"--dev", "--node-tokens", "/nonexistent/tokens"}, "--node-tokens: open /nonexistent/tokens"},
	}
	for _, tt := range tests {
		var out, errb testlog.Buffer
		code := execute(t.Context(), append([]string{"serve"}, tt.args...), env{stdout: &out, stderr: &errb, getenv: testEnv})
		assert.Equal(t, exitUsage, code, "%v", tt.args)
		assert.Contains(t, errb.String(), tt.want)
		assert.Equal(t, 1, strings.Count(errb.String(), "\n"), "one line: %q", errb.String())
	}
}

// TestServeShortAdminToken: a short admin token is refused beyond
// loopback, in one line that says how to make a good one.
func TestServeShortAdminToken(t *testing.T) {
	getenv := func(k string) string {
		if k == "ALLOT_ADMIN_TOKEN" {
			return "hunter2"
		}
		return testEnv(k)
	}
	var out, errb testlog.Buffer
	code := execute(t.Context(), []string{"serve", "--listen", "0.0.0.0:0"}, env{stdout: &out, stderr: &errb, getenv: getenv})
	assert.Equal(t, exitUsage, code)
	assert.Equal(t, "allot: refusing to listen on 0.0.0.0:0 with an ALLOT_ADMIN_TOKEN of 7 bytes: use at least 16 random bytes (e.g. openssl rand -hex 32)\n", errb.String())
	assert.NotContains(t, errb.String(), "hunter2")
}

// TestServeHostCheck: `serve --dev` answers loopback names and
// --allowed-host names, and refuses any other Host (DNS rebinding).
func TestServeHostCheck(t *testing.T) {
	url, _, stop := startServe(t, testEnv, "--dev", "--listen", "127.0.0.1:0", "--demo-nodes", "0", "--allowed-host", "allot.test")
	status := func(host string) int {
		req, err := http.NewRequest("GET", url+"/v1/status", nil)
		require.NoError(t, err)
		req.Host = host
		res, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		res.Body.Close()
		return res.StatusCode
	}
	assert.Equal(t, http.StatusOK, status("localhost:7070"))
	assert.Equal(t, http.StatusOK, status("allot.test:7070"))
	assert.Equal(t, http.StatusMisdirectedRequest, status("rebind.evil.example:7070"))
	assert.Equal(t, exitOK, stop())
}

func TestCheckListen(t *testing.T) {
	open := server.Tokens{}
	admin := server.Tokens{Admin: "admin-0123456789"}
	for _, tt := range []struct {
		addr            string
		tokens          server.Tokens
		tls, tlsDisable bool
		ok              bool
	}{
		{"127.0.0.1:7070", open, false, false, true},
		{"localhost:7070", open, false, false, true},
		{"[::1]:7070", open, false, false, true},
		{"0.0.0.0:7070", open, true, false, false},
		{"10.1.2.3:7070", server.Tokens{Read: "r"}, true, false, false},
		{"10.1.2.3:7070", server.Tokens{Admin: "a"}, true, false, false}, // guessable over the network
		{"10.1.2.3:7070", server.Tokens{Admin: "fifteen-bytes.."}, true, false, false},
		{"10.1.2.3:7070", server.Tokens{Admin: "sixteen-bytes..."}, true, false, true},
		{":7070", admin, false, true, true},
		{":7070", admin, false, false, false}, // plain HTTP beyond loopback: TLS or --tls-disable
		{"10.1.2.3:7070", admin, true, false, true},
		{"127.0.0.1:7070", server.Tokens{Admin: "a"}, false, false, true}, // loopback: only this machine
	} {
		err := checkListen(tt.addr, tt.tokens, tt.tls, tt.tlsDisable)
		assert.Equal(t, tt.ok, err == nil, "%s %+v tls=%v disable=%v: %v", tt.addr, tt.tokens, tt.tls, tt.tlsDisable, err)
	}
}

// TestServePlainHTTPBeyondLoopback: as Vault does, serve refuses to listen
// beyond loopback in plain HTTP unless told TLS is terminated in front, and
// the refusal names both ways out.
func TestServePlainHTTPBeyondLoopback(t *testing.T) {
	getenv := func(k string) string {
		if k == "ALLOT_ADMIN_TOKEN" {
			return "admin-0123456789"
		}
		return testEnv(k)
	}
	var out, errb testlog.Buffer
	code := execute(t.Context(), []string{"serve", "--listen", "0.0.0.0:0"}, env{stdout: &out, stderr: &errb, getenv: getenv})
	assert.Equal(t, exitUsage, code)
	assert.Contains(t, errb.String(), "refusing to listen on 0.0.0.0:0 in plain HTTP")
	assert.Contains(t, errb.String(), "--tls-cert and --tls-key")
	assert.Contains(t, errb.String(), "--tls-disable")
	assert.Equal(t, 1, strings.Count(errb.String(), "\n"), "one line: %q", errb.String())
}

// TestServeTLS: with a certificate, serve answers HTTPS only, and a renewed
// certificate (the files replaced in place, as cert-manager does) is served
// without a restart.
func TestServeTLS(t *testing.T) {
	rs := redistest.Start(t)
	dir := t.TempDir()
	first := testcert.Write(t, dir)
	getenv := func(k string) string {
		switch k {
		case "ALLOT_REDIS_URL":
			return rs.URL()
		case "ALLOT_ADMIN_TOKEN":
			return "admin-0123456789"
		case "ALLOT_TLS_KEY": // the environment fills what the flags leave out
			return first.KeyFile
		}
		return testEnv(k)
	}
	url, _, stop := startServe(t, getenv, "--listen", "0.0.0.0:0", "--tls-cert", first.CertFile)
	require.True(t, strings.HasPrefix(url, "https://"), url)
	url = strings.NewReplacer("0.0.0.0", "127.0.0.1", "[::]", "127.0.0.1").Replace(url)

	served := func(pool *x509.CertPool) (string, int, error) {
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, DisableKeepAlives: true}}
		res, err := c.Get(url + "/readyz")
		if err != nil {
			return "", 0, err
		}
		defer res.Body.Close()
		return res.TLS.PeerCertificates[0].SerialNumber.String(), res.StatusCode, nil
	}
	serial, code, err := served(first.Pool)
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, first.Serial.String(), serial)

	// Plain HTTP on the TLS port gets no API.
	res, err := http.Get(strings.Replace(url, "https://", "http://", 1) + "/readyz")
	if err == nil {
		res.Body.Close()
		assert.Equal(t, http.StatusBadRequest, res.StatusCode, "Go answers plain HTTP on a TLS port with 400")
	}

	renewed := testcert.Write(t, dir)
	require.Eventually(t, func() bool {
		serial, _, err := served(renewed.Pool)
		return err == nil && serial == renewed.Serial.String()
	}, 10*time.Second, 50*time.Millisecond, "the renewed certificate is served without a restart")
	assert.Equal(t, exitOK, stop())
}

// TestServeTLSFlags: TLS settings that cannot work stop serve before it
// starts.
func TestServeTLSFlags(t *testing.T) {
	dir := t.TempDir()
	p := testcert.Write(t, dir)
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--tls-cert", p.CertFile}, "TLS needs both --tls-cert and --tls-key"},
		{[]string{"--tls-cert", p.CertFile, "--tls-key", p.KeyFile, "--tls-disable"}, "--tls-disable with a TLS certificate"},
		{[]string{"--dev", "--tls-cert", p.CertFile, "--tls-key", p.KeyFile}, "--dev serves plain HTTP"},
		{[]string{"--tls-cert", p.KeyFile, "--tls-key", p.CertFile}, "certreload: load"},
	} {
		var out, errb testlog.Buffer
		code := execute(t.Context(), append([]string{"serve", "--timeout", "300ms"}, tt.args...), env{stdout: &out, stderr: &errb, getenv: testEnv})
		assert.Equal(t, exitUsage, code, "%v: %s", tt.args, errb.String())
		assert.Contains(t, errb.String(), tt.want, "%v", tt.args)
	}
}

// TestServeNodeTokens: node tokens bound to ID patterns come from
// ALLOT_NODE_TOKENS and --node-tokens; tokens that cannot work stop serve
// before it starts, in one line that never quotes a token.
func TestServeNodeTokens(t *testing.T) {
	dir := t.TempDir()
	file := func(text string) string {
		f, err := os.CreateTemp(dir, "tokens")
		require.NoError(t, err)
		_, err = f.WriteString(text)
		require.NoError(t, err)
		require.NoError(t, f.Close())
		return f.Name()
	}
	const secret = "s3cret-0123456789"
	for _, tt := range []struct {
		name, env, file, want string
	}{
		{"no pattern", secret, "", "ALLOT_NODE_TOKENS: server: invalid tokens: entry 1: want TOKEN=PATTERN"},
		{"bad pattern", secret + "=api-[", "", `node token 1: pattern "api-[": syntax error in pattern`},
		{"empty token", "=api-*", "", `node token 1 (pattern "api-*") is empty`},
		{"same as admin", "admin-0123456789=api-*", "", "node token 1 (pattern \"api-*\") is the same as the admin token"},
		{"duplicate across env and file", secret + "=api-*", "# dup\n" + secret + " worker-*\n", "node token 2 (pattern \"worker-*\") is the same as node token 1"},
		{"bad file line", "", "ok-token-1 api-*\n" + secret + "\n", "line 2: want TOKEN PATTERN"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			getenv := func(k string) string {
				switch k {
				case "ALLOT_NODE_TOKENS":
					return tt.env
				case "ALLOT_ADMIN_TOKEN":
					return "admin-0123456789"
				}
				return testEnv(k)
			}
			args := []string{"serve", "--dev"}
			if tt.file != "" {
				args = append(args, "--node-tokens", file(tt.file))
			}
			var out, errb testlog.Buffer
			code := execute(t.Context(), args, env{stdout: &out, stderr: &errb, getenv: getenv})
			assert.Equal(t, exitUsage, code)
			assert.Contains(t, errb.String(), tt.want)
			assert.Equal(t, 1, strings.Count(errb.String(), "\n"), "one line: %q", errb.String())
			assert.NotContains(t, errb.String()+out.String(), "0123456789", "a token was printed")
			assert.NotContains(t, out.String(), "listening")
		})
	}

	rs := redistest.Start(t)
	getenv := func(k string) string {
		switch k {
		case "ALLOT_REDIS_URL":
			return rs.URL()
		case "ALLOT_ADMIN_TOKEN":
			return "admin-0123456789"
		case "ALLOT_NODE_TOKENS":
			return "api-token-0123456789=api-*"
		}
		return testEnv(k)
	}
	url, _, stop := startServe(t, getenv, "--listen", "127.0.0.1:0", "--node-tokens", file("worker-token-0123456789 worker-*\n"))
	beat := func(id, token string) int {
		req, err := http.NewRequest("POST", url+"/v1/nodes/"+id+"/heartbeat", strings.NewReader("{}"))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+token)
		res, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		res.Body.Close()
		return res.StatusCode
	}
	assert.Equal(t, http.StatusOK, beat("api-1", "api-token-0123456789"))
	assert.Equal(t, http.StatusOK, beat("worker-1", "worker-token-0123456789"))
	assert.Equal(t, http.StatusForbidden, beat("worker-2", "api-token-0123456789"))
	assert.Equal(t, http.StatusForbidden, beat("api-2", "worker-token-0123456789"))
	assert.Equal(t, exitOK, stop())
}
