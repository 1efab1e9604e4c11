package server_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/internal/keys"
	"github.com/allot-io/allot/registry"
	"github.com/allot-io/allot/server"
)

// serverMinute waits, polling Redis server time, until the current minute
// has at least 15 s left, and returns its number: minute numbers taken
// now hold through the requests that follow.
func serverMinute(t *testing.T, a *api) int64 {
	t.Helper()
	var cur int64
	require.Eventually(t, func() bool {
		now, err := a.rdb.Time(context.Background()).Result()
		require.NoError(t, err)
		cur = now.Unix() / 60
		return now.Second() < 45
	}, 20*time.Second, 100*time.Millisecond)
	return cur
}

// TestPoolUsageAPI: GET /v1/usage answers every group that is not retired
// in one answer: a column per count over the span, each limit read over
// its window (a daily limit as "used today"), and the pool's last minute
// against the capacity of its active groups.
func TestPoolUsageAPI(t *testing.T) {
	a := newAPI(t)
	ctx := context.Background()
	for name, q := range map[string]string{"llm": "60/m, 6000 tokens/m, 10000/d", "search": "600/m", "free": "", "gone": "100/m"} {
		a.addGroup(name, registry.Change{Quota: &q})
	}
	_, err := a.reg.Retire(ctx, "gone", 0, "test")
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		g, err := a.reg.Get(ctx, "gone")
		require.NoError(t, err)
		return g.State == registry.Retired
	}, 10*time.Second, 20*time.Millisecond)
	cur := serverMinute(t, a)
	k := keys.New("")
	use := func(group string, minute int64, fields ...any) {
		require.NoError(t, a.rdb.HSet(ctx, k.UsagePrefix(group)+strconv.FormatInt(minute, 10), fields...).Err())
	}
	use("llm", cur-600, "requests", 4)                   // today, not this hour
	use("llm", cur-1, "requests", 2, "tokens", 3000)     // the last full minute
	use("search", cur-1, "requests", 300, "rejected", 7) // half of 600/m
	use("free", cur-5, "throttled", 1)

	r := a.do("GET", "/v1/usage?since=1h", "", nil)
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	var got server.PoolUsage
	r.json(t, &got)
	require.Equal(t, time.Unix(cur*60, 0).UTC(), got.Now, "the minute rolled over during the test")
	assert.Equal(t, 60, got.Minutes)
	assert.Equal(t, time.Unix((cur-59)*60, 0).UTC(), got.From)
	require.ElementsMatch(t, []string{"llm", "search", "free"}, keysOf(got.Groups), "retired groups are left out")

	llm := got.Groups["llm"]
	assert.ElementsMatch(t, []string{"requests", "tokens"}, keysOf(llm.Columns), "counts that are zero throughout are left out")
	require.Len(t, llm.Columns["requests"], 60)
	assert.Equal(t, int64(2), llm.Columns["requests"][58])
	assert.Equal(t, []server.LimitUse{
		{Limit: "60/m", Kind: "requests", Window: "1m", Used: 2, Of: 60, Ratio: 2.0 / 60},
		{Limit: "6000 tokens/m", Kind: "tokens", Window: "1m", Used: 3000, Of: 6000, Ratio: 0.5},
		{Limit: "10000/d", Kind: "requests", Window: "24h", Used: 6, Of: 10000, Ratio: 0.0006},
	}, llm.Limits, "the daily limit reads the day: 6 of 10000, not 2 requests against its per-minute share")
	assert.InDelta(t, 0.5, llm.Used, 1e-9)
	assert.Equal(t, int64(7), got.Groups["search"].Columns["rejected"][58])
	assert.Equal(t, int64(1), got.Groups["free"].Columns["throttled"][54])
	assert.Empty(t, got.Groups["free"].Limits)

	// The pool: 302 requests against 600 + 10000/1440 per minute.
	assert.Equal(t, int64(302), got.Pool.Requests.Used)
	assert.InDelta(t, 600+10000.0/1440, got.Pool.Requests.Of, 1e-9)
	assert.Equal(t, int64(3000), got.Pool.Tokens.Used)
	assert.InDelta(t, 6000, got.Pool.Tokens.Of, 1e-9)
	assert.Equal(t, int64(7), got.Pool.Counts["rejected"])

	// Status reads the same windows: llm is used 50% (its tokens), not by
	// its daily limit's pace.
	var st struct {
		Groups []struct {
			Name string  `json:"name"`
			Used float64 `json:"used"`
		} `json:"groups"`
	}
	a.do("GET", "/v1/status", "", nil).json(t, &st)
	for _, g := range st.Groups {
		if g.Name == "llm" {
			assert.InDelta(t, 0.5, g.Used, 1e-9)
		}
	}

	for _, bad := range []string{"30s", "25h", "x", "-1h"} {
		assert.Equal(t, http.StatusUnprocessableEntity, a.do("GET", "/v1/usage?since="+bad, "", nil).status, bad)
	}
}

