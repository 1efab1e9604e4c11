package perf

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	mrand "math/rand/v2"
	"net"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/allot-io/allot/allocator"
	"github.com/allot-io/allot/heartbeat"
	"github.com/allot-io/allot/internal/keys"
	"github.com/allot-io/allot/internal/redisurl"
	"github.com/allot-io/allot/registry"
)

// MaxClientNodes is the largest pool Run builds from real client.Client
// instances when Config.Mode is ModeAuto: each holds a pub/sub connection and
// a small pool of its own, so 10,000 of them need ~30,000 sockets.
const MaxClientNodes = 2000

// Mode says what the nodes of a run are.
type Mode string

// The node kinds of a run.
const (
	ModeAuto   Mode = "auto"   // ModeClient up to MaxClientNodes nodes; above, ModeShared where sockets allow, else ModeSim
	ModeClient Mode = "client" // real client.Client instances, one small Redis client each
	ModeShared Mode = "shared" // real client.Client instances on one shared connection pool (each its own pub/sub connection)
	ModeSim    Mode = "sim"    // simulated nodes on one shared Redis client and subscription
)

// Config is one run. Heartbeat settings are fields (not read from Redis
// here) so a caller that knows the namespace's stored settings passes them.
type Config struct {
	URL        string        // Redis URL, for the per-node clients of ModeClient and the shared client of ModeSim
	Namespace  string        // throwaway namespace, dropped at the end; NewNamespace makes one
	Nodes      int           // pool size (default 1000)
	Groups     int           // groups, weight 1 each (default 20)
	Duration   time.Duration // steady-state window for beats/s, rounded up to whole intervals (default 20s)
	Interval   time.Duration // heartbeat interval of the nodes (default 2s)
	TTL        time.Duration // heartbeat TTL of the nodes (default 6s; >= 3 x Interval)
	Mode       Mode          // default ModeAuto
	Kill       int           // percent of the nodes killed at once in the failover phase (default 10)
	Leaves     int           // graceful leaves measured, one at a time (default 10)
	Updates    int           // config changes measured (default 5)
	Rebalances int           // rebalancer runs measured (default 10)
	Progress   io.Writer     // one line per phase; nil = silent
}

// DefaultConfig returns the defaults of `allot check perf`; URL and
// Namespace are left for the caller.
func DefaultConfig() Config {
	return Config{
		Nodes: 1000, Groups: 20, Duration: 20 * time.Second,
		Interval: 2 * time.Second, TTL: 6 * time.Second, Mode: ModeAuto,
		Kill: 10, Leaves: 10, Updates: 5, Rebalances: 10,
	}
}

// Validate checks cfg; its errors wrap ErrInvalidConfig and name the field.
func (c Config) Validate() error {
	switch {
	case c.Nodes < 1:
		return fmt.Errorf("%w: nodes %d: must be >= 1", ErrInvalidConfig, c.Nodes)
	case c.Groups < 1:
		return fmt.Errorf("%w: groups %d: must be >= 1", ErrInvalidConfig, c.Groups)
	case c.Duration <= 0:
		return fmt.Errorf("%w: duration %v: must be > 0", ErrInvalidConfig, c.Duration)
	case c.Mode != ModeAuto && c.Mode != ModeClient && c.Mode != ModeShared && c.Mode != ModeSim:
		return fmt.Errorf("%w: mode %q: want auto, client, shared or sim", ErrInvalidConfig, c.Mode)
	case c.Kill < 0 || c.Kill > 100 || c.Leaves < 0 || c.Updates < 0 || c.Rebalances < 0:
		return fmt.Errorf("%w: kill must be 0..100 percent, leaves, updates and rebalances >= 0", ErrInvalidConfig)
	}
	if err := (heartbeat.Config{Interval: c.Interval, TTL: c.TTL}).Validate(); err != nil {
		return fmt.Errorf("%w: interval/ttl: %w", ErrInvalidConfig, err)
	}
	if err := keys.Validate(c.Namespace); err != nil {
		return fmt.Errorf("%w: namespace %q: %w", ErrInvalidConfig, c.Namespace, err)
	}
	return nil
}

// sharedPoolSize is the size of ModeShared's one connection pool. Each node
// stands for a process with a pool of its own, so the shared pool must not
// be what a node waits for: at 10,000 nodes, 256 connections were often all
// busy (a reply waits for its goroutine to be scheduled), and a leaver's
// commands queued behind thousands of beats for 100 ms and more.
const sharedPoolSize = 1024

// sharedSockets is what ModeShared needs beyond one pub/sub connection per
// node: the shared pool, the harness's own clients, and some room.
const sharedSockets = sharedPoolSize + 256

