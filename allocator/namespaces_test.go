package allocator_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/allocator"
	"github.com/allot-io/allot/heartbeat"
	"github.com/allot-io/allot/internal/redistest"
	"github.com/allot-io/allot/registry"
)

// TestNamespaces lists namespaces on standalone Redis and on a Cluster, where
// they spread over the masters and every master must be scanned.
func TestNamespaces(t *testing.T) {
	redistest.Topologies(t, func(t *testing.T, rdb redis.UniversalClient) {
		ctx := context.Background()
		list, err := allocator.Namespaces(ctx, rdb)
		require.NoError(t, err)
		assert.Empty(t, list)

		// Enough namespaces that a Cluster puts them on several masters.
		const n = 12
		for i := range n {
			ns := fmt.Sprintf("ns%02d", i)
			reg := registry.New(rdb, registry.WithNamespace(ns))
			for g := range i % 3 {
				_, err := reg.Add(ctx, fmt.Sprintf("g%d", g), registry.Change{}, "test")
				require.NoError(t, err)
			}
		}
		slow := heartbeat.Config{Interval: 5 * time.Second, TTL: 15 * time.Second}
		require.NoError(t, heartbeat.StoreConfig(ctx, rdb, "ns01", slow))
		require.NoError(t, heartbeat.StoreConfig(ctx, rdb, "quiet", heartbeat.DefaultConfig()))
		hb, err := heartbeat.New(rdb, "ns02", heartbeat.DefaultConfig())
		require.NoError(t, err)
		_, err = hb.Beat(ctx, heartbeat.Beat{Node: "n1", IP: "10.0.0.1", Session: "test"})
		require.NoError(t, err)

		list, err = allocator.Namespaces(ctx, rdb)
		require.NoError(t, err)
		names := make([]string, 0, len(list))
		byName := map[string]allocator.NamespaceInfo{}
		for _, ns := range list {
			names = append(names, ns.Name)
			byName[ns.Name] = ns
		}
		// ns00, ns03, ns06, ns09 never wrote a group: they have no state
		// and are not listed; quiet has only settings.
		assert.Equal(t, []string{"ns01", "ns02", "ns04", "ns05", "ns07", "ns08", "ns10", "ns11", "quiet"}, names)
		assert.Equal(t, allocator.NamespaceInfo{Name: "ns01", Groups: 1, Heartbeat: slow, Stored: true, Health: registry.DefaultHealthSettings(),
			MaxLiveNodes: heartbeat.DefaultMaxLiveNodes, Lending: true}, byName["ns01"])
		assert.Equal(t, allocator.NamespaceInfo{Name: "ns02", Nodes: 1, Groups: 2, Heartbeat: heartbeat.DefaultConfig(), Health: registry.DefaultHealthSettings(),
			MaxLiveNodes: heartbeat.DefaultMaxLiveNodes, Lending: true}, byName["ns02"])

		b, err := json.Marshal(byName["ns01"])
		require.NoError(t, err)
		assert.JSONEq(t, `{"name":"ns01","nodes":0,"groups":1,"interval":"5s","ttl":"15s","stored":true,"max_live_nodes":100000,"max_suspended":50,"max_cooldown":"1m0s","lending":"on"}`, string(b))
	})
}
