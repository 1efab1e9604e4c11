package heartbeat_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/heartbeat"
	"github.com/allot-io/allot/internal/keys"
	"github.com/allot-io/allot/internal/redistest"
)

// testConfig is tiny so that liveness tests finish fast; liveness is judged
// by the server clock, so tests poll instead of sleeping.
var testConfig = heartbeat.Config{Interval: 50 * time.Millisecond, TTL: 150 * time.Millisecond}

const (
	waitFor = 5 * time.Second
	tick    = 5 * time.Millisecond
)

// env is one tracker on a fresh namespace of a shared server.
type env struct {
	rdb redis.UniversalClient
	k   keys.Keys
	tr  *heartbeat.Tracker
}

var nsSeq atomic.Int64

func newEnv(t *testing.T, rdb redis.UniversalClient) env {
	t.Helper()
	ns := fmt.Sprintf("hb%d", nsSeq.Add(1))
	tr, err := heartbeat.New(rdb, ns, testConfig)
	require.NoError(t, err)
	return env{rdb: rdb, k: keys.New(ns), tr: tr}
}

// state reads one :state counter (missing = 0).
func (e env) state(t *testing.T, field string) int64 {
	t.Helper()
	v, err := e.rdb.HGet(context.Background(), e.k.State(), field).Int64()
	if err == redis.Nil {
		return 0
	}
	require.NoError(t, err)
	return v
}

func (e env) setState(t *testing.T, kv ...any) {
	t.Helper()
	require.NoError(t, e.rdb.HSet(context.Background(), e.k.State(), kv...).Err())
}

// planned marks the current rev/mver as planned, so no work is pending.
func (e env) planned(t *testing.T) {
	t.Helper()
	e.setState(t, "pmver", e.state(t, "mver"), "prev", e.state(t, "rev"))
}

// logEntries returns the :log:nodes stream entries (node events).
// member reads node id's stored record as named fields.
func (e env) member(t *testing.T, id string) map[string]string {
	t.Helper()
	rec, err := e.rdb.HGet(context.Background(), e.k.Members(), id).Result()
	require.NoError(t, err)
	f := strings.Split(rec, "\t")
	require.Len(t, f, 10, "record %q", rec)
	return map[string]string{"joined": f[0], "ip": f[1], "preferred": f[2], "held": f[3], "ack": f[4],
		"session": f[5], "pref_at": f[6], "pref_wait": f[7], "calls": f[8], "tokens": f[9]}
}

func (e env) logEntries(t *testing.T) []redis.XMessage {
	t.Helper()
	msgs, err := e.rdb.XRange(context.Background(), e.k.NodeLog(), "-", "+").Result()
	require.NoError(t, err)
	return msgs
}

// topologies runs each test on a standalone server and on a 3-master cluster.
func TestTracker(t *testing.T) {
	tests := map[string]func(t *testing.T, rdb redis.UniversalClient){
		"JoinEvent":          testJoinEvent,
		"PreferredBumpsMVer": testPreferredBumpsMVer,
		"Work":               testWork,
		"Live":               testLive,
		"Reap":               testReap,
		"PlanRead":           testPlanRead,
		"Leave":              testLeave,
		"OneRoundTrip":       testOneRoundTrip,
		"InvalidNode":        testInvalidNode,
		"HeldRev":            testHeldRev,
		"EntryIsHeld":        testEntryIsHeld,
	}
	redistest.Topologies(t, func(t *testing.T, rdb redis.UniversalClient) {
		for name, fn := range tests {
			t.Run(name, func(t *testing.T) { fn(t, rdb) })
		}
	})
}

