package client

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/allot-io/allot/allocator"
	"github.com/allot-io/allot/heartbeat"
	"github.com/allot-io/allot/registry"
)

// beatLoop sends one beat per interval (a little early, never late) and
// backs off exponentially with jitter while Redis is unreachable. It never
// waits for a fetch or a plan: those run on their own goroutines, so a slow
// read cannot make this node miss its TTL.
func (c *Client) beatLoop() {
	defer c.workers.Done()
	ctx := c.ctx
	timer := time.NewTimer(0)
	defer timer.Stop()
	failures := 0
	triedCache := false
	inUseLogged := false
	for {
		early := false
		select {
		case <-ctx.Done():
			return
		case <-c.wakeBeat:
			early = true
		case <-timer.C:
		}
		if !c.waitIfPaused(ctx) {
			return
		}
		err := c.tick(ctx)
		if err == nil {
			if failures > 0 {
				c.log.Info("allot: redis reachable again", "failures", failures)
			}
			failures = 0
			inUseLogged = false
			if early {
				// An extra beat (a release, an event that asks it) keeps the
				// regular one where it was: every node woken by one event
				// must not beat in step from then on.
				continue
			}
			iv := c.o.heartbeat.Interval
			timer.Reset(iv - c.o.jitter(iv/10))
			continue
		}
		if ctx.Err() != nil {
			return
		}
		if inUse := (*heartbeat.InUseError)(nil); errors.As(err, &inUse) {
			// Redis is fine; the ID is another process's until it leaves or
			// expires. Retry each interval (no cache: this is not an outage).
			c.idInUse(err, !inUseLogged, inUse)
			inUseLogged = true
			timer.Reset(c.o.heartbeat.Interval)
			continue
		}
		if errors.Is(err, heartbeat.ErrTooManyNodes) {
			// Redis is fine; the namespace is at its max_live_nodes. Retry
			// each interval, as for an ID in use: a node may leave.
			c.mu.Lock()
			c.lastErr = err
			c.mu.Unlock()
			if !inUseLogged {
				c.log.Warn("allot: the namespace has its max_live_nodes; retrying each interval", "node", c.o.nodeID, "err", err)
			}
			inUseLogged = true
			timer.Reset(c.o.heartbeat.Interval)
			continue
		}
		failures++
		c.mu.Lock()
		c.lastErr = err
		c.mu.Unlock()
		reloadClusterState(c.rdb)
		if failures == 1 {
			c.log.Warn("allot: redis unreachable; serving the current assignment and retrying", "err", err)
		}
		if !triedCache && !c.isReady() {
			triedCache = true
			c.startFromCache()
		}
		timer.Reset(c.backoff(failures))
	}
}

// idInUse records a beat refused because another session holds the node
// ID. A node that had joined was displaced (it went a TTL without a beat and
// another process took the ID): it stops using every group at once.
func (c *Client) idInUse(err error, log bool, inUse *heartbeat.InUseError) {
	c.mu.Lock()
	c.lastErr = err
	if c.joined && !c.displaced {
		c.displaced = true
		c.publishLocked()
	}
	c.mu.Unlock()
	if log {
		c.log.Warn("allot: node id in use by another process; waiting for it to leave or expire",
			"node", c.o.nodeID, "held_for_at_least", inUse.Remaining)
	}
}

// reloadClusterState makes a Cluster client re-read its slot map. go-redis
// reloads it only on a MOVED/ASK reply or every ClusterStateReloadInterval
// (60 s by default), so after a master dies and its replica is promoted every
// command keeps going to the dead address; reloading after a failed beat lets
// a node follow a failover within a beat or two.
func reloadClusterState(rdb redis.UniversalClient) {
	if cc, ok := rdb.(*redis.ClusterClient); ok {
		cc.ReloadState(context.Background())
	}
}

// fetchLoop re-reads the assignment whenever a beat, a pushed event or a
// finished plan says it (or a held group) moved. A failed read is retried
// with backoff (and at the next beat, whichever comes first); it never
// holds up the beat loop, which runs on its own goroutine.
func (c *Client) fetchLoop() {
	defer c.workers.Done()
	ctx := c.ctx
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	failures := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.wakeFetch:
		case <-retry.C:
		}
		if !c.waitIfPaused(ctx) {
			return
		}
		retry.Stop()
		err := c.fetch(ctx)
		c.noteFetch(err)
		if err == nil || ctx.Err() != nil {
			failures = 0
			continue
		}
		failures++
		c.mu.Lock()
		c.lastErr = err
		c.mu.Unlock()
		c.log.Debug("allot: fetch failed; retrying with backoff", "err", err, "failures", failures)
		retry.Reset(c.backoff(failures))
	}
}

