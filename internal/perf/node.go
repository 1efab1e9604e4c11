package perf

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/allot-io/allot/allocator"
	"github.com/allot-io/allot/client"
	"github.com/allot-io/allot/heartbeat"
	"github.com/allot-io/allot/internal/killswitch"
	"github.com/allot-io/allot/internal/redisurl"
	"github.com/allot-io/allot/registry"
)

// nodeView is what one simulated node currently uses: the groups of its
// assignment at their versions, and when it saw them.
type nodeView struct {
	epoch  int64
	dirty  bool             // read while holder counts were ahead of the epoch: read on the next event
	groups map[string]int64 // group name -> version
	at     time.Time        // when the view last changed (epoch, share, groups)
	// since is when each group entered the view: when the node started
	// using it (kept from the previous view while the group stays).
	since map[string]time.Time
}

// newView returns the view of groups (name -> version) at epoch, seen now,
// carrying over from old when each group was first used.
func newView(old *nodeView, epoch int64, groups map[string]int64, now time.Time) *nodeView {
	v := &nodeView{epoch: epoch, groups: groups, at: now, since: make(map[string]time.Time, len(groups))}
	for g := range groups {
		t, ok := time.Time{}, false
		if old != nil {
			t, ok = old.since[g]
		}
		if !ok {
			t = now
		}
		v.since[g] = t
	}
	return v
}

// epochOr returns the view's epoch, or or when there is no view.
func (v *nodeView) epochOr(or int64) int64 {
	if v == nil {
		return or
	}
	return v.epoch
}

// names returns the view's group names, sorted.
func (v *nodeView) names() []string {
	if v == nil {
		return nil
	}
	out := make([]string, 0, len(v.groups))
	for g := range v.groups {
		out = append(out, g)
	}
	slices.Sort(out)
	return out
}

// usesExactly reports whether the view holds exactly the groups want.
func (v *nodeView) usesExactly(want []string) bool {
	if v == nil || len(v.groups) != len(want) {
		return false
	}
	for _, g := range want {
		if _, ok := v.groups[g]; !ok {
			return false
		}
	}
	return true
}

// perfNode is one member of the simulated pool: a real client.Client or a
// lighter stand-in making the same round trips.
type perfNode interface {
	id() string
	ip() string
	view() *nodeView
	// epoch is the assignment epoch the node is at (read or adopted).
	epoch() int64
	start(ctx context.Context) error
	// kill stops the node as a crash would: no more beats, no leave.
	kill()
	// leave stops the node gracefully: it deregisters and rebalances.
	leave(ctx context.Context) error
	// close releases what the node holds; it never leaves the pool.
	close(ctx context.Context)
}

// clientNode is a real client.Client on a Redis client of its own (a small
// pool, as a node process would have), so it can be killed alone.
type clientNode struct {
	h        *perfHarness
	nid, nip string
	rdb      redis.UniversalClient
	ownsRDB  bool // false: a clone on the harness's shared pool (ModeShared)
	sw       *killswitch.Switch
	c        *client.Client
	v        atomic.Pointer[nodeView]
}

func newClientNode(h *perfHarness, id, ip string) (*clientNode, error) {
	var rdb redis.UniversalClient
	owns := true
	if sc, ok := h.shared.(*redis.Client); ok && h.mode == ModeShared {
		// A clone shares the pool but has hooks of its own, so the kill
		// switch stops this node alone.
		rdb, owns = sc.WithTimeout(sc.Options().ReadTimeout), false
	} else {
		var err error
		if rdb, err = redisurl.Open(h.cfg.URL, redisurl.WithPoolSize(4)); err != nil {
			return nil, err
		}
	}
	sw := killswitch.New(errKilled)
	rdb.AddHook(sw)
	rdb.AddHook(h.counter)
	c, err := client.New(rdb,
		client.WithNamespace(h.cfg.Namespace), client.WithNodeID(id), client.WithIP(ip),
		client.WithHeartbeat(heartbeat.Config{Interval: h.cfg.Interval, TTL: h.cfg.TTL}))
	if err != nil {
		if owns {
			_ = rdb.Close()
		}
		return nil, err
	}
	n := &clientNode{h: h, nid: id, nip: ip, rdb: rdb, ownsRDB: owns, sw: sw, c: c}
	c.OnChange(func(_, a client.Assignment) {
		groups := make(map[string]int64, len(a.Groups))
		for _, g := range a.Groups {
			groups[g.Name] = g.Version
		}
		n.v.Store(newView(n.v.Load(), a.Epoch, groups, time.Now()))
		h.viewChanged()
	})
	return n, nil
}