func testJoinEvent(t *testing.T, rdb redis.UniversalClient) {
	ctx := context.Background()
	e := newEnv(t, rdb)
	e.setState(t, "epoch", 7)

	sub := rdb.Subscribe(ctx, e.k.Events())
	defer sub.Close()
	_, err := sub.Receive(ctx) // subscription confirmed
	require.NoError(t, err)

	r, err := e.tr.Beat(ctx, heartbeat.Beat{Node: "n1", IP: "10.0.0.1", Session: "test"})
	require.NoError(t, err)
	assert.True(t, r.Joined)
	assert.True(t, r.Work, "a join is a membership change")
	assert.Equal(t, int64(7), r.Epoch)
	assert.WithinDuration(t, time.Now(), r.Now, 5*time.Second)
	assert.Equal(t, int64(1), e.state(t, "mver"))

	rec := e.member(t, "n1")
	assert.Equal(t, fmt.Sprint(r.Now.UnixMilli()), rec["joined"])

	msgs := e.logEntries(t)
	require.Len(t, msgs, 1)
	assert.Equal(t, map[string]any{
		"type": "node.joined", "group": "", "node": "n1", "epoch": "7",
		"version": "0", "by": "n1", "at": fmt.Sprint(r.Now.UnixMilli()),
	}, msgs[0].Values)

	select {
	case m := <-sub.Channel():
		var ev map[string]any
		require.NoError(t, json.Unmarshal([]byte(m.Payload), &ev))
		assert.Equal(t, map[string]any{
			"id": msgs[0].ID, "type": "node.joined", "group": "", "node": "n1",
			"epoch": float64(7), "version": float64(0), "by": "n1", "at": float64(r.Now.UnixMilli()),
		}, ev)
	case <-time.After(waitFor):
		t.Fatal("no node.joined event published")
	}

	// A second beat of the same node is not a join.
	r, err = e.tr.Beat(ctx, heartbeat.Beat{Node: "n1", IP: "10.0.0.1", Session: "test"})
	require.NoError(t, err)
	assert.False(t, r.Joined)
	assert.Equal(t, int64(1), e.state(t, "mver"))
	assert.Len(t, e.logEntries(t), 1)
}

func testPreferredBumpsMVer(t *testing.T, rdb redis.UniversalClient) {
	ctx := context.Background()
	e := newEnv(t, rdb)
	steps := []struct {
		preferred string
		mver      int64
	}{
		{"", 1}, // join
		{"", 1},
		{"alpha", 2},
		{"alpha", 2},
		{"beta", 3},
		{"", 4},
	}
	for i, s := range steps {
		// A change within an interval of the last bump waits for a later
		// beat (rate limit, see session_test.go): beat until it lands.
		require.Eventually(t, func() bool {
			_, err := e.tr.Beat(ctx, heartbeat.Beat{Node: "n1", Preferred: s.preferred, Session: "test"})
			require.NoError(t, err)
			return e.state(t, "mver") >= s.mver
		}, waitFor, tick, "step %d (preferred %q)", i, s.preferred)
		assert.Equal(t, s.mver, e.state(t, "mver"), "step %d (preferred %q)", i, s.preferred)
	}
	// Other fields do not count as membership changes.
	_, err := e.tr.Beat(ctx, heartbeat.Beat{Node: "n1", IP: "10.1.1.1", Held: []string{"g"}, Ack: 9, Session: "test"})
	require.NoError(t, err)
	assert.Equal(t, int64(4), e.state(t, "mver"))

	// ...but each of them is stored (held: what n1 was given, by its entry
	// or a revoked one).
	require.NoError(t, rdb.HSet(ctx, e.k.Assign(), "n1", "g").Err())
	require.NoError(t, rdb.HSet(ctx, e.k.Revoked(), "n1", "h@5").Err())
	for _, b := range []heartbeat.Beat{
		{Node: "n1", IP: "10.1.1.2", Held: []string{"g"}, Ack: 9, Session: "test"},
		{Node: "n1", IP: "10.1.1.2", Held: []string{"h", "g"}, Ack: 9, Session: "test"},
		{Node: "n1", IP: "10.1.1.2", Held: []string{"h", "g"}, Ack: 10, Session: "test"},
		{Node: "n1", IP: "10.1.1.2", Ack: 10, Session: "test"},
	} {
		_, err := e.tr.Beat(ctx, b)
		require.NoError(t, err)
		h := e.member(t, "n1")
		delete(h, "joined")
		delete(h, "session")
		delete(h, "pref_at")
		delete(h, "pref_wait")
		delete(h, "calls")
		delete(h, "tokens")
		held := append([]string(nil), b.Held...)
		slices.Sort(held)
		assert.Equal(t, map[string]string{
			"ip": b.IP, "preferred": "", "held": strings.Join(held, ","), "ack": fmt.Sprint(b.Ack),
		}, h)
	}
	assert.Equal(t, int64(4), e.state(t, "mver"))
}

