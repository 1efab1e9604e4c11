package allocator

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"

	"github.com/redis/go-redis/v9"

	"github.com/allot-io/allot/heartbeat"
	"github.com/allot-io/allot/internal/keys"
	"github.com/allot-io/allot/registry"
)

// NamespaceInfo is one namespace as `allot namespace list` shows it. Its JSON
// is {name, nodes, groups, interval, ttl, stored, max_live_nodes,
// max_suspended, max_cooldown, lending} with interval, ttl and
// max_cooldown as Go duration text ("2s"), max_suspended in percent and
// lending "on" or "off".
type NamespaceInfo struct {
	// Name is the namespace.
	Name string
	// Nodes counts the registered nodes (live, or silent and not reaped yet).
	Nodes int64
	// Groups counts the groups, whatever their state.
	Groups int64
	// Heartbeat is the namespace's heartbeat Config (heartbeat.LoadConfig).
	Heartbeat heartbeat.Config
	// Stored is false when the namespace uses the default heartbeat Config
	// because none was ever stored.
	Stored bool
	// MaxLiveNodes is the namespace's max_live_nodes (heartbeat.LoadMaxLiveNodes;
	// 0 = no limit), and MaxLiveNodesStored false when it is the default.
	MaxLiveNodes       int64
	MaxLiveNodesStored bool
	// Health is the namespace's key health limits (registry.HealthSettings).
	Health registry.HealthSettings
	// Lending is the namespace's lending setting (registry.Lending): off,
	// no group is lent.
	Lending bool
}

// MarshalJSON writes the JSON shape documented on NamespaceInfo.
func (n NamespaceInfo) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Name     string `json:"name"`
		Nodes    int64  `json:"nodes"`
		Groups   int64  `json:"groups"`
		Interval string `json:"interval"`
		TTL      string `json:"ttl"`
		Stored   bool   `json:"stored"`
		MaxLive  int64  `json:"max_live_nodes"`
		MaxSusp  int    `json:"max_suspended"`
		MaxCool  string `json:"max_cooldown"`
		Lending  string `json:"lending"`
	}{n.Name, n.Nodes, n.Groups, n.Heartbeat.Interval.String(), n.Heartbeat.TTL.String(), n.Stored, n.MaxLiveNodes,
		n.Health.MaxSuspended, n.Health.MaxCooldown.String(), OnOff(n.Lending)})
}

// OnOff is "on" or "off": how the lending setting is written and shown.
func OnOff(on bool) string {
	if on {
		return "on"
	}
	return "off"
}

// Namespaces lists every namespace that has state in Redis (a group write, a
// node, or settings), by name. It SCANs for the :state and :settings keys of
// every namespace — on Redis Cluster on every master, since namespaces spread
// over the shards — then reads each namespace's counts and settings. It only
// reads; its cost grows with the keys of the database, so it is an operator's
// command, not a hot path.
func Namespaces(ctx context.Context, rdb redis.UniversalClient) ([]NamespaceInfo, error) {
	names, err := scanNamespaces(ctx, rdb)
	if err != nil {
		return nil, fmt.Errorf("allocator: list namespaces: %w", err)
	}
	out := make([]NamespaceInfo, 0, len(names))
	for _, ns := range names {
		cfg, stored, err := heartbeat.LoadConfig(ctx, rdb, ns)
		if err != nil {
			return nil, err
		}
		hb, err := heartbeat.New(rdb, ns, cfg)
		if err != nil {
			return nil, err
		}
		nodes, err := hb.Registered(ctx)
		if err != nil {
			return nil, err
		}
		reg := registry.New(rdb, registry.WithNamespace(ns))
		groups, err := reg.Count(ctx)
		if err != nil {
			return nil, err
		}
		health, _, err := reg.HealthSettings(ctx)
		if err != nil {
			return nil, err
		}
		maxLive, maxStored, err := heartbeat.LoadMaxLiveNodes(ctx, rdb, ns)
		if err != nil {
			return nil, err
		}
		lending, _, err := reg.Lending(ctx)
		if err != nil {
			return nil, err
		}
		out = append(out, NamespaceInfo{
			Name: ns, Nodes: nodes, Groups: groups, Heartbeat: cfg, Stored: stored, Health: health,
			MaxLiveNodes: maxLive, MaxLiveNodesStored: maxStored, Lending: lending,
		})
	}
	return out, nil
}

// scanNamespaces returns the sorted names of the namespaces with a :state or
// :settings key.
func scanNamespaces(ctx context.Context, rdb redis.UniversalClient) ([]string, error) {
	var (
		mu  sync.Mutex
		set = map[string]bool{}
	)
	scan := func(ctx context.Context, c redis.Cmdable) error {
		for _, kind := range []string{"state", "settings", "nodes"} {
			it := c.Scan(ctx, 0, keys.Pattern(kind), 1000).Iterator()
			for it.Next(ctx) {
				if ns, ok := keys.NamespaceOf(it.Val()); ok {
					mu.Lock()
					set[ns] = true
					mu.Unlock()
				}
			}
			if err := it.Err(); err != nil {
				return err
			}
		}
		return nil
	}
	var err error
	if cc, ok := rdb.(*redis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error { return scan(ctx, c) })
	} else {
		err = scan(ctx, rdb)
	}
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(set))
	for ns := range set {
		out = append(out, ns)
	}
	slices.Sort(out)
	return out, nil
}
