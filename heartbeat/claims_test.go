package heartbeat_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/heartbeat"
	"github.com/allot-io/allot/internal/redistest"
	"github.com/allot-io/allot/internal/testlog"
)

// TestClaims pins what a beat may claim and cost (issue 21 part 2, issue 22
// item 4): each test is an attack from a node with the node token and its
// own valid session, on a standalone server and a 3-master Cluster.
func TestClaims(t *testing.T) {
	tests := map[string]func(t *testing.T, rdb redis.UniversalClient){
		"HeldCountsOnlyGiven":      testHeldCountsOnlyGiven,
		"OversizedHeldWritesNone":  testOversizedHeldWritesNone,
		"MaxLiveNodes":             testMaxLiveNodes,
		"StoredTTLWins":            testStoredTTLWins,
		"NodeEventsKeepAudit":      testNodeEventsKeepAudit,
		"EmptySessionIsNoSession":  testEmptySessionIsNoSession,
		"ScriptRefusesBadBeatRaw":  testScriptRefusesBadBeatRaw,
		"LeaveScriptRefusesNoSess": testLeaveScriptRefusesNoSession,
	}
	redistest.Topologies(t, func(t *testing.T, rdb redis.UniversalClient) {
		for name, fn := range tests {
			t.Run(name, func(t *testing.T) { fn(t, rdb) })
		}
	})
}

// snapshot is everything of e's namespace a beat, leave or reap may write.
func (e env) snapshot(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	var b strings.Builder
	zs, err := e.rdb.ZRangeWithScores(ctx, e.k.Nodes(), 0, -1).Result()
	require.NoError(t, err)
	fmt.Fprintln(&b, zs)
	for _, key := range []string{e.k.Members(), e.k.State(), e.k.Assign(), e.k.Revoked(), e.k.Holders()} {
		h, err := e.rdb.HGetAll(ctx, key).Result()
		require.NoError(t, err)
		fmt.Fprintln(&b, key, h)
	}
	for _, key := range []string{e.k.Log(), e.k.NodeLog()} {
		n, err := e.rdb.XLen(ctx, key).Result()
		require.NoError(t, err)
		fmt.Fprintln(&b, key, n)
	}
	return b.String()
}