func testWork(t *testing.T, rdb redis.UniversalClient) {
	ctx := context.Background()
	e := newEnv(t, rdb)
	beat := func() heartbeat.Reply {
		t.Helper()
		r, err := e.tr.Beat(ctx, heartbeat.Beat{Node: "n1", Session: "test"})
		require.NoError(t, err)
		return r
	}
	assert.True(t, beat().Work, "join: mver != pmver")
	e.planned(t)
	assert.False(t, beat().Work, "nothing pending")

	// rev != prev
	e.setState(t, "rev", 5)
	r := beat()
	assert.True(t, r.Work, "rev moved")
	assert.Equal(t, int64(5), r.Rev)
	e.planned(t)
	assert.False(t, beat().Work)

	// mver != pmver (another node's membership change)
	e.setState(t, "mver", 9)
	assert.True(t, beat().Work, "mver moved")
	e.planned(t)
	assert.False(t, beat().Work)

	// a node past its TTL
	require.NoError(t, rdb.ZAdd(ctx, e.k.Nodes(), redis.Z{Score: 1000, Member: "dead"}).Err())
	assert.True(t, beat().Work, "dead node waiting")
	require.NoError(t, rdb.ZRem(ctx, e.k.Nodes(), "dead").Err())
	assert.False(t, beat().Work)

	// a due schedule; a future one is not work
	future := time.Now().Add(time.Hour).UnixMilli()
	require.NoError(t, rdb.ZAdd(ctx, e.k.Schedule(), redis.Z{Score: float64(future), Member: "later"}).Err())
	assert.False(t, beat().Work, "schedule not due")
	require.NoError(t, rdb.ZAdd(ctx, e.k.Schedule(), redis.Z{Score: 1000, Member: "due"}).Err())
	assert.True(t, beat().Work, "schedule due")
	require.NoError(t, rdb.ZRem(ctx, e.k.Schedule(), "due").Err())
	assert.False(t, beat().Work)

	// revoked groups of another node are not this node's work
	require.NoError(t, rdb.HSet(ctx, e.k.Revoked(), "other", "g").Err())
	assert.False(t, beat().Work, "revoked entry of another node")
	require.NoError(t, rdb.HSet(ctx, e.k.Revoked(), "n1", "g").Err())
	assert.True(t, beat().Work, "own revoked entry")
	require.NoError(t, rdb.HDel(ctx, e.k.Revoked(), "n1").Err())
	assert.False(t, beat().Work)

	e.setState(t, "epoch", 12)
	assert.Equal(t, int64(12), beat().Epoch)
}

func testLive(t *testing.T, rdb redis.UniversalClient) {
	ctx := context.Background()
	e := newEnv(t, rdb)

	// Live pipelines EVALSHA (no EVAL fallback in a pipeline): with the script
	// cache empty, as after a server restart, it must load the script itself.
	require.NoError(t, rdb.ScriptFlush(ctx).Err())
	_, _, err := e.tr.Live(ctx)
	require.NoError(t, err)

	nodes, now, err := e.tr.Live(ctx)
	require.NoError(t, err)
	assert.Empty(t, nodes)
	assert.WithinDuration(t, time.Now(), now, 5*time.Second)

	require.NoError(t, rdb.HSet(ctx, e.k.Assign(), "n2", "x,y").Err()) // held counts only what n2 was given
	first, err := e.tr.Beat(ctx, heartbeat.Beat{Node: "n2", IP: "10.0.0.2", Preferred: "p", Held: []string{"y", "x", "y"}, Ack: 3, Session: "test"})
	require.NoError(t, err)
	_, err = e.tr.Beat(ctx, heartbeat.Beat{Node: "gone", IP: "10.0.0.9", Session: "test"})
	require.NoError(t, err)

	// Keep n2 and n1 beating until "gone" has fallen out of the live set.
	var last heartbeat.Reply
	require.Eventually(t, func() bool {
		last, err = e.tr.Beat(ctx, heartbeat.Beat{Node: "n2", IP: "10.0.0.2", Preferred: "p", Held: []string{"y", "x", "y"}, Ack: 3, Session: "test"})
		require.NoError(t, err)
		_, err = e.tr.Beat(ctx, heartbeat.Beat{Node: "n1", IP: "10.0.0.1", Session: "test"})
		require.NoError(t, err)
		nodes, now, err = e.tr.Live(ctx)
		require.NoError(t, err)
		return len(nodes) == 2
	}, waitFor, tick)

	require.Equal(t, []string{"n1", "n2"}, []string{nodes[0].ID, nodes[1].ID})
	n2 := nodes[1]
	assert.Equal(t, heartbeat.Node{
		ID: "n2", IP: "10.0.0.2", Preferred: "p", Held: []string{"x", "y"}, Ack: 3,
		LastSeen: last.Now, Joined: first.Now,
	}, n2)
	assert.Nil(t, nodes[0].Held)
	assert.False(t, now.Before(n2.LastSeen))
	// Not live is not reaped: the dead node is still stored until Reap.
	score, err := rdb.ZScore(ctx, e.k.Nodes(), "gone").Result()
	require.NoError(t, err)
	assert.Less(t, score, float64(now.Add(-testConfig.TTL).UnixMilli()))
}

