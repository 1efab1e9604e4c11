package heartbeat_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/heartbeat"
	"github.com/allot-io/allot/internal/keys"
	"github.com/allot-io/allot/internal/redistest"
)

// safetyConfig gives the reap window room on a loaded machine: the checks
// below need one Reap between TTL/2 and TTL after a beat, a 300 ms window.
var safetyConfig = heartbeat.Config{Interval: 200 * time.Millisecond, TTL: 600 * time.Millisecond}

// serverTime reads TIME on the server that holds the namespace's keys (on
// Cluster, the shard of its hash tag), in ms as the scripts compute it.
var serverTime = redis.NewScript(`local t = redis.call('TIME')
return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)`)

func serverMS(t *testing.T, rdb redis.UniversalClient, k keys.Keys) int64 {
	t.Helper()
	ms, err := serverTime.Run(context.Background(), rdb, []string{k.Nodes()}).Int64()
	require.NoError(t, err)
	return ms
}

// untilServerMS polls until the server clock reads at least ms.
func untilServerMS(t *testing.T, rdb redis.UniversalClient, k keys.Keys, ms int64) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for serverMS(t, rdb, k) < ms {
		require.False(t, time.Now().After(deadline), "server clock never reached %d", ms)
		time.Sleep(tick) // polling interval
	}
}

// TestNoReapBeforeTTL pins the liveness rule: a node is reaped only once the
// server clock is past its last beat + TTL. Every Reap is bracketed by two
// server-time reads t0 <= reap <= t1, so the verdicts are exact whatever the
// machine's load: a Reap that found the node must have t1 > beat + TTL, a
// Reap that did not must have t0 <= beat + TTL. One Reap is made at TTL/2 or
// later (it must find nothing), and the loop runs until the node is reaped.
func TestNoReapBeforeTTL(t *testing.T) {
	redistest.Topologies(t, testNoReapBeforeTTL)
}

func testNoReapBeforeTTL(t *testing.T, rdb redis.UniversalClient) {
	ctx := context.Background()
	ns := fmt.Sprintf("hbsafe%d", nsSeq.Add(1))
	k := keys.New(ns)
	tr, err := heartbeat.New(rdb, ns, safetyConfig)
	require.NoError(t, err)
	ttl := safetyConfig.TTL.Milliseconds()

	// beat records one beat of n and returns its score (server ms).
	beat := func() int64 {
		_, err := tr.Beat(ctx, heartbeat.Beat{Node: "n", Session: "test"})
		require.NoError(t, err)
		score, err := rdb.ZScore(ctx, k.Nodes(), "n").Result()
		require.NoError(t, err)
		return int64(score)
	}
	// reap runs one Reap between two server-time reads.
	reap := func() (found bool, t0, t1 int64) {
		t0 = serverMS(t, rdb, k)
		ids, err := tr.Reap(ctx)
		require.NoError(t, err)
		t1 = serverMS(t, rdb, k)
		for _, id := range ids {
			require.Equal(t, "n", id, "only n ever beat")
			found = true
		}
		return found, t0, t1
	}

	mver := func() int64 {
		v, err := rdb.HGet(ctx, k.State(), "mver").Int64()
		require.NoError(t, err)
		return v
	}

	// Half a TTL after the beat, by the server clock, Reap finds nothing. A
	// stall that carries the Reap past the TTL proves nothing: beat again.
	var last int64
	checkedHalf := false
	for attempt := 0; attempt < 5 && !checkedHalf; attempt++ {
		last = beat()
		untilServerMS(t, rdb, k, last+ttl/2)
		before := mver()
		found, t0, t1 := reap()
		if found {
			require.Greater(t, t1, last+ttl, "a Reap that ended %d ms after the last beat found the node (TTL %d ms)", t1-last, ttl)
			continue // legitimately reaped after a stall: inconclusive
		}
		require.LessOrEqual(t, t0, last+ttl, "not reaped by a Reap that started %d ms after the last beat (TTL %d ms)", t0-last, ttl)
		assert.Equal(t, before, mver(), "an empty Reap changes nothing")
		checkedHalf = true
	}
	require.True(t, checkedHalf, "no Reap landed between TTL/2 and TTL in 5 attempts")

	// Until it is reaped, every verdict must agree with the server clock.
	before := mver()
	deadline := time.Now().Add(waitFor)
	for {
		found, t0, t1 := reap()
		if found {
			require.Greater(t, t1, last+ttl, "reaped by a Reap that ended %d ms after the last beat (TTL %d ms)", t1-last, ttl)
			break
		}
		require.LessOrEqual(t, t0, last+ttl, "not reaped by a Reap that started %d ms after the last beat (TTL %d ms)", t0-last, ttl)
		require.False(t, time.Now().After(deadline), "never reaped")
		time.Sleep(tick) // polling interval
	}
	assert.Equal(t, before+1, mver(), "the reap is a membership change")
	n, err := rdb.ZCard(ctx, k.Nodes()).Result()
	require.NoError(t, err)
	assert.Zero(t, n)
}
