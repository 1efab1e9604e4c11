package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Event types.
const (
	EventGroupAdded        = "group.added"
	EventGroupUpdated      = "group.updated"
	EventGroupRolledBack   = "group.rolledback"
	EventGroupRetiring     = "group.retiring"
	EventGroupRetired      = "group.retired"
	EventGroupDeleted      = "group.deleted"
	EventScheduleAdded     = "schedule.added"
	EventScheduleCancelled = "schedule.cancelled"
	EventScheduleApplied   = "schedule.applied"
	EventScheduleDropped   = "schedule.dropped"
	EventAssignment        = "assignment"
	EventNodeJoined        = "node.joined"
	EventNodeLeft          = "node.left"
	EventNodeReaped        = "node.reaped"
	// Key health events carry a Reason.
	EventGroupThrottled = "group.throttled"
	EventGroupSuspended = "group.suspended"
	EventGroupProbing   = "group.probing"
	EventGroupRecovered = "group.recovered"
	EventGroupResumed   = "group.resumed"
	// EventGroupCooldownCleared: an operator ended the group's cooldown.
	EventGroupCooldownCleared = "group.cooldown_cleared"
)

// EventMaxNodes is the most node IDs an assignment event names; a commit
// that changes more entries names their groups instead (ScopeGroups).
const EventMaxNodes = 256

// Scopes of an assignment event: how much of the change it names.
const (
	// ScopeNodes: Nodes are exactly the nodes whose entries changed and
	// Groups the groups whose holder count (so every holder's share) changed.
	ScopeNodes = "nodes"
	// ScopeGroups: too many entries changed to list; Groups also holds
	// every group of their old and new entries.
	ScopeGroups = "groups"
)

// Event is one entry of the event log; the same fields are published on the
// events channel. JSON: id, type, group, node, by, epoch, version, at (Unix
// ms), for key health events reason, and on assignment events that name what
// changed: scope, nodes, groups and (scope nodes) holders.
type Event struct {
	ID, Type, Group, Node, By string
	Epoch, Version            int64
	At                        time.Time
	// Reason says why (group.suspended, group.throttled); never a secret.
	Reason string
	// Scope, Nodes and Groups name what an assignment event changed (see
	// Concerns); Scope "" names nothing: every node is concerned.
	Scope  string
	Nodes  []string
	Groups []string
	// Holders gives, under ScopeNodes, the new holder count of each of
	// Groups: a holder not named in Nodes takes its new share from it
	// instead of reading (see Adopt). Nil from an older writer.
	Holders map[string]int
	// Rev is the group revision a group write moved to (0 on other
	// events): a node that does not hold the group and has read Rev-1
	// adopts it without a read.
	Rev int64
	// Doc is the group's new document (JSON, secrets included), only on
	// the copy of a write's event published on the group's own channel for
	// its holders (ParseGroupDoc); never on the events channel or in the
	// log. Not marshalled.
	Doc string
}

// Concerns reports whether an assignment event may change what node, which
// now holds held, reads from its assignment (its entry, or the share of one
// of its groups) in a way the event does not carry. A node it does not
// concern reads nothing and may adopt the event's epoch (and the holder
// counts Adopt returns) when it is the next one after the epoch it has read.
// An event that names nothing (Scope "", as from an older writer) concerns
// every node; other event types concern nobody here.
func (e Event) Concerns(node string, held []string) bool {
	if e.Type != EventAssignment {
		return false
	}
	_, ok := e.Adopt(node, held)
	return !ok
}

// Adopt reports whether node, which now holds held, may take an assignment
// event without reading: its entry did not change, and every held group
// whose holder count changed has its new count in the event. counts are
// those new counts (nil when none of held changed); the node's share of
// such a group becomes 1/count.
func (e Event) Adopt(node string, held []string) (counts map[string]int, ok bool) {
	if e.Type != EventAssignment {
		return nil, false
	}
	switch e.Scope {
	case ScopeNodes:
		if slices.Contains(e.Nodes, node) {
			return nil, false
		}
	case ScopeGroups:
		// Entries of the named groups' holders may have changed, and a
		// node holding nothing may have been given one.
		if len(held) == 0 {
			return nil, false
		}
	default:
		return nil, false
	}
	for _, g := range held {
		if !slices.Contains(e.Groups, g) {
			continue
		}
		n, given := e.Holders[g]
		if e.Scope != ScopeNodes || !given || n < 1 {
			return nil, false
		}
		if counts == nil {
			counts = make(map[string]int)
		}
		counts[g] = n
	}
	return counts, true
}

