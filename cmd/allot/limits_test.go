package main

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/internal/keys"
	"github.com/allot-io/allot/internal/redistest"
	limiter "github.com/allot-io/allot/quota"
)

// TestGroupLimitsCLI: several limits on add, --weight auto, errors naming
// the limit with nothing written, usage per minute and USED in status.
func TestGroupLimitsCLI(t *testing.T) {
	s := redistest.Start(t)
	url := s.URL()
	rdb := s.Client(t)
	mustRun(t, url, "group", "add", "llm", "--quota", "600/m, 90000 tokens/m , 10000/d", "--weight", "auto")
	out := mustRun(t, url, "-o", "json", "group", "get", "llm")
	var g map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &g))
	assert.Equal(t, "600/m, 90000 tokens/m, 10000/d", g["quota"])
	assert.InDelta(t, 10000.0/1440, g["weight"], 1e-9)
	require.Len(t, g["limits"], 3)
	assert.Equal(t, map[string]any{"kind": "tokens", "rate": 90000.0, "per": "m", "burst": 90000.0}, g["limits"].([]any)[1])

	before := dumpKeys(t, rdb)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"group", "update", "llm", "--quota", "600/m, 90000 tokns/m"}, `invalid --quota "600/m, 90000 tokns/m": limit 2 ("90000 tokns/m"): unknown kind "tokns"`},
		{[]string{"group", "update", "llm", "--quota", "600/w"}, `limit 1 ("600/w"): unknown unit "w"`},
		{[]string{"group", "update", "llm", "--quota", "0/m"}, `limit 1 ("0/m"): rate must be above 0`},
		{[]string{"group", "update", "llm", "--quota", "5/m, 6/m"}, `limit 2 ("6/m"): same kind and period as limit 1`},
		{[]string{"group", "add", "x", "--weight", "heavy"}, `invalid argument "heavy" for "--weight"`},
		{[]string{"group", "add", "x", "--weight", "auto"}, "weight auto needs a quota"},
		{[]string{"group", "usage", "llm", "--since", "48h"}, "invalid --since"},
		{[]string{"group", "usage", "nope"}, "not found"},
	} {
		_, errOut, code := runCLI(t, url, tc.args...)
		assert.NotEqual(t, exitOK, code, tc.args)
		assert.Contains(t, errOut, tc.want, tc.args)
		assert.Equal(t, 1, strings.Count(strings.TrimSpace(errOut), "\n")+1, "one line: %q", errOut)
	}
	assert.Equal(t, before, dumpKeys(t, rdb), "bad input wrote nothing")

	// Usage as the limiter counts it.
	ctx := context.Background()
	k := keys.New("")
	ls, err := limiter.Parse("600/m, 90000 tokens/m, 10000/d")
	require.NoError(t, err)
	l := limiter.NewLimiter(rdb)
	qk := limiter.Keys{State: k.Quota("llm"), Health: k.Health("llm"), UsagePrefix: k.UsagePrefix("llm")}
	var minute int64
	for range 3 {
		r, err := l.Take(ctx, qk, ls, 1, 1500)
		require.NoError(t, err)
		minute = r.Minute
	}
	out = mustRun(t, url, "-o", "json", "group", "usage", "llm", "--since", "5m")
	var u []map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &u))
	require.Len(t, u, 1)
	assert.Equal(t, map[string]any{"minute": u[0]["minute"], "requests": 3.0, "tokens": 4500.0, "rejected": 0.0, "throttled": 0.0, "failures": 0.0, "borrowed": 0.0}, u[0])
	assert.Equal(t, time.Unix(minute*60, 0).UTC().Format(time.RFC3339), u[0]["minute"])
	out = mustRun(t, url, "group", "usage", "llm")
	assert.Contains(t, out, "MINUTE")
	assert.Contains(t, out, "limits: 600/m, 90000 tokens/m, 10000/d")

	// Status shows the last full minute: copy the counts one minute back (so
	// a minute ending during the test changes nothing).
	counted, err := rdb.HGetAll(ctx, k.UsagePrefix("llm")+strconv.FormatInt(minute, 10)).Result()
	require.NoError(t, err)
	require.NoError(t, rdb.HSet(ctx, k.UsagePrefix("llm")+strconv.FormatInt(minute-1, 10), counted).Err())
	out = mustRun(t, url, "-o", "json", "status")
	var st struct {
		Groups []struct {
			Name string  `json:"name"`
			Used float64 `json:"used"`
		} `json:"groups"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &st))
	require.Len(t, st.Groups, 1)
	// 3 requests of 600/m and 4500 tokens of 90000/m in the last full
	// minute, 6 requests of 10000/d today: the tokens, 5%. (Read as a pace,
	// the daily limit said 3 of 6.94 a minute, 43%: issue 26.)
	assert.InDelta(t, 4500/90000.0, st.Groups[0].Used, 1e-6)
	out = mustRun(t, url, "status")
	assert.Contains(t, out, "USED")
	assert.Contains(t, out, "5%")
	assert.NotContains(t, out, "43%")
}
