package server

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/allot-io/allot/allocator"
	"github.com/allot-io/allot/heartbeat"
	"github.com/allot-io/allot/internal/keys"
	"github.com/allot-io/allot/quota"
	"github.com/allot-io/allot/registry"
)

// Limits and timeouts of the HTTP API.
const (
	// MaxBodyBytes is the largest request body of every route but import.
	MaxBodyBytes = 1 << 20
	// MaxImportBytes is the largest body of POST /v1/import.
	MaxImportBytes = 8 << 20
	// MaxLongPoll caps the wait of GET /v1/nodes/{id}/assignment.
	MaxLongPoll = 60 * time.Second
	// DefaultLongPoll is the wait of GET /v1/nodes/{id}/assignment without ?wait=.
	DefaultLongPoll = 30 * time.Second
	// DefaultMaxStreams is how many event streams each token class (admin,
	// read) may have open at once unless WithMaxStreams says otherwise.
	DefaultMaxStreams = 64
	// DefaultMaxLongPolls is how many assignment long polls each token
	// class (admin, node) may have waiting at once unless WithMaxLongPolls
	// says otherwise.
	DefaultMaxLongPolls = 4096
	// DefaultNodeJoinsPerMinute is how many joins each node token may make
	// per minute unless WithNodeJoinsPerMinute says otherwise.
	DefaultNodeJoinsPerMinute = 600
	// SSEPing is how often an idle event stream gets a comment line, so
	// proxies keep it open and clients notice a dead server.
	SSEPing = 15 * time.Second
	// rebalanceTimeout bounds one rebalance run of the loop.
	rebalanceTimeout = 10 * time.Second
	// fallbackPoll is how often waiting streams and long polls re-read Redis
	// even without a pub/sub nudge (pub/sub delivers at most once).
	fallbackPoll = 5 * time.Second
)

// Server is allot's HTTP server: the JSON API, SSE, the HTTP node protocol,
// metrics and the web UI, plus the coordinator loop that rebalances on
// events and on a timer. Create it with New, serve Handler, call Run, and
// Close it when done.
type Server struct {
	rdb   redis.UniversalClient
	keys  keys.Keys
	reg   *registry.Registry
	hb    *heartbeat.Tracker
	rebal *allocator.Rebalancer
	usage *registry.UsageReader // shared by status, GET /v1/usage and metrics
	log   *slog.Logger
	dev   DevController

	tokens     Tokens
	tokenTable tokenTable
	hbCfg      heartbeat.Config
	metrics    *metrics
	handler    http.Handler

	checkHost    bool     // refuse requests whose Host is not ours
	allowedHosts []string // normalized; loopback names are always allowed
	streams      slots    // per token class: one slot per open event stream
	longPolls    slots    // per token class: one slot per waiting long poll
	joins        *joinLimit

	// HTTP leases (lease.go): the limiter, the group catalog, the nodes'
	// held groups, the groups' last known room and the MAC key.
	limiter *quota.Limiter
	catalog *catalogCache
	held    heldMemory
	room    sync.Map // group -> float64: share of its tightest limit left
	secrets leaseSecrets

	nudge   chan struct{} // cap 1: "rebalance soon"
	changed *signal       // fired on every pub/sub event
	failing atomic.Bool   // the last rebalance failed

	ctx    context.Context // lifetime: cancelled by Close
	cancel context.CancelFunc
	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup
}

// Option configures a Server.
type Option func(*options)

type options struct {
	ns     string
	tokens Tokens
	log    *slog.Logger
	hb     heartbeat.Config
	dev    DevController
	reg    *registry.Registry
	// secrets are WithSecretKeys' keys (nil: secrets stored in plain text).
	secrets *registry.SecretKeys

	allowedHosts []string
	maxStreams   int
	maxLongPolls int
	joinsPerMin  int
}

// WithNamespace selects the namespace (pool) served. default: "default".
// Ignored when WithRegistry is given: the registry's namespace is used.
func WithNamespace(ns string) Option { return func(o *options) { o.ns = ns } }

// WithTokens sets the bearer tokens of the three roles. default: none, which
// leaves every route open (serve only on loopback then).
func WithTokens(t Tokens) Option { return func(o *options) { o.tokens = t } }

// WithLogger sets the logger. default: discard.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) {
		if l != nil {
			o.log = l
		}
	}
}

// WithHeartbeat sets the heartbeat interval and TTL that HTTP nodes are told
// and that the coordinator loop uses as its safety timer.
// default: heartbeat.DefaultConfig() (2 s, 6 s).
func WithHeartbeat(c heartbeat.Config) Option { return func(o *options) { o.hb = c } }

// WithDev enables the dev-only routes under /v1/dev, driven by d.
// default: none (the routes answer 404).
func WithDev(d DevController) Option { return func(o *options) { o.dev = d } }

// WithRegistry makes the server use reg (and its namespace) instead of
// creating its own registry. default: registry.New(rdb, namespace, logger).
func WithRegistry(reg *registry.Registry) Option { return func(o *options) { o.reg = reg } }

