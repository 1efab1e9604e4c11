package heartbeat_test

import (
	"context"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/heartbeat"
	"github.com/allot-io/allot/internal/redistest"
)

func TestDemand(t *testing.T) {
	tests := map[string]func(t *testing.T, rdb redis.UniversalClient){
		"Stored":               testDemandStored,
		"Hysteresis":           testDemandHysteresis,
		"PlanRateBound":        testDemandPlanRateBound,
		"BadDemandWritesNone":  testBadDemandWritesNone,
		"ScriptRefusesBadFigs": testScriptRefusesBadDemand,
	}
	redistest.Topologies(t, func(t *testing.T, rdb redis.UniversalClient) {
		for name, fn := range tests {
			t.Run(name, func(t *testing.T) { fn(t, rdb) })
		}
	})
}

// A beat's demand reaches the node's record, and the planner's reads
// (Live, QueuePlanRead) return it; a beat without one keeps what is
// stored, and a new session taking the ID over starts without any.
func testDemandStored(t *testing.T, rdb redis.UniversalClient) {
	ctx := context.Background()
	e := newEnv(t, rdb)
	_, err := e.tr.Beat(ctx, heartbeat.Beat{Node: "n1", Session: "s1", Demand: &heartbeat.Demand{Calls: 20.25, Tokens: 1500}})
	require.NoError(t, err)
	_, err = e.tr.Beat(ctx, heartbeat.Beat{Node: "n2", Session: "s2"})
	require.NoError(t, err)
	m := e.member(t, "n1")
	assert.Equal(t, "20.25", m["calls"])
	assert.Equal(t, "1500", m["tokens"])
	assert.Equal(t, "", e.member(t, "n2")["calls"], "a node that sent none has none")

	live, _, err := e.tr.Live(ctx)
	require.NoError(t, err)
	require.Len(t, live, 2)
	assert.Equal(t, &heartbeat.Demand{Calls: 20.25, Tokens: 1500}, live[0].Demand)
	assert.Nil(t, live[1].Demand)

	tx := rdb.TxPipeline()
	pr := e.tr.QueuePlanRead(ctx, tx)
	_, err = tx.Exec(ctx)
	require.NoError(t, err)
	_, nodes, err := pr.Result()
	require.NoError(t, err)
	require.Len(t, nodes, 2)
	assert.Equal(t, &heartbeat.Demand{Calls: 20.25, Tokens: 1500}, nodes[0].Demand, "the planner's read carries it")

	// A beat without demand keeps the stored figures.
	_, err = e.tr.Beat(ctx, heartbeat.Beat{Node: "n1", Session: "s1"})
	require.NoError(t, err)
	assert.Equal(t, "20.25", e.member(t, "n1")["calls"])

	// Another session taking the expired ID over is a join: what the old
	// process asked is not the new one's.
	require.Eventually(t, func() bool {
		_, err := e.tr.Beat(ctx, heartbeat.Beat{Node: "n1", Session: "s9"})
		return err == nil
	}, waitFor, tick)
	assert.Equal(t, "", e.member(t, "n1")["calls"])
}

// A change under DemandChange (or under the floor) writes nothing and asks
// for no plan; a larger one is stored and asks for one (mver+1).
func testDemandHysteresis(t *testing.T, rdb redis.UniversalClient) {
	ctx := context.Background()
	e := newEnv(t, rdb)
	beat := func(calls, tokens float64) {
		t.Helper()
		_, err := e.tr.Beat(ctx, heartbeat.Beat{Node: "n1", Session: "s1", Demand: &heartbeat.Demand{Calls: calls, Tokens: tokens}})
		require.NoError(t, err)
	}
	beat(20, 1000)
	mver := e.state(t, "mver")
	rec := func() string {
		v, err := rdb.HGet(ctx, e.k.Members(), "n1").Result()
		require.NoError(t, err)
		return v
	}
	stored := rec()
	for _, d := range [][2]float64{{24.9, 1000}, {15.1, 1000}, {20, 1249}, {20, 751}, {20.5, 1100}} {
		beat(d[0], d[1])
		assert.Equal(t, stored, rec(), "%v is within 25%% of 20 calls, 1000 tokens: nothing written", d)
	}
	assert.Equal(t, mver, e.state(t, "mver"), "and no plan asked for")

	// Near zero the floors decide: 0 -> 0.09 calls/s is no change.
	_, err := e.tr.Beat(ctx, heartbeat.Beat{Node: "n2", Session: "s2", Demand: &heartbeat.Demand{}})
	require.NoError(t, err)
	mver = e.state(t, "mver")
	_, err = e.tr.Beat(ctx, heartbeat.Beat{Node: "n2", Session: "s2", Demand: &heartbeat.Demand{Calls: heartbeat.DemandFloorCalls * 0.9, Tokens: heartbeat.DemandFloorTokens * 0.9}})
	require.NoError(t, err)
	assert.Equal(t, "0", e.member(t, "n2")["calls"])
	assert.Equal(t, mver, e.state(t, "mver"))

	beat(26, 1000)
	assert.Equal(t, "26", e.member(t, "n1")["calls"], "a change past 25% is stored")
	assert.Equal(t, mver+1, e.state(t, "mver"), "and asks for a plan")
}