// A beat's held counts only the groups of the node's committed entry and
// revoked entries: a claim on a capped group it was never given is not
// stored (so it cannot block the group's grant), comes back in Ignored and
// is logged once per node.
func testHeldCountsOnlyGiven(t *testing.T, rdb redis.UniversalClient) {
	ctx := context.Background()
	e := newEnv(t, rdb)
	var logs testlog.Buffer
	tr, err := heartbeat.New(rdb, e.k.Namespace(), testConfig, heartbeat.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	require.NoError(t, err)
	require.NoError(t, rdb.HSet(ctx, e.k.Assign(), "n1", "a").Err())
	require.NoError(t, rdb.HSet(ctx, e.k.Revoked(), "n1", "c@3").Err())

	b := heartbeat.Beat{Node: "n1", Session: "s1", Held: []string{"key4", "c", "a", "b"}, Ack: 3}
	for range 3 {
		r, err := tr.Beat(ctx, b)
		require.NoError(t, err)
		assert.Equal(t, []string{"b", "key4"}, r.Ignored)
		assert.False(t, r.EntryIsHeld, "the beat reported more than its entry")
		assert.Equal(t, "a,c", e.member(t, "n1")["held"], "only what n1 was given is stored")
	}
	assert.Equal(t, 1, strings.Count(logs.String(), "not counted"), "logged once per node: %s", logs.String())
	assert.Contains(t, logs.String(), "key4")

	// A node with no entry at all claims nothing; what it was given counts.
	r, err := tr.Beat(ctx, heartbeat.Beat{Node: "n2", Session: "s2", Held: []string{"key4"}})
	require.NoError(t, err)
	assert.Equal(t, []string{"key4"}, r.Ignored)
	assert.Equal(t, "", e.member(t, "n2")["held"])
	live, _, err := tr.Live(ctx)
	require.NoError(t, err)
	for _, n := range live {
		assert.NotContains(t, n.Held, "key4", "node %s", n.ID)
	}

	// Exactly its entry: nothing ignored, the entry's counts come back.
	require.NoError(t, rdb.HSet(ctx, e.k.Holders(), "a", 2).Err())
	r, err = tr.Beat(ctx, heartbeat.Beat{Node: "n1", Session: "s1", Held: []string{"a"}, Ack: 2})
	require.NoError(t, err)
	assert.Empty(t, r.Ignored)
	assert.True(t, r.EntryIsHeld)
	assert.Equal(t, map[string]int{"a": 2}, r.Holders)
}

// An oversized or malformed held list is refused before anything is
// written: the ID is not locked (another session joins at once) and no
// record is stored. Go refuses it first; the script refuses it too
// (testScriptRefusesBadBeatRaw).
func testOversizedHeldWritesNone(t *testing.T, rdb redis.UniversalClient) {
	ctx := context.Background()
	e := newEnv(t, rdb)
	before := e.snapshot(t)
	names := make([]string, 16000)
	for i := range names {
		names[i] = fmt.Sprintf("g%05d", i)
	}
	for _, held := range [][]string{names, names[:heartbeat.MaxHeld+1], {"Key4"}, {"a,b"}, {strings.Repeat("k", 64)}} {
		_, err := e.tr.Beat(ctx, heartbeat.Beat{Node: "n1", Session: "attacker", Held: held})
		require.ErrorIs(t, err, heartbeat.ErrInvalidBeat, "%d names", len(held))
		assert.ErrorIs(t, err, heartbeat.ErrInvalidNode, "ErrInvalidBeat is an ErrInvalidNode")
	}
	assert.Equal(t, before, e.snapshot(t), "a refused beat writes nothing")

	// The ID is free: another process joins with it at once.
	r, err := e.tr.Beat(ctx, heartbeat.Beat{Node: "n1", Session: "owner", Held: names[:heartbeat.MaxHeld]})
	require.NoError(t, err, "MaxHeld names are accepted")
	assert.True(t, r.Joined)
	assert.Len(t, r.Ignored, heartbeat.MaxHeld, "none of them was given")
	assert.Equal(t, "", e.member(t, "n1")["held"])
}

// A join while max_live_nodes nodes are live is refused, writing nothing;
// live members keep beating, and a join succeeds again once one leaves.
func testMaxLiveNodes(t *testing.T, rdb redis.UniversalClient) {
	ctx := context.Background()
	e := newEnv(t, rdb)
	n, stored, err := heartbeat.LoadMaxLiveNodes(ctx, rdb, e.k.Namespace())
	require.NoError(t, err)
	assert.False(t, stored)
	assert.Equal(t, int64(heartbeat.DefaultMaxLiveNodes), n)
	require.ErrorIs(t, heartbeat.StoreMaxLiveNodes(ctx, rdb, e.k.Namespace(), -1), heartbeat.ErrInvalidConfig)
	require.NoError(t, heartbeat.StoreMaxLiveNodes(ctx, rdb, e.k.Namespace(), 3))
	n, stored, err = heartbeat.LoadMaxLiveNodes(ctx, rdb, e.k.Namespace())
	require.NoError(t, err)
	assert.True(t, stored)
	assert.Equal(t, int64(3), n)

	for _, id := range []string{"a", "b", "c"} {
		_, err := e.tr.Beat(ctx, heartbeat.Beat{Node: id, Session: "s-" + id})
		require.NoError(t, err)
	}
	before := e.snapshot(t)
	_, err = e.tr.Beat(ctx, heartbeat.Beat{Node: "d", Session: "s-d"})
	require.ErrorIs(t, err, heartbeat.ErrTooManyNodes)
	assert.Contains(t, err.Error(), "max_live_nodes is 3")
	assert.Equal(t, before, e.snapshot(t), "the refused join wrote nothing")

	// Members keep beating at the cap.
	r, err := e.tr.Beat(ctx, heartbeat.Beat{Node: "a", Session: "s-a"})
	require.NoError(t, err)
	assert.False(t, r.Joined)

	require.NoError(t, e.tr.Leave(ctx, "c", "s-c"))
	r, err = e.tr.Beat(ctx, heartbeat.Beat{Node: "d", Session: "s-d"})
	require.NoError(t, err)
	assert.True(t, r.Joined)

	// 0 is no limit; the stored heartbeat settings are untouched by it.
	require.NoError(t, heartbeat.StoreMaxLiveNodes(ctx, rdb, e.k.Namespace(), 0))
	_, err = e.tr.Beat(ctx, heartbeat.Beat{Node: "e", Session: "s-e"})
	require.NoError(t, err)
	_, stored, err = heartbeat.LoadConfig(ctx, rdb, e.k.Namespace())
	require.NoError(t, err)
	assert.False(t, stored, "max_live_nodes alone is no heartbeat setting")
	want := heartbeat.Config{Interval: time.Second, TTL: 3 * time.Second}
	got, err := heartbeat.Resolve(ctx, rdb, e.k.Namespace(), &want)
	require.NoError(t, err, "the first configured process still records its settings")
	assert.Equal(t, want, got)
}

// The beat, reap and live scripts judge liveness by the namespace's stored
// TTL, not by the caller's: a process started with a short TTL can neither
// take over a live ID nor reap a live node.
func testStoredTTLWins(t *testing.T, rdb redis.UniversalClient) {
	ctx := context.Background()
	e := newEnv(t, rdb) // its Tracker uses testConfig: TTL 150 ms
	require.NoError(t, heartbeat.StoreConfig(ctx, rdb, e.k.Namespace(), heartbeat.Config{Interval: 10 * time.Second, TTL: time.Hour}))
	r, err := e.tr.Beat(ctx, heartbeat.Beat{Node: "n1", Session: "owner"})
	require.NoError(t, err)
	untilServerMS(t, rdb, e.k, r.Now.UnixMilli()+2*testConfig.TTL.Milliseconds())

	_, err = e.tr.Beat(ctx, heartbeat.Beat{Node: "n1", Session: "thief"})
	require.ErrorIs(t, err, heartbeat.ErrNodeIDInUse, "live by the stored TTL")
	var inUse *heartbeat.InUseError
	require.ErrorAs(t, err, &inUse)
	assert.Greater(t, inUse.Remaining, 50*time.Minute)
	reaped, err := e.tr.Reap(ctx)
	require.NoError(t, err)
	assert.Empty(t, reaped)
	live, _, err := e.tr.Live(ctx)
	require.NoError(t, err)
	require.Len(t, live, 1)
	assert.Equal(t, "owner", e.member(t, "n1")["session"])
}

// Node events go to their own stream: 20,000 of them (10,000 joins, 10,000
// reaps) leave every group.* entry of the audit stream in place.
func testNodeEventsKeepAudit(t *testing.T, rdb redis.UniversalClient) {
	ctx := context.Background()
	e := newEnv(t, rdb)
	audit, err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: e.k.Log(), Values: []any{"type", "group.added", "group", "g1"}}).Result()
	require.NoError(t, err)

	const nodes = 10000
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < nodes; i += 8 {
				if _, err := e.tr.Beat(ctx, heartbeat.Beat{Node: fmt.Sprintf("n%05d", i), Session: "s"}); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	reaped := 0
	require.Eventually(t, func() bool {
		ids, err := e.tr.Reap(ctx)
		require.NoError(t, err)
		reaped += len(ids)
		return reaped == nodes
	}, waitFor, tick)

	n, err := rdb.XLen(ctx, e.k.NodeLog()).Result()
	require.NoError(t, err)
	assert.Greater(t, n, int64(5000), "node events are logged")
	msgs, err := rdb.XRange(ctx, e.k.Log(), "-", "+").Result()
	require.NoError(t, err)
	require.Len(t, msgs, 1, "the audit stream holds only the group entry")
	assert.Equal(t, audit, msgs[0].ID)
}

