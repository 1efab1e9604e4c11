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

// heldGroups adds 100 groups of three secret values (API-key sized) and a
// plain one, and commits 4 of them to node n1.
func heldGroups(b *testing.B, reg *registry.Registry, e env) {
	ctx := context.Background()
	for g := range 100 {
		_, err := reg.Add(ctx, fmt.Sprintf("g%03d", g), registry.Change{
			Set: map[string]string{
				"api_key": fmt.Sprintf("sk-proj-%048d", g), "org": fmt.Sprintf("org-%024d", g),
				"secret": fmt.Sprintf("whsec_%032d", g), "region": "eu-west-1",
			},
			Secret: []string{"api_key", "org", "secret"},
		}, "bench")
		require.NoError(b, err)
	}
	require.NoError(b, e.rdb.ZAdd(ctx, e.k.Nodes(), redis.Z{Score: 1, Member: "n1"}).Err())
	_, _, err := reg.Commit(ctx, registry.Commit{Nodes: map[string][]string{"n1": {"g000", "g001", "g002", "g003"}}})
	require.NoError(b, err)
}

// newEnvB is newEnv for a benchmark.
func newEnvB(b *testing.B, rdb redis.UniversalClient, opts ...registry.Option) env {
	ns := fmt.Sprintf("t%d", nsSeq.Add(1))
	opts = append([]registry.Option{registry.WithNamespace(ns)}, opts...)
	return env{rdb: rdb, ns: ns, reg: registry.New(rdb, opts...), k: keys.New(ns)}
}

// BenchmarkHeldGroupRead is a node's read of its held groups (NodeAssignment:
// one script, then decoding the documents), with the secret values stored
// plain and sealed: the cost of opening 12 values on the read path.
func BenchmarkHeldGroupRead(b *testing.B) {
	rdb := redistest.Start(b).Client(b)
	for _, mode := range []string{"plain", "encrypted"} {
		b.Run(mode, func(b *testing.B) {
			var opts []registry.Option
			if mode == "encrypted" {
				opts = append(opts, registry.WithSecretKeys(parseKeys(b, secretKey(b, "k1"))))
			}
			e := newEnvB(b, rdb, opts...)
			heldGroups(b, e.reg, e)
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				v, err := e.reg.NodeAssignment(ctx, "n1")
				if err != nil || len(v.Groups) != 4 {
					b.Fatal(err, len(v.Groups))
				}
			}
		})
	}
}

// BenchmarkGroupDocOpen is the node's other way to a held group's new
// version: the document its write's event carries (Registry.ParseGroupDoc),
// no round trip, so the opening cost shows unhidden.
func BenchmarkGroupDocOpen(b *testing.B) {
	rdb := redistest.Start(b).Client(b)
	for _, mode := range []string{"plain", "encrypted"} {
		b.Run(mode, func(b *testing.B) {
			var opts []registry.Option
			if mode == "encrypted" {
				opts = append(opts, registry.WithSecretKeys(parseKeys(b, secretKey(b, "k1"))))
			}
			e := newEnvB(b, rdb, opts...)
			heldGroups(b, e.reg, e)
			doc, err := rdb.Get(context.Background(), e.k.Group("g000")).Result()
			require.NoError(b, err)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if _, err := e.reg.ParseGroupDoc(doc); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
