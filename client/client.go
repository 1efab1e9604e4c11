package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/allot-io/allot/allocator"
	"github.com/allot-io/allot/heartbeat"
	"github.com/allot-io/allot/internal/keys"
	"github.com/allot-io/allot/registry"
)

// Client is one node of an allot pool. Build it with New (or FromEnv), call
// Start to join, read its assignment with Assignment and Config (lock-free),
// and Close to leave. Its methods are safe for concurrent use.
//
// A Client owns six goroutines while started: the beat loop, the
// fetcher, the events subscriber, the lease watcher, the catalog reader
// (idle until the node first acquires) and the OnChange dispatcher (plus at
// most one rebalance at a time). Close stops them all and waits.
type Client struct {
	rdb     redis.UniversalClient
	ownsRDB bool
	o       options
	keys    keys.Keys
	reg     *registry.Registry
	hb      *heartbeat.Tracker
	rb      *allocator.Rebalancer
	lim     *limiter     // Allow, Reserve and Settle (limit.go)
	demand  *demandMeter // what the node asks of its groups, sent with each beat (demand.go)
	rep     *reporter    // key health reports (health.go)
	lend    *lender      // the catalog of groups it may borrow (lend.go)
	log     *slog.Logger

	// cur is what readers see: an immutable snapshot, replaced, never changed.
	cur atomic.Pointer[Assignment]

	mu      sync.Mutex
	started bool
	closed  bool
	closing bool // Close published the final empty assignment: no more publishes
	joined  bool // a beat succeeded, so Close must leave
	lastErr error
	// session is this Start's random session (heartbeat.NewSession): the
	// node ID is ours only while the beats of this session hold it. Set by
	// Start before the workers run, read-only after.
	session string
	// displaced means the node ID was taken by another process's session
	// after this one had joined: nothing is published until a beat of this
	// session succeeds again.
	displaced bool

	// raw is the last assignment read from Redis (or the cache), before the
	// lease and join rules below remove capped groups from it.
	raw       *Assignment
	fromCache bool
	// rawDirty: raw was read while a leave or reap had changed holder
	// counts ahead of the epoch, so the next assignment event is read.
	rawDirty bool
	// trusted means raw's capped groups may be used: raw was read within the
	// current lease. (A node that re-registers needs no wait: reap and leave
	// removed its entry, and a commit writes entries only for registered
	// nodes, so what it reads was planned with it live.)
	trusted bool
	// gen is +1 whenever the lease lapses; a read started in an older
	// generation proves nothing about the current one.
	gen uint64
	// leaseUntil is when the last successful beat was sent + TTL: the
	// server cannot reap this node before then.
	leaseUntil time.Time
	lapsed     bool  // the lease ran out and no beat has succeeded since
	lastRev    int64 // group revision the node's view covers (read, taken from an event, or from a beat's HeldRev)
	seenRev    int64 // group revision of the last beat reply
	eventRev   int64 // highest revision of a held group's event: a read started after it covers it
	readRev    int64 // group revision the last read was at
	// seenEpoch is the epoch Redis last showed this node: that of the last
	// beat reply, or of a read that ended while that beat was on its way
	// (the reply is older then); readEpoch is the epoch of the last read;
	// wantEpoch the newest epoch an event asked this node to read;
	// forceRead makes the next fetch read whatever they say (a resumed
	// subscription, a plan this node just ran). See readCoveredLocked.
	seenEpoch, readEpoch, wantEpoch int64
	forceRead                       bool
	// askBeat is the newest epoch whose event (scope groups) asked an early
	// beat instead of a read: a beat at or past it that cannot take the
	// epoch reads at once.
	askBeat int64
	// rawSeq is +1 whenever a read replaces raw: a beat reply proves
	// something about raw's groups only if raw did not change meanwhile.
	rawSeq uint64
	// delivered are the groups of the last assignment every OnChange
	// callback has returned from; beats report them as held until then.
	delivered []string
	// voided are the capped groups a lapsed lease dropped: beats do not
	// report them held while OnChange delivers the drop. Past its lease the
	// node has no claim on them (the server hands them on once it reaps
	// it), and a returning zombie's claim would only put a second holder
	// of an exclusive group on record.
	voided map[string]bool
	// deliveredCapped are the capped groups among delivered.
	deliveredCapped []string
	listeners       []func(old, new Assignment)
	queue           []change

	ctx          context.Context // lifetime of the workers
	cancel       context.CancelFunc
	workers      sync.WaitGroup
	dispatchStop chan struct{}
	dispatchDone chan struct{}
	wakeFetch    chan struct{}
	wakeBeat     chan struct{}
	wakeLease    chan struct{}
	wakeDispatch chan struct{}
	ready        chan struct{}
	readyOnce    sync.Once
	rebalancing  atomic.Bool
	// rebalanceAgain is why a plan was asked for while another held the
	// rebalancing guard ("" or an atomic.Value zero: none); the holder runs
	// it before letting the guard go (releaseRebalancing).
	rebalanceAgain atomic.Value
	// fetches and adopted count assignment reads and epochs adopted from
	// an event without a read (tests and check perf read them).
	fetches, adopted atomic.Int64
	// beatAdopted counts epochs taken from a beat reply without a read;
	// docAdopted, group writes taken from their event's document.
	beatAdopted, docAdopted atomic.Int64
	// dropEvents makes the subscriber ignore every pushed event, as if the
	// subscription had lost them (tests only).
	dropEvents atomic.Bool
	// ignoreDocs makes the subscriber ignore the documents group events
	// carry, so a held group's write is read as from an older writer
	// (tests of the read path only).
	ignoreDocs atomic.Bool

	// subMu guards the events subscription: ps (nil while not
	// subscribed) and the channels it follows (channels).
	subMu    sync.Mutex
	ps       *redis.PubSub
	channels map[string]bool

	pauseMu sync.Mutex
	pauseCh chan struct{} // non-nil while the loop is frozen (tests)

	// secretFail fails Start, or logs, when a read meets a secret value
	// the node cannot open (secrets.go).
	secretFail *secretFailure
}