// backoff is the wait before retry number failures: exponential from an
// eighth of the interval, capped at the interval, with equal jitter.
func (c *Client) backoff(failures int) time.Duration {
	iv := c.o.heartbeat.Interval
	d := iv / 8
	for i := 1; i < failures && d < iv; i++ {
		d *= 2
	}
	d = min(d, iv)
	return d/2 + c.o.jitter(d/2)
}

// tick beats once, starts a plan when asked to, and wakes the fetcher
// when the reply shows the assignment (or a group) moved. Before the first
// assignment, a requested plan runs first and wakes the fetcher when done,
// so Start returns with the planned assignment.
func (c *Client) tick(ctx context.Context) error {
	reply, err := c.beat(ctx)
	if err != nil {
		return err
	}
	// A catalog older than the beat's revision may have lost an event.
	c.lend.saw(reply.Rev)
	ready := c.isReady()
	fetchAfterPlan := false
	if reply.Work && reply.First {
		fetchAfterPlan = c.rebalanceAsync(!ready) && !ready
	}
	if !fetchAfterPlan && c.needFetch(reply) {
		if c.eventMayCover(reply) {
			c.fetchUnlessCovered(reply)
		} else {
			signal(c.wakeFetch)
		}
	}
	return nil
}

// eventMayCover reports whether the change reply shows is one step past
// what this node has read (the next epoch, the next revision), so that its
// event is probably on the way: the commit publishes it before any later
// beat can see the new epoch, but delivering it to thousands of subscribers
// takes a moment, and most of those nodes need not read at all.
func (c *Client) eventMayCover(reply heartbeat.Reply) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.raw == nil || c.fromCache || !c.trusted || c.rawDirty || c.askBeat >= reply.Epoch {
		// (An event that asked this beat has come already: no wait.)
		return false
	}
	de, dr := reply.Epoch-c.raw.Epoch, reply.Rev-c.lastRev
	return (de == 0 || de == 1) && (dr == 0 || dr == 1)
}

// fetchUnlessCovered waits a little for the event of the change reply
// shows and reads only if it has not come (lost, or it concerns this node
// and the read is already queued): a lost event costs at most this wait
// more than a beat.
func (c *Client) fetchUnlessCovered(reply heartbeat.Reply) {
	wait := min(c.o.heartbeat.Interval/8, 250*time.Millisecond)
	c.workers.Add(1)
	go func() {
		defer c.workers.Done()
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
		}
		c.mu.Lock()
		covered := c.raw != nil && c.raw.Epoch >= reply.Epoch && c.lastRev >= reply.Rev
		c.mu.Unlock()
		if !covered {
			signal(c.wakeFetch)
		}
	}()
}

// callTimeout bounds one Redis call of the loop so a hung server cannot
// freeze it; the lease watcher protects capped groups independently.
func (c *Client) callTimeout() time.Duration { return c.o.heartbeat.TTL }