// "" is no session: a beat without one is refused, and neither Leave nor
// CheckSession with "" matches a record that has none (an old record).
func testEmptySessionIsNoSession(t *testing.T, rdb redis.UniversalClient) {
	ctx := context.Background()
	e := newEnv(t, rdb)
	require.ErrorIs(t, heartbeat.ValidateSession(""), heartbeat.ErrInvalidNode)
	_, err := e.tr.Beat(ctx, heartbeat.Beat{Node: "n1"})
	require.ErrorIs(t, err, heartbeat.ErrInvalidBeat)

	// A record without a session, as an older version wrote it.
	r, err := e.tr.Beat(ctx, heartbeat.Beat{Node: "n1", Session: "s"})
	require.NoError(t, err)
	ms := fmt.Sprint(r.Now.UnixMilli())
	require.NoError(t, rdb.HSet(ctx, e.k.Members(), "n1", ms+"\t\t\t\t0\t\t"+ms+"\t").Err())
	before := e.snapshot(t)
	assert.ErrorIs(t, e.tr.Leave(ctx, "n1", ""), heartbeat.ErrInvalidNode)
	assert.ErrorIs(t, e.tr.CheckSession(ctx, "n1", ""), heartbeat.ErrInvalidNode)
	assert.Equal(t, before, e.snapshot(t), "nobody removed n1 by sending no session")
}