func testReap(t *testing.T, rdb redis.UniversalClient) {
	ctx := context.Background()
	e := newEnv(t, rdb)
	// A wider TTL than testConfig's: "alive" beats right before the Reap
	// and must not lapse in between on a loaded machine.
	tr, err := heartbeat.New(rdb, e.k.Namespace(), safetyConfig)
	require.NoError(t, err)
	e.tr = tr
	for _, id := range []string{"alive", "dead1", "dead2"} {
		_, err := e.tr.Beat(ctx, heartbeat.Beat{Node: id, Session: "test"})
		require.NoError(t, err)
	}
	require.Equal(t, int64(3), e.state(t, "mver"))

	ids, err := e.tr.Reap(ctx)
	require.NoError(t, err)
	assert.Empty(t, ids, "nobody is past the TTL yet")
	assert.Equal(t, int64(3), e.state(t, "mver"))

	// The two dead nodes' beats are two round trips and may land in two
	// different server milliseconds: wait, by the server clock, until both
	// are past the TTL, so that one Reap finds both.
	var lastDead float64
	for _, id := range []string{"dead1", "dead2"} {
		score, err := rdb.ZScore(ctx, e.k.Nodes(), id).Result()
		require.NoError(t, err)
		lastDead = max(lastDead, score)
	}
	untilServerMS(t, rdb, e.k, int64(lastDead)+safetyConfig.TTL.Milliseconds()+1)
	_, err = e.tr.Beat(ctx, heartbeat.Beat{Node: "alive", Session: "test"})
	require.NoError(t, err)
	reaped, err := e.tr.Reap(ctx)
	require.NoError(t, err)
	assert.Equal(t, []string{"dead1", "dead2"}, reaped)
	assert.Equal(t, int64(4), e.state(t, "mver"), "one bump per reap")

	members, err := rdb.ZRange(ctx, e.k.Nodes(), 0, -1).Result()
	require.NoError(t, err)
	assert.Equal(t, []string{"alive"}, members)
	records, err := rdb.HKeys(ctx, e.k.Members()).Result()
	require.NoError(t, err)
	assert.Equal(t, []string{"alive"}, records, "the dead nodes' records are gone")

	var types []string
	for _, m := range e.logEntries(t) {
		types = append(types, fmt.Sprint(m.Values["type"], ":", m.Values["node"]))
	}
	assert.Equal(t, []string{"node.joined:alive", "node.joined:dead1", "node.joined:dead2", "node.reaped:dead1", "node.reaped:dead2"}, types)

	// A reaped node that beats again joins again.
	r, err := e.tr.Beat(ctx, heartbeat.Beat{Node: "dead1", Session: "test"})
	require.NoError(t, err)
	assert.True(t, r.Joined)
	assert.Equal(t, int64(5), e.state(t, "mver"))
}

func testLeave(t *testing.T, rdb redis.UniversalClient) {
	ctx := context.Background()
	e := newEnv(t, rdb)
	for _, id := range []string{"a", "b"} {
		_, err := e.tr.Beat(ctx, heartbeat.Beat{Node: id, Held: []string{"g"}, Session: "test"})
		require.NoError(t, err)
	}
	require.NoError(t, e.tr.Leave(ctx, "a", "test"))
	assert.Equal(t, int64(3), e.state(t, "mver"))
	members, err := rdb.ZRange(ctx, e.k.Nodes(), 0, -1).Result()
	require.NoError(t, err)
	assert.Equal(t, []string{"b"}, members)
	gone, err := rdb.HExists(ctx, e.k.Members(), "a").Result()
	require.NoError(t, err)
	assert.False(t, gone)
	msgs := e.logEntries(t)
	require.Len(t, msgs, 3)
	assert.Equal(t, "node.left", msgs[2].Values["type"])
	assert.Equal(t, "a", msgs[2].Values["node"])
	assert.Equal(t, "a", msgs[2].Values["by"])

	// Leaving twice, or leaving an unknown node, is a no-op.
	require.NoError(t, e.tr.Leave(ctx, "a", "test"))
	require.NoError(t, e.tr.Leave(ctx, "never-seen", "test"))
	assert.Equal(t, int64(3), e.state(t, "mver"))
	assert.Len(t, e.logEntries(t), 3)

	assert.ErrorIs(t, e.tr.Leave(ctx, "", "test"), heartbeat.ErrInvalidNode)
}

