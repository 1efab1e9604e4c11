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
		if !held && ev.Rev > c.readRev {
			// Nothing this node reads changed: the beat need not re-read
			// for this revision once the ones before it are covered.
			c.noteUnheldLocked(ev.Rev, ev.Group)
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

// maxUnheld bounds the revisions of unheld groups kept for adoption: past
// it an event is simply not adopted, and the next beat reads.
const maxUnheld = 1024

// noteUnheldLocked records that group revision rev changed group g, which
// this node does not hold, and adopts every revision it can.
func (c *Client) noteUnheldLocked(rev int64, g string) {
	if c.unheld == nil {
		c.unheld = make(map[int64]string)
	}
	if len(c.unheld) < maxUnheld {
		c.unheld[rev] = g
	}
	c.advanceRevLocked()
}

// readLocked records a read at group revision rev (raw is what it read):
// lastRev restarts there and moves over the later revisions events showed
// to change groups the node does not hold now.
func (c *Client) readLocked(rev int64) {
	c.readRev, c.lastRev = rev, rev
	for r := range c.unheld {
		if r <= rev {
			delete(c.unheld, r)
		}
	}
	c.advanceRevLocked()
}

// advanceRevLocked moves lastRev over each next revision whose event
// changed a group the node does not hold (as of the assignment it has
// now): it stops at the first revision it has no event for, or whose
// group the node holds, which only a read covers.
func (c *Client) advanceRevLocked() {
	for {
		g, ok := c.unheld[c.lastRev+1]
		if !ok || (c.raw != nil && c.raw.Holds(g)) {
			return
		}
		c.lastRev++
	}
}