// resolveMode picks the node kind of a run. ModeShared needs a socket per
// node in this process (RLIMIT_NOFILE; Go raises the soft limit to the hard
// one at start) and a client slot per node in Redis (maxclients; not
// checked when CONFIG is refused). Auto falls back to ModeSim, saying why.
func resolveMode(ctx context.Context, admin redis.UniversalClient, cfg Config, logf func(string, ...any)) (Mode, error) {
	if cfg.Mode == ModeClient || cfg.Mode == ModeSim || (cfg.Mode == ModeAuto && cfg.Nodes <= MaxClientNodes) {
		if cfg.Mode == ModeAuto {
			return ModeClient, nil
		}
		return cfg.Mode, nil
	}
	need := cfg.Nodes + sharedSockets
	why := ""
	if limit, ok := openFileLimit(); ok && limit < uint64(need) {
		why = fmt.Sprintf("this process may open %d files, %d nodes need about %d", limit, cfg.Nodes, need)
	} else if _, ok := admin.(*redis.Client); !ok {
		why = "shared mode needs a standalone or Sentinel Redis URL"
	} else if v, err := admin.ConfigGet(ctx, "maxclients").Result(); err == nil {
		if n, err := strconv.Atoi(v["maxclients"]); err == nil && n < need {
			why = fmt.Sprintf("redis maxclients is %d, %d nodes need about %d (redis-server --maxclients %d)", n, cfg.Nodes, need, need)
		}
	}
	switch {
	case why == "":
		return ModeShared, nil
	case cfg.Mode == ModeShared:
		return "", fmt.Errorf("%w: mode shared: %s", ErrInvalidConfig, why)
	}
	logf("simulated nodes: %s", why)
	return ModeSim, nil
}

// Percentiles is a latency summary in milliseconds.
type Percentiles struct {
	P50 float64 `json:"p50"`
	P99 float64 `json:"p99"`
}

// Result is what a run measured. The JSON fields are what `check perf -o
// json` prints (the contract); the others feed the table.
type Result struct {
	Nodes             int         `json:"nodes"`
	Groups            int         `json:"groups"`
	BeatsPerSec       float64     `json:"beats_per_sec"`
	RoundTripsPerBeat float64     `json:"round_trips_per_beat"`
	FailoverMS        Percentiles `json:"failover_ms"`
	LeaveMS           Percentiles `json:"leave_ms"`
	PropagationMS     Percentiles `json:"propagation_ms"`
	RebalanceMS       Percentiles `json:"rebalance_ms"`
	// CommandsPerLeave is every Redis command the nodes sent for one
	// graceful leave (mean over the leaves): the leaver's leave and plan and
	// every other node's reads, from the leave until the pool settled and
	// one more interval passed — beyond their steady beats, which go on
	// whatever happens.
	CommandsPerLeave float64 `json:"commands_per_leave"`
	// LockAttemptsPerChange is the nodes' attempts to take the rebalance
	// lock per graceful leave (mean), over the same window.
	LockAttemptsPerChange float64 `json:"lock_attempts_per_change"`
	// ReadsPerLeave is the nodes' assignment reads (registry
	// NodeAssignment) per graceful leave (mean), over the same window:
	// the nodes the plan moved, and holders that could not take their new
	// share from the event.
	ReadsPerLeave float64 `json:"reads_per_leave"`
	// ReadsFirstLeave is those of the first leave alone, the one right
	// after the timed rebalances: reads a weight change left behind show
	// here.
	ReadsFirstLeave int64 `json:"reads_first_leave"`
	// ReadsPerWeightChange is the nodes' assignment reads per timed
	// rebalance (mean), from the weight change until the pool settled:
	// at most about one per node the change concerns.
	ReadsPerWeightChange float64 `json:"reads_per_weight_change"`

	Mode              Mode          `json:"-"` // ModeClient, ModeShared or ModeSim, as run
	Namespace         string        `json:"-"`
	Interval          time.Duration `json:"-"`
	TTL               time.Duration `json:"-"`
	Window            time.Duration `json:"-"` // the steady window beats/s was measured over
	Startup           time.Duration `json:"-"` // until the pool first settled
	Killed            int           `json:"-"`
	Left              int           `json:"-"`
	Holders           int           `json:"-"` // of the group whose config changes were timed
	Updates           int           `json:"-"`
	Rebalanced        int           `json:"-"`
	MissedFailover    int           `json:"-"` // samples that timed out (counted as the timeout)
	MissedLeave       int           `json:"-"`
	MissedPropagation int           `json:"-"`
}

// MinBeatIntervals is the shortest steady window, in heartbeat intervals,
// whose beats/s figure means something: shorter windows are reported
// (BeatsMeaningful false) rather than judged.
const MinBeatIntervals = 3

// BeatsMeaningful reports whether the beats/s figure was measured over a
// window long enough to judge it.
func (r Result) BeatsMeaningful() bool {
	return r.Interval > 0 && r.Window >= MinBeatIntervals*r.Interval
}

// roundTrips is a go-redis hook on the nodes' Redis clients: it counts
// their round trips (a pipeline counts once), their commands (a pipeline
// counts each), their successful beats, their assignment reads and their
// attempts to take the rebalance lock (redsync's SET NX of the lock key).
type roundTrips struct {
	nodesKey, lockKey, stateKey, assignKey string
	calls, cmds, beats, locks, reads       atomic.Int64

	mu     sync.Mutex
	byName map[string]int64 // commands by name (and script by key count), for the progress log
}

func newRoundTrips(k keys.Keys) *roundTrips {
	return &roundTrips{nodesKey: k.Nodes(), lockKey: k.Lock(), stateKey: k.State(), assignKey: k.Assign()}
}

func (r *roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }

func (r *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		r.calls.Add(1)
		r.count(cmd)
		if err == nil && r.isBeat(cmd) {
			r.beats.Add(1)
		}
		return err
	}
}

func (r *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		r.calls.Add(1)
		for _, c := range cmds {
			r.count(c)
		}
		return next(ctx, cmds)
	}
}

