package main

import (
	"context"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/allot-io/allot/client"
)

// The skew scenario's strategies:
//
//   - allow: each node calls Allow on the group it holds (allot before
//     issue 23);
//   - acquire: client.Acquire, whatever it does when the scenario runs
//     (borrowing and placement by demand as they land);
//   - router: a LiteLLM-style router on every node: it sees every key and
//     picks, per call, the key with the most room by per-key per-minute
//     counters in Redis (INCR, as LiteLLM's usage-based routing does), with
//     no shared GCRA; a key the upstream refused is left alone for its
//     Retry-After, on that node only;
//   - ipmod: key = keys[last IP octet mod keys], no coordination and no
//     limit of its own, waiting only what a 429 says.

// skewAllot is the allot strategies: every node a client.Client of one
// pool whose groups carry the keys, each with the quota "600/m burst 10".
type skewAllot struct {
	acquire bool
	pool    *allotStrategy // the namespace, its groups and their teardown
}

func (s *skewAllot) name() string {
	if s.acquire {
		return "allot Acquire"
	}
	return "allot Allow (held group)"
}

func (s *skewAllot) setup(ctx context.Context, sb *skewBench) error {
	if sb.cfg.Redis == nil {
		return errors.New("allot strategies need a Redis")
	}
	s.pool = &allotStrategy{quota: func(config) string { return sb.cfg.quotaText() }}
	return s.pool.setup(ctx, &bench{cfg: config{Redis: sb.cfg.Redis}, keys: sb.keys})
}

func (s *skewAllot) teardown(ctx context.Context, sb *skewBench) {
	if s.pool != nil {
		s.pool.teardown(ctx, nil)
	}
}

func (s *skewAllot) node(ctx context.Context, sb *skewBench, n *skewNode) (skewPicker, error) {
	rdb := redis.NewClient(sb.cfg.Redis)
	opts := []client.Option{client.WithNamespace(s.pool.ns), client.WithNodeID(fmt.Sprintf("node-%03d", n.id)),
		client.WithIP(n.ip), client.WithHeartbeat(sb.cfg.Heartbeat)}
	if !s.acquire {
		// Today's baseline: placed by IP hash alone, as before placement
		// by demand, and calling Allow on its own group.
		opts = append(opts, client.WithoutDemand())
	}
	c, err := client.New(rdb, opts...)
	if err != nil {
		_ = rdb.Close()
		return nil, err
	}
	c.OnChange(func(old, new client.Assignment) {
		if sb.inWindow(time.Now()) {
			sb.moves.Add(int64(gained(old, new)))
		}
	})
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second+3*sb.cfg.Heartbeat.TTL)
	defer cancel()
	if err := c.Start(sctx); err != nil {
		_ = c.Close(context.WithoutCancel(ctx))
		_ = rdb.Close()
		return nil, err
	}
	return &allotPicker{c: c, rdb: rdb, acquire: s.acquire}, nil
}

// gained counts the groups new holds and old does not.
func gained(old, new client.Assignment) int {
	k := 0
	for _, g := range new.Groups {
		if !old.Holds(g.Name) {
			k++
		}
	}
	return k
}

// allotPicker is one allot node.
type allotPicker struct {
	c       *client.Client
	rdb     *redis.Client
	acquire bool
}

func (p *allotPicker) pick(ctx context.Context) skewTake {
	if p.acquire {
		l, err := p.c.Acquire(ctx, 0)
		if err != nil {
			return skewTake{wait: refusalWait(err)}
		}
		key, _ := l.Config("api_key")
		return skewTake{key: key, borrowed: l.Borrowed(),
			done: func() { _ = l.Settle(context.WithoutCancel(ctx), 0) }}
	}
	a := p.c.Assignment()
	if len(a.Groups) == 0 {
		return skewTake{wait: 50 * time.Millisecond}
	}
	g := a.Groups[0]
	if err := p.c.Allow(ctx, g.Name); err != nil {
		return skewTake{wait: refusalWait(err)}
	}
	return skewTake{key: g.Config["api_key"]}
}

func (p *allotPicker) refused(_ string, retry time.Duration) time.Duration { return retry }

func (p *allotPicker) homes() []string { return p.c.Assignment().Names() }

func (p *allotPicker) close(ctx context.Context) {
	_ = p.c.Close(ctx)
	_ = p.rdb.Close()
}

// refusalWait is how long a node waits after a refused Allow or Acquire: a
// RateLimitError's RetryAfter, nothing held 50 ms, any other error 10 ms.
func refusalWait(err error) time.Duration {
	var rl *client.RateLimitError
	switch {
	case errors.As(err, &rl):
		return max(rl.RetryAfter, client.MinWait)
	case errors.Is(err, client.ErrNothingHeld):
		return 50 * time.Millisecond
	}
	return 10 * time.Millisecond
}

// borrowing is what a lease that knows whether it was borrowed has
// (Lease.Borrowed, issue 23 part 2).
type borrowing interface{ Borrowed() bool }

// borrowedLease reports whether lease l was borrowed: what it says itself
// when it can, else whether its group is one held does not include.
func borrowedLease(l interface{ Group() string }, held client.Assignment) bool {
	if b, ok := l.(borrowing); ok {
		return b.Borrowed()
	}
	return !held.Holds(l.Group())
}

// routerStrategy is the LiteLLM-style router.
type routerStrategy struct {
	prefix string // counter keys: prefix + key index + ":" + minute
	admin  *redis.Client
}

func (s *routerStrategy) name() string { return "router (most room by Redis RPM)" }

