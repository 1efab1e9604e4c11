package heartbeat

import (
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/redis/go-redis/v9"

	"github.com/allot-io/allot/internal/assignlua"
	"github.com/allot-io/allot/internal/keys"
)

// MaxNodeIDLen is the longest node ID accepted, in bytes.
const MaxNodeIDLen = 128

// MaxSessionLen is the longest session accepted, in bytes. NewSession makes
// 16 hex characters.
const MaxSessionLen = 64

// MaxIPLen is the longest IP a beat may carry, in bytes: an IPv6 address
// with a zone fits.
const MaxIPLen = 64

// MaxHeld is the most group names one beat may report held. A node holds
// one group when the pool has at least as many nodes as groups, and about
// groups/nodes otherwise; 1,024 names (at most 64 KiB) covers any pool a
// node can serve while bounding what one node ID stores.
const MaxHeld = 1024

// nodeLogMaxLen caps the node event stream :log:nodes (MAXLEN ~).
const nodeLogMaxLen = 10000

var (
	//go:embed beat.lua
	beatLua    string
	beatScript = redis.NewScript(beatLua)

	//go:embed live.lua
	liveLua    string
	liveScript = redis.NewScript(liveLua)

	//go:embed claim.lua
	claimLua string

	//go:embed reap.lua
	reapLua    string
	reapScript = redis.NewScript(assignlua.Forget + claimLua + reapLua)

	//go:embed leave.lua
	leaveLua    string
	leaveScript = redis.NewScript(assignlua.Forget + claimLua + leaveLua)
)

// Tracker records the beats of the nodes of one namespace and judges their
// liveness by Redis server time. It holds no goroutines and is safe for
// concurrent use.
type Tracker struct {
	rdb  redis.UniversalClient
	keys keys.Keys
	cfg  Config
	ttl  int64 // cfg.TTL in ms
	iv   int64 // cfg.Interval in ms
	log  *slog.Logger

	// Key names built once: a beat is the hot path.
	nodes, state, logKey, schedule, revoked, events, members, settings string

	// warned holds the nodes whose ignored held names were logged, so a
	// node that keeps claiming them is logged once (bounded: cleared when
	// it reaches maxWarned).
	warnMu sync.Mutex
	warned map[string]struct{}
}

// maxWarned bounds Tracker.warned.
const maxWarned = 4096

// Option configures a Tracker.
type Option func(*Tracker)

// WithLogger sets the logger. Default: discard.
func WithLogger(l *slog.Logger) Option {
	return func(t *Tracker) {
		if l != nil {
			t.log = l
		}
	}
}