// count counts one command, and a lock attempt among them.
func (r *roundTrips) count(cmd redis.Cmder) {
	r.cmds.Add(1)
	name := cmd.Name()
	if args := cmd.Args(); (name == "evalsha" || name == "eval") && len(args) > 2 {
		name = fmt.Sprintf("%s/%v", name, args[2])
	}
	r.mu.Lock()
	if r.byName == nil {
		r.byName = map[string]int64{}
	}
	r.byName[name]++
	r.mu.Unlock()
	if cmd.Name() == "set" {
		if args := cmd.Args(); len(args) > 1 && args[1] == r.lockKey {
			r.locks.Add(1)
		}
	}
	if r.isRead(cmd) {
		r.reads.Add(1)
	}
}

// isRead recognises registry's node assignment script (a node's read of its
// assignment): EVAL(SHA) with three keys, :state then :assign.
func (r *roundTrips) isRead(cmd redis.Cmder) bool {
	if n := cmd.Name(); n != "evalsha" && n != "eval" {
		return false
	}
	args := cmd.Args()
	if len(args) < 5 {
		return false
	}
	numKeys, ok := args[2].(int)
	return ok && numKeys == 3 && args[3] == r.stateKey && args[4] == r.assignKey
}

// isBeat recognises heartbeat's beat script: EVAL(SHA) with
// heartbeat.BeatKeys keys, the first one the namespace's :nodes.
func (r *roundTrips) isBeat(cmd redis.Cmder) bool {
	if n := cmd.Name(); n != "evalsha" && n != "eval" {
		return false
	}
	args := cmd.Args()
	if len(args) < 4 {
		return false
	}
	numKeys, ok := args[2].(int)
	return ok && numKeys == heartbeat.BeatKeys && args[3] == r.nodesKey
}

func (r *roundTrips) reset() { r.calls.Store(0); r.beats.Store(0) }

// snapshot is what the counter showed at one instant.
type snapshot struct {
	cmds, beats, locks, reads int64
	byName                    map[string]int64
}

func (r *roundTrips) snapshot() snapshot {
	r.mu.Lock()
	by := make(map[string]int64, len(r.byName))
	for k, v := range r.byName {
		by[k] = v
	}
	r.mu.Unlock()
	return snapshot{cmds: r.cmds.Load(), beats: r.beats.Load(), locks: r.locks.Load(), reads: r.reads.Load(), byName: by}
}

// since renders the commands by name sent between s and later, busiest
// first ("evalsha/3" is a script with 3 keys).
func (s snapshot) since(later snapshot) string {
	type kv struct {
		k string
		v int64
	}
	var out []kv
	for k, v := range later.byName {
		if d := v - s.byName[k]; d > 0 {
			out = append(out, kv{k, d})
		}
	}
	slices.SortFunc(out, func(a, b kv) int { return int(b.v - a.v) })
	parts := make([]string, len(out))
	for i, e := range out {
		parts[i] = fmt.Sprintf("%s %d", e.k, e.v)
	}
	return strings.Join(parts, ", ")
}

// perfHarness runs the pool of simulated nodes and measures it. Its own
// reads (the committed assignment, group writes, the timed rebalances) go
// through admin and are not counted as node round trips.
type perfHarness struct {
	cfg     Config
	ctx     context.Context
	cancel  context.CancelFunc
	workers sync.WaitGroup

	admin    redis.UniversalClient
	adminReg *registry.Registry
	adminRB  *allocator.Rebalancer
	counter  *roundTrips
	mode     Mode // as resolved: ModeClient, ModeShared or ModeSim

	// Simulated-node mode only: every node shares these.
	shared  redis.UniversalClient
	nodeReg *registry.Registry
	nodeHB  *heartbeat.Tracker
	nodeRB  *allocator.Rebalancer

	mu    sync.Mutex
	nodes []perfNode
	byID  map[string]perfNode
	gone  map[string]bool

	changed  chan struct{}
	assignEv chan struct{}
	groups   []allocator.Group

	// committed maps an epoch to when it was committed (Redis time, from
	// its assignment event on the harness's own subscription).
	committed map[int64]time.Time
}

// Run builds the pool in a fresh namespace on admin's Redis, measures
// it and drops the namespace again, whatever happens.
func Run(ctx context.Context, admin redis.UniversalClient, cfg Config) (res Result, err error) {
	if err := cfg.Validate(); err != nil {
		return res, err
	}
	hctx, cancel := context.WithCancel(ctx)
	h := &perfHarness{
		cfg: cfg, ctx: hctx, cancel: cancel, admin: admin,
		adminReg:  registry.New(admin, registry.WithNamespace(cfg.Namespace)),
		counter:   newRoundTrips(keys.New(cfg.Namespace)),
		gone:      map[string]bool{},
		committed: map[int64]time.Time{},
		changed:   make(chan struct{}, 1),
		assignEv:  make(chan struct{}, 1),
	}
	adminHB, err := heartbeat.New(admin, cfg.Namespace, heartbeat.Config{Interval: cfg.Interval, TTL: cfg.TTL})
	if err != nil {
		cancel()
		return res, err
	}
	h.adminRB = allocator.NewRebalancer(admin, h.adminReg, adminHB, allocator.WithPlanner("check-perf"))
	defer func() {
		cctx, ccancel := context.WithTimeout(context.WithoutCancel(ctx), 60*time.Second)
		defer ccancel()
		if cerr := h.shutdown(cctx); cerr != nil && err == nil {
			err = cerr
		}
	}()

	res = Result{
		Nodes: cfg.Nodes, Groups: cfg.Groups,
		Namespace: cfg.Namespace, Interval: cfg.Interval, TTL: cfg.TTL,
	}
	if h.mode, err = resolveMode(hctx, admin, cfg, h.logf); err != nil {
		return res, err
	}
	res.Mode = h.mode
	if err := h.setup(); err != nil {
		return res, err
	}
	if res.Startup, err = h.startNodes(); err != nil {
		return res, err
	}
	h.logf("%d nodes started and settled in %v", cfg.Nodes, res.Startup.Round(time.Millisecond))

	if err := h.measureBeats(&res); err != nil {
		return res, err
	}
	if err := h.measurePropagation(&res); err != nil {
		return res, err
	}
	if err := h.measureRebalance(&res); err != nil {
		return res, err
	}
	if err := h.measureLeave(&res); err != nil {
		return res, err
	}
	if err := h.measureFailover(&res); err != nil {
		return res, err
	}
	return res, nil
}

