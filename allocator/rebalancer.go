package allocator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-redsync/redsync/v4"
	"github.com/go-redsync/redsync/v4/redis/goredis/v9"
	"github.com/redis/go-redis/v9"

	"github.com/allot-io/allot/heartbeat"
	"github.com/allot-io/allot/internal/keys"
	"github.com/allot-io/allot/registry"
)

// maxReplans is how many times one run plans again when the membership or
// the groups moved while it planned.
const maxReplans = 2

// MinLockExpiry is the shortest rebalance lock: taking a lock must not take
// longer than the lock lives, even on a busy machine.
const MinLockExpiry = 200 * time.Millisecond

// Rebalancer runs the read-plan-commit cycle. Any number of Rebalancers may run
// against one namespace (every node embeds one): a redsync lock keeps planning
// to one at a time, and the registry's epoch check makes a stale plan harmless
// even when the lock is lost (GC pause, expiry).
//
// A Rebalancer is safe for concurrent use; concurrent Run calls on one
// Rebalancer simply compete for the lock like any other planner.
type Rebalancer struct {
	rdb        redis.UniversalClient
	reg        *registry.Registry
	hb         *heartbeat.Tracker
	rs         *redsync.Redsync
	lockName   string
	lockExpiry time.Duration
	by         string
	log        *slog.Logger

	// beforeCommit, when set by tests, runs between planning and committing so
	// a test can force a planner to be overtaken.
	beforeCommit func()

	ok, stale, failed, locked atomic.Int64

	groups groupCache
}

// groupCache keeps the groups read at a registry revision: most runs follow a
// membership change, not a group write, and decoding every group document of
// a large pool is a good part of a run.
type groupCache struct {
	mu     sync.Mutex
	valid  bool
	rev    int64
	groups []registry.Group
}

// get returns the cached groups and their revision (-1: none).
func (c *groupCache) get() (int64, []registry.Group) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.valid {
		return -1, nil
	}
	return c.rev, c.groups
}

// put caches groups as those of revision rev. Only groups read with rev in
// one snapshot, as a plan read's are, may be cached under it.
func (c *groupCache) put(rev int64, groups []registry.Group) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.valid, c.rev, c.groups = true, rev, groups
}

// listWithHealth reads the groups with suspended and probing ones marked in
// State.
func listWithHealth(ctx context.Context, reg *registry.Registry) ([]registry.Group, error) {
	gs, err := reg.List(ctx)
	if err != nil {
		return nil, err
	}
	unhealthy, err := reg.Unhealthy(ctx)
	if err != nil {
		return nil, err
	}
	return registry.ApplyHealth(gs, unhealthy), nil
}

// planMaxNodes is the cap Plan and the handoff apply: a probing group is
// handed to exactly one node.
func planMaxNodes(g registry.Group) int {
	if g.State == registry.Probing {
		return 1
	}
	return g.MaxNodes
}

// RebalancerOption configures a Rebalancer.
type RebalancerOption func(*Rebalancer)

// WithLockExpiry sets how long the rebalance lock lives before it must be
// extended (a run extends it every third of that). A planner that dies holding
// the lock delays the next plan by at most this. default: the heartbeat
// interval of the Tracker, at least MinLockExpiry — so a dead planner costs at
// most one beat, like any other dead node.
func WithLockExpiry(d time.Duration) RebalancerOption {
	return func(r *Rebalancer) {
		if d > 0 {
			r.lockExpiry = d
		}
	}
}

// WithPlanner names who commits plans, recorded in the audit log. default:
// "rebalancer".
func WithPlanner(by string) RebalancerOption {
	return func(r *Rebalancer) {
		if by != "" {
			r.by = by
		}
	}
}

// WithRebalancerLogger sets the logger; it should carry the namespace ("ns"),
// as the client's and the server's do. default: discard.
func WithRebalancerLogger(l *slog.Logger) RebalancerOption {
	return func(r *Rebalancer) {
		if l != nil {
			r.log = l
		}
	}
}

