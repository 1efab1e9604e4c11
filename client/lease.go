package client

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Health is what a node knows about its own standing, from its beats.
type Health struct {
	// Connected is true when the last beat reached Redis within two beat
	// intervals. False means Redis is away (or slow): the node keeps serving
	// its current assignment and retries with backoff.
	Connected bool
	// LeaseValid is true while a beat succeeded less than a TTL ago: the
	// coordinator cannot reap the node, and it may use its capped groups.
	// False means the lease is lost (or not yet won): capped groups are
	// withheld and, once Redis answers, the node re-registers and is
	// planned again as a new member.
	LeaseValid bool
	// LastBeat is when the last successful beat was sent (zero: never).
	LastBeat time.Time
	// LeaseUntil is LastBeat + TTL.
	LeaseUntil time.Time
	// Err is the last error talking to Redis while not Connected.
	Err error
}

// Health reports the node's standing now. It takes the client's lock
// briefly; poll it (e.g. from a readiness probe), it never blocks on Redis.
func (c *Client) Health() Health {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.o.now()
	h := Health{LeaseUntil: c.leaseUntil}
	if !c.leaseUntil.IsZero() {
		h.LastBeat = c.leaseUntil.Add(-c.o.heartbeat.TTL)
		h.Connected = now.Sub(h.LastBeat) <= 2*c.o.heartbeat.Interval
		h.LeaseValid = !c.lapsed && now.Before(c.leaseUntil)
	}
	if !h.Connected {
		h.Err = c.lastErr
	}
	return h
}

// Done is closed once the client stops for good: when Close begins. The
// client never gives up on its own — while Redis is away it keeps serving
// its current assignment and reconnects with backoff, and after a lost
// lease it rejoins — so a node that must react to those watches Health
// instead. Done lets goroutines that live as long as the client end with
// it, as etcd's Session.Done does.
func (c *Client) Done() <-chan struct{} { return c.ctx.Done() }

// slogRedisLogger routes go-redis's internal log lines (dial failures, pool
// errors during an outage) to a slog.Logger at warn level.
type slogRedisLogger struct{ log *slog.Logger }

func (l slogRedisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.WarnContext(ctx, fmt.Sprintf(format, v...), "source", "go-redis")
}

var redisLoggerMu sync.Mutex

// routeRedisLogger points go-redis's logger at l. go-redis has one logger
// per process (redis.SetLogger is global), so the most recently started
// client with WithLogger receives every client's lines; without WithLogger
// go-redis's default (stderr) is left alone.
func routeRedisLogger(l *slog.Logger) {
	redisLoggerMu.Lock()
	defer redisLoggerMu.Unlock()
	redis.SetLogger(slogRedisLogger{log: l})
}