// eventJSON is the wire form shared with the Lua scripts: at is Unix ms.
type eventJSON struct {
	ID      string         `json:"id"`
	Type    string         `json:"type"`
	Group   string         `json:"group"`
	Node    string         `json:"node"`
	By      string         `json:"by"`
	Epoch   int64          `json:"epoch"`
	Version int64          `json:"version"`
	At      int64          `json:"at"`
	Reason  string         `json:"reason,omitempty"`
	Scope   string         `json:"scope,omitempty"`
	Nodes   []string       `json:"nodes,omitempty"`
	Groups  []string       `json:"groups,omitempty"`
	Holders map[string]int `json:"holders,omitempty"`
	Rev     int64          `json:"rev,omitempty"`
}

// MarshalJSON encodes e with snake_case fields and at in Unix ms.
func (e Event) MarshalJSON() ([]byte, error) {
	j := eventJSON{ID: e.ID, Type: e.Type, Group: e.Group, Node: e.Node, By: e.By, Epoch: e.Epoch, Version: e.Version,
		Reason: e.Reason, Scope: e.Scope, Nodes: e.Nodes, Groups: e.Groups, Holders: e.Holders, Rev: e.Rev}
	if !e.At.IsZero() {
		j.At = e.At.UnixMilli()
	}
	return json.Marshal(j)
}

// UnmarshalJSON decodes the form MarshalJSON and the scripts write. Numbers
// may also be given as strings, and at as an RFC 3339 time.
func (e *Event) UnmarshalJSON(b []byte) error {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	str := func(k string) (string, error) {
		v, ok := raw[k]
		if !ok || string(v) == "null" {
			return "", nil
		}
		var s string
		if err := json.Unmarshal(v, &s); err == nil {
			return s, nil
		}
		var n json.Number
		if err := json.Unmarshal(v, &n); err != nil {
			return "", fmt.Errorf("registry: event field %q: %w", k, err)
		}
		return n.String(), nil
	}
	var out Event
	var err error
	var epoch, version, at, rev string
	for _, f := range []struct {
		k string
		p *string
	}{{"id", &out.ID}, {"type", &out.Type}, {"group", &out.Group}, {"node", &out.Node}, {"by", &out.By},
		{"epoch", &epoch}, {"version", &version}, {"at", &at}, {"reason", &out.Reason}, {"rev", &rev}, {"doc", &out.Doc}} {
		if *f.p, err = str(f.k); err != nil {
			return err
		}
	}
	if out.Epoch, err = parseNumber(epoch); err != nil {
		return fmt.Errorf("registry: event epoch: %w", err)
	}
	if out.Version, err = parseNumber(version); err != nil {
		return fmt.Errorf("registry: event version: %w", err)
	}
	if out.At, err = parseAt(at); err != nil {
		return fmt.Errorf("registry: event at: %w", err)
	}
	if out.Rev, err = parseNumber(rev); err != nil {
		return fmt.Errorf("registry: event rev: %w", err)
	}
	if out.Scope, err = str("scope"); err != nil {
		return err
	}
	for _, f := range []struct {
		k string
		p *[]string
	}{{"nodes", &out.Nodes}, {"groups", &out.Groups}} {
		v, ok := raw[f.k]
		if !ok || string(v) == "null" {
			continue
		}
		// A list that is not a list of strings names nothing reliably:
		// drop the scope so that every node reads.
		if json.Unmarshal(v, f.p) != nil {
			out.Scope, out.Nodes, out.Groups = "", nil, nil
			break
		}
	}
	if v, ok := raw["holders"]; ok && out.Scope != "" && string(v) != "null" {
		// Counts that do not parse are dropped: the holders then read.
		if json.Unmarshal(v, &out.Holders) != nil {
			out.Holders = nil
		}
	}
	if out.Scope != "" && out.Scope != ScopeNodes && out.Scope != ScopeGroups {
		out.Scope, out.Nodes, out.Groups, out.Holders = "", nil, nil, nil // unknown: name nothing, so every node reads
	}
	*e = out
	return nil
}

func parseNumber(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return n, nil
	}
	f, err := strconv.ParseFloat(s, 64) // cjson may write 1e+12
	if err != nil {
		return 0, err
	}
	return int64(f), nil
}