// NewRebalancer returns a Rebalancer for the namespace of reg and hb, which must
// be the same namespace.
func NewRebalancer(rdb redis.UniversalClient, reg *registry.Registry, hb *heartbeat.Tracker, opts ...RebalancerOption) *Rebalancer {
	r := &Rebalancer{
		rdb:        rdb,
		reg:        reg,
		hb:         hb,
		rs:         redsync.New(goredis.NewPool(rdb)),
		lockName:   keys.New(reg.Namespace()).Lock(),
		lockExpiry: max(hb.Config().Interval, MinLockExpiry),
		by:         "rebalancer",
		log:        slog.New(slog.DiscardHandler),
	}
	for _, o := range opts {
		o(r)
	}
	return r
}

// Result describes one completed Run.
type Result struct {
	// Epoch is the assignment epoch after the run.
	Epoch int64
	// Changed reports whether a new assignment was committed.
	Changed bool
	// Commits is how many new assignments the run committed: a run that
	// plans again (membership moved during it) may commit more than one,
	// the epochs Epoch-Commits+1 .. Epoch.
	Commits int
	// Moved is how many nodes' group sets changed.
	Moved int
	// Reaped lists the nodes removed for missing their TTL.
	Reaped []string
	// Retired lists the draining groups this run found free and retired.
	Retired []string
	// Applied is how many scheduled changes fell due and were applied.
	Applied int
	// Waiting is how many grants of capped groups wait for a holder to release.
	Waiting int
	// Took is the wall time of the run.
	Took time.Duration
}

// Summary is a Result as `allot rebalance -o json` and POST /v1/rebalance
// show it: lists are never null, the duration is in milliseconds.
type Summary struct {
	Epoch   int64    `json:"epoch"`
	Changed bool     `json:"changed"`
	Moved   int      `json:"moved"`
	Reaped  []string `json:"reaped"`
	Retired []string `json:"retired"`
	Applied int      `json:"applied"`
	Waiting int      `json:"waiting"`
	TookMS  float64  `json:"took_ms"`
}

// Summary returns r in its shown form.
func (r Result) Summary() Summary {
	orEmpty := func(xs []string) []string {
		if xs == nil {
			return []string{}
		}
		return xs
	}
	return Summary{
		Epoch: r.Epoch, Changed: r.Changed, Moved: r.Moved, Reaped: orEmpty(r.Reaped), Retired: orEmpty(r.Retired),
		Applied: r.Applied, Waiting: r.Waiting, TookMS: float64(r.Took.Microseconds()) / 1000,
	}
}

// Counts are the outcomes of every Run of this Rebalancer so far.
type Counts struct{ OK, Stale, Failed, Locked int64 }

// Counts returns how many runs committed (or found nothing to change), lost to a
// newer epoch, failed, or found the lock taken.
func (r *Rebalancer) Counts() Counts {
	return Counts{OK: r.ok.Load(), Stale: r.stale.Load(), Failed: r.failed.Load(), Locked: r.locked.Load()}
}

// Run takes the lock, reaps dead nodes, applies due schedules, plans and
// commits. It returns ErrLocked at once when another planner holds the lock,
// and an error wrapping registry.ErrStaleEpoch when a newer plan was committed
// while it worked.
func (r *Rebalancer) Run(ctx context.Context) (Result, error) {
	res, err := r.run(ctx)
	r.count(err)
	return res, err
}

// count records the outcome of a run (Run's, or LeaveAndPlan's plan).
func (r *Rebalancer) count(err error) {
	switch {
	case err == nil:
		r.ok.Add(1)
	case errors.Is(err, ErrLocked):
		r.locked.Add(1)
	case errors.Is(err, registry.ErrStaleEpoch):
		r.stale.Add(1)
	default:
		r.failed.Add(1)
	}
}

func (r *Rebalancer) run(ctx context.Context) (Result, error) {
	start := time.Now()
	mu := r.rs.NewMutex(r.lockName, redsync.WithExpiry(r.lockExpiry), redsync.WithTries(1))
	if err := mu.TryLockContext(ctx); err != nil {
		var taken *redsync.ErrTaken
		if errors.As(err, &taken) || errors.Is(err, redsync.ErrFailed) {
			return Result{}, ErrLocked
		}
		return Result{}, fmt.Errorf("allocator: take rebalance lock: %w", err)
	}
	stopExtending := r.keepExtended(ctx, mu)
	defer func() {
		stopExtending()
		// The lock may have expired already; the epoch protects us either way.
		_, _ = mu.UnlockContext(context.WithoutCancel(ctx))
	}()

	return r.cycle(ctx, start, nil)
}