// Demand asks for at most one plan per DemandPlanIntervals intervals: a
// change sooner waits (dwait) and the first beat of any node past the gap
// asks for it; a steady demand asks for none.
func testDemandPlanRateBound(t *testing.T, rdb redis.UniversalClient) {
	ctx := context.Background()
	e := newEnv(t, rdb)
	beat := func(id string, calls float64) {
		t.Helper()
		_, err := e.tr.Beat(ctx, heartbeat.Beat{Node: id, Session: "s-" + id, Demand: &heartbeat.Demand{Calls: calls}})
		require.NoError(t, err)
	}
	beat("a", 1)
	beat("b", 1)
	beat("c", 0)
	beat("a", 10) // stored, plan asked at once: no demand plan before
	mver := e.state(t, "mver")
	start := time.Now()
	beat("b", 10) // within the gap: waits
	assert.Equal(t, mver, e.state(t, "mver"), "a second change within the gap asks for no plan yet")
	assert.Equal(t, int64(1), e.state(t, "dwait"))
	beat("a", 100)
	assert.Equal(t, mver, e.state(t, "mver"), "nor a third")

	// Node c, whose demand is steady, beats until the gap has passed: its
	// beat asks for the one plan that covers both changes.
	require.Eventually(t, func() bool {
		beat("c", 0)
		return e.state(t, "mver") > mver
	}, waitFor, tick)
	gap := time.Duration(heartbeat.DemandPlanIntervals) * testConfig.Interval
	assert.GreaterOrEqual(t, time.Since(start), gap*8/10, "not before the gap (server and test clocks differ a little)")
	assert.Equal(t, mver+1, e.state(t, "mver"), "one plan for both")
	assert.Equal(t, int64(0), e.state(t, "dwait"))

	// Steady demand: no more plans, however many beats.
	mver = e.state(t, "mver")
	for range 20 {
		beat("a", 100)
		beat("b", 10)
		beat("c", 0)
	}
	assert.Equal(t, mver, e.state(t, "mver"))
}

// Go refuses a bad figure before any round trip; the error says which and
// matches ErrInvalidDemand, ErrInvalidBeat and ErrInvalidNode.
func testBadDemandWritesNone(t *testing.T, rdb redis.UniversalClient) {
	ctx := context.Background()
	e := newEnv(t, rdb)
	before := e.snapshot(t)
	for _, d := range []heartbeat.Demand{
		{Calls: -1}, {Tokens: -0.5}, {Calls: math.NaN()}, {Tokens: math.Inf(1)}, {Calls: math.Inf(-1)},
		{Calls: 1e9 + 1}, {Tokens: 2e9},
	} {
		_, err := e.tr.Beat(ctx, heartbeat.Beat{Node: "n1", Session: "s1", Demand: &d})
		require.ErrorIs(t, err, heartbeat.ErrInvalidDemand, "%+v", d)
		assert.ErrorIs(t, err, heartbeat.ErrInvalidBeat)
		assert.ErrorIs(t, err, heartbeat.ErrInvalidNode)
		assert.ErrorIs(t, d.Validate(), heartbeat.ErrInvalidDemand)
	}
	assert.Equal(t, before, e.snapshot(t), "a refused beat writes nothing, liveness included")
	assert.NoError(t, heartbeat.Demand{Calls: 1e9, Tokens: 1e9}.Validate(), "the bound itself is fine")
}

// The script is the trust boundary: figures sent past Go's checks are
// refused before its first write.
func testScriptRefusesBadDemand(t *testing.T, rdb redis.UniversalClient) {
	ctx := context.Background()
	e := newEnv(t, rdb)
	b := heartbeat.Beat{Node: "n1", Session: "s1"}
	_, err := e.tr.Beat(ctx, heartbeat.Beat{Node: "n1", Session: "s1", Demand: &heartbeat.Demand{Calls: 3, Tokens: 3}})
	require.NoError(t, err)
	e.planned(t)
	before := e.snapshot(t)
	for _, f := range [][2]string{
		{"-1", "0"}, {"0", "-1"}, {"nan", "0"}, {"NaN", "0"}, {"inf", "0"}, {"0", "-inf"}, {"1e3", "0"},
		{"0x10", "0"}, {"1000000001", "0"}, {"0", "2000000000"}, {" 1", "0"}, {"1.", "0"}, {".5", "0"},
		{"1", ""}, {"", "1"}, {strings.Repeat("1", 30), "0"},
	} {
		err := e.tr.RawDemandBeat(ctx, b, "", f[0], f[1])
		require.Error(t, err, "%q", f)
		assert.Contains(t, err.Error(), "INVALIDBEAT demand", "%q", f)
	}
	assert.Equal(t, before, e.snapshot(t), "nothing written: no record, score or counter moved")
	require.NoError(t, e.tr.RawDemandBeat(ctx, b, "", "1000000000", "0.125"), "the bound and decimals are fine")
}
