package allocator

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/heartbeat"
	"github.com/allot-io/allot/internal/keys"
	"github.com/allot-io/allot/internal/redistest"
	"github.com/allot-io/allot/registry"
)

// BenchmarkRebalance times one read-plan-commit cycle against a local
// redis-server after one node leaves, the common case, for pools of 1k and 10k
// nodes × 1k groups. Nodes are seeded straight into Redis, seen an hour ahead
// so none expires while the benchmark runs.
func BenchmarkRebalance(b *testing.B) {
	for _, size := range []struct{ nodes, groups int }{{1000, 1000}, {10000, 1000}, {10000, 20}} {
		b.Run(fmt.Sprintf("%dx%d", size.nodes, size.groups), func(b *testing.B) {
			ctx := context.Background()
			rdb := redistest.Start(b).Client(b)
			p := seedPool(b, rdb, size.nodes, size.groups)
			_, err := p.rb.Run(ctx) // from scratch
			require.NoError(b, err)

			b.ResetTimer()
			for i := range b.N {
				b.StopTimer()
				id := "node-" + strconv.Itoa(i%size.nodes)
				require.NoError(b, p.hb.Leave(ctx, id, "test"))
				b.StartTimer()
				res, err := p.rb.Run(ctx)
				b.StopTimer()
				require.NoError(b, err)
				require.True(b, res.Changed)
				seedNodes(b, rdb, keys.New("t"), i%size.nodes, 1)
				_, err = p.rb.Run(ctx)
				require.NoError(b, err)
				b.StartTimer()
			}
		})
	}
}

func seedPool(b *testing.B, rdb redis.UniversalClient, nodes, groups int) *pool {
	ctx := context.Background()
	reg := registry.New(rdb, registry.WithNamespace("t"))
	hb, err := heartbeat.New(rdb, "t", heartbeat.DefaultConfig())
	require.NoError(b, err)
	for g := range groups {
		w := float64(1 + g%3)
		_, err := reg.Add(ctx, fmt.Sprintf("g%04d", g), registry.Change{Weight: &w}, "bench")
		require.NoError(b, err)
	}
	seedNodes(b, rdb, keys.New("t"), 0, nodes)
	return &pool{rdb: rdb, reg: reg, hb: hb, rb: NewRebalancer(rdb, reg, hb)}
}

// seedNodes writes n node records starting at node-<from>, as beats would.
func seedNodes(b *testing.B, rdb redis.UniversalClient, k keys.Keys, from, n int) {
	ctx := context.Background()
	now, err := rdb.Time(ctx).Result()
	require.NoError(b, err)
	seen := float64(now.Add(time.Hour).UnixMilli())
	pipe := rdb.Pipeline()
	for i := from; i < from+n; i++ {
		id := "node-" + strconv.Itoa(i)
		pipe.ZAdd(ctx, k.Nodes(), redis.Z{Score: seen, Member: id})
		pipe.HSet(ctx, k.Members(), id, strconv.FormatInt(now.UnixMilli(), 10)+"\t10."+strconv.Itoa(i/65536)+"."+strconv.Itoa(i/256%256)+"."+strconv.Itoa(i%256)+"\t\t\t0")
	}
	pipe.HIncrBy(ctx, k.State(), "mver", 1)
	_, err = pipe.Exec(ctx)
	require.NoError(b, err)
}