// LeaveAndPlan deregisters node id, as heartbeat.Tracker.Leave does, and
// plans the pool without it, without taking the lock: the leave, the reap
// and the read for the plan are one transaction, so a graceful leave costs
// the leaver two round trips (that transaction and the commit) before its
// groups move. The lock only spares planners duplicate work; the commit is
// fenced on the epoch read, so a concurrent planner costs one of the two a
// stale plan, never a wrong one. And no other node plans for this change:
// the leave claims it (see docs/internals.md, "No herd at the lock").
//
// left reports whether the node was deregistered (or was unknown). An error
// wrapping heartbeat.ErrWrongSession means the ID belongs to another
// session and nothing changed. With left true, err is the plan's: one
// wrapping registry.ErrStaleEpoch means another plan was committed first,
// and the caller should run the locked cycle (Run) to be sure the departure
// is planned.
func (r *Rebalancer) LeaveAndPlan(ctx context.Context, id, session string) (left bool, res Result, err error) {
	start := time.Now()
	var leaveErr error
	res, err = r.cycle(ctx, start, func(tx redis.Pipeliner) func() error {
		result := r.hb.QueueLeave(ctx, tx, id, session)
		return func() error {
			leaveErr = result()
			return leaveErr
		}
	})
	if leaveErr != nil {
		return false, res, leaveErr
	}
	// The leave's result is read first: a transaction that failed reports
	// its error there, so a nil leaveErr means the leave ran.
	r.count(err)
	return true, res, err
}

// cycle reads, plans and commits, and plans again while the membership or
// the groups moved during it (a burst of joins), so the nodes whose beats saw
// those changes need not plan themselves. first, when not nil, queues
// commands at the head of the first read's transaction and returns how to
// check their result; the run stops with that error.
func (r *Rebalancer) cycle(ctx context.Context, start time.Time, first func(tx redis.Pipeliner) func() error) (Result, error) {
	var res Result
	var next nextState
	for round := 0; ; round++ {
		st, err := r.readForPlan(ctx, &res, first)
		if err != nil {
			return res, err
		}
		first = nil
		next = st.next()
		res.Waiting = next.waiting
		res.Moved += Moved(st.assign.Nodes, next.nodes)

		if r.beforeCommit != nil {
			r.beforeCommit()
		}
		c, err := r.reg.CommitPlan(ctx, registry.Commit{
			From:    st.assign.Counters,
			Base:    &st.assign,
			Nodes:   next.nodes,
			Revoked: next.revoked,
			By:      r.by,
		})
		if err != nil {
			return res, fmt.Errorf("allocator: commit plan from epoch %d: %w", st.assign.Epoch, err)
		}
		res.Epoch, res.Changed = c.Epoch, res.Changed || c.Changed
		if c.Changed {
			res.Commits++
		}
		if round == maxReplans || (c.MVer == st.assign.MVer && c.Rev == st.assign.Rev) {
			break
		}
	}

	for _, g := range next.drained {
		_, err := r.reg.FinishRetire(ctx, g, r.by)
		switch {
		case err == nil:
			res.Retired = append(res.Retired, g)
		case errors.Is(err, registry.ErrInvalidState), errors.Is(err, registry.ErrNotFound):
			// Someone else retired or deleted it meanwhile.
		default:
			return res, fmt.Errorf("allocator: retire drained group %q: %w", g, err)
		}
	}
	res.Took = time.Since(start)
	if res.Changed {
		r.log.Info("allot: plan committed", "epoch", res.Epoch, "moved", res.Moved, "waiting", res.Waiting, "took", res.Took)
	}
	return res, nil
}

// keepExtended extends the lock every third of its expiry until the returned
// stop function is called; stop waits for the extender to finish.
func (r *Rebalancer) keepExtended(ctx context.Context, mu *redsync.Mutex) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(r.lockExpiry / 3)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				if ok, err := mu.ExtendContext(ctx); !ok || err != nil {
					// Lost the lock: keep going, the epoch check decides.
					r.log.Warn("allot: rebalance lock lost while planning", "err", err)
					return
				}
			}
		}
	}()
	return func() { close(done); <-finished }
}

