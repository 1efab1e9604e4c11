package registry_test

import (
	"context"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/internal/keys"
	"github.com/allot-io/allot/internal/redistest"
)

// BenchmarkClusterEvents weighs sharded pub/sub against the plain PUBLISH
// the scripts use, on one 3-master Cluster in one process: a script
// publishes one event (a group event's size) to a namespace channel that
// 200 subscribers follow, and the op ends when every subscriber has it.
// Besides the time per event it reports the CPU each kind of master spends
// per event: the one owning the namespace's slot, and the other two —
// PUBLISH is broadcast to every shard over the cluster bus, SPUBLISH stays
// on the slot's shard.
func BenchmarkClusterEvents(b *testing.B) {
	cl := redistest.StartCluster(b)
	rdb := cl.Client(b)
	k := keys.New("bench")
	channel := k.GroupEvents("g000")
	payload := `{"type":"group.updated","group":"g000","version":7,"rev":42,"doc":"` + strings.Repeat("x", 600) + `"}`
	owner := ownerOf(b, cl, k.State())
	for _, kind := range []string{"PUBLISH", "SPUBLISH"} {
		b.Run(strings.ToLower(kind), func(b *testing.B) {
			const subscribers = 200
			ctx := context.Background()
			var got atomic.Int64
			for range subscribers {
				var ps *redis.PubSub
				if kind == "SPUBLISH" {
					ps = rdb.(*redis.ClusterClient).SSubscribe(ctx, channel)
				} else {
					ps = rdb.Subscribe(ctx, channel)
				}
				_, err := ps.Receive(ctx) // the subscription is confirmed
				require.NoError(b, err)
				ch := ps.Channel(redis.WithChannelSize(1024))
				go func() {
					for range ch {
						got.Add(1)
					}
				}()
				b.Cleanup(func() { _ = ps.Close() })
			}
			// As the commit and write scripts do: publish from a script
			// that declares a namespace key, so it runs on its shard.
			script := redis.NewScript(`return redis.call('` + kind + `', ARGV[1], ARGV[2])`)
			before := cpuOf(b, cl)
			b.ResetTimer()
			for i := range b.N {
				n, err := script.Run(ctx, rdb, []string{k.State()}, channel, payload).Int64()
				require.NoError(b, err)
				require.Equal(b, int64(subscribers), n, "subscribers reached")
				want := int64(i+1) * subscribers
				deadline := time.Now().Add(5 * time.Second)
				for got.Load() < want {
					require.False(b, time.Now().After(deadline), "event %d not delivered to every subscriber", i)
					time.Sleep(20 * time.Microsecond) // polling interval
				}
			}
			b.StopTimer()
			after := cpuOf(b, cl)
			var others float64
			for i := range after {
				if i != owner {
					others += after[i] - before[i]
				}
			}
			b.ReportMetric((after[owner]-before[owner])*1e6/float64(b.N), "owner-cpu-µs/op")
			b.ReportMetric(others*1e6/float64(b.N), "others-cpu-µs/op")
		})
	}
}

// ownerOf returns the index in cl.Masters() of the master serving key's slot.
func ownerOf(b *testing.B, cl *redistest.Cluster, key string) int {
	for i, m := range cl.Masters() {
		c := m.Client(b)
		// A master that does not serve the key's slot answers MOVED.
		if err := c.Exists(context.Background(), key).Err(); err == nil {
			return i
		}
	}
	b.Fatalf("no master serves %s", key)
	return -1
}

// cpuOf reads used_cpu_sys + used_cpu_user (seconds) of every master.
func cpuOf(b *testing.B, cl *redistest.Cluster) []float64 {
	var out []float64
	for _, m := range cl.Masters() {
		info, err := m.Client(b).Info(context.Background(), "cpu").Result()
		require.NoError(b, err)
		var sum float64
		for line := range strings.SplitSeq(info, "\r\n") {
			name, v, ok := strings.Cut(line, ":")
			if ok && (name == "used_cpu_sys" || name == "used_cpu_user") {
				f, err := strconv.ParseFloat(v, 64)
				require.NoError(b, err)
				sum += f
			}
		}
		out = append(out, sum)
	}
	return out
}
