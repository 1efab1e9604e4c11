package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync/atomic"
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

// listen holds one subscription until it fails or ctx ends: to the
// assignment events that name nothing (every node follows them), to those
// that name this node, and to the events of the groups it holds
// (followGroups keeps those in step with the assignment).
// After a reconnect (resumed) the assignment is re-read, as events may have
// been missed.
func (c *Client) listen(ctx context.Context, resumed bool) error {
	ps := c.rdb.Subscribe(ctx, c.keys.AssignmentEvents(), c.keys.NodeEvents(c.o.nodeID))
	defer ps.Close()
	// Receive does not watch ctx: closing the subscription unblocks it.
	stop := context.AfterFunc(ctx, func() { _ = ps.Close() })
	defer stop()
	c.subMu.Lock()
	c.ps, c.channels = ps, c.baseChannels()
	c.subMu.Unlock()
	defer func() {
		c.subMu.Lock()
		c.ps, c.channels = nil, nil
		c.lim.cool.unfollowAll() // no cooldown is announced until the next listen
		c.subMu.Unlock()
	}()
	c.followGroups()

	// A quiet channel is pinged now and then to find a connection that
	// died without a word. Not often: at 10,000 nodes a ping every few
	// seconds each would cost Redis half as much as the beats, and a dead
	// subscription costs only latency (every beat carries the epoch and
	// the group revision).
	idle := max(2*c.o.heartbeat.Interval, eventsPingAfter)
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
			// The first confirmation after a reconnect (ours, or go-redis's
			// own, which re-subscribes by itself): events may have been
			// missed meanwhile.
			if m.Kind == "subscribe" && m.Channel == c.keys.AssignmentEvents() && resumed {
				c.forceFetch()
				c.suspectFollowed() // a group.throttled may have been missed too
				c.lend.readAgain()  // and a change of a group it may borrow
			}
			resumed = true
		case *redis.Message:
			if m.Channel == c.keys.LendEvents() {
				c.onLendEvent(m.Payload)
			} else {
				c.onEvent(m.Payload)
			}
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
	ev, err := parseEvent(payload)
	if err != nil {
		c.log.Debug("allot: unreadable event ignored", "err", err)
		return
	}
	if ev.Type == registry.EventGroupThrottled {
		// Groups without a quota check their cooldown from now on (limit.go).
		c.lim.cool.suspectUntil(ev.Group, time.Now().Add(throttleEventGap))
	}
	switch {
	case ev.Type == registry.EventAssignment:
		c.onAssignment(ev)
	case strings.HasPrefix(ev.Type, "group."):
		c.mu.Lock()
		// An event of a group the node no longer holds (one that came just
		// before the unsubscribe) is ignored: the beat's HeldRev covers it.
		held := c.raw != nil && c.raw.Holds(ev.Group)
		var adopted *Assignment
		if held {
			if adopted = c.adoptDocLocked(ev); adopted == nil {
				c.eventRev = max(c.eventRev, ev.Rev)
			}
		}
		c.mu.Unlock()
		switch {
		case adopted != nil:
			c.saveCache(*adopted)
		case held:
			signal(c.wakeFetch)
		}
	}
}

// baseChannels are the channels a node follows whatever it holds: the
// assignment events, and those that name it.
func (c *Client) baseChannels() map[string]bool {
	return map[string]bool{c.keys.AssignmentEvents(): true, c.keys.NodeEvents(c.o.nodeID): true}
}

// followGroups subscribes to the events of every group the node reads (and
// to the lend channel once it borrows) and unsubscribes from those of
// groups it no longer holds. A write between a
// read that gave the node a group and this subscription is caught by the
// next beat (HeldRev); a failure here is too, and the next listen retries.
func (c *Client) followGroups() {
	c.subMu.Lock()
	defer c.subMu.Unlock()
	if c.ps == nil {
		return
	}
	c.mu.Lock()
	want := c.baseChannels()
	if c.lend.wanted.Load() {
		// A node that borrows follows every revision of the pool's groups.
		want[c.keys.LendEvents()] = true
	}
	groupOf := make(map[string]string)
	if c.raw != nil {
		for _, g := range c.raw.Groups {
			want[c.keys.GroupEvents(g.Name)] = true
			groupOf[c.keys.GroupEvents(g.Name)] = g.Name
		}
	}
	c.mu.Unlock()
	var add, drop []string
	for ch := range want {
		if !c.channels[ch] {
			add = append(add, ch)
		}
	}
	for ch := range c.channels {
		if !want[ch] {
			drop = append(drop, ch)
		}
	}
	ctx, cancel := context.WithTimeout(c.ctx, c.callTimeout())
	defer cancel()
	if len(add) > 0 {
		if err := c.ps.Subscribe(ctx, add...); err != nil {
			c.log.Debug("allot: subscribing to group events failed; beats cover them", "err", err)
			return
		}
	}
	if len(drop) > 0 {
		if err := c.ps.Unsubscribe(ctx, drop...); err != nil {
			c.log.Debug("allot: unsubscribing from group events failed", "err", err)
			return
		}
	}
	c.channels = want
	for _, ch := range drop {
		if g, ok := c.groupOfChannel(ch); ok {
			c.lim.cool.follow(g, false)
		}
	}
	for _, g := range groupOf {
		c.lim.cool.follow(g, true)
	}
}