// beat sends one beat reporting the groups in use and updates the lease.
func (c *Client) beat(ctx context.Context) (heartbeat.Reply, error) {
	c.mu.Lock()
	c.lapseIfDueLocked()
	held := c.heldLocked()
	var ack int64
	if a := c.cur.Load(); a != nil {
		ack = a.Epoch
	}
	// The reply's HeldRev speaks for raw's groups only if the beat reports
	// all of them and no read replaces raw before the reply is used.
	covers := c.raw != nil && !c.fromCache && subset(c.raw.Names(), held)
	exact := covers && len(c.raw.Groups) == len(held)
	seq, rev := c.rawSeq, c.lastRev
	c.mu.Unlock()

	sent := c.o.now()
	bctx, cancel := context.WithTimeout(ctx, c.callTimeout())
	b := heartbeat.Beat{
		Node: c.o.nodeID, Session: c.session, IP: c.o.ip, Preferred: c.o.preferred, Held: held, Ack: ack, Rev: rev,
	}
	if !c.o.noDemand {
		demand := c.demand.rate()
		b.Demand = &demand
	}
	reply, err := c.hb.Beat(bctx, b)
	if errors.Is(err, heartbeat.ErrInvalidDemand) {
		// The node's liveness never hangs on a figure: say so once and beat
		// without it (Go refuses it before any round trip).
		c.demand.refused(err)
		b.Demand = nil
		reply, err = c.hb.Beat(bctx, b)
	}
	cancel()
	if err != nil {
		return reply, err
	}

	c.mu.Lock()
	if reply.Joined {
		// A join: the first beat of this process, or a rejoin after the
		// node was reaped. Whatever it read before this beat — a read in a
		// lapse that still named its capped groups, or, before the first
		// beat, the entry of a process that had this ID — describes a
		// membership that has ended, and its groups may have been handed on.
		c.trusted = false
		c.gen++
	}
	c.joined = true
	c.lapsed = false
	if c.displaced {
		// The ID is ours again; what was read meanwhile was another
		// process's assignment.
		c.displaced = false
		c.trusted = false
		c.gen++
	}
	if seq != c.rawSeq && reply.Epoch <= c.readEpoch {
		// A read ended while this beat was on its way, and saw the
		// reply's epoch or a later one: the reply is older than the read
		// and confirms nothing the read did not (taking its epoch would
		// make the next wake-up read again).
		c.seenRev = max(c.seenRev, reply.Rev)
	} else {
		c.seenRev, c.seenEpoch = reply.Rev, reply.Epoch
	}
	if covers && seq == c.rawSeq && c.trusted && reply.HeldRev <= c.readRev && reply.Rev > c.lastRev {
		// Groups were written since the read, none of them held: the node
		// hears only its own groups' events, and need not read for others.
		c.lastRev = reply.Rev
	}
	if exact && seq == c.rawSeq && c.trusted && !c.rawDirty && reply.EntryIsHeld && !reply.Dirty && reply.Epoch > c.raw.Epoch {
		// The pool changed elsewhere: this node's entry is what it read and
		// the beat gives its groups' holder counts. No event came (only the
		// nodes a change concerns get one); take the epoch without a read.
		c.adoptLocked(reply.Epoch, reply.Holders)
		c.beatAdopted.Add(1)
	}
	hadLease := c.o.now().Before(c.leaseUntil)
	if until := sent.Add(c.o.heartbeat.TTL); until.After(c.leaseUntil) {
		c.leaseUntil = until
	}
	if !hadLease {
		// The last publish withheld capped groups for want of a lease. If
		// what the node read is still trusted (it was not reaped: no
		// rejoin above), they are its own again now; a quiet pool may
		// send no event or epoch that would publish them otherwise.
		c.publishLocked()
	}
	c.mu.Unlock()
	signal(c.wakeLease)
	return reply, nil
}

// subset reports whether every one of names (sorted or not) is in held.
func subset(names, held []string) bool {
	for _, n := range names {
		if !slices.Contains(held, n) {
			return false
		}
	}
	return true
}

// heldLocked is what the node is using: the groups of the current
// assignment plus those whose removal OnChange has not yet delivered —
// except the capped groups a lapse voided (the node has no claim on them).
func (c *Client) heldLocked() []string {
	cur := c.cur.Load()
	held := make([]string, 0, len(c.delivered))
	for _, g := range c.delivered {
		if !c.voided[g] || (cur != nil && cur.Holds(g)) {
			held = append(held, g)
		}
	}
	if cur != nil {
		for _, g := range cur.Groups {
			if !slices.Contains(held, g.Name) {
				held = append(held, g.Name)
			}
		}
	}
	slices.Sort(held)
	return held
}

// needFetch reports whether reply shows something the node has not read.
func (c *Client) needFetch(reply heartbeat.Reply) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.raw == nil || c.fromCache ||
		reply.Epoch != c.raw.Epoch || reply.Rev != c.lastRev || !c.trusted
}

// rebalanceAsync runs the rebalancer on its own goroutine, at most one at
// a time, so beats never stall behind a plan. With thenFetch the fetcher
// is woken when the plan is done. It reports whether a plan was started.
func (c *Client) rebalanceAsync(thenFetch bool) bool {
	if !c.rebalancing.CompareAndSwap(false, true) {
		return false
	}
	c.workers.Add(1)
	go func() {
		defer c.workers.Done()
		c.rebalance(c.ctx)
		if thenFetch {
			c.forceFetch()
		}
		c.releaseRebalancing()
	}()
	return true
}