func parseAt(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if ms, err := parseNumber(s); err == nil {
		if ms == 0 {
			return time.Time{}, nil
		}
		return time.UnixMilli(ms).UTC(), nil
	}
	return time.Parse(time.RFC3339Nano, s)
}

// ParseEvent decodes a pub/sub payload of the events channel.
func ParseEvent(payload string) (Event, error) {
	var e Event
	if err := json.Unmarshal([]byte(payload), &e); err != nil {
		return Event{}, fmt.Errorf("registry: parse event: %w", err)
	}
	if e.Type == "" {
		return Event{}, errors.New("registry: parse event: no type")
	}
	return e, nil
}

// Events reads up to count events (count <= 0: up to 100) after stream ID
// after ("" = from the start, "$" = only new ones), waiting up to block for
// one when block > 0. No event before the wait ends gives an empty slice.
//
// The events come from two capped streams of the namespace, merged by entry
// ID: the audit stream :log (group, schedule and assignment events) and the
// node stream :log:nodes (node.joined, node.left, node.reaped), which
// heartbeat writes apart so that no volume of nodes pushes an audit entry
// out. Reading again after the last ID returned misses nothing and repeats
// nothing; two entries of the two streams may share an ID (their own
// sequences), and a batch never ends between them (it may then hold count+1).
func (r *Registry) Events(ctx context.Context, after string, count int64, block time.Duration) ([]Event, error) {
	if after == "" {
		after = "0"
	}
	if count <= 0 {
		count = 100
	}
	streams := []string{r.keys.Log(), r.keys.NodeLog()}
	args := &redis.XReadArgs{Streams: []string{streams[0], streams[1], after, after}, Count: count, Block: -1}
	if block > 0 {
		args.Block = max(block, time.Millisecond)
	}
	res, err := r.rdb.XRead(ctx, args).Result()
	if errors.Is(err, redis.Nil) {
		return []Event{}, nil
	}
	if err != nil {
		return nil, wrap(err, "read events after %q", after)
	}
	return mergeEvents(res, count), nil
}

// mergeEvents merges the streams of one XREAD COUNT count by entry ID (the
// audit stream first on a tie). A stream that returned count entries may
// have more: nothing past its last entry is returned, so that the next read
// after the last returned ID misses nothing of it.
func mergeEvents(res []redis.XStream, count int64) []Event {
	type entry struct {
		id  streamID
		src int
		m   redis.XMessage
	}
	var all []entry
	var limit *streamID
	for src, st := range res {
		for _, m := range st.Messages {
			all = append(all, entry{parseStreamID(m.ID), src, m})
		}
		if n := len(st.Messages); int64(n) >= count {
			last := parseStreamID(st.Messages[n-1].ID)
			if limit == nil || last.less(*limit) {
				limit = &last
			}
		}
	}
	slices.SortStableFunc(all, func(a, b entry) int {
		switch {
		case a.id.less(b.id):
			return -1
		case b.id.less(a.id):
			return 1
		}
		return a.src - b.src
	})
	out := []Event{}
	for i, e := range all {
		if limit != nil && limit.less(e.id) {
			break
		}
		if int64(len(out)) >= count && all[i-1].id != e.id {
			break
		}
		out = append(out, eventFromStream(e.m))
	}
	return out
}

// streamID is a stream entry ID "ms-seq".
type streamID struct{ ms, seq uint64 }

func parseStreamID(s string) streamID {
	ms, seq, _ := strings.Cut(s, "-")
	var id streamID
	id.ms, _ = strconv.ParseUint(ms, 10, 64)
	id.seq, _ = strconv.ParseUint(seq, 10, 64)
	return id
}

func (a streamID) less(b streamID) bool {
	return a.ms < b.ms || a.ms == b.ms && a.seq < b.seq
}

func (a streamID) String() string {
	return strconv.FormatUint(a.ms, 10) + "-" + strconv.FormatUint(a.seq, 10)
}

// LastEventID returns the ID of the newest event of the namespace's event
// streams (see Events), "0-0" when there is none: reading Events after it
// misses nothing that happens from now on. Watchers that start "now" use it.
func (r *Registry) LastEventID(ctx context.Context) (string, error) {
	pipe := r.rdb.Pipeline()
	cmds := []*redis.XMessageSliceCmd{
		pipe.XRevRangeN(ctx, r.keys.Log(), "+", "-", 1),
		pipe.XRevRangeN(ctx, r.keys.NodeLog(), "+", "-", 1),
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return "", wrap(err, "read the last event id")
	}
	last := streamID{}
	for _, c := range cmds {
		if xs := c.Val(); len(xs) > 0 {
			if id := parseStreamID(xs[0].ID); last.less(id) {
				last = id
			}
		}
	}
	return last.String(), nil
}