// change is one published assignment change waiting for its OnChange calls.
type change struct{ old, new Assignment }

// New returns a Client that joins the pool through rdb. It does no I/O:
// call Start. Invalid options return an error wrapping ErrInvalidOption.
// The caller keeps ownership of rdb and closes it after Close.
func New(rdb redis.UniversalClient, opts ...Option) (*Client, error) {
	if rdb == nil {
		return nil, fmt.Errorf("%w: nil redis client", ErrInvalidOption)
	}
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	if o.namespace == "" {
		o.namespace = keys.DefaultNamespace
	}
	if o.nodeID == "" {
		o.nodeID = defaultNodeID()
	}
	if !o.ipSet {
		o.ip = defaultIP()
	}
	if err := keys.Validate(o.namespace); err != nil {
		return nil, fmt.Errorf("%w: namespace %q: %w", ErrInvalidOption, o.namespace, err)
	}
	if err := heartbeat.ValidateNodeID(o.nodeID); err != nil {
		return nil, fmt.Errorf("%w: node id: %w", ErrInvalidOption, err)
	}
	if err := heartbeat.ValidateIP(o.ip); err != nil {
		return nil, fmt.Errorf("%w: node ip: %w", ErrInvalidOption, err)
	}
	if o.preferred != "" {
		if err := registry.ValidateName(o.preferred); err != nil {
			return nil, fmt.Errorf("%w: preferred group: %w", ErrInvalidOption, err)
		}
	}
	if o.probeAfter < 0 {
		return nil, fmt.Errorf("%w: negative probe wait %v", ErrInvalidOption, o.probeAfter)
	}
	if o.borrowSample < 0 || o.borrowSample > MaxBorrowSample {
		return nil, fmt.Errorf("%w: borrow sample %d (want 0 to %d)", ErrInvalidOption, o.borrowSample, MaxBorrowSample)
	}
	if o.quotaFallback < QuotaLocal || o.quotaFallback > QuotaClosed {
		return nil, fmt.Errorf("%w: quota fallback %v", ErrInvalidOption, o.quotaFallback)
	}
	if err := o.heartbeat.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidOption, err)
	}
	hb, err := heartbeat.New(rdb, o.namespace, o.heartbeat, heartbeat.WithLogger(o.log))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidOption, err)
	}
	secrets, err := secretKeysOption(o)
	if err != nil {
		return nil, err
	}
	reg := registry.New(rdb, registry.WithNamespace(o.namespace), registry.WithLogger(o.log), registry.WithProbeAfter(o.probeAfter),
		registry.WithSecretKeys(secrets))
	ctx, cancel := context.WithCancel(context.Background())
	c := &Client{
		rdb:          rdb,
		o:            o,
		keys:         keys.New(o.namespace),
		reg:          reg,
		hb:           hb,
		rb:           allocator.NewRebalancer(rdb, reg, hb, allocator.WithPlanner(o.nodeID), allocator.WithRebalancerLogger(o.log)),
		log:          o.log.With("ns", o.namespace, "node", o.nodeID),
		ctx:          ctx,
		cancel:       cancel,
		dispatchStop: make(chan struct{}),
		dispatchDone: make(chan struct{}),
		wakeFetch:    make(chan struct{}, 1),
		wakeBeat:     make(chan struct{}, 1),
		wakeLease:    make(chan struct{}, 1),
		wakeDispatch: make(chan struct{}, 1),
		ready:        make(chan struct{}),
		secretFail:   newSecretFailure(),
	}
	c.lim = newLimiter(rdb, c.keys, o.quotaFallback, o.now, c.log)
	c.demand = newDemandMeter(o.now, c.log)
	c.lend = newLender(reg, o.borrowSample, o.intn)
	c.rep = &reporter{reg: reg, node: o.nodeID, ttl: o.heartbeat.TTL, log: c.log, rebalance: c.rebalanceNow}
	return c, nil
}

