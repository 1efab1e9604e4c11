package redistest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

const (
	// clusterMasters is the number of masters StartCluster creates.
	clusterMasters = 3
	// clusterSlots is the number of hash slots in Redis Cluster.
	clusterSlots = 16384
	// clusterTimeout bounds forming a cluster and every failover wait.
	clusterTimeout = 30 * time.Second
	// clusterPollInterval is how often cluster state is re-checked; each
	// check opens a connection to every node, so it is slower than
	// pollInterval.
	clusterPollInterval = 25 * time.Millisecond
)

// ClusterOption configures StartCluster.
type ClusterOption func(*clusterConfig)

type clusterConfig struct {
	replicas    int
	nodeTimeout time.Duration
}

// WithReplicas gives every master n replicas, for failover tests.
// Default: 0 (masters only).
func WithReplicas(n int) ClusterOption {
	return func(c *clusterConfig) { c.replicas = n }
}

// WithNodeTimeout sets cluster-node-timeout, the time after which an
// unreachable node is considered failing. Default: 1 s with replicas (fast
// failover), 5 s without (a slow machine never marks a master failed).
func WithNodeTimeout(d time.Duration) ClusterOption {
	return func(c *clusterConfig) { c.nodeTimeout = d }
}

// Cluster is a Redis Cluster of 3 masters (and optional replicas), each a
// Server, with all 16384 slots assigned. Its methods are safe for concurrent
// use.
type Cluster struct {
	replicasPer int

	mu       sync.Mutex
	masters  []*Server   // masters[i] serves slot range i
	replicas [][]*Server // replicas[i] replicate masters[i]
}