func eventFromStream(m redis.XMessage) Event {
	s := func(k string) string { v, _ := m.Values[k].(string); return v }
	e := Event{ID: m.ID, Type: s("type"), Group: s("group"), Node: s("node"), By: s("by"), Reason: s("reason")}
	e.Epoch, _ = parseNumber(s("epoch"))
	e.Version, _ = parseNumber(s("version"))
	e.At, _ = parseAt(s("at"))
	e.Rev, _ = parseNumber(s("rev"))
	if e.Scope = s("scope"); e.Scope != "" {
		e.Nodes, e.Groups = splitList(s("nodes")), splitList(s("groups"))
		e.Holders = zipCounts(e.Groups, splitList(s("holders")))
	}
	return e
}

// zipCounts pairs the stream's comma-joined holder counts with the groups
// they follow; counts that do not line up or parse give none.
func zipCounts(groups, counts []string) map[string]int {
	if len(counts) == 0 || len(counts) != len(groups) {
		return nil
	}
	out := make(map[string]int, len(groups))
	for i, g := range groups {
		n, err := strconv.Atoi(counts[i])
		if err != nil {
			return nil
		}
		out[g] = n
	}
	return out
}

// splitList splits a comma-joined stream field; "" is no list.
func splitList(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

// MaxRecentEvents bounds RecentEvents' count.
const MaxRecentEvents = 1000

// recentScan is how many audit entries one XREVRANGE of RecentEvents with
// a group reads; the whole capped log (about 10,000) takes a few.
const recentScan = 1000

// RecentEvents returns the newest count events (1..MaxRecentEvents) of the
// namespace's event streams, oldest first: what a watcher arriving now
// missed, for the web UI's Events panel on load. With group, only that
// group's events, found by reading the audit log backwards (node events
// name no group), as far back as it is kept.
func (r *Registry) RecentEvents(ctx context.Context, count int, group string) ([]Event, error) {
	if count < 1 || count > MaxRecentEvents {
		return nil, fmt.Errorf("%w: %d (want 1..%d)", ErrInvalidCount, count, MaxRecentEvents)
	}
	if group != "" {
		if err := ValidateName(group); err != nil {
			return nil, err
		}
		return r.recentOfGroup(ctx, count, group)
	}
	pipe := r.rdb.Pipeline()
	cmds := []*redis.XMessageSliceCmd{
		pipe.XRevRangeN(ctx, r.keys.Log(), "+", "-", int64(count)),
		pipe.XRevRangeN(ctx, r.keys.NodeLog(), "+", "-", int64(count)),
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, wrap(err, "read recent events")
	}
	var all []redis.XMessage
	for _, c := range cmds {
		all = append(all, c.Val()...)
	}
	// Newest first, then keep count and turn them oldest first.
	slices.SortFunc(all, func(a, b redis.XMessage) int {
		ia, ib := parseStreamID(a.ID), parseStreamID(b.ID)
		switch {
		case ib.less(ia):
			return -1
		case ia.less(ib):
			return 1
		}
		return 0
	})
	if len(all) > count {
		all = all[:count]
	}
	out := make([]Event, 0, len(all))
	for i := len(all) - 1; i >= 0; i-- {
		out = append(out, eventFromStream(all[i]))
	}
	return out, nil
}

// recentOfGroup reads the audit log backwards, recentScan entries at a
// time, until it has count events of group or has read all of it.
func (r *Registry) recentOfGroup(ctx context.Context, count int, group string) ([]Event, error) {
	var newest []Event // newest first
	end := "+"
	for len(newest) < count {
		ms, err := r.rdb.XRevRangeN(ctx, r.keys.Log(), end, "-", recentScan).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return nil, wrap(err, "read recent events of %q", group)
		}
		for _, m := range ms {
			if e := eventFromStream(m); e.Group == group && len(newest) < count {
				newest = append(newest, e)
			}
		}
		if len(ms) < recentScan {
			break
		}
		end = "(" + ms[len(ms)-1].ID
	}
	slices.Reverse(newest)
	if newest == nil {
		newest = []Event{}
	}
	return newest, nil
}