// NodeID is the ID this node joins with.
func (c *Client) NodeID() string { return c.o.nodeID }

// Namespace is the pool this node joins.
func (c *Client) Namespace() string { return c.o.namespace }

// Start joins the pool and returns once the first assignment is known:
// read from Redis, or — when Redis cannot be reached and a cache directory
// is set — loaded from the disk cache (logged as "starting from cached
// assignment"; the node keeps retrying in the background and capped groups
// stay unused until it is back). It joins with a new random session, so a
// second process using the same node ID is refused
// (heartbeat.ErrNodeIDInUse) and waits, retrying every interval, until the
// first one leaves or expires: two processes never share an ID. If ctx
// ends first, Start stops the client and returns an error wrapping
// ErrNoAssignment and ctx's error.
func (c *Client) Start(ctx context.Context) error {
	c.mu.Lock()
	switch {
	case c.closed:
		c.mu.Unlock()
		return ErrClosed
	case c.started:
		c.mu.Unlock()
		return ErrAlreadyStarted
	}
	c.mu.Unlock()
	if c.o.logSet {
		routeRedisLogger(c.log)
	}
	if err := c.resolveHeartbeat(ctx); err != nil {
		return err
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return ErrClosed
	}
	if c.started {
		c.mu.Unlock()
		return ErrAlreadyStarted
	}
	c.started = true
	c.session = heartbeat.NewSession()
	c.mu.Unlock()

	c.workers.Add(5)
	go c.catalogLoop()
	go c.beatLoop()
	go c.fetchLoop()
	go c.subscribe()
	go c.watchLease()
	go c.dispatch()

	select {
	case <-c.ready:
		return nil
	case <-c.secretFail.failed:
		// Its config cannot be used: leave rather than hold groups it
		// cannot serve.
		closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.o.heartbeat.TTL)
		defer cancel()
		_ = c.Close(closeCtx)
		return fmt.Errorf("%w: %w", ErrNoAssignment, c.secretFail.err)
	case <-ctx.Done():
		c.mu.Lock()
		last := c.lastErr
		c.mu.Unlock()
		closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.o.heartbeat.TTL)
		defer cancel()
		_ = c.Close(closeCtx)
		if last != nil {
			return fmt.Errorf("%w: %w (last error: %w)", ErrNoAssignment, ctx.Err(), last)
		}
		return fmt.Errorf("%w: %w", ErrNoAssignment, ctx.Err())
	}
}

// resolveHeartbeat reads the namespace's heartbeat settings before any
// goroutine starts (heartbeat.Resolve): a node adopts them unless
// WithHeartbeat was given, and then they must agree. When Redis cannot be
// reached the node starts on its configured Config (its disk cache may carry
// it through the outage) and logs why.
func (c *Client) resolveHeartbeat(ctx context.Context) error {
	var want *heartbeat.Config
	if c.o.heartbeatSet {
		want = &c.o.heartbeat
	}
	// Bounded: a node starting while Redis is down must reach its disk
	// cache quickly.
	rctx, cancel := context.WithTimeout(ctx, c.o.heartbeat.Interval)
	defer cancel()
	cfg, err := heartbeat.Resolve(rctx, c.rdb, c.o.namespace, want)
	switch {
	case err == nil:
	case registry.IsUnavailable(err):
		c.log.Warn("cannot read the namespace settings; using the configured heartbeat", "interval", c.o.heartbeat.Interval, "ttl", c.o.heartbeat.TTL, "err", err)
		return nil
	default:
		return fmt.Errorf("%w: %w", ErrInvalidOption, err)
	}
	if cfg == c.o.heartbeat {
		return nil
	}
	hb, err := heartbeat.New(c.rdb, c.o.namespace, cfg, heartbeat.WithLogger(c.o.log))
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidOption, err)
	}
	c.o.heartbeat, c.hb = cfg, hb
	c.rb = allocator.NewRebalancer(c.rdb, c.reg, hb, allocator.WithPlanner(c.o.nodeID), allocator.WithRebalancerLogger(c.o.log))
	return nil
}

