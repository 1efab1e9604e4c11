package server_test

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/internal/keys"
	"github.com/allot-io/allot/quota"
	"github.com/allot-io/allot/registry"
)

// takeAsNode spends from a group's limits as a node's client would.
func takeAsNode(t *testing.T, a *api, group string, n int, tokens int64) int64 {
	t.Helper()
	g, err := a.reg.Get(context.Background(), group)
	require.NoError(t, err)
	k := keys.New("")
	qk := quota.Keys{State: k.Quota(group), Health: k.Health(group), UsagePrefix: k.UsagePrefix(group)}
	l := quota.NewLimiter(a.rdb)
	var minute int64
	for range n {
		r, err := l.Take(context.Background(), qk, g.Limits, 1, tokens)
		require.NoError(t, err)
		minute = r.Minute
	}
	return minute
}

func TestGroupUsageAPI(t *testing.T) {
	a := newAPI(t)
	q := "60/m, 6000 tokens/m"
	a.addGroup("llm", registry.Change{Quota: &q})
	minute := takeAsNode(t, a, "llm", 3, 1000)

	r := a.do("GET", "/v1/groups/llm/usage?since=10m", "", nil)
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	var u []map[string]any
	r.json(t, &u)
	require.Len(t, u, 1)
	assert.Equal(t, map[string]any{"minute": u[0]["minute"], "requests": 3.0, "tokens": 3000.0, "rejected": 0.0, "throttled": 0.0, "failures": 0.0, "borrowed": 0.0}, u[0])

	r = a.do("GET", "/v1/groups/llm", "", nil)
	var g map[string]any
	r.json(t, &g)
	assert.Equal(t, []any{
		map[string]any{"kind": "requests", "rate": 60.0, "per": "m", "burst": 60.0},
		map[string]any{"kind": "tokens", "rate": 6000.0, "per": "m", "burst": 6000.0},
	}, g["limits"])

	assert.Equal(t, http.StatusUnprocessableEntity, a.do("GET", "/v1/groups/llm/usage?since=2d", "", nil).status)
	assert.Equal(t, http.StatusUnprocessableEntity, a.do("GET", "/v1/groups/llm/usage?since=-1m", "", nil).status)
	assert.Equal(t, http.StatusNotFound, a.do("GET", "/v1/groups/nope/usage", "", nil).status)

	// Copy the minute one back: the last full minute shows it, even if a
	// minute ends during the test.
	k := keys.New("")
	counted, err := a.rdb.HGetAll(context.Background(), k.UsagePrefix("llm")+strconv.FormatInt(minute, 10)).Result()
	require.NoError(t, err)
	require.NoError(t, a.rdb.HSet(context.Background(), k.UsagePrefix("llm")+strconv.FormatInt(minute-1, 10), counted).Err())
	var st struct {
		Groups []struct {
			Name string  `json:"name"`
			Used float64 `json:"used"`
		} `json:"groups"`
	}
	a.do("GET", "/v1/status", "", nil).json(t, &st)
	require.Len(t, st.Groups, 1)
	assert.InDelta(t, 0.5, st.Groups[0].Used, 1e-9, "3000 of 6000 tokens/m")

	body := string(a.do("GET", "/metrics", "", nil).body)
	// The counters add up full minutes: the copy, and the original too once
	// its minute has ended.
	assert.Regexp(t, `allot_group_requests_total\{group="llm"\} (3|6)\n`, body)
	assert.Regexp(t, `allot_group_tokens_total\{group="llm"\} (3000|6000)\n`, body)
	for _, want := range []string{
		`allot_group_rejected_total{group="llm"} 0`,
		`allot_limit_used_ratio{group="llm",limit="6000 tokens/m"} 0.5`,
		`allot_limit_used_ratio{group="llm",limit="60/m"} 0.05`,
	} {
		assert.Contains(t, body, want)
	}
	assert.False(t, strings.Contains(body, `group="plain"`))
}
