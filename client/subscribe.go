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
	if c.dropEvents.Load() {
		return
	}
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
		c.onAssignment(ev)
	case strings.HasPrefix(ev.Type, "group."):
		c.mu.Lock()
		held := c.raw != nil && c.raw.Holds(ev.Group)
		if !held && ev.Rev > 0 && ev.Rev == c.lastRev+1 {
			// Nothing this node reads changed: the beat need not re-read
			// for this revision.
			c.lastRev = ev.Rev
		}
		if held {
			c.eventRev = max(c.eventRev, ev.Rev)
		}
		c.mu.Unlock()
		if held {
			signal(c.wakeFetch)
		}
	}
}

// onAssignment handles an assignment event. One that names this node or a
// group it holds wakes a read; one that concerns it not, and is the next
// epoch after the one it read, is adopted without a read: nothing this node
// reads changed. Any gap (a missed event) or doubt (nothing read yet, a
// cached or untrusted assignment) reads; a lost event is caught by the next
// beat, which carries the epoch.
func (c *Client) onAssignment(ev registry.Event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.raw == nil || c.fromCache || !c.trusted || c.rawDirty:
		signal(c.wakeFetch)
	case ev.Epoch <= c.raw.Epoch:
		// Already read (or older).
	case ev.Epoch == c.raw.Epoch+1 && !ev.Concerns(c.o.nodeID, c.raw.Names()):
		a := *c.raw
		a.Epoch = ev.Epoch
		c.raw = &a
		c.adopted.Add(1)
		c.publishLocked()
	default:
		signal(c.wakeFetch)
	}
}