func (h *perfHarness) logf(format string, args ...any) {
	if h.cfg.Progress != nil {
		fmt.Fprintf(h.cfg.Progress, "check perf: "+format+"\n", args...)
	}
}

// setup creates the groups and, in simulated mode, the shared node client.
func (h *perfHarness) setup() error {
	ctx := h.ctx
	for i := range h.cfg.Groups {
		name := fmt.Sprintf("g%03d", i)
		_, err := h.adminReg.Add(ctx, name, registry.Change{
			Set: map[string]string{"v": "0", "endpoint": "https://api.example.com/" + name},
		}, "check-perf")
		if err != nil {
			return fmt.Errorf("create group %s: %w", name, err)
		}
		h.groups = append(h.groups, allocator.Group{Name: name, Weight: 1})
	}
	h.workers.Go(func() { h.followEvents(h.admin, h.onAdminEvent) })
	switch h.mode {
	case ModeClient:
		return nil
	case ModeShared:
		// Each node gets a clone of this client (its own hooks, this pool);
		// the counter is hooked on the clones only.
		shared, err := redisurl.Open(h.cfg.URL, redisurl.WithPoolSize(sharedPoolSize))
		if err != nil {
			return err
		}
		h.shared = shared
		return nil
	}
	shared, err := redisurl.Open(h.cfg.URL, redisurl.WithPoolSize(sharedPoolSize))
	if err != nil {
		return err
	}
	shared.AddHook(h.counter)
	h.shared = shared
	h.nodeReg = registry.New(shared, registry.WithNamespace(h.cfg.Namespace))
	if h.nodeHB, err = heartbeat.New(shared, h.cfg.Namespace, heartbeat.Config{Interval: h.cfg.Interval, TTL: h.cfg.TTL}); err != nil {
		return err
	}
	h.nodeRB = allocator.NewRebalancer(shared, h.nodeReg, h.nodeHB, allocator.WithPlanner("check-perf-node"))
	h.workers.Go(func() { h.followEvents(shared, h.onSimEvent) })
	return nil
}

// followEvents passes every event of the namespace to fn until h stops,
// re-subscribing after a failure.
func (h *perfHarness) followEvents(rdb redis.UniversalClient, fn func(registry.Event)) {
	ch := keys.New(h.cfg.Namespace).Events()
	for h.ctx.Err() == nil {
		ps := rdb.Subscribe(h.ctx, ch)
		stop := context.AfterFunc(h.ctx, func() { _ = ps.Close() })
		for {
			msg, err := ps.Receive(h.ctx)
			if err != nil {
				break
			}
			switch m := msg.(type) {
			case *redis.Subscription:
				nudge(h.assignEv) // events may have been missed: re-read
			case *redis.Message:
				if ev, err := registry.ParseEvent(m.Payload); err == nil {
					fn(ev)
				}
			}
		}
		stop()
		_ = ps.Close()
		select {
		case <-h.ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (h *perfHarness) onAdminEvent(ev registry.Event) {
	if ev.Type == registry.EventAssignment {
		h.mu.Lock()
		h.committed[ev.Epoch] = ev.At
		h.mu.Unlock()
		nudge(h.assignEv)
	}
}

// commitTime returns when epoch was committed, or now when its event has
// not come yet.
func (h *perfHarness) commitTime(epoch int64, now time.Time) time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	if at, ok := h.committed[epoch]; ok && !at.IsZero() {
		return at
	}
	return now
}

// onSimEvent is the one events subscription every simulated node shares.
func (h *perfHarness) onSimEvent(ev registry.Event) {
	if ev.Type != registry.EventAssignment && ev.Group == "" {
		return
	}
	h.mu.Lock()
	nodes := h.nodes
	h.mu.Unlock()
	for _, n := range nodes {
		if s, ok := n.(*simNode); ok && !s.stopped.Load() {
			s.onEvent(ev)
		}
	}
}

func nudge(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

func (h *perfHarness) viewChanged() { nudge(h.changed) }

// nodeIP is a synthetic address (10.x.y.z) feeding the IP hash; nothing is
// ever sent to it.
func nodeIP(i int) string {
	return net.IPv4(10, byte(i>>16), byte(i>>8), byte(i)).String()
}

// startNodes starts every node (a bounded number at a time, as a rolling
// deploy would) and waits until the pool has settled.
func (h *perfHarness) startNodes() (time.Duration, error) {
	begin := time.Now()
	nodes := make([]perfNode, 0, h.cfg.Nodes)
	for i := range h.cfg.Nodes {
		id := fmt.Sprintf("perf-node-%05d", i)
		if h.mode == ModeSim {
			nodes = append(nodes, newSimNode(h, id, nodeIP(i+1)))
			continue
		}
		n, err := newClientNode(h, id, nodeIP(i+1))
		if err != nil {
			return 0, err
		}
		nodes = append(nodes, n)
		h.mu.Lock()
		h.nodes = nodes
		h.mu.Unlock()
	}
	h.mu.Lock()
	h.nodes = nodes
	h.byID = make(map[string]perfNode, len(nodes))
	for _, n := range nodes {
		h.byID[n.id()] = n
	}
	h.mu.Unlock()

	// Generous: on a loaded 2-core machine 10,000 real clients join at a
	// few dozen per second.
	startTimeout := 30*time.Second + time.Duration(h.cfg.Nodes)*40*time.Millisecond
	sctx, cancel := context.WithTimeout(h.ctx, startTimeout)
	defer cancel()
	sem := make(chan struct{}, 64)
	var wg sync.WaitGroup
	var firstErr atomic.Pointer[error]
	for _, n := range nodes {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := n.start(sctx); err != nil {
				firstErr.CompareAndSwap(nil, &err)
			}
		})
	}
	wg.Wait()
	if p := firstErr.Load(); p != nil {
		return 0, fmt.Errorf("start nodes: %w", *p)
	}
	if err := h.waitSettled(startTimeout); err != nil {
		return 0, fmt.Errorf("pool of %d nodes %w within %v", h.cfg.Nodes, err, startTimeout)
	}
	return time.Since(begin), nil
}

// live returns the nodes neither killed nor gone.
func (h *perfHarness) live() []perfNode {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]perfNode, 0, len(h.nodes))
	for _, n := range h.nodes {
		if !h.gone[n.id()] {
			out = append(out, n)
		}
	}
	return out
}

