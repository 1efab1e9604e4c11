package client

import (
	crand "crypto/rand"
	"encoding/hex"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/allot-io/allot/heartbeat"
	"github.com/allot-io/allot/internal/keys"
)

// Option configures a Client built by New or FromEnv.
type Option func(*options)

type options struct {
	namespace string
	nodeID    string
	ip        string
	ipSet     bool
	preferred string
	cacheDir  string
	heartbeat heartbeat.Config
	// heartbeatSet is true when WithHeartbeat was given: Start then checks
	// it against the namespace settings instead of adopting them.
	heartbeatSet bool
	// logSet is true when WithLogger was given: Start then routes go-redis's
	// own log lines to it.
	logSet bool
	log    *slog.Logger
	// probeAfter is the first wait before a group this node suspends is
	// probed (health.go).
	probeAfter time.Duration
	// quotaFallback is how Allow and Reserve limit while Redis is away.
	quotaFallback QuotaFallback
	// secretKeys is the key list of WithSecretKeys (secrets.go).
	secretKeys    string
	secretKeysSet bool

	// borrowSample is how many lendable groups an Acquire that must borrow
	// weighs (WithBorrowSample).
	borrowSample int
	// noDemand keeps demand out of the beats (WithoutDemand).
	noDemand bool
	// intn returns a random int in [0, n): the borrow sample. Tests
	// replace it.
	intn func(n int) int

	// now is the monotonic clock leases are measured with. Tests replace it.
	now func() time.Time
	// jitter returns a random duration in [0, d). Tests replace it.
	jitter func(d time.Duration) time.Duration
}

func defaultOptions() options {
	return options{
		namespace:     keys.DefaultNamespace,
		heartbeat:     heartbeat.DefaultConfig(),
		log:           slog.New(slog.DiscardHandler),
		quotaFallback: QuotaLocal,
		borrowSample:  DefaultBorrowSample,
		intn:          rand.IntN,
		now:           time.Now,
		jitter: func(d time.Duration) time.Duration {
			if d <= 0 {
				return 0
			}
			return rand.N(d)
		},
	}
}

// WithNamespace selects the pool (namespace) to join. default: "default".
func WithNamespace(ns string) Option {
	return func(o *options) { o.namespace = ns }
}

// WithNodeID sets the node ID, unique among the live nodes of the
// namespace. A node restarting with the same ID within the TTL continues
// as the same node. default: hostname + "-" + 6 random hex digits.
func WithNodeID(id string) Option {
	return func(o *options) { o.nodeID = id }
}

// WithIP sets the address reported for this node; it feeds the allocator's
// IP hash that decides which groups move. default: the first non-loopback
// IPv4 address of the host ("" if there is none).
func WithIP(ip string) Option {
	return func(o *options) { o.ip, o.ipSet = ip, true }
}

// WithPreferredGroup asks to be pinned to group name while it has room.
// default: "" (no preference).
func WithPreferredGroup(name string) Option {
	return func(o *options) { o.preferred = name }
}

// WithCacheDir keeps the last good assignment in
// dir/<namespace>-<node>.json (mode 0600: it holds config values) so a node
// starting while Redis is down starts on it. default: "" (no cache).
func WithCacheDir(dir string) Option {
	return func(o *options) { o.cacheDir = dir }
}

// WithHeartbeat sets the beat interval and TTL. They belong to the
// namespace (`allot namespace set`): Start fails with an error wrapping
// heartbeat.ErrConfigMismatch when the namespace stores other values, and
// stores cfg when it stores none yet. default: the namespace's settings,
// read at Start (heartbeat.DefaultConfig(), 2 s and 6 s, when none are
// stored or Redis cannot be reached).
func WithHeartbeat(cfg heartbeat.Config) Option {
	return func(o *options) { o.heartbeat, o.heartbeatSet = cfg, true }
}

// WithProbeAfter sets how long a group this node's reports suspend waits
// before it is probed (doubling after each failed probe, at most 6 h). Every
// process of a namespace should use the same. default: 5m.
func WithProbeAfter(d time.Duration) Option {
	return func(o *options) { o.probeAfter = d }
}

// WithLogger sets the logger. Config values are never logged. Start also
// routes go-redis's own log lines (dial and pool errors) to it at warn
// level; go-redis has one logger per process, so with several clients the
// last one started gets them all.
// default: discard.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) {
		if l != nil {
			o.log, o.logSet = l, true
		}
	}
}

// defaultNodeID is hostname + "-" + 6 random hex digits, so two processes
// on one host never share an ID.
func defaultNodeID() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "node"
	}
	var b [3]byte
	_, _ = crand.Read(b[:])
	return host + "-" + hex.EncodeToString(b[:])
}

// defaultIP is the first non-loopback IPv4 address of the host, "" if none.
func defaultIP() string {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return ""
	}
	for _, a := range addrs {
		n, ok := a.(*net.IPNet)
		if !ok || n.IP.IsLoopback() {
			continue
		}
		if v4 := n.IP.To4(); v4 != nil {
			return v4.String()
		}
	}
	return ""
}

// QuotaFallback is how Allow and Reserve limit calls while Redis cannot be
// reached.
type QuotaFallback int

// The quota fallbacks.
const (
	// QuotaLocal limits in process at each limit × this node's current share
	// of the group (its Share): the pool as a whole stays near its limits as
	// long as the shares are right.
	QuotaLocal QuotaFallback = iota
	// QuotaOpen allows every call.
	QuotaOpen
	// QuotaClosed refuses every call with the Redis error.
	QuotaClosed
)

// String is "local", "open" or "closed".
func (f QuotaFallback) String() string {
	switch f {
	case QuotaLocal:
		return "local"
	case QuotaOpen:
		return "open"
	case QuotaClosed:
		return "closed"
	}
	return "QuotaFallback(" + strconv.Itoa(int(f)) + ")"
}

// WithQuotaFallback sets how Allow and Reserve limit while Redis cannot be
// reached; entering and leaving the fallback is logged once each.
// default: QuotaLocal.
func WithQuotaFallback(f QuotaFallback) Option {
	return func(o *options) { o.quotaFallback = f }
}

// DefaultBorrowSample is how many lendable groups an Acquire that must
// borrow weighs unless WithBorrowSample says otherwise.
const DefaultBorrowSample = 3

// MaxBorrowSample is the largest WithBorrowSample.
const MaxBorrowSample = 8

// WithBorrowSample sets how many lendable groups an Acquire weighs when no
// group the node holds can take the call: k random ones, and the one whose
// limits have the most room now takes it (the power of k choices: cheap at
// any pool size). 0 means the node never borrows. At most MaxBorrowSample.
// default: DefaultBorrowSample (3).
func WithBorrowSample(k int) Option {
	return func(o *options) { o.borrowSample = k }
}

// WithoutDemand keeps the node's demand out of its beats: the planner then
// places it by IP hash and stickiness alone, as it placed every node before
// placement by demand. For a node whose calls should not steer placement,
// and for benchmarks of that older behaviour (quotabench -skew's Allow
// baseline). default: demand is sent.
func WithoutDemand() Option {
	return func(o *options) { o.noDemand = true }
}
