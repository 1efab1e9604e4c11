package registry

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/internal/assignlua"
	"github.com/allot-io/allot/internal/redistest"
)

// TestForgetKeepsRegistryFormat runs the script heartbeat uses to drop a gone
// node (internal/assignlua) against an assignment registry committed: the
// format is registry's, so registry checks that the seam still reads it.
func TestForgetKeepsRegistryFormat(t *testing.T) {
	ctx := context.Background()
	rdb := redistest.Start(t).Client(t)
	r := New(rdb)
	for _, g := range []string{"a", "b"} {
		_, err := r.Add(ctx, g, Change{}, "test")
		require.NoError(t, err)
	}
	k := r.keys
	for _, n := range []string{"n1", "n2"} {
		require.NoError(t, rdb.ZAdd(ctx, k.Nodes(), redis.Z{Score: 1, Member: n}).Err())
	}
	cur, err := r.Assignment(ctx)
	require.NoError(t, err)
	_, _, err = r.Commit(ctx, Commit{From: cur.Counters, Nodes: map[string][]string{"n1": {"a"}, "n2": {"a", "b"}},
		Revoked: map[string][]string{"n1": {"b@1"}}, By: "test"})
	require.NoError(t, err)

	forget := redis.NewScript(assignlua.Forget + "\nreturn forget(ARGV[1]) and 1 or 0")
	keys := []string{k.Nodes(), k.State(), k.Members(), k.Log(), k.Assign(), k.Revoked(), k.Holders()}
	n, err := forget.Run(ctx, rdb, keys, "n1").Int()
	require.NoError(t, err)
	assert.Equal(t, 1, n)

	got, err := r.Assignment(ctx)
	require.NoError(t, err)
	assert.Equal(t, map[string][]string{"n2": {"a", "b"}}, got.Nodes)
	assert.Empty(t, got.Revoked["n1"])
	v, err := r.NodeAssignment(ctx, "n2")
	require.NoError(t, err)
	assert.Equal(t, map[string]int{"a": 1, "b": 1}, v.Holders)

	n, err = forget.Run(ctx, rdb, keys, "n1").Int()
	require.NoError(t, err)
	assert.Equal(t, 0, n, "a node without an entry is forgotten once")
}