func (h *perfHarness) markGone(ids ...string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, id := range ids {
		h.gone[id] = true
	}
}

// watch calls done with the committed assignment whenever it or a node's
// view changes (at most once per gap for a view change), until done
// returns true or timeout passes. Each read of the assignment is a new
// pointer; done may index it once per read.
func (h *perfHarness) watch(timeout, gap time.Duration, done func(a *registry.Assignment, now time.Time) bool) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	read := func() (*registry.Assignment, error) {
		ctx, cancel := context.WithTimeout(h.ctx, 5*time.Second)
		defer cancel()
		a, err := h.adminReg.Assignment(ctx)
		return &a, err
	}
	a, err := read()
	for {
		if err == nil && done(a, time.Now()) {
			return nil
		}
		select {
		case <-h.ctx.Done():
			return h.ctx.Err()
		case <-deadline.C:
			return errNotSettled
		case <-h.changed:
			if gap > 0 {
				if err := h.sleep(gap); err != nil {
					return err
				}
			}
			continue
		case <-h.assignEv:
		case <-tick.C:
		}
		a, err = read()
	}
}

// waitSettled waits until the committed assignment covers exactly the live
// nodes, is balanced, and every live node uses what it was assigned at the
// committed epoch, and then until the nodes are quiet (waitQuiet).
func (h *perfHarness) waitSettled(timeout time.Duration) error {
	live := h.live()
	anodes := make([]allocator.Node, len(live))
	for i, n := range live {
		anodes[i] = allocator.Node{ID: n.id(), IP: n.ip()}
	}
	why := ""
	var checked *registry.Assignment
	isBalanced := false
	balanced := func(a *registry.Assignment) bool {
		if a != checked {
			checked, isBalanced = a, allocator.Balanced(h.groups, anodes, a.Nodes)
		}
		return isBalanced
	}
	// Not timed: checking 10,000 views after every node's change would
	// only take CPU from the nodes.
	err := h.watch(timeout, 20*time.Millisecond, func(a *registry.Assignment, _ time.Time) bool {
		switch {
		case len(a.Nodes) != len(live):
			why = fmt.Sprintf("the assignment has %d nodes, %d are live", len(a.Nodes), len(live))
			return false
		case !balanced(a):
			why = fmt.Sprintf("the assignment at epoch %d is not balanced", a.Epoch)
			return false
		}
		stale, example := 0, ""
		for _, n := range live {
			want, ok := a.Nodes[n.id()]
			// At the committed epoch too: a node still reading a new share
			// has not settled, and its read would be counted against the
			// next measurement.
			if v := n.view(); !ok || !v.usesExactly(want) || n.epoch() != a.Epoch {
				if stale++; stale == 1 {
					example = fmt.Sprintf("%s uses %v at epoch %d, assigned %v at epoch %d", n.id(), v.names(), n.epoch(), want, a.Epoch)
				}
			}
		}
		why = fmt.Sprintf("%d nodes do not use their assignment (e.g. %s)", stale, example)
		return stale == 0
	})
	if errors.Is(err, errNotSettled) {
		return fmt.Errorf("%w: %s", err, why)
	}
	if err != nil {
		return err
	}
	return h.waitQuiet(2 * h.cfg.Interval)
}

// waitQuiet waits, up to limit, until the nodes send nothing but beats for
// a quiet window: reads the last change woke (a weight change makes every
// node read) are over before the next measurement starts, so they are not
// counted against it.
func (h *perfHarness) waitQuiet(limit time.Duration) error {
	const window = 250 * time.Millisecond
	deadline := time.Now().Add(limit)
	prev := h.counter.snapshot()
	for time.Now().Before(deadline) {
		if err := h.sleep(window); err != nil {
			return err
		}
		cur := h.counter.snapshot()
		if cur.cmds-cur.beats == prev.cmds-prev.beats {
			return nil
		}
		prev = cur
	}
	h.logf("the nodes were still sending more than beats after %v; measuring anyway", limit)
	return nil
}