// groupOfChannel is the group whose event channel ch is.
func (c *Client) groupOfChannel(ch string) (string, bool) {
	return strings.CutPrefix(ch, c.keys.GroupEvents(""))
}

// suspectFollowed makes every followed group without a quota check its
// cooldown once: events may have been lost while the subscription was
// being restored.
func (c *Client) suspectFollowed() {
	now := time.Now()
	c.lim.cool.followed.Range(func(g, _ any) bool {
		c.lim.cool.suspectUntil(g.(string), now)
		return true
	})
}

// adoptDocLocked applies a held group's write from its event, which on the
// group's own channel carries the new document, instead of reading it: when
// the write is the next revision after every one the node has covered, and
// what it read is trusted. It returns the new raw assignment, or nil when
// the node must read.
func (c *Client) adoptDocLocked(ev registry.Event) *Assignment {
	if ev.Doc == "" || c.ignoreDocs.Load() || ev.Rev <= 0 || ev.Rev != c.lastRev+1 ||
		c.raw == nil || c.fromCache || !c.trusted || c.rawDirty {
		return nil
	}
	doc, err := c.reg.ParseGroupDoc(ev.Doc)
	if err != nil || doc.Name != ev.Group || doc.Sealed() != nil {
		return nil // the read says why (and keeps the last good config)
	}
	i := slices.IndexFunc(c.raw.Groups, func(g Group) bool { return g.Name == doc.Name })
	if i < 0 || doc.Version <= c.raw.Groups[i].Version {
		return nil
	}
	a := *c.raw
	a.Groups = slices.Clone(a.Groups)
	a.Groups[i] = groupFromDoc(doc, a.Groups[i].Share)
	c.raw = &a
	c.docAdopted.Add(1)
	c.readLocked(ev.Rev)
	c.publishLocked()
	return &a
}

// eventsPingAfter is how long a quiet events subscription waits before it
// checks its connection with a PING.
const eventsPingAfter = 30 * time.Second

// lastEvent is the last event decoded in this process. Every Client in a
// process receives the same payloads, so a process hosting many nodes (or a
// test harness) decodes each event once instead of once per node.
var lastEvent atomic.Pointer[decodedEvent]

type decodedEvent struct {
	payload string
	ev      registry.Event // read-only: shared by every Client
}

// parseEvent is registry.ParseEvent, reusing the last decode when payload
// is the same.
func parseEvent(payload string) (registry.Event, error) {
	if d := lastEvent.Load(); d != nil && d.payload == payload {
		return d.ev, nil
	}
	ev, err := registry.ParseEvent(payload)
	if err != nil {
		return ev, err
	}
	lastEvent.Store(&decodedEvent{payload: payload, ev: ev})
	return ev, nil
}

// onAssignment handles an assignment event. One that names this node, or a
// group it holds without giving the group's new holder count, wakes a read
// — or, when it names groups only (scope groups), an early beat, which
// reads only if the node's entry changed.
// One that is the next epoch after the one read and leaves this node's
// entry as it is, is adopted without a read: the new epoch, and the new
// share of each held group whose holder count the event gives. Any gap (a
// missed event) or doubt (nothing read yet, a cached or untrusted
// assignment) reads; a lost event is caught by the next beat, which carries
// the epoch.
func (c *Client) onAssignment(ev registry.Event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.raw == nil || c.fromCache || !c.trusted || c.rawDirty {
		signal(c.wakeFetch)
		return
	}
	if ev.Epoch <= c.raw.Epoch {
		return // already read (or older)
	}
	if ev.Epoch <= c.wantEpoch {
		return // a read for it is under way (the copy on another channel)
	}
	counts, ok := ev.Adopt(c.o.nodeID, c.raw.Names())
	if ev.Epoch == c.raw.Epoch+1 && !ok && ev.Scope == registry.ScopeGroups {
		// Too many entries changed for the event to list them: this
		// node's may be one. Its beat tells, at the cost of a beat moved
		// earlier: it compares the committed entry with what the node
		// holds and gives the holder counts, so a node whose entry is
		// unchanged takes the epoch and its shares from it, and only the
		// nodes the plan moved read (tick).
		c.askBeat = max(c.askBeat, ev.Epoch)
		signal(c.wakeBeat)
		return
	}
	if ev.Epoch != c.raw.Epoch+1 || !ok {
		c.wantEpoch = ev.Epoch
		signal(c.wakeFetch)
		return
	}
	c.adoptLocked(ev.Epoch, counts)
	c.adopted.Add(1)
}

// adoptLocked moves raw to epoch without a read, with the share 1/count of
// each of its groups counts gives, and publishes it (OnChange only when a
// share moved).
func (c *Client) adoptLocked(epoch int64, counts map[string]int) {
	a := *c.raw
	a.Epoch = epoch
	if len(counts) > 0 {
		a.Groups = slices.Clone(a.Groups)
		for i, g := range a.Groups {
			if n, ok := counts[g.Name]; ok && n > 0 {
				a.Groups[i].Share = 1 / float64(n)
			}
		}
	}
	c.raw = &a
	c.publishLocked()
}

// readLocked records that raw's documents are current as of group
// revision rev (a read, or a write taken from its event). Later writes to
// groups the node does not hold are covered by the beat (HeldRev).
func (c *Client) readLocked(rev int64) {
	c.readRev, c.lastRev = rev, rev
}