// New returns a Tracker for namespace ns ("" = keys.DefaultNamespace). It
// validates cfg and ns (ErrInvalidConfig) and does no I/O.
func New(rdb redis.UniversalClient, ns string, cfg Config, opts ...Option) (*Tracker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if ns == "" {
		ns = keys.DefaultNamespace
	}
	if err := keys.Validate(ns); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	if rdb == nil {
		return nil, fmt.Errorf("%w: nil redis client", ErrInvalidConfig)
	}
	t := &Tracker{
		rdb:  rdb,
		keys: keys.New(ns),
		cfg:  cfg,
		ttl:  cfg.TTL.Milliseconds(),
		iv:   cfg.Interval.Milliseconds(),
		log:  slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	k := t.keys
	t.nodes, t.state, t.logKey, t.schedule = k.Nodes(), k.State(), k.NodeLog(), k.Schedule()
	t.revoked, t.events, t.members, t.settings = k.Revoked(), k.Events(), k.Members(), k.Settings()
	for _, o := range opts {
		o(t)
	}
	t.log = t.log.With("ns", ns)
	return t, nil
}

// Config returns the Config the Tracker was built with.
func (t *Tracker) Config() Config { return t.cfg }

// Beat is what a node reports on every beat.
type Beat struct {
	// Node is the node ID (see ValidateNodeID).
	Node string
	// Session identifies the process beating for Node (see NewSession and
	// ValidateSession; required): a live ID belongs to one session, and a
	// beat from another one is refused with ErrNodeIDInUse.
	Session string
	// IP is the node's address; it feeds the allocator's IP hash. It must
	// parse as an IP address ("" = unknown), at most MaxIPLen bytes.
	IP string
	// Preferred is the group the node asks to be pinned to ("" = none); it
	// must be a valid group name. Changing it counts as a membership change
	// (mver++), at most once per interval: a change within an interval of
	// the last one is applied by the first beat after it. A preference
	// never takes a capped group from a live holder (allocator.Plan).
	Preferred string
	// Held lists the groups the node is using right now (any order; at most
	// MaxHeld valid group names). Only the groups of the node's committed
	// entry or revoked entries count; the others are not stored and come
	// back in Reply.Ignored.
	Held []string
	// Ack is the assignment epoch that Held reflects.
	Ack int64
	// Rev is the group revision the node's view covers (0 = unknown).
	// When it and Ack are current the beat skips the comparisons it would
	// only need if they had moved (HeldRev, EntryIsHeld): a steady beat
	// costs what it did before them.
	Rev int64
	// Demand is what the node asked of its groups lately (nil = not sent:
	// the stored figures stay). Each figure must be finite and within
	// [0, MaxDemand]; the record stores it only when it moved by more than
	// DemandChange (see Demand), and a stored change asks for a plan at
	// most once per DemandPlanIntervals intervals.
	Demand *Demand
}

// Reply is what a beat returns: enough for the node to notice a change.
type Reply struct {
	// Epoch is the current assignment epoch (0 before the first commit).
	Epoch int64
	// Rev is the current group revision (0 before the first group write).
	Rev int64
	// Work is true when a rebalance is due: membership or groups changed
	// since the last plan, a node is past its TTL, a schedule is due, or this
	// node has revoked groups waiting for its release.
	Work bool
	// Joined is true when this beat (re)registered the node.
	Joined bool
	// Now is the Redis server time of the beat.
	Now time.Time
	// First is true when this node is the one to plan the pending Work now:
	// the first beat to see a change claims it (as do a leave and a reap for
	// the change they make), and the others wait; a claim left pending for
	// TTL/3 (about an interval) passes to the next beat. So one planner
	// tries the lock per change instead of every node that beats.
	First bool
	// HeldRev is the group revision of the last write to any of the held
	// groups the beat reported (Rev when one has no record: deleted, or not
	// written since revisions were recorded per group). A node that read at
	// HeldRev or later has nothing to read for the groups it holds, whatever
	// Rev says. 0 when Beat.Rev is Rev (nothing to compare).
	HeldRev int64
	// EntryIsHeld is true when the node's committed entry is exactly the
	// groups the beat reported held; Holders then gives each one's holder
	// count, and Dirty says whether a leave or reap changed counts since the
	// last commit (then they are not the epoch's). A node that read those
	// groups at an older epoch may take Epoch and the shares 1/Holders
	// without a read when Dirty is false. Not compared (false) when
	// Beat.Ack is Epoch.
	EntryIsHeld bool
	Dirty       bool
	Holders     map[string]int
	// Ignored lists the held groups the beat reported that the node was
	// neither assigned nor has a revoked entry for, sorted: they were not
	// recorded (a claim on a group the node was never given counts for
	// nothing). The Tracker logs them once per node.
	Ignored []string
}

// BeatKeys is how many keys the beat script takes: command hooks that
// count beats (tests, check perf) recognise it by EVALSHA with this many
// keys, the first one the namespace's :nodes.
const BeatKeys = 9

// Beat records one beat of b.Node in exactly one round trip and returns the
// state the node needs to notice a change. The first beat of a node (or the
// first after it was reaped or left, or a new session's first beat after the
// old one expired) joins it: mver++ and a node.joined event. A beat for an
// ID live under another session records nothing and returns an *InUseError
// (ErrNodeIDInUse); a join while the namespace has its max_live_nodes live
// records nothing and returns ErrTooManyNodes; an invalid beat records
// nothing and returns ErrInvalidBeat (the script checks every field and
// bound again before its first write). Liveness is judged by the TTL stored
// for the namespace (Config's when none is).
func (t *Tracker) Beat(ctx context.Context, b Beat) (Reply, error) {
	held, err := b.validate()
	if err != nil {
		return Reply{}, err
	}
	calls, tokens := demandArgs(b.Demand)
	res, err := beatScript.Run(ctx, t.rdb, t.beatKeys(), t.beatArgs(b, held, calls, tokens)...).Int64Slice()
	if err != nil {
		if what, ok := strings.CutPrefix(err.Error(), "INVALIDBEAT "); ok {
			return Reply{}, fmt.Errorf("%w %q: %s (refused by the beat script)", ErrInvalidBeat, truncate(b.Node, 64), what)
		}
		return Reply{}, fmt.Errorf("heartbeat: beat %q: %w", b.Node, err)
	}
	switch {
	case len(res) == 3 && res[0] == -1:
		return Reply{Now: time.UnixMilli(res[2])}, &InUseError{Node: b.Node, Remaining: time.Duration(res[1]-res[2]) * time.Millisecond}
	case len(res) == 3 && res[0] == -2:
		return Reply{}, fmt.Errorf("%w: node %q cannot join namespace %q: %d nodes are live, max_live_nodes is %d",
			ErrTooManyNodes, b.Node, t.keys.Namespace(), res[1], res[2])
	case len(res) < 10:
		return Reply{}, fmt.Errorf("heartbeat: beat %q: unexpected reply of %d values", b.Node, len(res))
	}
	r := Reply{Epoch: res[0], Rev: res[1], Work: res[2] == 1, Joined: res[3] == 1, Now: time.UnixMilli(res[4]), First: res[5] == 1,
		HeldRev: res[6], EntryIsHeld: res[7] == 1, Dirty: res[8] == 1}
	names := splitHeld(held)
	k := res[9]
	if k < 0 || int64(len(res)) < 10+k {
		return Reply{}, fmt.Errorf("heartbeat: beat %q: unexpected reply of %d values for %d ignored groups", b.Node, len(res), k)
	}
	for _, pos := range res[10 : 10+k] {
		if pos < 1 || pos > int64(len(names)) {
			return Reply{}, fmt.Errorf("heartbeat: beat %q: ignored group %d of %d", b.Node, pos, len(names))
		}
		r.Ignored = append(r.Ignored, names[pos-1])
	}
	counts := res[10+k:]
	if r.EntryIsHeld {
		if len(counts) != len(names) {
			return Reply{}, fmt.Errorf("heartbeat: beat %q: unexpected reply of %d values for %d groups", b.Node, len(res), len(names))
		}
		if len(names) > 0 {
			r.Holders = make(map[string]int, len(names))
			for i, g := range names {
				r.Holders[g] = int(counts[i])
			}
		}
	}
	if r.Joined {
		t.log.Info("node joined", "node", b.Node, "epoch", r.Epoch)
	}
	if len(r.Ignored) > 0 {
		t.warnIgnored(b.Node, r.Ignored)
	}
	return r, nil
}

// beatKeys are the KEYS of beat.lua.
func (t *Tracker) beatKeys() []string {
	return []string{t.nodes, t.state, t.members, t.logKey, t.schedule, t.revoked, t.keys.Assign(), t.keys.Holders(), t.settings}
}

// beatArgs are the ARGV of beat.lua for b, its joined held list and its
// demand figures as sent ("" and "": none).
func (t *Tracker) beatArgs(b Beat, held, calls, tokens string) []any {
	return []any{b.Node, b.IP, b.Preferred, held, b.Ack, t.ttl, t.events, nodeLogMaxLen, b.Session, t.iv, b.Rev,
		MaxHeld, MaxNodeIDLen, MaxIPLen, MaxSessionLen, DefaultMaxLiveNodes,
		calls, tokens, formatFigure(MaxDemand), DemandChange, DemandFloorCalls, DemandFloorTokens, DemandPlanIntervals}
}

// warnIgnored logs, once per node, the held groups its beats claim outside
// its committed entry and revoked entries.
func (t *Tracker) warnIgnored(node string, ignored []string) {
	t.warnMu.Lock()
	_, done := t.warned[node]
	if !done {
		if t.warned == nil || len(t.warned) >= maxWarned {
			t.warned = make(map[string]struct{})
		}
		t.warned[node] = struct{}{}
	}
	t.warnMu.Unlock()
	if !done {
		shown := ignored[:min(len(ignored), 16)]
		// Info, not Warn: an honest node reports an uncapped group it was
		// just moved off (make-before-break) until it reads; a node that
		// claims groups it was never given shows here too.
		t.log.Info("beat reports held groups outside the node's entry and revoked entries; not counted (logged once per node)",
			"node", node, "groups", shown, "count", len(ignored))
	}
}

// Node is a live node as stored by its beats.
type Node struct {
	ID        string
	IP        string
	Preferred string
	// Held lists the groups the node reported using, sorted.
	Held []string
	// Ack is the assignment epoch Held reflects.
	Ack int64
	// LastSeen is the server time of the node's last beat.
	LastSeen time.Time
	// Joined is the server time of the beat that registered the node.
	Joined time.Time
	// Demand is the node's demand as last stored (nil: it never sent one).
	// A beat stores a new figure only when it moved by more than
	// DemandChange, so this is within that of what the node asks now.
	Demand *Demand
}

// Live returns the live nodes (last beat within the TTL, by server time)
// sorted by ID, and the server time they were judged at. One round trip.
func (t *Tracker) Live(ctx context.Context) ([]Node, time.Time, error) {
	var liveCmd *redis.Cmd
	var recordsCmd *redis.MapStringStringCmd
	for attempt := 0; ; attempt++ {
		pipe := t.rdb.Pipeline()
		liveCmd = liveScript.EvalSha(ctx, pipe, []string{t.nodes, t.settings}, t.ttl)
		recordsCmd = pipe.HGetAll(ctx, t.members)
		_, err := pipe.Exec(ctx)
		if err == nil || errors.Is(err, redis.Nil) {
			break
		}
		if !isNoScript(err) || attempt > 0 {
			return nil, time.Time{}, fmt.Errorf("heartbeat: live: %w", err)
		}
		// A pipeline cannot fall back from EVALSHA to EVAL by itself: the
		// script cache was empty (a restarted server), so load it once.
		if err := liveScript.Load(ctx, t.rdb).Err(); err != nil {
			return nil, time.Time{}, fmt.Errorf("heartbeat: live: %w", err)
		}
	}
	res, err := liveCmd.Slice()
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("heartbeat: live: %w", err)
	}
	if len(res) != 2 {
		return nil, time.Time{}, fmt.Errorf("heartbeat: live: unexpected reply of %d values", len(res))
	}
	nowMS, ok1 := res[0].(int64)
	seenList, ok2 := res[1].(string)
	if !ok1 || !ok2 {
		return nil, time.Time{}, fmt.Errorf("heartbeat: live: unexpected reply shape")
	}
	seen := splitLines(seenList)
	if len(seen)%2 != 0 {
		return nil, time.Time{}, fmt.Errorf("heartbeat: live: unexpected reply shape")
	}
	byID := recordsCmd.Val()
	// Sort the small (id, score) pairs, not the Nodes built from them.
	type entry struct{ id, score string }
	entries := make([]entry, 0, len(seen)/2)
	for i := 0; i < len(seen); i += 2 {
		entries = append(entries, entry{seen[i], seen[i+1]})
	}
	slices.SortFunc(entries, func(a, b entry) int { return strings.Compare(a.id, b.id) })
	nodes := make([]Node, len(entries))
	for i, e := range entries {
		n := &nodes[i]
		*n = parseRecord(byID[e.id])
		n.ID, n.LastSeen = e.id, time.UnixMilli(parseMS(e.score))
	}
	return nodes, time.UnixMilli(nowMS), nil
}