// state is one consistent-enough read of everything planning needs. The epoch in
// assign is what the commit is fenced on; groups and nodes read after it can
// only be newer.
type state struct {
	assign registry.Assignment
	groups []registry.Group
	nodes  []heartbeat.Node
	now    time.Time // Redis server time of the nodes' read (readState only)
}

// readState reads the pool as status shows it (live nodes with their last
// beat), without reaping.
func readState(ctx context.Context, reg *registry.Registry, hb *heartbeat.Tracker) (state, error) {
	var st state
	var err error
	if st.assign, err = reg.Assignment(ctx); err != nil {
		return st, fmt.Errorf("allocator: read assignment: %w", err)
	}
	if st.groups, err = listWithHealth(ctx, reg); err != nil {
		return st, fmt.Errorf("allocator: read groups: %w", err)
	}
	if st.nodes, st.now, err = hb.Live(ctx); err != nil {
		return st, fmt.Errorf("allocator: read live nodes: %w", err)
	}
	return st, nil
}

// readForPlan reaps the expired nodes and reads everything a plan needs in
// one MULTI/EXEC: one round trip, and one snapshot, so the nodes, the
// assignment and the groups agree. A due scheduled change is applied first
// (its own scripts), then the read is made again. Reaped and applied are
// added to res. first, when not nil, queues commands ahead of the read (see
// cycle); its error, if any, is returned as it is.
func (r *Rebalancer) readForPlan(ctx context.Context, res *Result, first func(tx redis.Pipeliner) func() error) (state, error) {
	for attempt := 0; ; attempt++ {
		var hbRead *heartbeat.PlanRead
		var regRead *registry.PlanRead
		var firstResult func() error
		// The cached groups are taken once: another run on this Rebalancer
		// may replace them meanwhile.
		cachedRev, cached := r.groups.get()
		_, err := r.rdb.TxPipelined(ctx, func(tx redis.Pipeliner) error {
			if first != nil {
				firstResult = first(tx)
				first = nil
			}
			// The reap first: the records read after it are the live nodes.
			hbRead = r.hb.QueuePlanRead(ctx, tx)
			regRead = r.reg.QueuePlanRead(ctx, tx, cachedRev)
			return nil
		})
		if firstResult != nil {
			if err := firstResult(); err != nil {
				return state{}, err
			}
		}
		if err != nil {
			return state{}, fmt.Errorf("allocator: read for plan: %w", err)
		}
		reaped, nodes, err := hbRead.Result()
		if err != nil {
			return state{}, fmt.Errorf("allocator: %w", err)
		}
		res.Reaped = append(res.Reaped, reaped...)
		read, err := regRead.Result()
		if err != nil {
			return state{}, fmt.Errorf("allocator: %w", err)
		}
		if read.Due && attempt == 0 {
			applied, err := r.reg.ApplyDue(ctx)
			if err != nil {
				return state{}, fmt.Errorf("allocator: apply schedules: %w", err)
			}
			res.Applied += len(applied)
			continue
		}
		groups := read.Groups
		if groups == nil {
			groups = cached // unchanged since cachedRev
		} else {
			r.groups.put(read.Assignment.Rev, groups)
		}
		return state{assign: read.Assignment, groups: groups, nodes: nodes}, nil
	}
}

// planInputs converts stored groups and live nodes into Plan's inputs: only
// active groups (a probing one capped at one node; suspended ones left out),
// only live nodes, with each node's demand and each group's capacity in the
// pool's placement unit (placementOf).
func (st state) planInputs() ([]Group, []Node) {
	planned := make([]registry.Group, 0, len(st.groups))
	for _, g := range st.groups {
		if g.State == registry.Active || g.State == registry.Probing {
			planned = append(planned, g)
		}
	}
	unit := placementOf(planned, st.nodes)
	groups := make([]Group, len(planned))
	for i, g := range planned {
		groups[i] = Group{Name: g.Name, Weight: g.Weight, MaxNodes: planMaxNodes(g)}
		if unit.capacity != nil {
			groups[i].Capacity = unit.capacity[i]
		}
	}
	nodes := make([]Node, 0, len(st.nodes))
	for _, n := range st.nodes {
		nodes = append(nodes, Node{ID: n.ID, IP: n.IP, Preferred: n.Preferred, Demand: unit.demand(n)})
	}
	return groups, nodes
}

