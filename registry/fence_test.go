package registry_test

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/internal/redistest"
	"github.com/allot-io/allot/registry"
)

// scriptCalls records the EVAL/EVALSHA commands sent through a client.
type scriptCalls struct {
	mu    sync.Mutex
	calls int
}

func (h *scriptCalls) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *scriptCalls) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if strings.HasPrefix(strings.ToLower(cmd.Name()), "eval") {
			h.mu.Lock()
			h.calls++
			h.mu.Unlock()
		}
		return next(ctx, cmd)
	}
}

func (h *scriptCalls) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

func (h *scriptCalls) take() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := h.calls
	h.calls = 0
	return n
}

// TestCommitFence pins the epoch fence of commit.lua itself: a planner reads
// the assignment (its base), another plan lands, then the first commits
// with its old base. Commit's Go-side check cannot see the change (base and
// From agree), so only the script stands between the stale plan and the
// store: it must answer ErrStaleEpoch and write nothing at all.
func TestCommitFence(t *testing.T) {
	redistest.Topologies(t, testCommitFence)
}

func testCommitFence(t *testing.T, rdb redis.UniversalClient) {
	ctx := context.Background()
	e := newEnv(t, rdb)
	for _, g := range []string{"a", "b", "c"} {
		_, err := e.reg.Add(ctx, g, registry.Change{}, "t")
		require.NoError(t, err)
	}
	e.register(t, "n1", "n2", "n3")
	c0, err := e.reg.Counters(ctx)
	require.NoError(t, err)
	_, _, err = e.reg.Commit(ctx, registry.Commit{From: c0, By: "first",
		Nodes: map[string][]string{"n1": {"a"}, "n2": {"b"}, "n3": {"c"}}})
	require.NoError(t, err)

	// The stale planner reads its base...
	base, err := e.reg.Assignment(ctx)
	require.NoError(t, err)
	require.Equal(t, int64(1), base.Epoch)

	// ...another planner commits from the same base...
	newer, changed, err := e.reg.Commit(ctx, registry.Commit{From: base.Counters, Base: &base, By: "newer",
		Nodes:   map[string][]string{"n1": {"a", "b"}, "n2": {"b"}, "n3": {"c"}},
		Revoked: map[string][]string{"n3": {"a@2"}}})
	require.NoError(t, err)
	require.True(t, changed)
	require.Equal(t, int64(2), newer)

	// ...and the stale planner commits a plan that differs from both.
	before := e.dump(t)
	var calls scriptCalls
	rdb.AddHook(&calls)
	epoch, changed, err := e.reg.Commit(ctx, registry.Commit{From: base.Counters, Base: &base, By: "stale",
		Nodes:   map[string][]string{"n1": {"c"}, "n2": {"a"}, "n3": {"b"}},
		Revoked: map[string][]string{"n1": {"a@2"}}})
	require.ErrorIs(t, err, registry.ErrStaleEpoch)
	assert.ErrorContains(t, err, "planned from 1, current is 2")
	assert.False(t, changed)
	assert.Equal(t, newer, epoch, "the current epoch is reported")
	assert.Positive(t, calls.take(), "the commit script ran: the fence is the script's, not a Go-side check")
	assert.Equal(t, before, e.dump(t), "a stale commit writes nothing (state, assign, revoked, holders, log)")

	a, err := e.reg.Assignment(ctx)
	require.NoError(t, err)
	assert.Equal(t, map[string][]string{"n1": {"a", "b"}, "n2": {"b"}, "n3": {"c"}}, a.Nodes, "the newer plan stands")
}
