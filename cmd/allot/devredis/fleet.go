package devredis

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/allot-io/allot/client"
	"github.com/allot-io/allot/heartbeat"
	"github.com/allot-io/allot/internal/killswitch"
)

// DefaultHeartbeat is the fast beat of demo nodes, so moves show within
// seconds: interval 500 ms, TTL 1.5 s.
var DefaultHeartbeat = heartbeat.Config{Interval: 500 * time.Millisecond, TTL: 1500 * time.Millisecond}

// Node describes one demo node.
type Node struct {
	ID      string
	IP      string
	Running bool
	Epoch   int64
	Groups  []string
}

// Fleet runs simulated nodes: each is a real client.Client with its own
// Redis connection pool, so stopping one can cut it off like a crash.
// Its methods are safe for concurrent use.
type Fleet struct {
	addr string
	ns   string
	hb   heartbeat.Config
	log  *slog.Logger
	// secrets is the nodes' secret key list ("" = none).
	secrets string

	mu     sync.Mutex
	nodes  map[string]*demoNode
	next   int
	closed bool
}

// demoNode is one simulated node. c is nil while it is stopped.
type demoNode struct {
	id, ip  string
	rdb     *redis.Client
	crashed *killswitch.Switch
	c       *client.Client
	traffic *traffic // its demo calls while running
	seed    uint64
}

// FleetOption configures a Fleet.
type FleetOption func(*Fleet)

// WithNamespace sets the namespace the nodes join. default: "default".
func WithNamespace(ns string) FleetOption { return func(f *Fleet) { f.ns = ns } }

// WithHeartbeat sets the nodes' heartbeat. default: DefaultHeartbeat.
func WithHeartbeat(c heartbeat.Config) FleetOption { return func(f *Fleet) { f.hb = c } }

// WithSecretKeys gives the nodes the secret keys serve has (the text of
// ALLOT_SECRET_KEYS), so they open the values serve seals. default: none.
func WithSecretKeys(spec string) FleetOption { return func(f *Fleet) { f.secrets = spec } }

// WithLogger sets the logger of the fleet and its clients. default: discard.
func WithLogger(l *slog.Logger) FleetOption {
	return func(f *Fleet) {
		if l != nil {
			f.log = l
		}
	}
}

// NewFleet returns an empty fleet whose nodes connect to the Redis at addr.
func NewFleet(addr string, opts ...FleetOption) *Fleet {
	f := &Fleet{addr: addr, ns: "default", hb: DefaultHeartbeat,
		log: slog.New(slog.NewTextHandler(io.Discard, nil)), nodes: map[string]*demoNode{}}
	for _, o := range opts {
		o(f)
	}
	return f
}

// Add starts one more node ("demo-N", IP 10.0.0.N) and returns once it has
// its first assignment.
func (f *Fleet) Add(ctx context.Context) (Node, error) {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return Node{}, ErrClosed
	}
	f.next++
	n := f.next
	crashed := killswitch.New(errCrashed)
	rdb := redis.NewClient(&redis.Options{Addr: f.addr, Protocol: 2, PoolSize: 4, MaxRetries: -1})
	rdb.AddHook(crashed)
	d := &demoNode{id: fmt.Sprintf("demo-%d", n), ip: fmt.Sprintf("10.0.%d.%d", (n-1)/254, (n-1)%254+1), rdb: rdb, crashed: crashed, seed: uint64(n)}
	f.nodes[d.id] = d
	f.mu.Unlock()
	if err := f.start(ctx, d); err != nil {
		return Node{}, err
	}
	return f.node(d.id)
}

// Start starts a stopped node again under the same ID (a no-op when it runs).
func (f *Fleet) Start(ctx context.Context, id string) error {
	f.mu.Lock()
	d, ok := f.nodes[id]
	closed := f.closed
	f.mu.Unlock()
	switch {
	case closed:
		return ErrClosed
	case !ok:
		return fmt.Errorf("%w: %q", ErrUnknownNode, id)
	}
	return f.start(ctx, d)
}