func (n *clientNode) id() string                      { return n.nid }
func (n *clientNode) ip() string                      { return n.nip }
func (n *clientNode) view() *nodeView                 { return n.v.Load() }
func (n *clientNode) epoch() int64                    { return n.c.Assignment().Epoch }
func (n *clientNode) start(ctx context.Context) error { return n.c.Start(ctx) }
func (n *clientNode) kill()                           { n.sw.Kill() }
func (n *clientNode) leave(ctx context.Context) error { return n.c.Close(ctx) }

func (n *clientNode) close(ctx context.Context) {
	n.sw.Kill() // Close must not leave: the namespace is dropped anyway.
	_ = n.c.Close(ctx)
	if n.ownsRDB {
		_ = n.rdb.Close()
	}
}

// simNode stands in for a client.Client when thousands of them would not
// fit one process: the same beat (one round trip per interval), the same
// read of its assignment when the beat's epoch or revision moves or an
// event names it, and the same rebalance when the beat asks for one. It
// differs from the client in two ways: it shares one pooled Redis client and
// one events subscription with every other simulated node.
type simNode struct {
	h        *perfHarness
	nid, nip string
	session  string // heartbeat.NewSession: the process holding the ID
	v        atomic.Pointer[nodeView]
	wake     chan struct{}
	stop     chan struct{}
	done     chan struct{}
	stopOnce sync.Once
	ready    chan struct{}
	readyOne sync.Once
	lastRev  atomic.Int64 // group revision the view covers (an event may adopt the next one)
	eventRev atomic.Int64 // highest revision of a held group's event: the read it wakes covers it

	rebalancing atomic.Bool
	stopped     atomic.Bool
	started     atomic.Bool
}

func newSimNode(h *perfHarness, id, ip string) *simNode {
	return &simNode{
		h: h, nid: id, nip: ip, session: heartbeat.NewSession(),
		wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
		ready: make(chan struct{}),
	}
}

func (n *simNode) id() string      { return n.nid }
func (n *simNode) ip() string      { return n.nip }
func (n *simNode) view() *nodeView { return n.v.Load() }
func (n *simNode) epoch() int64    { return n.v.Load().epochOr(0) }

// start runs the node's loop and waits for its first assignment read.
func (n *simNode) start(ctx context.Context) error {
	n.started.Store(true)
	go n.run()
	select {
	case <-n.ready:
		return nil
	case <-ctx.Done():
		n.kill()
		return ctx.Err()
	}
}

func (n *simNode) run() {
	defer close(n.done)
	h := n.h
	iv := h.cfg.Interval
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-n.stop:
			return
		case <-n.wake:
			_ = n.fetch(h.ctx, n.eventRev.Load())
			continue
		case <-t.C:
		}
		if err := n.tick(h.ctx); err != nil {
			t.Reset(iv / 8)
			continue
		}
		t.Reset(iv - rand.N(iv/10+1))
	}
}

func (n *simNode) tick(ctx context.Context) error {
	h := n.h
	v := n.v.Load()
	var ack int64
	if v != nil {
		ack = v.epoch
	}
	reply, err := h.nodeHB.Beat(ctx, heartbeat.Beat{Node: n.nid, Session: n.session, IP: n.nip, Held: v.names(), Ack: ack})
	if err != nil {
		return err
	}
	if reply.Work && reply.First && n.rebalancing.CompareAndSwap(false, true) {
		h.workers.Go(func() {
			defer n.rebalancing.Store(false)
			_, _ = h.nodeRB.Run(h.ctx)
		})
	}
	if v == nil || reply.Epoch != v.epoch || reply.Rev != n.lastRev.Load() {
		// As the client: a change one step ahead waits a little for its
		// event before reading.
		if de, dr := reply.Epoch-v.epochOr(-1), reply.Rev-n.lastRev.Load(); v != nil && !v.dirty && (de == 0 || de == 1) && (dr == 0 || dr == 1) {
			h.workers.Go(func() {
				t := time.NewTimer(min(h.cfg.Interval/8, 250*time.Millisecond))
				defer t.Stop()
				select {
				case <-n.stop:
					return
				case <-t.C:
				}
				if cur := n.v.Load(); cur == nil || cur.epoch < reply.Epoch || n.lastRev.Load() < reply.Rev {
					_ = n.fetch(h.ctx, reply.Rev)
				}
			})
			return nil
		}
		return n.fetch(ctx, reply.Rev)
	}
	return nil
}