func keysOf[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// rawGet sends a GET with the headers given and answers the response with
// its body as sent (not decompressed).
func rawGet(t *testing.T, a *api, path string, header http.Header) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest("GET", a.ts.URL+path, nil)
	require.NoError(t, err)
	req.Header = header
	res, err := a.ts.Client().Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return res, b
}

func gunzip(t *testing.T, b []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	require.NoError(t, err)
	out, err := io.ReadAll(zr)
	require.NoError(t, err)
	return out
}

// TestGzip: JSON answers of 1 KB and more are gzipped for a client that
// accepts it, smaller ones and clients that do not are not; the UI's
// files are served gzipped with an ETag of their own; the event stream
// never is.
func TestGzip(t *testing.T) {
	a := newAPI(t)
	for i := range 30 {
		a.addGroup("group-"+strconv.Itoa(i), registry.Change{Set: map[string]string{"endpoint": "https://api.example.com/v1"}})
	}
	gz := http.Header{"Accept-Encoding": {"gzip"}}

	res, body := rawGet(t, a, "/v1/groups", gz)
	require.Equal(t, http.StatusOK, res.StatusCode)
	assert.Equal(t, "gzip", res.Header.Get("Content-Encoding"))
	assert.Contains(t, res.Header.Values("Vary"), "Accept-Encoding")
	plain := gunzip(t, body)
	assert.Less(t, len(body), len(plain)/3, "30 similar groups compress well")
	_, same := rawGet(t, a, "/v1/groups", http.Header{"Accept-Encoding": {"identity"}})
	assert.Equal(t, string(same), string(plain), "the same document either way")

	res, _ = rawGet(t, a, "/v1/groups", http.Header{"Accept-Encoding": {"gzip;q=0, identity"}})
	assert.Empty(t, res.Header.Get("Content-Encoding"), "q=0 refuses gzip")

	res, body = rawGet(t, a, "/healthz", gz)
	assert.Empty(t, res.Header.Get("Content-Encoding"), "a small answer is sent as it is")
	assert.Contains(t, string(body), "ok")

	res, body = rawGet(t, a, "/app.js", gz)
	require.Equal(t, http.StatusOK, res.StatusCode)
	assert.Equal(t, "gzip", res.Header.Get("Content-Encoding"))
	etag := res.Header.Get("ETag")
	assert.True(t, strings.HasSuffix(etag, `-gz"`), etag)
	assert.Contains(t, string(gunzip(t, body)), "use strict")
	res, _ = rawGet(t, a, "/app.js", http.Header{"Accept-Encoding": {"gzip"}, "If-None-Match": {etag}})
	assert.Equal(t, http.StatusNotModified, res.StatusCode)
	res, _ = rawGet(t, a, "/app.js", http.Header{"Accept-Encoding": {"identity"}, "If-None-Match": {etag}})
	assert.Equal(t, http.StatusOK, res.StatusCode, "the plain file is another representation")

	// The event stream goes out as written, event by event.
	req, err := http.NewRequest("GET", a.ts.URL+"/v1/events", nil)
	require.NoError(t, err)
	req.Header.Set("Accept-Encoding", "gzip")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	res, err = a.ts.Client().Do(req.WithContext(ctx))
	require.NoError(t, err)
	defer res.Body.Close()
	assert.Empty(t, res.Header.Get("Content-Encoding"))
	line := make([]byte, 5)
	_, err = io.ReadFull(res.Body, line)
	require.NoError(t, err)
	assert.Equal(t, "retry", string(line))
}

// TestRecentEventsAPI: GET /v1/events/recent answers the newest events,
// oldest first, and a group's only with ?group=.
func TestRecentEventsAPI(t *testing.T) {
	a := newAPI(t)
	a.addGroup("a", registry.Change{})
	a.addGroup("b", registry.Change{})
	w := 3.0
	_, err := a.reg.Update(context.Background(), "a", registry.Change{Weight: &w}, "test")
	require.NoError(t, err)

	var evs []map[string]any
	r := a.do("GET", "/v1/events/recent?count=2", "", nil)
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	r.json(t, &evs)
	require.Len(t, evs, 2)
	assert.Equal(t, []any{"group.added", "group.updated"}, []any{evs[0]["type"], evs[1]["type"]})
	assert.Equal(t, []any{"b", "a"}, []any{evs[0]["group"], evs[1]["group"]})

	a.do("GET", "/v1/events/recent?group=a", "", nil).json(t, &evs)
	require.Len(t, evs, 2)
	assert.Equal(t, []any{"group.added", "group.updated"}, []any{evs[0]["type"], evs[1]["type"]})

	assert.Equal(t, http.StatusUnprocessableEntity, a.do("GET", "/v1/events/recent?count=0", "", nil).status)
	assert.Equal(t, http.StatusUnprocessableEntity, a.do("GET", "/v1/events/recent?group=Bad!", "", nil).status)
	assert.Equal(t, http.StatusBadRequest, a.do("GET", "/v1/events/recent?count=x", "", nil).status)
}
