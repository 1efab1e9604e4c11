package server_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/internal/testlog"
	"github.com/allot-io/allot/server"
)

// The attacks of the security review, one test each: every one is bad
// input that gets a clear error, leaves Redis as it was (same digest) and
// logs no secret.

// digest is a hash of every key of rdb (name, type and DUMP), to show that
// a refused request wrote nothing.
func digest(t *testing.T, rdb redis.UniversalClient) string {
	t.Helper()
	ctx := context.Background()
	var keys []string
	iter := rdb.Scan(ctx, 0, "*", 1000).Iterator()
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	require.NoError(t, iter.Err())
	slices.Sort(keys)
	h := sha256.New()
	for _, k := range keys {
		if strings.HasSuffix(k, ":lock") {
			continue // the rebalance lock, held for a moment by every run
		}
		dump, err := rdb.Dump(ctx, k).Result()
		if errors.Is(err, redis.Nil) {
			continue // gone since SCAN saw it
		}
		require.NoError(t, err, "DUMP %s", k)
		h.Write([]byte(k + "\x00" + dump + "\x00"))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// settled waits until a rebalance writes nothing (the loop has committed
// the plan for the groups added so far) and returns the digest then.
func (a *api) settled(token string) string {
	a.t.Helper()
	var d string
	require.Eventually(a.t, func() bool {
		d = digest(a.t, a.rdb)
		r := a.do("POST", "/v1/rebalance", token, nil)
		return r.status == http.StatusOK && digest(a.t, a.rdb) == d
	}, 10*time.Second, 20*time.Millisecond)
	return d
}

// debugLog is a debug-level logger into a buffer the test reads.
func debugLog() (*slog.Logger, *testlog.Buffer) {
	var b testlog.Buffer
	return slog.New(slog.NewTextHandler(&b, &slog.HandlerOptions{Level: slog.LevelDebug})), &b
}

const secretValue = "sk-live-SECRET-0123456789"

// refused checks that r is the error answer want and that Redis is as
// before.
func (a *api) refused(r reply, status int, code, before string) {
	a.t.Helper()
	assert.Equal(a.t, status, r.status, "%s", r.body)
	assert.Equal(a.t, code, r.code(), "%s", r.body)
	assert.Equal(a.t, "application/json", r.header.Get("Content-Type"))
	assert.Equal(a.t, before, digest(a.t, a.rdb), "a refused request changed Redis")
}

// TestBrowserSafetyOpenMode is what a page on another web site could do to
// `allot serve` without tokens: wipe the pool with a text/plain import or a
// scheduled delete, read the secrets through DNS rebinding, or call the API
// from its own origin. Each is refused and nothing is written.
func TestBrowserSafetyOpenMode(t *testing.T) {
	log, logs := debugLog()
	a := newAPI(t, server.WithLogger(log))
	a.addGroup("victim", secretChange("api_key", secretValue))
	before := a.settled("")

	// A form or a no-cors fetch can only send text/plain, form or multipart
	// bodies without a preflight.
	for _, ct := range []string{"text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", ""} {
		h := http.Header{"Content-Type": {ct}}
		a.refused(a.send("POST", "/v1/import?prune=true", "", `{"groups":[]}`, h), 415, "unsupported_media_type", before)
		a.refused(a.send("POST", "/v1/schedule", "", `{"group":"victim","op":"delete","at":"1s"}`, h), 415, "unsupported_media_type", before)
		a.refused(a.send("PATCH", "/v1/groups/victim", "", `{"set":{"api_key":"mine"}}`, h), 415, "unsupported_media_type", before)
		a.refused(a.send("POST", "/v1/groups", "", `{"name":"planted"}`, h), 415, "unsupported_media_type", before)
	}
	// YAML is for the import only.
	a.refused(a.send("POST", "/v1/groups", "", `{"name":"planted"}`, http.Header{"Content-Type": {"application/yaml"}}), 415, "unsupported_media_type", before)

	// DNS rebinding: the page's own name resolves to 127.0.0.1, so the
	// browser sends Host: evil.example and lets the page read the answer.
	for _, host := range []string{"evil.example", "evil.example:7070", "127.0.0.1.evil.example", "10.0.0.1"} {
		req, err := http.NewRequest("GET", a.ts.URL+"/v1/export?reveal=true", nil)
		require.NoError(t, err)
		req.Host = host
		res, err := a.ts.Client().Do(req)
		require.NoError(t, err)
		var body bytes.Buffer
		_, _ = body.ReadFrom(res.Body)
		res.Body.Close()
		assert.Equal(t, http.StatusMisdirectedRequest, res.StatusCode, "Host %s: %s", host, body.String())
		assert.Contains(t, body.String(), `"code":"misdirected"`)
		assert.NotContains(t, body.String(), secretValue)
	}

	// Another origin, JSON and all (a CORS preflight would fail, but a
	// no-cors write still reaches the server; reads are refused as well).
	for _, h := range []http.Header{
		{"Origin": {"https://evil.example"}},
		{"Origin": {"null"}},
		{"Origin": {"http://localhost:3000"}}, // another local dev server
		{"Sec-Fetch-Site": {"cross-site"}},
	} {
		a.refused(a.send("POST", "/v1/import?prune=true", "", `{"groups":[]}`, h), 403, "cross_origin", before)
		a.refused(a.send("DELETE", "/v1/groups/victim", "", nil, h), 403, "cross_origin", before)
		r := a.send("GET", "/v1/export?reveal=true", "", nil, h)
		a.refused(r, 403, "cross_origin", before)
		assert.NotContains(t, string(r.body), secretValue)
	}
	assert.NotContains(t, logs.String(), secretValue, "a secret reached the log")

	// What the UI itself sends passes: same origin, JSON or YAML.
	same := http.Header{"Origin": {a.ts.URL}, "Sec-Fetch-Site": {"same-origin"}}
	r := a.send("GET", "/v1/groups", "", nil, same)
	assert.Equal(t, http.StatusOK, r.status, "%s", r.body)
	r = a.send("POST", "/v1/import?dry_run=true", "", "groups:\n  - name: victim\n", same)
	assert.Equal(t, http.StatusOK, r.status, "%s", r.body)
	assert.Contains(t, string(r.body), `"dry_run":true`)
	r = a.send("POST", "/v1/groups", "", map[string]any{"name": "ours"},
		http.Header{"Origin": {a.ts.URL}, "Content-Type": {"application/json; charset=utf-8"}})
	assert.Equal(t, http.StatusCreated, r.status, "%s", r.body)
	// Bodyless writes (curl -X POST …/rebalance) need no Content-Type.
	r = a.send("POST", "/v1/rebalance", "", nil, nil)
	assert.Equal(t, http.StatusOK, r.status, "%s", r.body)
	// A link from another site to the UI only loads the page.
	r = a.send("GET", "/", "", nil, http.Header{"Sec-Fetch-Site": {"cross-site"}, "Sec-Fetch-Mode": {"navigate"}})
	assert.Equal(t, http.StatusOK, r.status)
	// Loopback names with any port.
	for _, host := range []string{"localhost", "localhost:7070", "127.0.0.1:1", "[::1]:7070", "LOCALHOST."} {
		req, err := http.NewRequest("GET", a.ts.URL+"/healthz", nil)
		require.NoError(t, err)
		req.Host = host
		res, err := a.ts.Client().Do(req)
		require.NoError(t, err)
		res.Body.Close()
		assert.Equal(t, http.StatusOK, res.StatusCode, "Host %s", host)
	}
}

// TestAllowedHosts: --allowed-host adds names; with tokens and none given,
// the Host is not checked (the token is the guard, and proxies and probes
// use all kinds of names).
func TestAllowedHosts(t *testing.T) {
	hostStatus := func(a *api, host, token string) int {
		req, err := http.NewRequest("GET", a.ts.URL+"/v1/status", nil)
		require.NoError(t, err)
		req.Host = host
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		res, err := a.ts.Client().Do(req)
		require.NoError(t, err)
		res.Body.Close()
		return res.StatusCode
	}
	open := newAPI(t, server.WithAllowedHosts("Allot.Example.com", "10.1.2.3:7070"))
	assert.Equal(t, http.StatusOK, hostStatus(open, "allot.example.com", ""))
	assert.Equal(t, http.StatusOK, hostStatus(open, "allot.example.com:8443", ""))
	assert.Equal(t, http.StatusOK, hostStatus(open, "10.1.2.3:7070", ""))
	assert.Equal(t, http.StatusMisdirectedRequest, hostStatus(open, "other.example.com", ""))

	tokens := newAPI(t, server.WithTokens(testTokens))
	assert.Equal(t, http.StatusOK, hostStatus(tokens, "allot.internal:7070", readToken))

	pinned := newAPI(t, server.WithTokens(testTokens), server.WithAllowedHosts("allot.internal"))
	assert.Equal(t, http.StatusOK, hostStatus(pinned, "allot.internal:7070", readToken))
	assert.Equal(t, http.StatusMisdirectedRequest, hostStatus(pinned, "evil.example", readToken))

	// Behind a proxy that rewrites Host, the page's Origin is the public
	// name: allowed when given with --allowed-host, never a loopback one.
	proxied := newAPI(t, server.WithAllowedHosts("allot.example.com", "127.0.0.1"))
	origin := func(o string) int {
		return proxied.send("POST", "/v1/rebalance", "", map[string]any{}, http.Header{"Origin": {o}}).status
	}
	assert.Equal(t, http.StatusOK, origin("https://allot.example.com"))
	assert.Equal(t, http.StatusForbidden, origin("https://evil.example"))
	assert.Equal(t, http.StatusForbidden, origin("http://127.0.0.1:3000"), "another local port")
	assert.Equal(t, http.StatusForbidden, origin("http://localhost:3000"))
}

// TestEventIDOutOfRange: a stream ID Redis cannot parse is the client's
// mistake (400), not the server's (500).
func TestEventIDOutOfRange(t *testing.T) {
	a := newAPI(t)
	for _, id := range []string{"99999999999999999999999", "1-99999999999999999999999", "18446744073709551616-0"} {
		r := a.do("GET", "/v1/events?after="+id, "", nil)
		assert.Equal(t, http.StatusBadRequest, r.status, "%s: %s", id, r.body)
		assert.Equal(t, "bad_request", r.code())
	}
}

// TestEventStreamCap: streams beyond the cap get 503 at once instead of
// holding a goroutine and a connection each; a closed one frees its slot.
func TestEventStreamCap(t *testing.T) {
	a := newAPI(t, server.WithMaxStreams(2))
	_, stop1 := a.openEvents("")
	_, stop2 := a.openEvents("")
	defer stop2()
	r := a.do("GET", "/v1/events", "", nil)
	assert.Equal(t, http.StatusServiceUnavailable, r.status, "%s", r.body)
	assert.Equal(t, "unavailable", r.code())
	assert.Contains(t, r.code()+string(r.body), "too many event streams")
	stop1()
	require.Eventually(t, func() bool {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "GET", a.ts.URL+"/v1/events", nil)
		res, err := a.ts.Client().Do(req)
		if err != nil {
			return false
		}
		defer res.Body.Close()
		return res.StatusCode == http.StatusOK
	}, 5*time.Second, 20*time.Millisecond)
}

// aliasBomb is a pool document of about size bytes that expands to
// gigabytes when its aliases are followed.
func aliasBomb(size int) []byte {
	var b bytes.Buffer
	b.WriteString("a: &a [x,x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\ngroups: [")
	for b.Len() < size-8 {
		b.WriteString("*b,")
	}
	b.WriteString("*b]\n")
	return b.Bytes()
}

// TestImportCannotExplode: a YAML alias bomb is refused before it is
// expanded, in a few MB; a body over 8 MiB is refused at 8 MiB.
func TestImportCannotExplode(t *testing.T) {
	log, logs := debugLog()
	a := newAPI(t, server.WithLogger(log))
	a.addGroup("victim", secretChange("api_key", secretValue))
	before := a.settled("")

	small := "a: &a {name: x}\ngroups: [*a]\n"
	r := a.do("POST", "/v1/import?prune=true", "", small)
	a.refused(r, 400, "bad_request", before)
	assert.Contains(t, string(r.body), "line 2: YAML aliases (*name) are not allowed")

	bomb := aliasBomb(server.MaxImportBytes)
	runtime.GC()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	r = a.do("POST", "/v1/import?prune=true", "", bomb)
	runtime.ReadMemStats(&m1)
	a.refused(r, 400, "bad_request", before)
	alloc := m1.TotalAlloc - m0.TotalAlloc
	t.Logf("8 MiB alias bomb refused: %d MiB allocated by the whole process", alloc>>20)
	assert.Less(t, alloc, uint64(100<<20), "refusing an 8 MiB import allocated %d MiB", alloc>>20)

	over := append(bytes.Repeat([]byte("#"), server.MaxImportBytes), "\ngroups: []\n"...)
	a.refused(a.do("POST", "/v1/import?prune=true", "", over), 413, "too_large", before)
	assert.NotContains(t, logs.String(), secretValue)
}

// TestSecretsStaySecret: a key marked secret after it was created must not
// show its old value in the history (read token), a rollback must not drop
// the mark, only the admin's unsecret removes it; a value that is not
// UTF-8 is refused rather than stored altered.
func TestSecretsStaySecret(t *testing.T) {
	log, logs := debugLog()
	a := newAPI(t, server.WithTokens(testTokens), server.WithLogger(log))
	r := a.do("POST", "/v1/groups", adminToken, map[string]any{"name": "late", "config": map[string]string{"api_key": secretValue}})
	require.Equal(t, http.StatusCreated, r.status, "%s", r.body)
	r = a.do("PATCH", "/v1/groups/late", adminToken, map[string]any{"secret": []string{"api_key"}})
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)

	r = a.do("GET", "/v1/groups/late/history", readToken, nil)
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	assert.NotContains(t, string(r.body), secretValue, "history shows the value stored before the mark")
	var hist []groupJSON
	r.json(t, &hist)
	require.Len(t, hist, 2)
	assert.Equal(t, "****6789", hist[1].Config["api_key"])

	r = a.do("POST", "/v1/groups/late/rollback", adminToken, map[string]any{"version": 1})
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	r = a.do("GET", "/v1/groups/late", readToken, nil)
	assert.NotContains(t, string(r.body), secretValue, "rollback dropped the mark")
	r = a.do("GET", "/v1/export", readToken, nil)
	assert.NotContains(t, string(r.body), secretValue)

	// Unsecret: admin only (PATCH is an admin route), recorded.
	r = a.do("PATCH", "/v1/groups/late", readToken, map[string]any{"unsecret": []string{"api_key"}})
	assert.Equal(t, http.StatusForbidden, r.status)
	r = a.do("PATCH", "/v1/groups/late", adminToken, map[string]any{"unsecret": []string{"region"}})
	assert.Equal(t, http.StatusUnprocessableEntity, r.status, "%s", r.body)
	r = a.do("PATCH", "/v1/groups/late", adminToken, map[string]any{"unsecret": []string{"api_key"}})
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	r = a.do("GET", "/v1/groups/late", readToken, nil)
	assert.Contains(t, string(r.body), secretValue, "unsecret shows the value from now on")
	r = a.do("GET", "/v1/groups/late/history", readToken, nil)
	hist = nil
	r.json(t, &hist)
	require.Len(t, hist, 4)
	assert.Empty(t, hist[0].SecretKeys)
	for _, g := range hist[1:] {
		assert.NotContains(t, g.Config["api_key"], "0123", "version %d", g.Version)
	}

	// Not UTF-8, raw or as an escaped half surrogate pair: refused, nothing written.
	before := a.settled(adminToken)
	for _, body := range []string{
		"{\"set\":{\"k\":\"\xff\xfe\"}}",
		`{"set":{"k":"\udc00"}}`,
		`{"set":{"k":"\ud800x"}}`,
	} {
		r := a.send("PATCH", "/v1/groups/late", adminToken, []byte(body), nil)
		assert.Equal(t, http.StatusBadRequest, r.status, "%q: %s", body, r.body)
		assert.Contains(t, string(r.body), "UTF")
		assert.Equal(t, before, digest(t, a.rdb), "%q wrote", body)
	}
	r = a.do("PATCH", "/v1/groups/late", adminToken, `{"set":{"k":"\ud83d\ude00 ok"}}`)
	assert.Equal(t, http.StatusOK, r.status, "a real pair passes: %s", r.body)
	assert.NotEqual(t, before, digest(t, a.rdb))

	assert.NotContains(t, logs.String(), secretValue, "a secret reached the log")
}

// TestDeclaredSizeRefusedFirst: a body declared larger than the limit is
// refused before a byte of it is read.
func TestDeclaredSizeRefusedFirst(t *testing.T) {
	a := newAPI(t)
	for _, tc := range []struct{ path, ctype string }{
		{"/v1/import", "application/yaml"},
		{"/v1/groups", "application/json"},
	} {
		conn, err := net.Dial("tcp", strings.TrimPrefix(a.ts.URL, "http://"))
		require.NoError(t, err)
		require.NoError(t, conn.SetDeadline(time.Now().Add(5*time.Second)))
		_, err = fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: %s\r\nContent-Length: 1073741824\r\n\r\n", tc.path, tc.ctype)
		require.NoError(t, err)
		res, err := http.ReadResponse(bufio.NewReader(conn), nil)
		require.NoError(t, err, "no answer without the body")
		assert.Equal(t, http.StatusRequestEntityTooLarge, res.StatusCode, tc.path)
		res.Body.Close()
		conn.Close()
	}
}