// WithSecretKeys gives the server's registry the keys that encrypt secret
// values at rest and decrypt them for HTTP nodes and reveal
// (registry.WithSecretKeys). It cannot be combined with WithRegistry,
// whose registry has its own. default: none (stored in plain text).
func WithSecretKeys(k *registry.SecretKeys) Option { return func(o *options) { o.secrets = k } }

// WithAllowedHosts adds host names (or addresses; a port is ignored) that
// the Host header may name besides the loopback names, such as the listen
// address or the name a proxy forwards. In open mode (no tokens) every
// request's Host is checked against them, which stops DNS rebinding; with
// tokens the check runs only when this option names hosts.
// default: none (loopback names only).
func WithAllowedHosts(hosts ...string) Option {
	return func(o *options) { o.allowedHosts = append(o.allowedHosts, hosts...) }
}

// WithMaxStreams caps the event streams (GET /v1/events) open at once per
// token class: admin (and every request in open mode) and read each have n,
// so read-token streams cannot shut the admin out. One more is answered
// 503 with Retry-After. n <= 0 means DefaultMaxStreams.
// default: DefaultMaxStreams (64).
func WithMaxStreams(n int) Option { return func(o *options) { o.maxStreams = n } }

// WithMaxLongPolls caps the assignment long polls (GET
// /v1/nodes/{id}/assignment with a wait) waiting at once per token class:
// node tokens share n, admin has n of its own. One more is answered 503
// with Retry-After (one heartbeat interval) rather than at once, so a node
// that polls in a loop backs off instead of spinning; its heartbeats, which
// carry the assignment too, are not capped. n <= 0 means
// DefaultMaxLongPolls. default: DefaultMaxLongPolls (4096).
func WithMaxLongPolls(n int) Option { return func(o *options) { o.maxLongPolls = n } }

// WithNodeJoinsPerMinute limits the joins each node token may make: a
// heartbeat for a node ID that its session does not hold (a first beat, a
// re-join after the ID was reaped or left) takes one, over a minute with a
// burst of n, counted in Redis so that every serve replica of the namespace
// shares the budget. A join over it is answered 429 with Retry-After and
// writes nothing but the refusal's count. Beats that continue a node, beats
// refused because another session holds the ID, and the admin token (and
// the open mode) are not limited. n <= 0 means DefaultNodeJoinsPerMinute.
// default: DefaultNodeJoinsPerMinute (600).
func WithNodeJoinsPerMinute(n int) Option { return func(o *options) { o.joinsPerMin = n } }

// New returns a Server on rdb. It subscribes to the namespace's events at
// once (the subscription reconnects on its own); Run starts rebalancing.
func New(rdb redis.UniversalClient, opts ...Option) (*Server, error) {
	o := options{
		ns:  keys.DefaultNamespace,
		log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		hb:  heartbeat.DefaultConfig(),
	}
	for _, opt := range opts {
		opt(&o)
	}
	if o.reg != nil {
		o.ns = o.reg.Namespace()
		if o.secrets != nil {
			return nil, fmt.Errorf("server: WithSecretKeys cannot be combined with WithRegistry: give the registry its keys")
		}
	}
	if err := keys.Validate(o.ns); err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	if err := o.tokens.Validate(); err != nil {
		return nil, err
	}
	if o.maxStreams <= 0 {
		o.maxStreams = DefaultMaxStreams
	}
	if o.maxLongPolls <= 0 {
		o.maxLongPolls = DefaultMaxLongPolls
	}
	if o.joinsPerMin <= 0 {
		o.joinsPerMin = DefaultNodeJoinsPerMinute
	}
	var hosts []string
	for _, h := range o.allowedHosts {
		if h = normalizeHost(h); h != "" && h != "0.0.0.0" && h != "::" {
			hosts = append(hosts, h)
		}
	}
	// registry and heartbeat tag their lines with "ns" themselves: they get
	// the untagged logger, or every line of theirs would say ns twice.
	log := o.log.With("ns", o.ns)
	if o.reg == nil {
		o.reg = registry.New(rdb, registry.WithNamespace(o.ns), registry.WithLogger(o.log), registry.WithSecretKeys(o.secrets))
	}
	hb, err := heartbeat.New(rdb, o.ns, o.hb, heartbeat.WithLogger(o.log))
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		rdb:    rdb,
		keys:   keys.New(o.ns),
		reg:    o.reg,
		usage:  registry.NewUsageReader(o.reg),
		hb:     hb,
		log:    log,
		dev:    o.dev,
		tokens: o.tokens,
		hbCfg:  o.hb,

		tokenTable: newTokenTable(o.tokens),

		checkHost:    o.tokens.Open() || len(hosts) > 0,
		allowedHosts: hosts,
		streams:      newSlots(o.maxStreams),
		longPolls:    newSlots(o.maxLongPolls),
		joins:        newJoinLimit(rdb, keys.New(o.ns), o.joinsPerMin),
		limiter:      quota.NewLimiter(rdb),
		catalog:      &catalogCache{reg: o.reg},
		nudge:        make(chan struct{}, 1),
		changed:      newSignal(),
		ctx:          ctx,
		cancel:       cancel,
	}
	s.rebal = allocator.NewRebalancer(rdb, s.reg, hb,
		allocator.WithPlanner("allot serve"), allocator.WithRebalancerLogger(log))
	s.metrics = newMetrics(s)
	s.handler = s.routes()
	s.wg.Add(1)
	go s.watch()
	return s, nil
}