func (n *simNode) fetch(ctx context.Context, rev int64) error {
	view, err := n.h.nodeReg.NodeAssignment(ctx, n.nid)
	if err != nil {
		return err
	}
	epoch, groups := view.Epoch, view.Groups
	if rev >= 0 {
		for {
			old := n.lastRev.Load()
			if old >= rev || n.lastRev.CompareAndSwap(old, rev) {
				break
			}
		}
	}
	if n.stopped.Load() {
		return nil
	}
	versions := make(map[string]int64, len(groups))
	for _, g := range groups {
		versions[g.Name] = g.Version
	}
	old := n.v.Load()
	v := newView(old, epoch, versions, time.Now())
	v.dirty = view.Dirty
	if old == nil || old.epoch != v.epoch || old.dirty != v.dirty || !sameVersions(old.groups, v.groups) {
		n.v.Store(v)
		n.h.viewChanged()
	}
	n.readyOne.Do(func() { close(n.ready) })
	return nil
}

// onEvent does what client.Client does with a pushed event: an assignment
// event that concerns the node (names it or a group it holds) or skips an
// epoch wakes a read, one that does not is adopted without a read; a group
// event wakes the holders' reads and lets the others adopt the revision.
func (n *simNode) onEvent(ev registry.Event) {
	v := n.v.Load()
	if ev.Type == registry.EventAssignment {
		switch {
		case v == nil || v.dirty:
			n.wakeFetch()
		case ev.Epoch <= v.epoch:
		case ev.Epoch == v.epoch+1 && !ev.Concerns(n.nid, v.names()):
			// Only the epoch moves: as with client.Client (no OnChange),
			// the view has not changed for the node's groups.
			n.v.CompareAndSwap(v, &nodeView{epoch: ev.Epoch, groups: v.groups, at: v.at, since: v.since})
		default:
			n.wakeFetch()
		}
		return
	}
	if v == nil {
		return
	}
	if _, held := v.groups[ev.Group]; held {
		for {
			old := n.eventRev.Load()
			if old >= ev.Rev || n.eventRev.CompareAndSwap(old, ev.Rev) {
				break
			}
		}
		n.wakeFetch()
		return
	}
	if ev.Rev > 0 {
		n.lastRev.CompareAndSwap(ev.Rev-1, ev.Rev)
	}
}

func (n *simNode) wakeFetch() {
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

func (n *simNode) halt() {
	n.stopOnce.Do(func() {
		n.stopped.Store(true)
		close(n.stop)
	})
	if n.started.Load() {
		<-n.done
	}
}

func (n *simNode) kill() { n.halt() }

// leave does what client.Close does: stop, deregister, then rebalance,
// retrying a taken lock for up to one interval.
func (n *simNode) leave(ctx context.Context) error {
	n.halt()
	n.v.Store(&nodeView{at: time.Now()})
	n.h.viewChanged()
	if err := n.h.nodeHB.Leave(ctx, n.nid, n.session); err != nil {
		return err
	}
	deadline := time.Now().Add(n.h.cfg.Interval)
	for {
		_, err := n.h.nodeRB.Run(ctx)
		if !errors.Is(err, allocator.ErrLocked) || time.Now().After(deadline) {
			return nil
		}
		t := time.NewTimer(time.Millisecond + rand.N(n.h.cfg.Interval/20+1))
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

func (n *simNode) close(context.Context) { n.halt() }

func sameVersions(a, b map[string]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}