// nextState is what a run commits.
type nextState struct {
	nodes   map[string][]string // live node -> granted groups (standby: empty)
	revoked map[string][]string // node -> "group@epoch" entries still awaiting release
	drained []string            // draining groups nobody may hold any more
	waiting int                 // capped grants held back until a holder releases
}

// next turns the desired plan into a safe assignment. Uncapped active groups are
// granted as planned (make-before-break). A capped group is granted to a new
// holder only while the nodes that may hold it — granted it, reporting it held,
// or revoked but not yet acknowledged — stay within max_nodes; everyone Plan
// moves off a capped or draining group gets a revoked entry that a later run
// clears once the node acknowledges the revoke epoch without holding it, or is
// gone. See docs/internals.md, "the revoke → release → grant handoff".
//
// The steps, each a method of its own: plan; find the guarded groups; carry
// over unreleased revokes; count who may hold each guarded group; grant
// (capped grants wait for room); revoke what moved off a guarded group; list
// the draining groups nobody may hold any more.
func (st state) next() nextState {
	groups, nodes := st.planInputs()
	desired := Plan(groups, nodes, st.assign.Nodes)
	gd := st.guards()
	revoked := st.unreleased(gd)
	mayHold := st.mayHold(gd, revoked)
	granted, waiting := st.grant(desired, gd, mayHold)
	st.revokeMoved(granted, gd, revoked)
	return nextState{
		nodes:   granted,
		revoked: flattenRevoked(revoked),
		drained: st.drained(granted, mayHold, revoked),
		waiting: waiting,
	}
}

// guards are the groups that need the revoke → release → grant handoff:
// capped ones (so max_nodes holds at every instant) and draining ones (so
// "retired" means nobody holds it). Usually a handful, so the per-node work
// of the other steps is a few small-map lookups.
type guards struct {
	maxNodes map[string]int  // capped group -> max_nodes
	guarded  map[string]bool // capped or draining
}

func (st state) guards() guards {
	gd := guards{maxNodes: make(map[string]int), guarded: make(map[string]bool)}
	for _, g := range st.groups {
		m := planMaxNodes(g)
		if m > 0 {
			gd.maxNodes[g.Name] = m
		}
		if m > 0 || g.State == registry.Draining {
			gd.guarded[g.Name] = true
		}
	}
	return gd
}

// unreleased carries over the revoked entries of live nodes that have not
// released them yet: node -> group -> revoke epoch. An entry is released
// once the node acknowledged its epoch without reporting the group held;
// entries of gone nodes (their lease expired) and of groups no longer
// guarded are dropped.
func (st state) unreleased(gd guards) map[string]map[string]int64 {
	live := make(map[string]int, len(st.nodes)) // ID -> index in st.nodes
	for i, n := range st.nodes {
		live[n.ID] = i
	}
	revoked := make(map[string]map[string]int64)
	for id, entries := range st.assign.Revoked {
		i, alive := live[id]
		if !alive {
			continue // reaped or left: its lease has expired
		}
		n := st.nodes[i]
		for _, e := range entries {
			g, at := parseRevoked(e)
			if !gd.guarded[g] {
				continue // deleted or no longer capped: nothing to guard
			}
			if n.Ack >= at && !slices.Contains(n.Held, g) {
				continue // released
			}
			addRevoked(revoked, id, g, at)
		}
	}
	return revoked
}

// mayHold is, per guarded group, the set of live nodes that may be using
// it: granted it, reporting it held, or revoked and not yet released.
func (st state) mayHold(gd guards, revoked map[string]map[string]int64) map[string]map[string]bool {
	mayHold := make(map[string]map[string]bool)
	if len(gd.guarded) == 0 {
		return mayHold
	}
	mark := func(g, id string) {
		if !gd.guarded[g] {
			return
		}
		if mayHold[g] == nil {
			mayHold[g] = make(map[string]bool)
		}
		mayHold[g][id] = true
	}
	for _, n := range st.nodes {
		for _, g := range st.assign.Nodes[n.ID] {
			mark(g, n.ID)
		}
		for _, g := range n.Held {
			mark(g, n.ID)
		}
		for g := range revoked[n.ID] {
			mark(g, n.ID)
		}
	}
	return mayHold
}

