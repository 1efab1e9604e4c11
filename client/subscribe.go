package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/allot-io/allot/registry"
)

// subscribe follows the events channel so an assignment or group change is
// read at once instead of at the next beat. A plain SUBSCRIBE works on
// Cluster too. On failure it re-subscribes with backoff; a message lost
// meanwhile costs at most one beat, since every beat carries the epoch and
// the group revision.
func (c *Client) subscribe() {
	defer c.workers.Done()
	ctx := c.ctx
	failures := 0
	for {
		err := c.listen(ctx, failures > 0)
		if ctx.Err() != nil {
			return
		}
		failures++
		if failures == 1 {
			c.log.Debug("allot: events subscription lost; re-subscribing", "err", err)
		}
		t := time.NewTimer(c.backoff(failures))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// listen holds one subscription until it fails or ctx ends. After a
// reconnect (resumed) the assignment is re-read, as events may have been
// missed.
func (c *Client) listen(ctx context.Context, resumed bool) error {
	ps := c.rdb.Subscribe(ctx, c.keys.Events())
	defer ps.Close()
	// Receive does not watch ctx: closing the subscription unblocks it.
	stop := context.AfterFunc(ctx, func() { _ = ps.Close() })
	defer stop()

	idle := max(2*c.o.heartbeat.Interval, time.Second)
	for {
		msg, err := ps.ReceiveTimeout(ctx, idle)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				// Quiet channel: check the connection is still there.
				if err := ps.Ping(ctx); err != nil {
					return fmt.Errorf("client: events ping: %w", err)
				}
				continue
			}
			return fmt.Errorf("client: events: %w", err)
		}
		switch m := msg.(type) {
		case *redis.Subscription:
			if resumed {
				signal(c.wakeFetch)
			}
		case *redis.Message:
			c.onEvent(m.Payload)
		}
	}
}

// onEvent wakes a fetch for an assignment change or a change of a group
// this node holds.
func (c *Client) onEvent(payload string) {
	// Most events (joins, leaves, schedules) concern nobody in particular;
	// skip them before paying for a JSON decode.
	if !strings.Contains(payload, `"assignment"`) && !strings.Contains(payload, `"group.`) {
		return
	}
	ev, err := registry.ParseEvent(payload)
	if err != nil {
		c.log.Debug("allot: unreadable event ignored", "err", err)
		return
	}
	switch {
	case ev.Type == registry.EventAssignment:
		c.mu.Lock()
		known := c.raw != nil && !c.fromCache && c.raw.Epoch >= ev.Epoch
		c.mu.Unlock()
		if !known {
			signal(c.wakeFetch)
		}
	case strings.HasPrefix(ev.Type, "group."):
		c.mu.Lock()
		held := c.raw != nil && c.raw.Holds(ev.Group)
		c.mu.Unlock()
		if held {
			signal(c.wakeFetch)
		}
	}
}