// Reap removes every node whose last beat is older than the TTL (by server
// time), bumps mver once if any was removed, emits one node.reaped event per
// node, and returns their IDs sorted. One round trip.
func (t *Tracker) Reap(ctx context.Context) ([]string, error) {
	ids, err := reapScript.Run(ctx, t.rdb, t.reapKeys(), t.ttl, t.events, nodeLogMaxLen).StringSlice()
	if err != nil {
		return nil, fmt.Errorf("heartbeat: reap: %w", err)
	}
	if len(ids) == 0 {
		return nil, nil
	}
	slices.Sort(ids)
	t.log.Info("nodes reaped", "nodes", ids)
	return ids, nil
}

// reapKeys are the KEYS of reap.lua.
func (t *Tracker) reapKeys() []string {
	k := t.keys
	return []string{t.nodes, t.state, t.logKey, t.members, k.Assign(), k.Revoked(), k.Holders(), t.settings}
}

// leaveKeys are the KEYS of leave.lua.
func (t *Tracker) leaveKeys() []string {
	k := t.keys
	return []string{t.nodes, t.state, t.members, t.logKey, k.Assign(), k.Revoked(), k.Holders()}
}

// Leave deregisters node id at once (mver++, node.left event), so its groups
// can move without waiting for the TTL. Only the session that holds the ID
// may, and session must be valid (ValidateSession: "" is not): for a node
// whose record holds another session it changes nothing and returns
// ErrWrongSession. Leaving an unknown node is a no-op.
func (t *Tracker) Leave(ctx context.Context, id, session string) error {
	if err := ValidateSession(session); err != nil {
		return err
	}
	return t.leave(ctx, id, session, false)
}