// StartCluster starts the nodes concurrently, assigns the slots evenly
// (CLUSTER ADDSLOTSRANGE), joins them (CLUSTER MEET), attaches replicas, and
// returns once every node reports cluster_state:ok and all agree on who
// serves which slots.
func StartCluster(t testing.TB, opts ...ClusterOption) *Cluster {
	t.Helper()
	cc := clusterConfig{}
	for _, o := range opts {
		o(&cc)
	}
	if cc.replicas < 0 {
		t.Fatalf("redistest: WithReplicas(%d): must be >= 0", cc.replicas)
	}
	if cc.nodeTimeout <= 0 {
		cc.nodeTimeout = 5 * time.Second
		if cc.replicas > 0 {
			cc.nodeTimeout = time.Second
		}
	}
	nodes := make([]*Server, clusterMasters*(1+cc.replicas))
	for i := range nodes {
		nodes[i] = newServer(t, config{cluster: true, nodeTimeout: cc.nodeTimeout})
	}
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, s := range nodes {
		wg.Go(func() { errs[i] = s.startFresh(freeClusterPort) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}

	c := &Cluster{replicasPer: cc.replicas, masters: nodes[:clusterMasters]}
	c.replicas = make([][]*Server, clusterMasters)
	for j, s := range nodes[clusterMasters:] {
		c.replicas[j%clusterMasters] = append(c.replicas[j%clusterMasters], s)
	}
	ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
	defer cancel()
	if err := c.form(ctx, nodes); err != nil {
		t.Fatal(err)
	}
	return c
}

// form turns started nodes into one cluster and waits until it is stable.
func (c *Cluster) form(ctx context.Context, nodes []*Server) error {
	admin := make([]*redis.Client, len(nodes))
	for i, s := range nodes {
		admin[i] = adminClient(s)
		defer admin[i].Close()
	}
	// Distinct config epochs avoid the collision-resolution round that
	// nodes with equal epochs would otherwise go through.
	for i, a := range admin {
		if err := a.Do(ctx, "CLUSTER", "SET-CONFIG-EPOCH", i+1).Err(); err != nil {
			return fmt.Errorf("redistest: cluster set-config-epoch on %s: %w", nodes[i].Addr(), err)
		}
	}
	for i := range clusterMasters {
		lo, hi := i*clusterSlots/clusterMasters, (i+1)*clusterSlots/clusterMasters-1
		if err := admin[i].ClusterAddSlotsRange(ctx, lo, hi).Err(); err != nil {
			return fmt.Errorf("redistest: cluster addslotsrange %d-%d on %s: %w", lo, hi, nodes[i].Addr(), err)
		}
	}
	first := nodes[0]
	for i, a := range admin[1:] {
		if err := a.ClusterMeet(ctx, "127.0.0.1", portOf(first)).Err(); err != nil {
			return fmt.Errorf("redistest: cluster meet from %s: %w", nodes[i+1].Addr(), err)
		}
	}
	for i, group := range c.replicas {
		id, err := admin[i].ClusterMyID(ctx).Result()
		if err != nil {
			return fmt.Errorf("redistest: cluster myid on %s: %w", nodes[i].Addr(), err)
		}
		for _, r := range group {
			ra := adminClient(r)
			// The replica must first learn of its master through gossip.
			err := poll(ctx, func(ctx context.Context) error { return ra.ClusterReplicate(ctx, id).Err() })
			_ = ra.Close()
			if err != nil {
				return fmt.Errorf("redistest: cluster replicate %s to %s: %w", r.Addr(), nodes[i].Addr(), err)
			}
		}
	}
	if err := poll(ctx, func(ctx context.Context) error { return c.converged(ctx, c.replicasPer) }); err != nil {
		return fmt.Errorf("redistest: cluster did not converge: %w", err)
	}
	return nil
}

// converged returns nil once every running node reports cluster_state:ok,
// all of them report the same slot map served by running masters with at
// least minReplicas replicas per range, and every running replica's link
// to its master is up.
func (c *Cluster) converged(ctx context.Context, minReplicas int) error {
	c.mu.Lock()
	nodes := c.nodesLocked()
	c.mu.Unlock()
	live := map[string]bool{}
	for _, s := range nodes {
		if s.Running() {
			live[s.Addr()] = true
		}
	}
	var want string
	for _, s := range nodes {
		if !live[s.Addr()] {
			continue
		}
		a := adminClient(s)
		err := nodeConverged(ctx, a, live, minReplicas, &want)
		_ = a.Close()
		if err != nil {
			return fmt.Errorf("node %s: %w", s.Addr(), err)
		}
	}
	return nil
}

// nodeConverged checks one node; want is the slot map the first node
// reported, which every other node must repeat.
func nodeConverged(ctx context.Context, a *redis.Client, live map[string]bool, minReplicas int, want *string) error {
	info, err := a.ClusterInfo(ctx).Result()
	if err != nil {
		return err
	}
	if st := infoField(info, "cluster_state"); st != "ok" {
		return fmt.Errorf("cluster_state:%s", st)
	}
	repl, err := a.Info(ctx, "replication").Result()
	if err != nil {
		return err
	}
	if infoField(repl, "role") == "slave" && infoField(repl, "master_link_status") != "up" {
		return fmt.Errorf("replica link to master %s not up", infoField(repl, "master_port"))
	}
	slots, err := a.ClusterSlots(ctx).Result()
	if err != nil {
		return err
	}
	slices.SortFunc(slots, func(x, y redis.ClusterSlot) int { return x.Start - y.Start })
	var b strings.Builder
	for _, sl := range slots {
		if len(sl.Nodes) == 0 || !live[sl.Nodes[0].Addr] {
			return fmt.Errorf("slots %d-%d served by %v, not a running master", sl.Start, sl.End, sl.Nodes)
		}
		if len(sl.Nodes)-1 < minReplicas {
			return fmt.Errorf("slots %d-%d have %d replicas, want %d", sl.Start, sl.End, len(sl.Nodes)-1, minReplicas)
		}
		reps := make([]string, 0, len(sl.Nodes)-1)
		for _, n := range sl.Nodes[1:] {
			reps = append(reps, n.Addr)
		}
		slices.Sort(reps)
		fmt.Fprintf(&b, "%d-%d %s %v;", sl.Start, sl.End, sl.Nodes[0].Addr, reps)
	}
	if *want == "" {
		*want = b.String()
	} else if got := b.String(); got != *want {
		return fmt.Errorf("slot map %q differs from %q", got, *want)
	}
	return nil
}

// KillMaster SIGKILLs master i (0..2), waits until one of its replicas has
// been promoted and the cluster is ok again, and returns the new master.
// Masters() then lists the new master at index i; the killed server counts
// among that range's replicas and rejoins as a replica after Restart.
// It needs WithReplicas.
func (c *Cluster) KillMaster(t testing.TB, i int) *Server {
	t.Helper()
	c.mu.Lock()
	if i < 0 || i >= len(c.masters) {
		c.mu.Unlock()
		t.Fatalf("redistest: KillMaster(%d): no such master", i)
	}
	old, candidates := c.masters[i], slices.Clone(c.replicas[i])
	c.mu.Unlock()
	if len(candidates) == 0 {
		t.Fatal("redistest: KillMaster needs StartCluster(t, WithReplicas(1))")
	}
	old.Kill(t)

	ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
	defer cancel()
	var promoted *Server
	err := poll(ctx, func(ctx context.Context) error {
		for _, r := range candidates {
			if !r.Running() {
				continue
			}
			a := adminClient(r)
			repl, err := a.Info(ctx, "replication").Result()
			_ = a.Close()
			if err == nil && infoField(repl, "role") == "master" {
				promoted = r
				return c.converged(ctx, 0)
			}
		}
		return fmt.Errorf("no replica of %s promoted yet", old.Addr())
	})
	if err != nil {
		t.Fatalf("redistest: failover of master %s: %v", old.Addr(), err)
	}
	c.mu.Lock()
	c.masters[i] = promoted
	rest := slices.DeleteFunc(candidates, func(s *Server) bool { return s == promoted })
	c.replicas[i] = append(rest, old)
	c.mu.Unlock()
	return promoted
}

// WaitOK polls until every running node reports cluster_state:ok and all
// agree on the slot map, e.g. after restarting a killed node.
func (c *Cluster) WaitOK(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
	defer cancel()
	if err := poll(ctx, func(ctx context.Context) error { return c.converged(ctx, 0) }); err != nil {
		t.Fatalf("redistest: cluster not ok: %v", err)
	}
}

// Masters returns the servers currently serving slot ranges 0..2.
func (c *Cluster) Masters() []*Server {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.masters)
}

// Replicas returns every replica server (running or killed), grouped by
// master in Masters() order.
func (c *Cluster) Replicas() []*Server {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*Server
	for _, g := range c.replicas {
		out = append(out, g...)
	}
	return out
}

func (c *Cluster) nodesLocked() []*Server {
	out := slices.Clone(c.masters)
	for _, g := range c.replicas {
		out = append(out, g...)
	}
	return out
}

// Addrs returns the masters' host:port addresses.
func (c *Cluster) Addrs() []string {
	var out []string
	for _, s := range c.Masters() {
		out = append(out, s.Addr())
	}
	return out
}

// URL is redis://127.0.0.1:P1?addr=127.0.0.1:P2&addr=127.0.0.1:P3 listing
// the masters, the form go-redis's ParseClusterURL reads.
func (c *Cluster) URL() string {
	addrs := c.Addrs()
	u := "redis://" + addrs[0]
	for i, a := range addrs[1:] {
		sep := "&"
		if i == 0 {
			sep = "?"
		}
		u += sep + "addr=" + a
	}
	return u
}

// Client returns a go-redis cluster client (a *redis.ClusterClient) seeded
// with every node, closed when the test ends.
func (c *Cluster) Client(t testing.TB) redis.UniversalClient {
	t.Helper()
	c.mu.Lock()
	var addrs []string
	for _, s := range c.nodesLocked() {
		addrs = append(addrs, s.Addr())
	}
	c.mu.Unlock()
	cl := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
	t.Cleanup(func() { _ = cl.Close() })
	return cl
}

// adminClient is a plain single-connection client for one node, used to
// configure and inspect it.
func adminClient(s *Server) *redis.Client {
	o := s.Options()
	o.Protocol = 2
	o.DisableIdentity = true
	o.PoolSize = 1
	o.MaxRetries = -1
	o.DialTimeout = 500 * time.Millisecond
	o.ReadTimeout = 2 * time.Second
	o.WriteTimeout = 2 * time.Second
	return redis.NewClient(o)
}

// portOf returns the port of s as a string.
func portOf(s *Server) string {
	addr := s.Addr()
	return addr[strings.LastIndexByte(addr, ':')+1:]
}

// poll calls fn every clusterPollInterval until it returns nil or ctx ends, and
// then returns fn's last error.
func poll(ctx context.Context, fn func(context.Context) error) error {
	tick := time.NewTicker(clusterPollInterval)
	defer tick.Stop()
	for {
		err := fn(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-tick.C:
		}
	}
}