// Assignment returns the current assignment. It takes no lock and
// allocates nothing; the snapshot must not be modified.
func (c *Client) Assignment() Assignment {
	if a := c.cur.Load(); a != nil {
		return *a
	}
	return Assignment{}
}

// Config returns the value of key in the config of the node's first held
// group (by name): the natural read for the common one-group-per-node
// deployment. A node holding several groups reads the others through
// Assignment().Group(name). It takes no lock and allocates nothing; ok is
// false when no group is held or the key is absent.
func (c *Client) Config(key string) (value string, ok bool) {
	a := c.cur.Load()
	if a == nil || len(a.Groups) == 0 {
		return "", false
	}
	value, ok = a.Groups[0].Config[key]
	return value, ok
}

// OnChange registers fn to be called with the previous and the new
// assignment after every change of what the node holds: its groups, their
// versions (config), shares, quotas or caps (first assignment included if
// registered before Start). A new epoch that changes none of these (a
// change elsewhere in the pool) updates Assignment().Epoch without a call. Calls happen in order on one goroutine, never
// concurrently, and the node reports a dropped group as released only
// after fn has returned, so stop using a group before returning. fn must
// not call Close.
func (c *Client) OnChange(fn func(old, new Assignment)) {
	if fn == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.listeners = append(slices.Clip(c.listeners), fn)
}

// Close leaves the pool: it stops every goroutine, publishes an empty
// assignment (OnChange fires, so the node stops using its groups first),
// deregisters the node and plans the pool without it in the same round trip
// (allocator.Rebalancer.LeaveAndPlan), so its groups move at once.
// A Client from FromEnv also closes its Redis client. Close waits for
// running OnChange callbacks; calling it again returns nil.
func (c *Client) Close(ctx context.Context) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	started := c.started
	c.mu.Unlock()

	c.cancel()
	c.workers.Wait()

	var errs []error
	if started {
		c.mu.Lock()
		if old := c.cur.Load(); old != nil && len(old.Groups) > 0 {
			empty := &Assignment{Epoch: old.Epoch}
			c.cur.Store(empty)
			c.queue = append(c.queue, change{old: *old, new: *empty})
		}
		c.closing = true
		joined := c.joined
		c.mu.Unlock()
		close(c.dispatchStop)
		<-c.dispatchDone

		if joined {
			// One transaction leaves and reads the pool; the plan without
			// this node is committed at once (see allocator.LeaveAndPlan).
			left, _, err := c.rb.LeaveAndPlan(ctx, c.o.nodeID, c.session)
			switch {
			case errors.Is(err, heartbeat.ErrWrongSession):
				// Another process took the ID over: it is not ours to leave.
			case !left:
				errs = append(errs, fmt.Errorf("client: leave: %w", err))
			case err != nil:
				// Another plan came first (it may have been read before the
				// leave), or the plan failed: plan again under the lock.
				c.rebalanceAfterLeave(ctx)
			}
		}
	}
	if c.ownsRDB {
		if err := c.rdb.Close(); err != nil {
			errs = append(errs, fmt.Errorf("client: close redis: %w", err))
		}
	}
	return errors.Join(errs...)
}

// rebalanceAfterLeave moves the departed node's groups now instead of at
// the next beat of another node.
func (c *Client) rebalanceAfterLeave(ctx context.Context) { c.rebalanceRetrying(ctx, "leave") }

// rebalanceRetrying runs a plan now, after why (a leave, a suspension). A
// planner already at work may have read the pool before it, so a taken lock
// is retried for up to one interval.
func (c *Client) rebalanceRetrying(ctx context.Context, why string) {
	deadline := c.o.now().Add(c.o.heartbeat.Interval)
	for attempt := 0; ; attempt++ {
		_, err := c.rb.Run(ctx)
		if err == nil || !errors.Is(err, allocator.ErrLocked) {
			switch {
			case errors.Is(err, registry.ErrStaleEpoch):
				// Another planner committed first: its plan already
				// covers the pool. Normal when many nodes close at once.
				c.log.Debug("allot: rebalance after "+why+": another plan came first", "err", err)
			case err != nil:
				c.log.Warn("allot: rebalance after "+why+" failed; others will at their next beat", "err", err)
			}
			return
		}
		if c.o.now().After(deadline) {
			return
		}
		// Another plan is running (it usually covers this leave too):
		// back off exponentially rather than knock at the lock.
		step := min(2*time.Millisecond<<min(attempt, 10), c.o.heartbeat.Interval/8)
		wait := step/2 + c.o.jitter(step/2+1)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// signal wakes the goroutine waiting on ch without ever blocking.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

func (c *Client) markReady() { c.readyOnce.Do(func() { close(c.ready) }) }

func (c *Client) isReady() bool {
	select {
	case <-c.ready:
		return true
	default:
		return false
	}
}