// Evict deregisters node id like Leave, whatever its session: an operator's
// removal of a node. The process behind it, if any, re-joins with its next
// beat.
func (t *Tracker) Evict(ctx context.Context, id string) error {
	return t.leave(ctx, id, "", true)
}

func (t *Tracker) leave(ctx context.Context, id, session string, force bool) error {
	if err := ValidateNodeID(id); err != nil {
		return err
	}
	forceArg := "0"
	if force {
		forceArg = "1"
	}
	left, err := leaveScript.Run(ctx, t.rdb, t.leaveKeys(), id, t.events, nodeLogMaxLen, session, forceArg).Int64()
	return t.leaveResult(id, force, left, err)
}

// leaveResult interprets leave.lua's reply.
func (t *Tracker) leaveResult(id string, force bool, left int64, err error) error {
	if err != nil {
		if what, ok := strings.CutPrefix(err.Error(), "INVALIDLEAVE "); ok {
			return fmt.Errorf("%w: leave %q: %s (refused by the leave script)", ErrInvalidNode, truncate(id, 64), what)
		}
		return fmt.Errorf("heartbeat: leave %q: %w", id, err)
	}
	switch left {
	case -1:
		return fmt.Errorf("%w %q: it belongs to another session", ErrWrongSession, id)
	case 1:
		t.log.Info("node left", "node", id, "evicted", force)
	}
	return nil
}