func testOneRoundTrip(t *testing.T, rdb redis.UniversalClient) {
	ctx := context.Background()
	e := newEnv(t, rdb)
	// The very first call may need EVAL after a NOSCRIPT reply (per shard).
	_, err := e.tr.Beat(ctx, heartbeat.Beat{Node: "warm", Session: "test"})
	require.NoError(t, err)

	var h redistest.RoundTrips
	rdb.AddHook(&h)
	b := heartbeat.Beat{Node: "n1", IP: "10.0.0.1", Preferred: "g", Held: []string{"g"}, Ack: 1, Session: "test"}
	for i := range 5 {
		h.N.Store(0)
		_, err := e.tr.Beat(ctx, b)
		require.NoError(t, err)
		assert.Equal(t, int64(1), h.N.Load(), "round trips of beat %d", i)
	}
}

func testInvalidNode(t *testing.T, rdb redis.UniversalClient) {
	ctx := context.Background()
	e := newEnv(t, rdb)
	for _, id := range []string{"", "a,b", "a b", "a\tb", "a\nb", "a\x00b", "a\x7fb", "\xff", strings.Repeat("x", heartbeat.MaxNodeIDLen+1)} {
		_, err := e.tr.Beat(ctx, heartbeat.Beat{Node: id, Session: "test"})
		assert.ErrorIs(t, err, heartbeat.ErrInvalidNode, "id %q", id)
	}
	for _, b := range []heartbeat.Beat{
		{Node: "ok", Held: []string{"a,b"}, Session: "test"},
		{Node: "ok", Held: []string{"a\tb"}, Session: "test"},
		{Node: "ok", IP: "10.0.0.1\t", Session: "test"},
		{Node: "ok", Preferred: "alpha\n", Session: "test"},
	} {
		_, err := e.tr.Beat(ctx, b)
		assert.ErrorIs(t, err, heartbeat.ErrInvalidNode, "beat %+v", b)
	}
	n, err := rdb.ZCard(ctx, e.k.Nodes()).Result()
	require.NoError(t, err)
	assert.Zero(t, n, "nothing written for invalid beats")

	_, err = e.tr.Beat(ctx, heartbeat.Beat{Node: strings.Repeat("é", heartbeat.MaxNodeIDLen/2), Session: "test"})
	assert.NoError(t, err)
}

func TestConfigValidate(t *testing.T) {
	assert.NoError(t, heartbeat.DefaultConfig().Validate())
	assert.Equal(t, heartbeat.Config{Interval: 2 * time.Second, TTL: 6 * time.Second}, heartbeat.DefaultConfig())
	tests := []struct {
		cfg     heartbeat.Config
		wantErr string
	}{
		{heartbeat.Config{Interval: time.Second, TTL: 3 * time.Second}, ""},
		{heartbeat.Config{Interval: 0, TTL: time.Second}, "interval 0s must be > 0"},
		{heartbeat.Config{Interval: -time.Second, TTL: time.Second}, "interval -1s must be > 0"},
		{heartbeat.Config{Interval: time.Second, TTL: 2999 * time.Millisecond}, "ttl 2.999s must be >= 3 × interval 1s"},
		{heartbeat.Config{Interval: 2 * time.Second, TTL: 0}, "ttl 0s must be >= 3 × interval 2s"},
	}
	for _, tt := range tests {
		err := tt.cfg.Validate()
		if tt.wantErr == "" {
			assert.NoError(t, err, "%+v", tt.cfg)
			continue
		}
		assert.ErrorIs(t, err, heartbeat.ErrInvalidConfig, "%+v", tt.cfg)
		assert.ErrorContains(t, err, tt.wantErr)
	}
}