func (f *Fleet) start(ctx context.Context, d *demoNode) error {
	f.mu.Lock()
	if d.c != nil {
		f.mu.Unlock()
		return nil
	}
	d.crashed.Revive()
	opts := []client.Option{client.WithNamespace(f.ns), client.WithNodeID(d.id), client.WithIP(d.ip),
		client.WithHeartbeat(f.hb), client.WithLogger(f.log)}
	if f.secrets != "" {
		opts = append(opts, client.WithSecretKeys(f.secrets))
	}
	c, err := client.New(d.rdb, opts...)
	if err != nil {
		f.mu.Unlock()
		return fmt.Errorf("devredis: node %s: %w", d.id, err)
	}
	d.c = c
	f.mu.Unlock()
	if err := c.Start(ctx); err != nil {
		_ = c.Close(context.WithoutCancel(ctx))
		f.mu.Lock()
		d.c = nil
		f.mu.Unlock()
		return fmt.Errorf("devredis: start node %s: %w", d.id, err)
	}
	f.mu.Lock()
	if d.c == c {
		d.traffic = startTraffic(c, d.seed)
	}
	f.mu.Unlock()
	f.log.Info("demo node started", "node", d.id)
	return nil
}

// Stop stops a node. Not graceful: its Redis connection is cut first, so it
// stops beating without leaving, like a crashed process; its groups move
// once its TTL runs out. Graceful: it leaves, and its groups move at once.
func (f *Fleet) Stop(ctx context.Context, id string, graceful bool) error {
	f.mu.Lock()
	d, ok := f.nodes[id]
	if !ok {
		f.mu.Unlock()
		return fmt.Errorf("%w: %q", ErrUnknownNode, id)
	}
	c, tr := d.c, d.traffic
	d.c, d.traffic = nil, nil
	f.mu.Unlock()
	if tr != nil {
		tr.stop()
	}
	if c != nil && !graceful {
		d.crashed.Kill()
	}
	if c == nil {
		return nil
	}
	err := c.Close(ctx)
	f.log.Info("demo node stopped", "node", id, "graceful", graceful)
	if graceful {
		return err
	}
	return nil // the leave is meant to fail
}

// Nodes lists every node, running or stopped, by ID number.
func (f *Fleet) Nodes() []Node {
	f.mu.Lock()
	ids := make([]*demoNode, 0, len(f.nodes))
	for _, d := range f.nodes {
		ids = append(ids, d)
	}
	f.mu.Unlock()
	out := make([]Node, 0, len(ids))
	for _, d := range ids {
		out = append(out, f.describe(d))
	}
	slices.SortFunc(out, func(a, b Node) int {
		if len(a.ID) != len(b.ID) {
			return len(a.ID) - len(b.ID)
		}
		if a.ID < b.ID {
			return -1
		}
		return 1
	})
	return out
}

func (f *Fleet) node(id string) (Node, error) {
	f.mu.Lock()
	d, ok := f.nodes[id]
	f.mu.Unlock()
	if !ok {
		return Node{}, fmt.Errorf("%w: %q", ErrUnknownNode, id)
	}
	return f.describe(d), nil
}

func (f *Fleet) describe(d *demoNode) Node {
	f.mu.Lock()
	c := d.c
	f.mu.Unlock()
	n := Node{ID: d.id, IP: d.ip, Groups: []string{}}
	if c != nil {
		a := c.Assignment()
		n.Running, n.Epoch, n.Groups = true, a.Epoch, a.Names()
		if n.Groups == nil {
			n.Groups = []string{}
		}
	}
	return n
}

// Close stops every node gracefully (they leave) and closes their Redis
// connections.
func (f *Fleet) Close(ctx context.Context) error {
	f.mu.Lock()
	f.closed = true
	nodes := make([]*demoNode, 0, len(f.nodes))
	for _, d := range f.nodes {
		nodes = append(nodes, d)
	}
	f.mu.Unlock()
	var wg sync.WaitGroup
	for _, d := range nodes {
		wg.Go(func() {
			_ = f.Stop(ctx, d.id, true)
			_ = d.rdb.Close()
		})
	}
	wg.Wait()
	return nil
}