// measureBeats counts beats and round trips over the steady window.
func (h *perfHarness) measureBeats(res *Result) error {
	// Let every node beat twice first: a node settles its fresh
	// registration with one more read after the pool is planned.
	if err := h.sleep(2 * h.cfg.Interval); err != nil {
		return err
	}
	if err := h.waitSettled(3*h.cfg.TTL + 10*time.Second); err != nil {
		return fmt.Errorf("pool %w", err)
	}
	window := beatWindow(h.cfg.Duration, h.cfg.Interval)
	h.logf("steady state for %v", window)
	h.counter.reset()
	begin := time.Now()
	if err := h.sleep(window); err != nil {
		return err
	}
	res.Window = time.Since(begin)

	beats, calls := h.counter.beats.Load(), h.counter.calls.Load()
	res.BeatsPerSec = round1(float64(beats) / res.Window.Seconds())
	if beats > 0 {
		res.RoundTripsPerBeat = math.Round(float64(calls)/float64(beats)*100) / 100
	}
	return nil
}

// beatWindow rounds d up to whole heartbeat intervals: every node beats at
// least once per interval, so over k whole intervals the pool makes at
// least k beats per node, while a window of 2.5 intervals would count 2 or
// 3 beats per node and report a false shortfall.
func beatWindow(d, interval time.Duration) time.Duration {
	k := (d + interval - 1) / interval
	return max(k, 1) * interval
}

// sleep waits for d or until the run is cancelled.
func (h *perfHarness) sleep(d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-h.ctx.Done():
		return h.ctx.Err()
	case <-t.C:
		return nil
	}
}

// holdersOf returns the live nodes the committed assignment gives group g.
func (h *perfHarness) holdersOf(a registry.Assignment, g string) []perfNode {
	var out []perfNode
	for _, n := range h.live() {
		if slices.Contains(a.Nodes[n.id()], g) {
			out = append(out, n)
		}
	}
	return out
}

// measurePropagation changes the config of the group with the most holders
// several times and times until each holder uses the new version.
func (h *perfHarness) measurePropagation(res *Result) error {
	a, err := h.adminReg.Assignment(h.ctx)
	if err != nil {
		return err
	}
	best, holders := "", []perfNode(nil)
	for _, g := range h.groups {
		if hs := h.holdersOf(a, g.Name); len(hs) > len(holders) {
			best, holders = g.Name, hs
		}
	}
	res.Holders = len(holders)
	if best == "" {
		return nil
	}
	h.logf("config change propagation: %d updates of %s (%d holders)", h.cfg.Updates, best, len(holders))
	timeout := 5*time.Second + 2*h.cfg.Interval
	var samples []float64
	for u := 1; u <= h.cfg.Updates; u++ {
		h.collectGarbage()
		t0 := time.Now()
		g, err := h.adminReg.Update(h.ctx, best, registry.Change{Set: map[string]string{"v": strconv.Itoa(u)}}, "check-perf")
		if err != nil {
			return fmt.Errorf("update group %s: %w", best, err)
		}
		seen := make(map[string]bool, len(holders))
		err = h.watch(timeout, 0, func(*registry.Assignment, time.Time) bool {
			for _, n := range holders {
				if seen[n.id()] {
					continue
				}
				if v := n.view(); v != nil && v.groups[best] >= g.Version {
					seen[n.id()] = true
					samples = append(samples, ms(max(v.at.Sub(t0), 0)))
				}
			}
			return len(seen) == len(holders)
		})
		if err != nil && !errors.Is(err, errNotSettled) {
			return err
		}
		for range len(holders) - len(seen) {
			res.MissedPropagation++
			samples = append(samples, ms(timeout))
		}
		res.Updates++
		this := latencies(samples[len(samples)-len(holders):])
		h.logf("update %d: p50 %.1f ms, p99 %.1f ms", u, this.P50, this.P99)
	}
	res.PropagationMS = latencies(samples)
	return nil
}

// measureRebalance times Rebalancer.Run committing a new plan for the
// whole pool: each run follows a weight change that moves nodes.
func (h *perfHarness) measureRebalance(res *Result) error {
	h.logf("rebalance: %d timed runs", h.cfg.Rebalances)
	var samples []float64
	var reads int64
	for i := range h.cfg.Rebalances {
		g := h.groups[(i/2)%len(h.groups)].Name
		w := 2.0
		if i%2 == 1 {
			w = 1
		}
		before := h.counter.snapshot()
		if _, err := h.adminReg.Update(h.ctx, g, registry.Change{Weight: &w}, "check-perf"); err != nil {
			return fmt.Errorf("update group %s: %w", g, err)
		}
		h.setWeight(g, w)
		deadline := time.Now().Add(2 * h.cfg.Interval)
		for {
			r, err := h.adminRB.Run(h.ctx)
			if err == nil {
				samples = append(samples, ms(r.Took))
				break
			}
			// Lost races are normal; so is a slow lock (redsync gives a
			// try 50 ms) on a loaded machine: retry until the deadline.
			if time.Now().After(deadline) {
				if !errors.Is(err, allocator.ErrLocked) && !errors.Is(err, registry.ErrStaleEpoch) {
					return fmt.Errorf("rebalance: %w", err)
				}
				break
			}
			time.Sleep(time.Millisecond)
		}
		res.Rebalanced = len(samples)
		if err := h.waitSettled(3*h.cfg.TTL + 10*time.Second); err != nil {
			return fmt.Errorf("pool after a weight change %w", err)
		}
		after := h.counter.snapshot()
		reads += after.reads - before.reads
		h.logf("rebalance %d (%s weight %v): %d reads", i+1, g, w, after.reads-before.reads)
	}
	res.RebalanceMS = latencies(samples)
	if h.cfg.Rebalances > 0 {
		res.ReadsPerWeightChange = round1(float64(reads) / float64(h.cfg.Rebalances))
	}
	return nil
}