func TestNewValidates(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}) // never dialled
	defer rdb.Close()

	_, err := heartbeat.New(rdb, "ns", heartbeat.Config{Interval: time.Second, TTL: time.Second})
	assert.ErrorIs(t, err, heartbeat.ErrInvalidConfig)
	for _, ns := range []string{"{bad}", "a b", "-x", strings.Repeat("n", 64)} {
		_, err = heartbeat.New(rdb, ns, heartbeat.DefaultConfig())
		assert.ErrorIs(t, err, heartbeat.ErrInvalidConfig, "ns %q", ns)
		assert.ErrorIs(t, err, keys.ErrInvalidNamespace, "ns %q", ns)
	}
	_, err = heartbeat.New(nil, "ns", heartbeat.DefaultConfig())
	assert.ErrorIs(t, err, heartbeat.ErrInvalidConfig)

	tr, err := heartbeat.New(rdb, "", testConfig)
	require.NoError(t, err)
	assert.Equal(t, testConfig, tr.Config())
}

// testHeldRev: a beat reports the revision of the last write to any held
// group (registry's per-group fields in :state); a held group with no
// field counts as written at the current revision; holding nothing is 0.
func testHeldRev(t *testing.T, rdb redis.UniversalClient) {
	e := newEnv(t, rdb)
	ctx := context.Background()
	e.setState(t, "rev", 9, keys.GroupRevField("a"), 5, keys.GroupRevField("b"), 7, keys.GroupRevField("z"), 8)
	// A node whose view covers the current revision is not compared.
	r, err := e.tr.Beat(ctx, heartbeat.Beat{Node: "n0", IP: "10.0.0.1", Held: []string{"a"}, Rev: 9, Session: "test"})
	require.NoError(t, err)
	assert.Zero(t, r.HeldRev)
	for _, c := range []struct {
		held []string
		want int64
	}{
		{nil, 0},
		{[]string{"a"}, 5},
		{[]string{"a", "b"}, 7},
		{[]string{"a", "gone"}, 9},
	} {
		r, err := e.tr.Beat(ctx, heartbeat.Beat{Node: "n1", IP: "10.0.0.1", Held: c.held, Session: "test"})
		require.NoError(t, err)
		assert.Equal(t, int64(9), r.Rev)
		assert.Equal(t, c.want, r.HeldRev, "held %v", c.held)
	}
}

// testEntryIsHeld: a beat says whether the node's committed entry is what
// it reports held, and then gives those groups' holder counts and whether
// a leave or reap made them newer than the epoch.
func testEntryIsHeld(t *testing.T, rdb redis.UniversalClient) {
	e := newEnv(t, rdb)
	ctx := context.Background()
	e.setState(t, "epoch", 5)
	require.NoError(t, rdb.HSet(ctx, e.k.Assign(), "n1", "a,b", "n2", "").Err())
	require.NoError(t, rdb.HSet(ctx, e.k.Holders(), "a", 3, "b", 2).Err())
	beat := func(node string, held ...string) heartbeat.Reply {
		t.Helper()
		r, err := e.tr.Beat(ctx, heartbeat.Beat{Node: node, IP: "10.0.0.1", Held: held, Session: "test"})
		require.NoError(t, err)
		return r
	}
	r := beat("n1", "b", "a")
	assert.True(t, r.EntryIsHeld)
	assert.False(t, r.Dirty)
	assert.Equal(t, map[string]int{"a": 3, "b": 2}, r.Holders)

	r = beat("n1", "a")
	assert.False(t, r.EntryIsHeld, "the entry has b too")
	assert.Nil(t, r.Holders)

	r = beat("n2")
	assert.True(t, r.EntryIsHeld, "standby, and holding nothing")
	assert.Nil(t, r.Holders)
	r = beat("n3")
	assert.False(t, r.EntryIsHeld, "no entry yet")

	e.setState(t, "dirty", 1)
	r = beat("n1", "a", "b")
	assert.True(t, r.EntryIsHeld)
	assert.True(t, r.Dirty, "counts newer than the epoch")

	// A node at the current epoch has nothing to take: not compared.
	r, err := e.tr.Beat(ctx, heartbeat.Beat{Node: "n1", IP: "10.0.0.1", Held: []string{"a", "b"}, Ack: 5, Session: "test"})
	require.NoError(t, err)
	assert.False(t, r.EntryIsHeld)
}