// QueueLeave queues on tx (a TxPipeline of this Tracker's client) what Leave
// does, so that a leaver can deregister and read the pool for the plan that
// follows in one round trip (see QueuePlanRead, which must come after it).
// The returned function reports, once the transaction ran, what Leave would
// have returned. The script goes by EVAL, as QueuePlanRead's.
func (t *Tracker) QueueLeave(ctx context.Context, tx redis.Pipeliner, id, session string) (result func() error) {
	if err := ValidateNodeID(id); err != nil {
		return func() error { return err }
	}
	if err := ValidateSession(session); err != nil {
		return func() error { return err }
	}
	cmd := leaveScript.Eval(ctx, tx, t.leaveKeys(), id, t.events, nodeLogMaxLen, session, "0")
	return func() error {
		left, err := cmd.Int64()
		return t.leaveResult(id, false, left, err)
	}
}

// CheckSession reports whether session holds node id: nil when the node's
// record carries session (live, or expired and not yet taken over), an error
// wrapping ErrWrongSession when the record holds another session or the
// node is unknown. One round trip.
func (t *Tracker) CheckSession(ctx context.Context, id, session string) error {
	if err := ValidateNodeID(id); err != nil {
		return err
	}
	if err := ValidateSession(session); err != nil {
		return err
	}
	rec, err := t.rdb.HGet(ctx, t.members, id).Result()
	if errors.Is(err, redis.Nil) {
		return fmt.Errorf("%w %q: the node is not registered (send a heartbeat first)", ErrWrongSession, id)
	}
	if err != nil {
		return fmt.Errorf("heartbeat: check session of %q: %w", id, err)
	}
	if recordSession(rec) != session {
		return fmt.Errorf("%w %q", ErrWrongSession, id)
	}
	return nil
}