func (h *perfHarness) setWeight(name string, w float64) {
	for i := range h.groups {
		if h.groups[i].Name == name {
			h.groups[i].Weight = w
		}
	}
}

// groupHolders indexes the live holders of each group, once per read of
// the committed assignment, so that checking the nodes' views after every
// change costs the holders of the groups asked about, not the whole pool.
type groupHolders struct {
	h    *perfHarness
	read *registry.Assignment
	by   map[string][]perfNode
}

func (gh *groupHolders) index(a *registry.Assignment) map[string][]perfNode {
	if a == gh.read {
		return gh.by
	}
	gh.h.mu.Lock()
	defer gh.h.mu.Unlock()
	gh.read, gh.by = a, make(map[string][]perfNode, len(gh.h.groups))
	for nid, gs := range a.Nodes {
		n := gh.h.byID[nid]
		if gh.h.gone[nid] || n == nil {
			continue
		}
		for _, g := range gs {
			gh.by[g] = append(gh.by[g], n)
		}
	}
	return gh.by
}

// reassigned reports whether the groups a departed node held are in use
// again: a plan after epoch from was committed, the node is out of the
// committed assignment a, each of its groups has a live holder there, and
// every live holder of them uses it. last is when that became true as the
// nodes saw it, not when this check ran: the later of the commit of epoch
// at (the first plan after a leave; a's own for a crash, which may have
// been noticed by a later plan than the first) and the moment the last of
// those holders started using the group (a node the plan moved in, once
// it read).
func (gh *groupHolders) reassigned(a *registry.Assignment, from, at int64, id string, groups []string, now time.Time) (ok bool, last time.Time) {
	if a.Epoch <= from || len(a.Nodes[id]) > 0 {
		return false, last
	}
	last = gh.h.commitTime(at, now)
	by := gh.index(a)
	for _, g := range groups {
		if len(by[g]) == 0 {
			return false, last
		}
		for _, n := range by[g] {
			v := n.view()
			if v == nil {
				return false, last
			}
			if _, uses := v.groups[g]; !uses {
				return false, last
			}
			if t := v.since[g]; t.After(last) {
				last = t
			}
		}
	}
	return true, last
}

// sinceClamped is the time from t0 to at, within [0, now-t0].
func sinceClamped(t0, at, now time.Time) time.Duration {
	return min(max(at.Sub(t0), 0), now.Sub(t0))
}

// collectGarbage runs a garbage collection before a timed change, so that
// none is due during it. In ModeShared and ModeClient every node lives in this
// process: their heap is ~80 KB a node (connection buffers, most of it),
// 800 MB at 10,000, and a collection marks it for ~0.5 s on two cores,
// during which the goroutine allocating the most (a planner parsing the
// pool) is made to help mark. A leave timed during one took up to 0.9 s, a
// cost a node in its own process, with its own small heap, does not pay.
func (h *perfHarness) collectGarbage() {
	if h.mode == ModeSim {
		return
	}
	runtime.GC()
	// Let the beats the collection held up go out before the clock starts.
	_ = h.sleep(time.Second)
}

// measureLeave closes nodes gracefully one at a time and times until their
// groups are in use elsewhere.
func (h *perfHarness) measureLeave(res *Result) error {
	live := h.live()
	count := min(h.cfg.Leaves, len(live)/10)
	if count == 0 {
		return nil
	}
	h.logf("graceful leave: %d nodes, one at a time", count)
	timeout := 2*h.cfg.TTL + 5*time.Second
	var samples []float64
	var cmds, locks, reads int64
	for _, i := range mrand.Perm(len(live))[:count] {
		n := live[i]
		a0, err := h.adminReg.Assignment(h.ctx)
		if err != nil {
			return err
		}
		groups := a0.Nodes[n.id()]
		h.markGone(n.id())
		h.collectGarbage()
		before := h.counter.snapshot()
		t0 := time.Now()
		var wg sync.WaitGroup
		wg.Go(func() {
			lctx, cancel := context.WithTimeout(h.ctx, h.cfg.TTL)
			defer cancel()
			_ = n.leave(lctx)
		})
		var took time.Duration
		gh := groupHolders{h: h}
		err = h.watch(timeout, 0, func(a *registry.Assignment, now time.Time) bool {
			if ok, last := gh.reassigned(a, a0.Epoch, a0.Epoch+1, n.id(), groups, now); ok {
				took = sinceClamped(t0, last, now)
				return true
			}
			return false
		})
		wg.Wait()
		switch {
		case errors.Is(err, errNotSettled):
			res.MissedLeave++
			took = timeout
		case err != nil:
			return err
		}
		samples = append(samples, ms(took))
		res.Left++
		if err := h.waitSettled(timeout); err != nil {
			return fmt.Errorf("pool after a leave %w", err)
		}
		// One more interval: a node that learns of the change only from
		// its beat, or plans late, does so within it.
		if err := h.sleep(h.cfg.Interval); err != nil {
			return err
		}
		after := h.counter.snapshot()
		commit := h.commitTime(a0.Epoch+1, time.Time{})
		h.logf("leave %d: %v (its plan committed after %v); %d reads; commands: %s", res.Left, took.Round(time.Millisecond),
			commit.Sub(t0).Round(time.Millisecond), after.reads-before.reads, before.since(after))
		cmds += (after.cmds - before.cmds) - (after.beats - before.beats)
		locks += after.locks - before.locks
		reads += after.reads - before.reads
		if res.Left == 1 {
			res.ReadsFirstLeave = after.reads - before.reads
		}
	}
	res.LeaveMS = latencies(samples)
	if res.Left > 0 {
		res.CommandsPerLeave = round1(float64(cmds) / float64(res.Left))
		res.LockAttemptsPerChange = round1(float64(locks) / float64(res.Left))
		res.ReadsPerLeave = round1(float64(reads) / float64(res.Left))
	}
	return nil
}