// rebalance runs one plan; another planner holding the lock is normal.
func (c *Client) rebalance(ctx context.Context) {
	_, err := c.rb.Run(ctx)
	switch {
	case err == nil, errors.Is(err, allocator.ErrLocked), ctx.Err() != nil:
	default:
		c.log.Debug("allot: rebalance failed", "err", err)
	}
}

// groupFromDoc is what a node holds of group document g, at share.
func groupFromDoc(g registry.Group, share float64) Group {
	return Group{Name: g.Name, Version: g.Version, Config: g.Config, Share: share, Quota: g.Quota, MaxNodes: g.MaxNodes}
}

// forceFetch wakes the fetcher for a read it may not skip.
func (c *Client) forceFetch() {
	c.mu.Lock()
	c.forceRead = true
	c.mu.Unlock()
	signal(c.wakeFetch)
}

// readCoveredLocked reports whether a read would tell the node nothing new:
// raw is a trusted, clean read at the epoch Redis last showed the node (its
// last beat, or a read that ended after that beat was sent) and of every
// event that asked for a read, and covers the revision of the last beat and
// of every held group's event. An epoch adopted from an event that neither
// confirms is not covered: the read puts the true one back. A wake-up left by a beat that saw the new
// epoch while the read for it was already queued is then dropped: after a
// change that makes every node read (a weight change at 10,000 nodes),
// thousands of them used to read twice.
func (c *Client) readCoveredLocked() bool {
	return !c.forceRead && c.raw != nil && !c.fromCache && c.trusted && !c.rawDirty &&
		c.raw.Epoch == c.seenEpoch && c.raw.Epoch >= c.wantEpoch &&
		c.lastRev >= max(c.seenRev, c.eventRev)
}

// fetch reads the node's assignment and publishes it, unless the read is
// covered already.
func (c *Client) fetch(ctx context.Context) error {
	c.mu.Lock()
	if c.readCoveredLocked() {
		c.mu.Unlock()
		return nil
	}
	c.forceRead = false
	// The read starts after the last beat and after any held group's event
	// it was woken for, so it covers both revisions.
	gen, rev, want, docs := c.gen, max(c.seenRev, c.eventRev), c.wantEpoch, c.docAdopted.Load()
	c.mu.Unlock()

	fctx, cancel := context.WithTimeout(ctx, c.callTimeout())
	defer cancel()
	c.fetches.Add(1)
	view, err := c.reg.NodeAssignment(fctx, c.o.nodeID)
	if err != nil {
		return fmt.Errorf("client: read assignment: %w", err)
	}

	a := &Assignment{Epoch: view.Epoch}
	for _, g := range view.Groups {
		a.Groups = append(a.Groups, groupFromDoc(g, 1/float64(view.Holders[g.Name])))
	}
	slices.SortFunc(a.Groups, func(x, y Group) int {
		switch {
		case x.Name < y.Name:
			return -1
		case x.Name > y.Name:
			return 1
		}
		return 0
	})

	c.mu.Lock()
	if c.docAdopted.Load() != docs && view.Rev < c.readRev {
		// A held group's new document was taken from its event while this
		// read was under way, and the read is older: installing it would
		// roll the group back to its previous version. Read again.
		c.mu.Unlock()
		c.forceFetch()
		return nil
	}
	changed := c.raw == nil || c.fromCache || !c.raw.same(*a)
	c.raw, c.fromCache, c.rawDirty = a, false, view.Dirty
	c.rawSeq++
	// What a read sees, Redis holds: its epoch is confirmed as a beat's
	// would be (see readCoveredLocked).
	c.readEpoch = view.Epoch
	c.seenEpoch = max(c.seenEpoch, view.Epoch)
	if c.wantEpoch == want {
		// An event's epoch the read, which started after it, did not reach
		// was not a real one: forget it (one raised meanwhile stays).
		c.wantEpoch = min(c.wantEpoch, view.Epoch)
	}
	c.trusted = gen == c.gen
	// The read saw every group write up to view.Rev (and started after
	// the beat and the events that showed rev).
	c.readLocked(max(view.Rev, rev))
	c.publishLocked()
	c.mu.Unlock()

	if changed {
		c.saveCache(*a)
		c.followGroups()
	}
	c.markReady()
	return nil
}