// Handler returns the HTTP handler of every route.
func (s *Server) Handler() http.Handler { return s.handler }

// Registry returns the registry the server works on.
func (s *Server) Registry() *registry.Registry { return s.reg }

// Tracker returns the heartbeat tracker the server works on.
func (s *Server) Tracker() *heartbeat.Tracker { return s.hb }

// HTTPServer returns an http.Server for h (usually Handler()) with allot's
// timeouts: ReadHeader 5 s, Read 30 s, Write 30 s (lifted per request by the
// event stream and long polls), Idle 120 s. Its BaseContext is the server's
// lifetime, so Close ends open event streams and long polls, letting
// http.Server.Shutdown finish.
func (s *Server) HTTPServer(addr string, h http.Handler) *http.Server {
	return &http.Server{
		Addr:              addr,
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
}

// Nudge asks the loop to rebalance soon. It never blocks; nudges that
// arrive while one is pending are merged.
func (s *Server) Nudge() {
	select {
	case s.nudge <- struct{}{}:
	default:
	}
}

// Run rebalances until ctx is done or the server is closed: at start, on
// every nudge (pub/sub events, HTTP beats reporting work), and on a safety
// timer of one heartbeat interval, which also applies due schedules and reaps
// dead nodes when no node is around to do it. It returns nil when stopped,
// ErrClosed when called after Close.
func (s *Server) Run(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()

	t := time.NewTicker(s.hbCfg.Interval)
	defer t.Stop()
	s.rebalance(ctx)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.ctx.Done():
			return nil
		case <-t.C:
		case <-s.nudge:
		}
		s.rebalance(ctx)
	}
}

// Close stops the event subscription, ends open event streams and long
// polls, makes Run return, and waits for all of it.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	return nil
}

// rebalance runs the rebalancer once and records the outcome.
// A run of failures is logged once, when it starts, and once when it ends.
func (s *Server) rebalance(parent context.Context) (allocator.Result, error) {
	ctx, cancel := context.WithTimeout(parent, rebalanceTimeout)
	defer cancel()
	res, err := s.rebal.Run(ctx)
	s.metrics.observeRebalance(res, err)
	switch outcome(err) {
	case outcomeOK:
		if s.failing.Swap(false) {
			s.log.Info("rebalance recovered", "epoch", res.Epoch)
		}
		if res.Changed || len(res.Reaped) > 0 || len(res.Retired) > 0 || res.Applied > 0 {
			s.log.Info("rebalanced", "epoch", res.Epoch, "moved", res.Moved,
				"reaped", res.Reaped, "retired", res.Retired, "applied", res.Applied, "took", res.Took)
		}
	case outcomeFailed:
		if parent.Err() == nil && s.ctx.Err() == nil && !s.failing.Swap(true) {
			s.log.Warn("rebalance failed", "err", err)
		}
	}
	return res, err
}

// watch follows the events channel: every event wakes waiting streams and
// long polls, and every event but an assignment nudges the loop. It also
// follows the lend channel, which keeps the catalog of HTTP leases fresh;
// a (re)subscription may have lost some of its events, so the catalog is
// read again.
func (s *Server) watch() {
	defer s.wg.Done()
	lend := s.keys.LendEvents()
	ps := s.rdb.Subscribe(s.ctx, s.keys.Events(), lend)
	defer ps.Close()
	ch := ps.ChannelWithSubscriptions()
	for {
		select {
		case <-s.ctx.Done():
			return
		case msg, ok := <-ch:
			if !ok {
				return
			}
			switch m := msg.(type) {
			case *redis.Subscription:
				if m.Channel == lend {
					s.catalog.stale.Store(true)
				}
			case *redis.Message:
				ev, err := registry.ParseEvent(m.Payload)
				if m.Channel == lend {
					if err != nil {
						s.catalog.stale.Store(true)
					} else {
						s.catalog.apply(ev)
					}
					continue
				}
				s.changed.fire()
				if err != nil || ev.Type != registry.EventAssignment {
					s.Nudge()
				}
			}
		}
	}
}

// signal is a broadcast: wait returns a channel closed by the next fire.
type signal struct {
	mu sync.Mutex
	ch chan struct{}
}

func newSignal() *signal { return &signal{ch: make(chan struct{})} }

func (b *signal) wait() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.ch
}

func (b *signal) fire() {
	b.mu.Lock()
	close(b.ch)
	b.ch = make(chan struct{})
	b.mu.Unlock()
}
