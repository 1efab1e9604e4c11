package devredis

import (
	"fmt"
	"sync"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// clockTick is how often key TTLs of the embedded Redis advance.
const clockTick = 100 * time.Millisecond

// Redis is an embedded in-memory Redis on 127.0.0.1 (random port). Its
// state is lost on Close.
type Redis struct {
	m    *miniredis.Miniredis
	stop chan struct{}
	done chan struct{}
	once sync.Once
}

// Start runs an embedded Redis. miniredis never expires keys on its own, so
// a goroutine advances its TTL clock with wall time (the rebalance lock and
// rate limiter keys rely on expiry); Close stops it.
func Start() (*Redis, error) {
	m := miniredis.NewMiniRedis()
	if err := m.StartAddr("127.0.0.1:0"); err != nil {
		return nil, fmt.Errorf("devredis: start: %w", err)
	}
	r := &Redis{m: m, stop: make(chan struct{}), done: make(chan struct{})}
	go r.clock()
	return r, nil
}

func (r *Redis) clock() {
	defer close(r.done)
	t := time.NewTicker(clockTick)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-r.stop:
			return
		case now := <-t.C:
			r.m.FastForward(now.Sub(last))
			last = now
		}
	}
}

// Addr is the host:port the embedded Redis listens on.
func (r *Redis) Addr() string { return r.m.Addr() }

// URL is the redis:// URL of the embedded Redis.
func (r *Redis) URL() string { return "redis://" + r.m.Addr() }

// Client returns a new go-redis client of the embedded Redis; the caller
// closes it.
func (r *Redis) Client() *redis.Client {
	return redis.NewClient(&redis.Options{Addr: r.m.Addr(), Protocol: 2})
}

// Close stops the clock and the server; every key is lost.
func (r *Redis) Close() {
	r.once.Do(func() {
		close(r.stop)
		<-r.done
		r.m.Close()
	})
}