// publishLocked derives what readers may see from raw — without capped
// groups unless they are trusted and the lease holds — and, when that
// differs from the current snapshot, swaps it in and queues OnChange.
func (c *Client) publishLocked() {
	if c.raw == nil || c.closing {
		return
	}
	next := *c.raw
	switch {
	case c.displaced:
		next = Assignment{Epoch: next.Epoch}
	case !c.trusted || !c.o.now().Before(c.leaseUntil):
		next = next.withoutCapped()
	}
	var old Assignment
	if p := c.cur.Load(); p != nil {
		if p.same(next) {
			return
		}
		old = *p
	}
	c.cur.Store(&next)
	for g := range c.voided {
		if next.Holds(g) {
			delete(c.voided, g) // its own again (a renewed lease): claimed as usual
		}
	}
	if old.sameGroups(next) {
		// The first snapshot with nothing assigned, or only the epoch
		// moved (a change elsewhere in the pool): nothing to tell.
		return
	}
	c.queue = append(c.queue, change{old: old, new: next})
	signal(c.wakeDispatch)
}

// watchLease drops capped groups the moment the lease lapses: the last
// successful beat was sent a TTL ago, so the server may reap this node and
// hand them to another one. Uncapped groups keep serving.
func (c *Client) watchLease() {
	defer c.workers.Done()
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		c.mu.Lock()
		until := c.leaseUntil
		c.mu.Unlock()
		if !until.IsZero() {
			if d := until.Sub(c.o.now()); d > 0 {
				t.Reset(d)
			} else {
				c.leaseLapsed()
				t.Stop()
			}
		}
		select {
		case <-c.ctx.Done():
			return
		case <-c.wakeLease:
		case <-t.C:
		}
	}
}

func (c *Client) leaseLapsed() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lapseIfDueLocked()
}

// lapseIfDueLocked drops trust and the capped groups once the lease has run
// out: by the lease watcher, and by a beat about to be sent, which must not
// claim them whichever of the two runs first after a stall (a SIGSTOPped
// process wakes with both timers due).
func (c *Client) lapseIfDueLocked() {
	if c.lapsed || c.leaseUntil.IsZero() || c.o.now().Before(c.leaseUntil) {
		return
	}
	c.lapsed = true
	c.trusted = false
	c.gen++
	c.log.Warn("allot: no successful beat for a TTL; capped groups dropped until redis is back", "ttl", c.o.heartbeat.TTL)
	// Past the lease the node has no claim on its capped groups: those it
	// uses and those whose drop OnChange is still delivering.
	void := func(g string) {
		if c.voided == nil {
			c.voided = make(map[string]bool)
		}
		c.voided[g] = true
	}
	if cur := c.cur.Load(); cur != nil {
		for _, g := range cur.Groups {
			if g.MaxNodes > 0 {
				void(g.Name)
			}
		}
	}
	for _, g := range c.deliveredCapped {
		void(g)
	}
	c.publishLocked()
}

// startFromCache publishes the cached assignment when Redis could not be
// reached before the first one was read.
func (c *Client) startFromCache() {
	a, ok := c.loadCache()
	if !ok {
		return
	}
	c.mu.Lock()
	if c.raw != nil {
		c.mu.Unlock()
		return
	}
	c.raw, c.fromCache, c.trusted = &a, true, false
	c.publishLocked()
	c.mu.Unlock()
	c.followGroups()
	c.log.Info("allot: starting from cached assignment", "epoch", a.Epoch, "groups", len(a.Groups))
	c.markReady()
}

// pause freezes the beat loop (no beats, no fetches) until resume, as a
// stalled process would; the lease watcher keeps running. Tests only.
func (c *Client) pause() {
	c.pauseMu.Lock()
	defer c.pauseMu.Unlock()
	if c.pauseCh == nil {
		c.pauseCh = make(chan struct{})
	}
}

// resume unfreezes a loop frozen by pause.
func (c *Client) resume() {
	c.pauseMu.Lock()
	defer c.pauseMu.Unlock()
	if c.pauseCh != nil {
		close(c.pauseCh)
		c.pauseCh = nil
	}
}

func (c *Client) waitIfPaused(ctx context.Context) bool {
	c.pauseMu.Lock()
	ch := c.pauseCh
	c.pauseMu.Unlock()
	if ch == nil {
		return true
	}
	select {
	case <-ch:
		return true
	case <-ctx.Done():
		return false
	}
}
