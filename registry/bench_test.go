package registry_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/internal/keys"
	"github.com/allot-io/allot/internal/redistest"
	"github.com/allot-io/allot/registry"
)

// pool10k adds 1k groups and returns two different 10k-node assignments of them.
func pool10k(b *testing.B, rdb redis.UniversalClient, reg *registry.Registry) (a, c map[string][]string) {
	ctx := context.Background()
	pipe := rdb.Pipeline() // register the nodes, as their first beats would
	for n := range 10000 {
		pipe.ZAdd(ctx, keys.New("").Nodes(), redis.Z{Score: 1, Member: fmt.Sprintf("node-%05d", n)})
	}
	_, err := pipe.Exec(ctx)
	require.NoError(b, err)
	const nodes, groups = 10000, 1000
	for g := range groups {
		_, err := reg.Add(ctx, fmt.Sprintf("group-%04d", g), registry.Change{Set: map[string]string{"api_key": "k"}}, "bench")
		require.NoError(b, err)
	}
	a, c = map[string][]string{}, map[string][]string{}
	for n := range nodes {
		id := fmt.Sprintf("node-%05d", n)
		a[id] = []string{fmt.Sprintf("group-%04d", n%groups)}
		c[id] = []string{fmt.Sprintf("group-%04d", (n+1)%groups)}
	}
	return a, c
}

// BenchmarkCommit10k commits a 10k-node × 1k-group assignment in which every
// node changed group (the worst case; Commit reads the base itself).
func BenchmarkCommit10k(b *testing.B) {
	ctx := context.Background()
	rdb := redistest.Start(b).Client(b)
	reg := registry.New(rdb)
	plans := [2]map[string][]string{}
	plans[0], plans[1] = pool10k(b, rdb, reg)
	b.ResetTimer()
	for i := range b.N {
		c, err := reg.Counters(ctx)
		require.NoError(b, err)
		_, changed, err := reg.Commit(ctx, registry.Commit{From: c, Nodes: plans[i%2]})
		require.NoError(b, err)
		require.True(b, changed)
	}
}

// BenchmarkCommitUnchanged10k commits the same 10k-node assignment again
// (an empty diff: no write, no epoch bump; Commit reads the base itself).
func BenchmarkCommitUnchanged10k(b *testing.B) {
	ctx := context.Background()
	rdb := redistest.Start(b).Client(b)
	reg := registry.New(rdb)
	plan, _ := pool10k(b, rdb, reg)
	c, err := reg.Counters(ctx)
	require.NoError(b, err)
	_, _, err = reg.Commit(ctx, registry.Commit{From: c, Nodes: plan})
	require.NoError(b, err)
	c, err = reg.Counters(ctx)
	require.NoError(b, err)
	b.ResetTimer()
	for range b.N {
		_, changed, err := reg.Commit(ctx, registry.Commit{From: c, Nodes: plan})
		require.NoError(b, err)
		require.False(b, changed)
	}
}

// BenchmarkAssignment10k reads the whole 10k-node assignment.
func BenchmarkAssignment10k(b *testing.B) {
	ctx := context.Background()
	rdb := redistest.Start(b).Client(b)
	reg := registry.New(rdb)
	plan, _ := pool10k(b, rdb, reg)
	_, _, err := reg.Commit(ctx, registry.Commit{Nodes: plan})
	require.NoError(b, err)
	b.ResetTimer()
	for range b.N {
		a, err := reg.Assignment(ctx)
		require.NoError(b, err)
		require.Len(b, a.Nodes, len(plan))
	}
}

// BenchmarkNodeAssignment reads one node's epoch and group documents.
func BenchmarkNodeAssignment(b *testing.B) {
	ctx := context.Background()
	rdb := redistest.Start(b).Client(b)
	reg := registry.New(rdb)
	plan, _ := pool10k(b, rdb, reg)
	_, _, err := reg.Commit(ctx, registry.Commit{Nodes: plan})
	require.NoError(b, err)
	b.ResetTimer()
	for i := range b.N {
		view, err := reg.NodeAssignment(ctx, fmt.Sprintf("node-%05d", i%10000))
		require.NoError(b, err)
		require.Len(b, view.Groups, 1)
	}
}
