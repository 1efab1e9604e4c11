package heartbeat_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/heartbeat"
	"github.com/allot-io/allot/internal/keys"
	"github.com/allot-io/allot/internal/redistest"
)

// TestScale covers what keeps a change's cost to what it changes: the groups
// a removal took a holder from, one planner per change, one message per reap.
func TestScale(t *testing.T) {
	tests := map[string]func(t *testing.T, rdb redis.UniversalClient){
		"DirtyGroups":       testDirtyGroups,
		"FirstClaims":       testFirstClaims,
		"ReapPublishesOnce": testReapPublishesOnce,
	}
	redistest.Topologies(t, func(t *testing.T, rdb redis.UniversalClient) {
		for name, fn := range tests {
			t.Run(name, func(t *testing.T) { fn(t, rdb) })
		}
	})
}

// testReapPublishesOnce: reaping several nodes logs one node.reaped each but
// publishes one message (a nudge), not one per node to every subscriber.
func testReapPublishesOnce(t *testing.T, rdb redis.UniversalClient) {
	ctx := context.Background()
	e := newEnv(t, rdb)
	sub := rdb.Subscribe(ctx, e.k.Events())
	defer sub.Close()
	_, err := sub.Receive(ctx)
	require.NoError(t, err)
	for _, id := range []string{"d1", "d2", "d3"} {
		_, err := e.tr.Beat(ctx, heartbeat.Beat{Node: id, Session: "test"})
		require.NoError(t, err)
	}
	// Wait until all three are past their TTL, then reap them at once.
	require.Eventually(t, func() bool {
		live, _, err := e.tr.Live(ctx)
		require.NoError(t, err)
		return len(live) == 0
	}, waitFor, tick)
	reaped, err := e.tr.Reap(ctx)
	require.NoError(t, err)
	require.Len(t, reaped, 3)
	logged := 0
	for _, m := range e.logEntries(t) {
		if m.Values["type"] == "node.reaped" {
			logged++
		}
	}
	assert.Equal(t, 3, logged)
	got := map[string]int{}
	for {
		rctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		msg, err := sub.ReceiveMessage(rctx)
		cancel()
		if err != nil {
			break
		}
		for _, typ := range []string{"node.joined", "node.reaped"} {
			if strings.Contains(msg.Payload, `"`+typ+`"`) {
				got[typ]++
			}
		}
	}
	assert.Equal(t, map[string]int{"node.joined": 3, "node.reaped": 1}, got, "reaped %v", reaped)
}

// testDirtyGroups: a leave that removes a committed entry records the
// groups that lost a holder, so the next commit's event names them; a
// list past 4 KiB becomes "*" (name nothing: every node reads).
func testDirtyGroups(t *testing.T, rdb redis.UniversalClient) {
	ctx := context.Background()
	e := newEnv(t, rdb)
	for _, id := range []string{"a", "b", "c"} {
		_, err := e.tr.Beat(ctx, heartbeat.Beat{Node: id, Session: "test"})
		require.NoError(t, err)
	}
	require.NoError(t, rdb.HSet(ctx, e.k.Assign(), "a", "g1,g2", "b", "g3", "c", "").Err())
	require.NoError(t, rdb.HSet(ctx, e.k.Holders(), "g1", 1, "g2", 1, "g3", 1).Err())
	require.NoError(t, e.tr.Leave(ctx, "a", "test"))
	require.NoError(t, e.tr.Leave(ctx, "b", "test"))
	dg, err := rdb.HGet(ctx, e.k.State(), "dirtyg").Result()
	require.NoError(t, err)
	assert.Equal(t, "g1,g2,g3", dg)
	require.NoError(t, e.tr.Leave(ctx, "c", "test"))
	dg, err = rdb.HGet(ctx, e.k.State(), "dirtyg").Result()
	require.NoError(t, err)
	assert.Equal(t, "g1,g2,g3", dg, "a standby node's leave names no group")

	_, err = e.tr.Beat(ctx, heartbeat.Beat{Node: "d", Session: "test"})
	require.NoError(t, err)
	require.NoError(t, rdb.HSet(ctx, e.k.Assign(), "d", "g4").Err())
	e.setState(t, "dirtyg", strings.Repeat("x", 4096))
	require.NoError(t, e.tr.Leave(ctx, "d", "test"))
	dg, err = rdb.HGet(ctx, e.k.State(), "dirtyg").Result()
	require.NoError(t, err)
	assert.Equal(t, "*", dg)
}

// testFirstClaims: of the beats that see one pending change, only the first
// is told to plan; a leave claims its own change; a claim left pending for
// TTL/3 passes to the next beat.
func testFirstClaims(t *testing.T, rdb redis.UniversalClient) {
	ctx := context.Background()
	// A claim lasts TTL/3 = 1 s here, so a busy machine cannot let it
	// lapse between two beats of the test.
	ns := fmt.Sprintf("hbslow%d", nsSeq.Add(1))
	slow, err := heartbeat.New(rdb, ns, heartbeat.Config{Interval: time.Second, TTL: 3 * time.Second})
	require.NoError(t, err)
	e := env{rdb: rdb, k: keys.New(ns), tr: slow}
	fast := newEnv(t, rdb)
	for _, id := range []string{"a", "b", "c"} {
		r, err := e.tr.Beat(ctx, heartbeat.Beat{Node: id, Session: "test"})
		require.NoError(t, err)
		assert.True(t, r.Work && r.First, "%s joined: its own change, it plans", id)
	}
	e.planned(t)
	for _, id := range []string{"a", "b", "c"} {
		r, err := e.tr.Beat(ctx, heartbeat.Beat{Node: id, Session: "test"})
		require.NoError(t, err)
		assert.False(t, r.Work || r.First, "nothing pending")
	}

	// A group write (rev moved): one planner.
	e.setState(t, "rev", e.state(t, "rev")+1)
	var first []string
	for _, id := range []string{"a", "b", "c", "a", "b"} {
		r, err := e.tr.Beat(ctx, heartbeat.Beat{Node: id, Session: "test"})
		require.NoError(t, err)
		require.True(t, r.Work)
		if r.First {
			first = append(first, id)
		}
	}
	assert.Equal(t, []string{"a"}, first)

	e.planned(t)

	// Nobody committed within TTL/3: the next beat takes over.
	for _, id := range []string{"a", "b"} {
		_, err := fast.tr.Beat(ctx, heartbeat.Beat{Node: id, Session: "test"})
		require.NoError(t, err)
	}
	fast.planned(t)
	fast.setState(t, "rev", fast.state(t, "rev")+1)
	r, err := fast.tr.Beat(ctx, heartbeat.Beat{Node: "a", Session: "test"})
	require.NoError(t, err)
	require.True(t, r.First)
	require.Eventually(t, func() bool {
		r, err := fast.tr.Beat(ctx, heartbeat.Beat{Node: "b", Session: "test"})
		require.NoError(t, err)
		return r.First
	}, waitFor, tick, "b takes over the lapsed claim")

	// A leave claims the plan for its change: the survivors' beats wait.
	require.NoError(t, e.tr.Leave(ctx, "c", "test"))
	for _, id := range []string{"a", "b"} {
		r, err := e.tr.Beat(ctx, heartbeat.Beat{Node: id, Session: "test"})
		require.NoError(t, err)
		assert.True(t, r.Work)
		assert.False(t, r.First, "the leaver plans for %s", id)
	}
}