// grant turns the desired plan into grants: every node keeps what it may
// already hold and gets its uncapped groups at once; a new holder of a
// capped group is granted it, in node-ID order (st.nodes is sorted by ID,
// heartbeat.Live), only while the group's may-hold set stays within
// max_nodes. It adds each grant to mayHold and returns how many grants wait
// for a release.
func (st state) grant(desired Assignment, gd guards, mayHold map[string]map[string]bool) (map[string][]string, int) {
	nodes := make(map[string][]string, len(st.nodes))
	type grant struct{ node, group string }
	var pending []grant
	for _, n := range st.nodes {
		want := desired[n.ID]
		granted := make([]string, 0, len(want))
		for _, g := range want {
			if gd.maxNodes[g] > 0 && !mayHold[g][n.ID] {
				pending = append(pending, grant{n.ID, g})
				continue
			}
			granted = append(granted, g)
		}
		nodes[n.ID] = granted
	}
	waiting := 0
	for _, p := range pending {
		if len(mayHold[p.group]) < gd.maxNodes[p.group] {
			if mayHold[p.group] == nil {
				mayHold[p.group] = make(map[string]bool)
			}
			mayHold[p.group][p.node] = true
			nodes[p.node] = append(nodes[p.node], p.group)
			sort.Strings(nodes[p.node])
			continue
		}
		waiting++
	}
	return nodes, waiting
}

// revokeMoved records a revoke (at the epoch this commit makes) for every
// guarded group a live node may hold but is no longer granted, and drops
// the entries of groups granted to their node again.
func (st state) revokeMoved(granted map[string][]string, gd guards, revoked map[string]map[string]int64) {
	if len(gd.guarded) == 0 {
		return
	}
	revokeEpoch := st.assign.Epoch + 1
	revoke := func(id, g string) {
		if gd.guarded[g] && !slices.Contains(granted[id], g) {
			if _, already := revoked[id][g]; !already {
				addRevoked(revoked, id, g, revokeEpoch)
			}
		}
	}
	for _, n := range st.nodes {
		for g := range revoked[n.ID] {
			if slices.Contains(granted[n.ID], g) {
				delete(revoked[n.ID], g) // granted again: the entry is moot
			}
		}
		for _, g := range st.assign.Nodes[n.ID] {
			revoke(n.ID, g)
		}
		for _, g := range n.Held {
			revoke(n.ID, g)
		}
	}
}

// flattenRevoked renders revoked entries as the stored "group@epoch" lists,
// sorted; nodes left without entries are absent.
func flattenRevoked(revoked map[string]map[string]int64) map[string][]string {
	out := make(map[string][]string)
	for id, entries := range revoked {
		if len(entries) == 0 {
			continue
		}
		list := make([]string, 0, len(entries))
		for g, at := range entries {
			list = append(list, g+"@"+strconv.FormatInt(at, 10))
		}
		sort.Strings(list)
		out[id] = list
	}
	return out
}

// drained lists the draining groups no live node may hold after this
// commit: neither granted nor revoked-and-unreleased anywhere.
func (st state) drained(granted map[string][]string, mayHold map[string]map[string]bool, revoked map[string]map[string]int64) []string {
	var out []string
	for _, g := range st.groups {
		if g.State != registry.Draining {
			continue
		}
		held := false
		for id := range mayHold[g.Name] {
			_, isRevoked := revoked[id][g.Name]
			if isRevoked || slices.Contains(granted[id], g.Name) {
				held = true
				break
			}
		}
		if !held {
			out = append(out, g.Name)
		}
	}
	return out
}

func addRevoked(m map[string]map[string]int64, id, g string, at int64) {
	if m[id] == nil {
		m[id] = make(map[string]int64)
	}
	m[id][g] = at
}

// parseRevoked splits a revoked entry "group@epoch". An entry without an epoch
// counts as revoked at epoch 0, so any acknowledgement releases it.
func parseRevoked(e string) (group string, epoch int64) {
	i := strings.LastIndexByte(e, '@')
	if i < 0 {
		return e, 0
	}
	n, err := strconv.ParseInt(e[i+1:], 10, 64)
	if err != nil {
		return e, 0
	}
	return e[:i], n
}
