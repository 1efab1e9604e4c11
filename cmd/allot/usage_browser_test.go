package main

import (
	"context"
	"strconv"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/internal/keys"
	limiter "github.com/allot-io/allot/quota"
	"github.com/allot-io/allot/registry"
)

// TestBrowserUsage: a group with a request and a token limit, used by the
// limiter script on `serve --dev`'s Redis, shows a sparkline of its last
// hour against the limit and every limit's use in the last full minute; new
// use appears without a reload.
func TestBrowserUsage(t *testing.T) {
	p := newPage(t)
	// No demo nodes: they would spend from llm's limits too (demo traffic)
	// and the figures below would not be the test's alone.
	url, _, stop := startServe(t, testEnv, "--dev", "--listen", "127.0.0.1:0", "--demo-nodes", "0")
	rdb := devRedis(t)
	reg := registry.New(rdb)
	ctx := context.Background()

	q := "60/m, 6000 tokens/m"
	g, err := reg.Add(ctx, "llm", registry.Change{Quota: &q}, "test")
	require.NoError(t, err)
	// 30 requests and 3000 tokens, half of each limit, as the limiter counted
	// them in the current minute, copied to the minute before: the last full
	// minute shows half even if a minute ends during the test.
	k := keys.New("")
	qk := limiter.Keys{State: k.Quota("llm"), Health: k.Health("llm"), UsagePrefix: k.UsagePrefix("llm")}
	l := limiter.NewLimiter(rdb)
	var minute int64
	for range 30 {
		r, err := l.Take(ctx, qk, g.Limits, 1, 100)
		require.NoError(t, err)
		require.True(t, r.Allowed)
		minute = r.Minute
	}
	counted, err := rdb.HGetAll(ctx, k.UsagePrefix("llm")+strconv.FormatInt(minute, 10)).Result()
	require.NoError(t, err)
	require.NoError(t, rdb.HSet(ctx, k.UsagePrefix("llm")+strconv.FormatInt(minute-1, 10), counted).Err())

	p.do("load", chromedp.EmulateViewport(1280, 900), chromedp.Navigate(url+"/"))
	p.until("llm sparkline over the last hour", `(() => { const s = document.querySelector('[data-testid="spark-llm"]');
		return !!s && s.dataset.points === "60" && Math.abs(parseFloat(s.dataset.peak) - 0.5) < 0.001 &&
			!!s.querySelector('polyline') && !!s.querySelector('line.spark-limit'); })()`)
	assert.Equal(t, "60/m · 50%", p.text("limit-llm-0"))
	assert.Equal(t, "6000 tokens/m · 50%", p.text("limit-llm-1"))

	// Live: use in the current minute shows up on the next poll, no reload.
	r, err := l.Take(ctx, qk, g.Limits, 1, 2400)
	require.NoError(t, err)
	require.True(t, r.Allowed)
	// 5400 of 6000 tokens this minute (or 2400 in a new one).
	p.until("current minute drawn", `(() => { const d = document.querySelector('[data-testid="spark-llm"]').dataset;
		return Math.abs(parseFloat(d.last) - 0.9) < 0.001 || Math.abs(parseFloat(d.last) - 0.4) < 0.001; })()`)
	assert.Empty(t, p.consoleErrors(), "browser console errors (CSP violations show up here)")
	assert.Equal(t, exitOK, stop())
}
