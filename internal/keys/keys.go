// Package keys builds every Redis key and channel name of an allot namespace.
//
// All keys of namespace NS share the hash tag {allot:NS}, so every Lua script
// that touches several of them runs unchanged on Redis Cluster.
package keys

import (
	"errors"
	"regexp"
	"strings"
)

// DefaultNamespace is the namespace used when none is given.
const DefaultNamespace = "default"

var namespacePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// GroupNameRule is the rule every group name matches: registry refuses any
// other name, heartbeat refuses a beat naming one, and the heartbeat scripts
// check the same rule again (a Lua pattern plus the length bound,
// MaxGroupNameLen). One home, so the packages that may not import each other
// share it.
const GroupNameRule = `^[a-z0-9][a-z0-9._-]{0,62}$`

// MaxGroupNameLen is the longest group name GroupNameRule allows, in bytes.
const MaxGroupNameLen = 63

var groupNamePattern = regexp.MustCompile(GroupNameRule)

// ValidGroupName reports whether name matches GroupNameRule.
func ValidGroupName(name string) bool { return groupNamePattern.MatchString(name) }

// ErrInvalidNamespace is returned by Validate for a namespace that cannot be
// used inside a key.
var ErrInvalidNamespace = errors.New("keys: namespace must match ^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")

// Keys names the keys of one namespace. The zero value is not usable; call New.
type Keys struct {
	ns     string
	prefix string
}

// New returns the key names of namespace ns ("" means DefaultNamespace).
func New(ns string) Keys {
	if ns == "" {
		ns = DefaultNamespace
	}
	return Keys{ns: ns, prefix: "{allot:" + ns + "}"}
}

// Validate reports whether ns is a usable namespace name.
func Validate(ns string) error {
	if !namespacePattern.MatchString(ns) {
		return ErrInvalidNamespace
	}
	return nil
}

// Namespace is the namespace these keys belong to.
func (k Keys) Namespace() string { return k.ns }

// Prefix is the hash-tagged prefix shared by every key, "{allot:NS}".
func (k Keys) Prefix() string { return k.prefix }

// Groups is a SET of every group name.
func (k Keys) Groups() string { return k.prefix + ":groups" }

// Group is a STRING holding the JSON document of one group.
func (k Keys) Group(name string) string { return k.prefix + ":group:" + name }

// History is a LIST of a group's past JSON documents, newest first.
func (k Keys) History(name string) string { return k.prefix + ":history:" + name }

// Nodes is a ZSET of live node IDs scored by their last beat (Redis server ms).
func (k Keys) Nodes() string { return k.prefix + ":nodes" }

// Members is a HASH node ID -> the node's record as its beats stored it,
// tab-separated: joined (ms), ip, preferred, held (comma-joined), ack, session
// (the process holding the ID), pref_at (ms of its last join or
// preferred-caused mver bump), pref_wait ("1" while a preferred change
// waits for its bump), and calls and tokens (the node's demand a second as
// last stored, "" for none). One hash rather than a key per node lets a
// planner read 10k nodes in one HGETALL.
func (k Keys) Members() string { return k.prefix + ":members" }

// Assign is a HASH node ID -> comma-separated sorted group names of the
// committed assignment. Planned standby nodes have an empty value.
func (k Keys) Assign() string { return k.prefix + ":assign" }

// Holders is a HASH group -> how many nodes the committed assignment gives it
// to, so a node learns its share of a group's quota without reading the pool.
func (k Keys) Holders() string { return k.prefix + ":holders" }

// Revoked is a HASH node ID -> comma-separated capped groups revoked from that
// node that it may still be using until it acknowledges the revoke.
func (k Keys) Revoked() string { return k.prefix + ":revoked" }

// State is a HASH of the namespace counters: epoch (assignment), rev (group
// writes), mver (membership), prev / pmver (the rev and mver the committed
// assignment was planned from), and dwait / dat (a stored demand change
// waits for its plan / when demand last asked for one).
func (k Keys) State() string { return k.prefix + ":state" }

// Schedule is a ZSET of scheduled change IDs scored by due time (Unix ms).
func (k Keys) Schedule() string { return k.prefix + ":schedule" }

// ScheduleItems is a HASH schedule ID -> JSON of the scheduled change.
func (k Keys) ScheduleItems() string { return k.prefix + ":schedule:items" }

// Settings is a HASH of the namespace's settings, written by `allot
// namespace set`: interval_ms and ttl_ms (the heartbeat Config every process
// of the namespace uses; the heartbeat scripts judge liveness by the stored
// ttl_ms), max_live_nodes (the most live nodes a join may make),
// max_suspended (percent) and max_cooldown_ms (key health limits, read by
// health.lua at every report). Absent = defaults.
func (k Keys) Settings() string { return k.prefix + ":settings" }

// NodeJoins is the HASH of the join limit of one node token of allot
// serve (the quota limiter's GCRA state), token naming it by the first 16
// hex digits of its SHA-256, never by value. The limiter's per-minute
// usage HASHes (joins taken and refused) are NodeJoins(token) + ":" +
// minute, kept 24 h.
func (k Keys) NodeJoins(token string) string { return k.prefix + ":joins:" + token }