// NewSession returns a fresh random session: 16 hex characters from
// crypto/rand, so another process cannot guess it.
func NewSession() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (it panics instead)
	return hex.EncodeToString(b[:])
}

// ValidateSession reports whether s can be used as a session: 1 to
// MaxSessionLen bytes of ASCII letters, digits, '-' and '_'. "" is not a
// session: a node with no session could be left or taken over by anyone
// sending none. The error wraps ErrInvalidNode.
func ValidateSession(s string) error {
	if p := checkSession(s); p != "" {
		return fmt.Errorf("%w: %s", ErrInvalidNode, p)
	}
	return nil
}

func checkSession(s string) string {
	if s == "" {
		return "empty session (use NewSession)"
	}
	if len(s) > MaxSessionLen {
		return fmt.Sprintf("session of %d bytes is longer than %d", len(s), MaxSessionLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-' || c == '_') {
			return fmt.Sprintf("session contains %q (letters, digits, '-' and '_' only)", c)
		}
	}
	return ""
}

// validate checks everything a beat stores and returns the joined held
// list; its errors wrap ErrInvalidBeat.
func (b Beat) validate() (string, error) {
	p := checkNodeID(b.Node)
	if p == "" {
		p = checkSession(b.Session)
	}
	if p == "" {
		p = checkIP(b.IP)
	}
	if p == "" && b.Preferred != "" && !keys.ValidGroupName(b.Preferred) {
		p = fmt.Sprintf("preferred group %q does not match %s", truncate(b.Preferred, 64), keys.GroupNameRule)
	}
	if p != "" {
		return "", fmt.Errorf("%w: %s", ErrInvalidBeat, p)
	}
	if b.Demand != nil {
		if err := b.Demand.Validate(); err != nil {
			return "", err
		}
	}
	held, p := joinHeld(b.Held)
	if p != "" {
		return "", fmt.Errorf("%w: %s", ErrInvalidBeat, p)
	}
	return held, nil
}

// ValidateIP reports whether ip is a node address: "" (unknown) or an IPv4
// or IPv6 address as net/netip parses it, at most MaxIPLen bytes. The error
// wraps ErrInvalidNode.
func ValidateIP(ip string) error {
	if p := checkIP(ip); p != "" {
		return fmt.Errorf("%w: %s", ErrInvalidNode, p)
	}
	return nil
}

func checkIP(ip string) string {
	switch {
	case ip == "":
		return ""
	case len(ip) > MaxIPLen:
		return fmt.Sprintf("ip of %d bytes is longer than %d", len(ip), MaxIPLen)
	}
	if _, err := netip.ParseAddr(ip); err != nil {
		return fmt.Sprintf("ip %q is not an IP address", truncate(ip, 64))
	}
	return checkField("ip", ip) // zones are free text
}

