package simulate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/allot-io/allot/client"
)

// Limits of a fleet.
const (
	// MaxCount is the most nodes one fleet runs: each holds a Redis
	// connection for its events, and 10,000 is about what one process and
	// a default redis-server (maxclients 10000) carry.
	MaxCount = 10_000
	// startAtOnce is how many nodes join at the same time, as a rolling
	// deploy would.
	startAtOnce = 64
	// spendTick is how often each node spends what it owes.
	spendTick = time.Second
)

// Config says what fleet to run.
type Config struct {
	// Count is the number of nodes, 1..MaxCount.
	Count int
	// Prefix starts every node ID: Prefix + a number from 1, zero-padded
	// to the width of Count ("sim-0001"). default: "sim-".
	Prefix string
	// Namespace is the pool the nodes join. default: "default".
	Namespace string
	// Spend is the calls per second the whole fleet makes (each node
	// Acquires its part from the groups it holds); 0 = none.
	Spend float64
	// Tokens is what each call reserves from the token limits. default: 0.
	Tokens int64
	// Logger receives the nodes' logs. default: discard.
	Logger *slog.Logger
}

// Validate reports what is wrong with c.
func (c Config) Validate() error {
	switch {
	case c.Count < 1 || c.Count > MaxCount:
		return fmt.Errorf("%w: count %d: want 1..%d", ErrInvalidConfig, c.Count, MaxCount)
	case c.Spend < 0:
		return fmt.Errorf("%w: spend %v: want 0 or more calls per second", ErrInvalidConfig, c.Spend)
	case c.Tokens < 0:
		return fmt.Errorf("%w: tokens %d: want 0 or more", ErrInvalidConfig, c.Tokens)
	}
	return nil
}

// Fleet is a running fleet. Close makes every node leave.
type Fleet struct {
	cfg   Config
	nodes []*client.Client

	calls, refused atomic.Int64

	stop context.CancelFunc
	wg   sync.WaitGroup // the spending goroutines
}

// Start joins cfg.Count nodes to the pool on rdb (startAtOnce at a time)
// and returns once every one has its first assignment. On an error the
// nodes that joined leave again.
func Start(ctx context.Context, rdb redis.UniversalClient, cfg Config) (*Fleet, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "sim-"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	width := len(fmt.Sprint(cfg.Count))
	f := &Fleet{cfg: cfg, nodes: make([]*client.Client, cfg.Count)}
	for i := range f.nodes {
		id := fmt.Sprintf("%s%0*d", cfg.Prefix, width, i+1)
		opts := []client.Option{client.WithNodeID(id), client.WithIP(NodeIP(i + 1)), client.WithLogger(cfg.Logger)}
		if cfg.Namespace != "" {
			opts = append(opts, client.WithNamespace(cfg.Namespace))
		}
		c, err := client.New(rdb, opts...)
		if err != nil {
			return nil, fmt.Errorf("simulate: node %s: %w", id, err)
		}
		f.nodes[i] = c
	}
	sem := make(chan struct{}, startAtOnce)
	var wg sync.WaitGroup
	errs := make([]error, len(f.nodes))
	for i, c := range f.nodes {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			errs[i] = c.Start(ctx)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		_ = f.leave(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("simulate: start: %w", err)
	}
	sctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	f.stop = stop
	if cfg.Spend > 0 {
		each := cfg.Spend / float64(len(f.nodes))
		for _, c := range f.nodes {
			f.wg.Go(func() { f.spend(sctx, c, each) })
		}
	}
	return f, nil
}

// NodeIP is the IP of the i-th node (from 1): 10.x.y.z, spread so the
// allocator's IP hash spreads them.
func NodeIP(i int) string {
	return net.IPv4(10, byte(i>>16), byte(i>>8), byte(i)).String()
}

// Nodes is the number of nodes.
func (f *Fleet) Nodes() int { return len(f.nodes) }

// Calls is how many calls the fleet made, and how many of them its
// groups' limits refused.
func (f *Fleet) Calls() (made, refused int64) { return f.calls.Load(), f.refused.Load() }

// spend makes rate calls a second on c until ctx ends: each an Acquire
// over the groups it holds, as a service calling an upstream would.
func (f *Fleet) spend(ctx context.Context, c *client.Client, rate float64) {
	t := time.NewTicker(spendTick)
	defer t.Stop()
	owed := 0.0
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		owed += rate * spendTick.Seconds()
		for ; owed >= 1; owed-- {
			_, err := c.Acquire(ctx, f.cfg.Tokens)
			var rl *client.RateLimitError
			switch {
			case err == nil:
				f.calls.Add(1)
			case errors.As(err, &rl):
				f.calls.Add(1)
				f.refused.Add(1)
			default: // nothing held yet, Redis away: try next tick
				owed = 0
			}
		}
	}
}

// Close stops spending and makes every node leave (startAtOnce at a time),
// so their groups move at once. It returns the leaves' errors.
func (f *Fleet) Close(ctx context.Context) error {
	f.stop()
	f.wg.Wait()
	return f.leave(ctx)
}

func (f *Fleet) leave(ctx context.Context) error {
	sem := make(chan struct{}, startAtOnce)
	var wg sync.WaitGroup
	errs := make([]error, len(f.nodes))
	for i, c := range f.nodes {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			errs[i] = c.Close(ctx)
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}