// Lock is the redsync mutex that keeps rebalancing to one planner at a time.
func (k Keys) Lock() string { return k.prefix + ":lock" }

// Events is the pub/sub channel nudged on every change (watchers follow it).
func (k Keys) Events() string { return k.prefix + ":events" }

// AssignmentEvents carries only the assignment events, for nodes: every
// node follows it. Published by registry's scripts (common.lua publish).
func (k Keys) AssignmentEvents() string { return k.Events() + ":assignment" }

// NodeEvents carries the assignment events that name node id, ahead of
// AssignmentEvents: the node whose entry changed hears first, before the
// event reaches the whole pool.
func (k Keys) NodeEvents(id string) string { return k.Events() + ":node:" + id }

// GroupEvents carries only group name's events (group.*), for its holders.
func (k Keys) GroupEvents(name string) string { return k.Events() + ":group:" + name }

// LendEvents carries every event that moves the group revision (group
// writes, with the new document as on GroupEvents, and the key health
// transitions suspended, probing, recovered, resumed), for the processes
// that keep a copy of every group to borrow from (registry.Catalog): Go
// nodes that borrowed once, and allot serve.
func (k Keys) LendEvents() string { return k.Events() + ":lend" }

// GroupRevField is the field of State holding the group revision of group
// name's last write (absent: deleted, or not written since fields existed).
func GroupRevField(name string) string { return "r:" + name }

// Log is the capped STREAM of events, for audit and for resuming a watch.
// Node events (node.joined, node.left, node.reaped) have their own stream,
// NodeLog, so no volume of nodes can push an audit entry out of this one.
func (k Keys) Log() string { return k.prefix + ":log" }

// NodeLog is the capped STREAM of node events (node.joined, node.left,
// node.reaped), written by heartbeat's scripts. Readers replay it merged
// with Log by entry ID (registry.Registry.Events).
func (k Keys) NodeLog() string { return k.prefix + ":log:nodes" }

// Quota is a HASH of the GCRA state of every limit of one group (field =
// limit kind and period, value = its theoretical arrival time), written only
// by the quota package's limiter script.
func (k Keys) Quota(group string) string { return k.prefix + ":quota:" + group }

// NamespaceOf returns the namespace a key of this package belongs to, and
// false for a key that is not an allot key (not "{allot:NS}:…").
func NamespaceOf(key string) (string, bool) {
	rest, ok := strings.CutPrefix(key, "{allot:")
	if !ok {
		return "", false
	}
	ns, _, ok := strings.Cut(rest, "}:")
	if !ok || Validate(ns) != nil {
		return "", false
	}
	return ns, true
}

// Pattern is the SCAN pattern matching key kind (e.g. "state", "settings")
// of every namespace: "{allot:*}:kind".
func Pattern(kind string) string { return "{allot:*}:" + kind }

// Health is a HASH of one group's key health: cooling_until (Unix ms, Redis
// server time, only ever extended; the limiter refuses the group until
// then), state (active | suspended | probing), the failure window, reason,
// since, next_probe, probe_wait, successes and counters. registry owns it.
func (k Keys) Health(group string) string { return k.prefix + ":health:" + group }

// Unhealthy is a HASH group -> "state\tcreated" of the groups that are
// suspended or probing, so a planner reads them all with one HGETALL.
// created is the group document's created time: an entry left by a deleted
// group never applies to a new group of the same name.
func (k Keys) Unhealthy() string { return k.prefix + ":unhealthy" }

// Ejectors is a HASH node ID -> Unix ms (server time) of the last
// suspension a report of that node caused: the node suspends no other group
// within the probe wait. The key expires a probe wait after its last write.
func (k Keys) Ejectors() string { return k.prefix + ":ejectors" }

// Reporters is a HASH node ID -> the theoretical arrival time (Unix ms) of
// the node's next health report, the per-node report rate (GCRA) health.lua
// enforces. It expires shortly after the last report.
func (k Keys) Reporters() string { return k.prefix + ":reporters" }

// UsagePrefix is the prefix of a group's per-minute usage HASHes
// (requests, tokens, rejected, throttled, failures), kept 24 h; the minute
// number (Unix seconds / 60, server time) follows it. The limiter script
// builds the full name itself from this prefix.
func (k Keys) UsagePrefix(group string) string { return k.prefix + ":usage:" + group + ":" }

// Borrowers is a ZSET of the nodes that borrowed group (node ID -> Unix ms,
// server time, until which the borrow counts as proof that the node used
// the group's key): written by the acquire script when it lends the group,
// read by health.lua, which takes a borrower's report as a holder's until
// then. It expires with its last entry; deleting the group drops it.
func (k Keys) Borrowers(group string) string { return k.prefix + ":borrowers:" + group }

// LeaseSecret is a STRING holding the namespace's lease MAC key (32 random
// bytes, hex), created once, atomically, by the first allot serve that
// needs it: every replica signs and checks HTTP leases with it.
func (k Keys) LeaseSecret() string { return k.prefix + ":lease_secret" }

// Settled is the STRING recording that HTTP lease id was settled; it
// expires when the lease does, so a second settle is refused while the
// lease could still be presented.
func (k Keys) Settled(id string) string { return k.prefix + ":settled:" + id }