// measureFailover kills a tenth of the nodes at once (no leave) and times,
// per killed node, until its groups are in use elsewhere.
func (h *perfHarness) measureFailover(res *Result) error {
	live := h.live()
	count := max(1, len(live)*h.cfg.Kill/100)
	if len(live) < 2 {
		return nil
	}
	count = min(count, len(live)-1)
	h.logf("failover: killing %d of %d nodes", count, len(live))
	a0, err := h.adminReg.Assignment(h.ctx)
	if err != nil {
		return err
	}
	victims := make([]perfNode, 0, count)
	pending := make(map[string][]string, count)
	for _, i := range mrand.Perm(len(live))[:count] {
		n := live[i]
		victims = append(victims, n)
		pending[n.id()] = a0.Nodes[n.id()]
	}
	ids := make([]string, len(victims))
	for i, n := range victims {
		ids[i] = n.id()
	}
	h.markGone(ids...)
	h.collectGarbage()
	t0 := time.Now()
	for _, n := range victims {
		n.kill()
	}
	timeout := 3*(h.cfg.TTL+h.cfg.Interval) + 5*time.Second
	var samples []float64
	gh := groupHolders{h: h}
	err = h.watch(timeout, 0, func(a *registry.Assignment, now time.Time) bool {
		for id, groups := range pending {
			if ok, last := gh.reassigned(a, a0.Epoch, a.Epoch, id, groups, now); ok {
				samples = append(samples, ms(sinceClamped(t0, last, now)))
				delete(pending, id)
			}
		}
		return len(pending) == 0
	})
	switch {
	case errors.Is(err, errNotSettled):
		res.MissedFailover = len(pending)
		for range len(pending) {
			samples = append(samples, ms(timeout))
		}
	case err != nil:
		return err
	}
	res.Killed = count
	res.FailoverMS = latencies(samples)
	return nil
}

// shutdown stops every node without leaving (the namespace goes anyway),
// stops the harness and drops the namespace.
func (h *perfHarness) shutdown(ctx context.Context) error {
	h.mu.Lock()
	nodes := h.nodes
	h.mu.Unlock()
	sem := make(chan struct{}, 64)
	var wg sync.WaitGroup
	for _, n := range nodes {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			n.close(ctx)
		})
	}
	wg.Wait()
	h.cancel()
	h.workers.Wait()
	if h.shared != nil {
		_ = h.shared.Close()
	}
	// A script still running (a reap of the stopped nodes) answers BUSY
	// for a while: retry until ctx ends.
	for {
		err := dropNamespace(ctx, h.admin, h.cfg.Namespace)
		if err == nil {
			return nil
		}
		if !redis.HasErrorPrefix(err, "BUSY") || ctx.Err() != nil {
			return fmt.Errorf("drop namespace %s: %w", h.cfg.Namespace, err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// dropNamespace deletes every key of namespace ns: its hash-tagged keys and
// the quota keys redis_rate prefixes with "rate:". On Cluster every master
// is scanned; the hash tag keeps each batch on one slot.
func dropNamespace(ctx context.Context, rdb redis.UniversalClient, ns string) error {
	prefix := keys.New(ns).Prefix()
	drop := func(ctx context.Context, c redis.Cmdable) error {
		for _, pattern := range []string{prefix + "*", "rate:" + prefix + "*"} {
			iter := c.Scan(ctx, 0, pattern, 1000).Iterator()
			var batch []string
			for iter.Next(ctx) {
				batch = append(batch, iter.Val())
				if len(batch) == 500 {
					if err := c.Unlink(ctx, batch...).Err(); err != nil {
						return err
					}
					batch = batch[:0]
				}
			}
			if err := iter.Err(); err != nil {
				return err
			}
			if len(batch) > 0 {
				if err := c.Unlink(ctx, batch...).Err(); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if cc, ok := rdb.(*redis.ClusterClient); ok {
		return cc.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error { return drop(ctx, m) })
	}
	return drop(ctx, rdb)
}

// NewNamespace returns a throwaway namespace: prefix + 8 random hex digits.
func NewNamespace(prefix string) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// latencies returns the nearest-rank p50 and p99 of samples (ms).
func latencies(samples []float64) Percentiles {
	if len(samples) == 0 {
		return Percentiles{}
	}
	s := slices.Clone(samples)
	slices.Sort(s)
	rank := func(q float64) float64 {
		i := int(math.Ceil(q*float64(len(s)))) - 1
		return round1(s[max(i, 0)])
	}
	return Percentiles{P50: rank(0.50), P99: rank(0.99)}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func round1(f float64) float64 { return math.Round(f*10) / 10 }