func (s *routerStrategy) setup(ctx context.Context, sb *skewBench) error {
	if sb.cfg.Redis == nil {
		return errors.New("the router needs a Redis")
	}
	s.prefix = "quota-bench-router-" + randomHex(4) + ":rpm:"
	s.admin = redis.NewClient(sb.cfg.Redis)
	return s.admin.Ping(ctx).Err()
}

func (s *routerStrategy) teardown(ctx context.Context, sb *skewBench) {
	if s.admin == nil {
		return
	}
	iter := s.admin.Scan(ctx, 0, s.prefix+"*", 1000).Iterator()
	for iter.Next(ctx) {
		s.admin.Unlink(ctx, iter.Val())
	}
	_ = s.admin.Close()
}

func (s *routerStrategy) node(ctx context.Context, sb *skewBench, n *skewNode) (skewPicker, error) {
	return &routerPicker{
		rdb: redis.NewClient(sb.cfg.Redis), keys: sb.keys, prefix: s.prefix, rpm: int64(sb.cfg.PerMinute),
		cooling: make([]time.Time, len(sb.keys)), rng: mrand.New(mrand.NewPCG(sb.cfg.Seed, uint64(1000+n.id))),
	}, nil
}

// routerPicker is one router node.
type routerPicker struct {
	rdb     *redis.Client
	keys    []string
	prefix  string
	rpm     int64
	cooling []time.Time // per key: the upstream refused it until then
	rng     *mrand.Rand
}

// counter is key i's counter for the minute (unix seconds / 60).
func (p *routerPicker) counter(i int, minute int64) string {
	return p.prefix + strconv.Itoa(i) + ":" + strconv.FormatInt(minute, 10)
}

func (p *routerPicker) pick(ctx context.Context) skewTake {
	now := time.Now()
	minute := now.Unix() / 60
	names := make([]string, len(p.keys))
	for i := range p.keys {
		names[i] = p.counter(i, minute)
	}
	vals, err := p.rdb.MGet(ctx, names...).Result()
	if err != nil {
		return skewTake{wait: 10 * time.Millisecond}
	}
	counts := make([]int64, len(vals))
	for i, v := range vals {
		if s, ok := v.(string); ok {
			counts[i], _ = strconv.ParseInt(s, 10, 64)
		}
	}
	cooling := make([]bool, len(p.keys))
	for i, until := range p.cooling {
		cooling[i] = now.Before(until)
	}
	// The pre-call check: count the call, and take the next best key if
	// another node took the minute's last slot in between.
	for range p.keys {
		i := routerChoice(counts, p.rpm, cooling, p.rng)
		if i < 0 {
			break
		}
		var incr *redis.IntCmd
		_, err := p.rdb.Pipelined(ctx, func(pl redis.Pipeliner) error {
			incr = pl.Incr(ctx, names[i])
			pl.Expire(ctx, names[i], 2*time.Minute)
			return nil
		})
		if err != nil {
			return skewTake{wait: 10 * time.Millisecond}
		}
		if incr.Val() <= p.rpm {
			return skewTake{key: p.keys[i]}
		}
		counts[i] = incr.Val()
	}
	// Nothing has room: the next minute, or the first cooldown to end.
	wait := time.Unix((minute+1)*60, 0).Sub(now)
	for _, until := range p.cooling {
		if until.After(now) {
			wait = min(wait, until.Sub(now))
		}
	}
	return skewTake{wait: max(wait, time.Millisecond)}
}

// routerChoice is the key a router picks: the one its counters give the
// most room (rpm − count) among those under rpm and not cooling, ties at
// random; -1 when none has room.
func routerChoice(counts []int64, rpm int64, cooling []bool, rng *mrand.Rand) int {
	best, ties := -1, 0
	for i, c := range counts {
		if cooling[i] || c >= rpm {
			continue
		}
		switch {
		case best < 0 || c < counts[best]:
			best, ties = i, 1
		case c == counts[best]:
			// Reservoir sampling: each of the tied keys with equal chance.
			ties++
			if rng.IntN(ties) == 0 {
				best = i
			}
		}
	}
	return best
}

func (p *routerPicker) refused(key string, retry time.Duration) time.Duration {
	for i, k := range p.keys {
		if k == key {
			p.cooling[i] = time.Now().Add(retry)
		}
	}
	return 0 // another key may have room now
}

func (p *routerPicker) homes() []string { return nil }

func (p *routerPicker) close(context.Context) { _ = p.rdb.Close() }

// ipModStrategy is IP mod N: each node calls keys[last IP octet mod keys].
type ipModStrategy struct{}

func (ipModStrategy) name() string                            { return "IP mod N (no coordination)" }
func (ipModStrategy) setup(context.Context, *skewBench) error { return nil }
func (ipModStrategy) teardown(context.Context, *skewBench)    {}
func (ipModStrategy) node(_ context.Context, sb *skewBench, n *skewNode) (skewPicker, error) {
	ip := net.ParseIP(n.ip).To4()
	if ip == nil {
		return nil, fmt.Errorf("skew: node %d: %q is no IPv4 address", n.id, n.ip)
	}
	i := int(ip[3]) % len(sb.keys)
	return &ipModPicker{key: sb.keys[i], group: groupName(i)}, nil
}

// ipModPicker is one IP mod N node.
type ipModPicker struct{ key, group string }

func (p *ipModPicker) pick(context.Context) skewTake                       { return skewTake{key: p.key} }
func (p *ipModPicker) refused(_ string, retry time.Duration) time.Duration { return retry }
func (p *ipModPicker) homes() []string                                     { return []string{p.group} }
func (p *ipModPicker) close(context.Context)                               {}