// beat.lua is the trust boundary: sent past Go's checks, every malformed or
// oversized field is refused before the first write.
func testScriptRefusesBadBeatRaw(t *testing.T, rdb redis.UniversalClient) {
	ctx := context.Background()
	e := newEnv(t, rdb)
	names := make([]string, 16000)
	for i := range names {
		names[i] = fmt.Sprintf("g%05d", i)
	}
	ok := heartbeat.Beat{Node: "n1", Session: "s", IP: "10.0.0.1"}
	cases := map[string]struct {
		b    heartbeat.Beat
		held string
	}{
		"16000 held":         {ok, strings.Join(names, ",")},
		"MaxHeld+1 held":     {ok, strings.Join(names[:heartbeat.MaxHeld+1], ",")},
		"held not a name":    {ok, "Key4"},
		"held empty name":    {ok, "a,,b"},
		"held unsorted":      {ok, "b,a"},
		"held duplicate":     {ok, "a,a"},
		"held too long":      {ok, strings.Repeat("k", 64)},
		"held tab":           {ok, "a\tb"},
		"empty id":           {heartbeat.Beat{Session: "s"}, ""},
		"id with comma":      {heartbeat.Beat{Node: "a,b", Session: "s"}, ""},
		"long id":            {heartbeat.Beat{Node: strings.Repeat("x", heartbeat.MaxNodeIDLen+1), Session: "s"}, ""},
		"empty session":      {heartbeat.Beat{Node: "n1"}, ""},
		"long session":       {heartbeat.Beat{Node: "n1", Session: strings.Repeat("s", heartbeat.MaxSessionLen+1)}, ""},
		"session with tab":   {heartbeat.Beat{Node: "n1", Session: "a\tb"}, ""},
		"long ip":            {heartbeat.Beat{Node: "n1", Session: "s", IP: strings.Repeat("1", heartbeat.MaxIPLen+1)}, ""},
		"ip with newline":    {heartbeat.Beat{Node: "n1", Session: "s", IP: "1\n2"}, ""},
		"preferred not name": {heartbeat.Beat{Node: "n1", Session: "s", Preferred: "Alpha"}, ""},
	}
	before := e.snapshot(t)
	for name, c := range cases {
		err := e.tr.RawBeat(ctx, c.b, c.held)
		require.Error(t, err, name)
		assert.Contains(t, err.Error(), "INVALIDBEAT", name)
	}
	assert.Equal(t, before, e.snapshot(t), "refused beats wrote nothing")
	require.NoError(t, e.tr.RawBeat(ctx, ok, strings.Join(names[:heartbeat.MaxHeld], ",")), "MaxHeld sorted names pass")
}

// leave.lua refuses a leave with no session, whatever the record holds.
func testLeaveScriptRefusesNoSession(t *testing.T, rdb redis.UniversalClient) {
	ctx := context.Background()
	e := newEnv(t, rdb)
	r, err := e.tr.Beat(ctx, heartbeat.Beat{Node: "n1", Session: "s"})
	require.NoError(t, err)
	ms := fmt.Sprint(r.Now.UnixMilli())
	require.NoError(t, rdb.HSet(ctx, e.k.Members(), "n1", ms+"\t\t\t\t0\t\t"+ms+"\t").Err())
	before := e.snapshot(t)
	err = e.tr.RawLeave(ctx, "n1", "")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "INVALIDLEAVE")
	assert.Equal(t, before, e.snapshot(t))
}