// truncate shortens s for an error message.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// ValidateNodeID reports whether id can be used as a node ID: non-empty, at
// most MaxNodeIDLen bytes of UTF-8, with no control character, comma or
// whitespace. The error wraps ErrInvalidNode.
func ValidateNodeID(id string) error {
	if p := checkNodeID(id); p != "" {
		return fmt.Errorf("%w: %s", ErrInvalidNode, p)
	}
	return nil
}

func checkNodeID(id string) string {
	switch {
	case id == "":
		return "empty id"
	case len(id) > MaxNodeIDLen:
		return fmt.Sprintf("id of %d bytes is longer than %d", len(id), MaxNodeIDLen)
	case !utf8.ValidString(id):
		return fmt.Sprintf("id %q is not valid UTF-8", id)
	}
	for _, r := range id {
		if r == ',' || unicode.IsControl(r) || unicode.IsSpace(r) {
			return fmt.Sprintf("id %q contains %q", id, r)
		}
	}
	return ""
}

// checkField rejects what cannot be stored in a tab-separated record.
func checkField(what, v string) string {
	for _, r := range v {
		if unicode.IsControl(r) {
			return fmt.Sprintf("%s %q contains a control character", what, truncate(v, 64))
		}
	}
	return ""
}

// splitLines splits a newline-joined list ("" = empty).
// isNoScript reports whether err is Redis's NOSCRIPT (EVALSHA of an unknown
// script; a pipeline cannot fall back to EVAL by itself).
func isNoScript(err error) bool {
	return err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT")
}

func splitLines(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// parseRecord reads a :members record,
// "joined\tip\tpreferred\theld\tack\tsession\tpref_at\tpref_wait\tcalls\ttokens"
// (session, pref_at and pref_wait are beat.lua's own; calls and tokens the
// stored demand). Missing fields stay zero.
func parseRecord(rec string) Node {
	// Field by field, without a slice of fields: a planner parses every
	// record of the pool.
	var n Node
	joined, rest, _ := strings.Cut(rec, "\t")
	n.IP, rest, _ = strings.Cut(rest, "\t")
	n.Preferred, rest, _ = strings.Cut(rest, "\t")
	held, rest, _ := strings.Cut(rest, "\t")
	ack, rest, _ := strings.Cut(rest, "\t")
	if j := parseMS(joined); j > 0 {
		n.Joined = time.UnixMilli(j)
	}
	n.Held, n.Ack = splitHeld(held), parseMS(ack)
	// session, pref_at, pref_wait, then the demand figures.
	for range 3 {
		_, rest, _ = strings.Cut(rest, "\t")
	}
	calls, tokens, _ := strings.Cut(rest, "\t")
	n.Demand = parseDemand(calls, tokens)
	return n
}

// recordSession returns the session field of a :members record ("" for a
// record written before sessions existed).
func recordSession(rec string) string {
	f := strings.SplitN(rec, "\t", 7)
	if len(f) < 6 {
		return ""
	}
	return f[5]
}

// joinHeld sorts, dedupes and comma-joins held group names: at most
// MaxHeld names, each a valid group name (else the problem, not "").
func joinHeld(held []string) (string, string) {
	if len(held) == 0 {
		return "", ""
	}
	if len(held) > MaxHeld {
		return "", fmt.Sprintf("%d held groups, more than %d", len(held), MaxHeld)
	}
	h := slices.Clone(held)
	slices.Sort(h)
	h = slices.Compact(h)
	for _, g := range h {
		if !keys.ValidGroupName(g) {
			return "", fmt.Sprintf("held group %q does not match %s", truncate(g, 64), keys.GroupNameRule)
		}
	}
	return strings.Join(h, ","), ""
}

// splitHeld parses a comma-joined held list ("" = none).
func splitHeld(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

// parseMS parses a stored integer (or a ZSET score such as "1712345678901"),
// returning 0 for anything else.
func parseMS(s string) int64 {
	if s == "" {
		return 0
	}
	if v, err := strconv.ParseInt(s, 10, 64); err == nil {
		return v
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0
	}
	return int64(f)
}
