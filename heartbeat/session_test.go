package heartbeat_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/heartbeat"
	"github.com/allot-io/allot/internal/redistest"
)

// digest is Redis's DEBUG DIGEST: it changes with any write to any key.
func digest(t *testing.T, rdb redis.UniversalClient) string {
	t.Helper()
	d, err := rdb.Do(context.Background(), "DEBUG", "DIGEST").Text()
	require.NoError(t, err)
	return d
}

// Two processes beating with one node ID: the second is refused while the
// first is live, and its refused beats write nothing at all.
func TestSessionRefusesSecondProcess(t *testing.T) {
	ctx := context.Background()
	rdb := redistest.Start(t).Client(t)
	e := newEnv(t, rdb)
	a, b := heartbeat.NewSession(), heartbeat.NewSession()
	require.NotEqual(t, a, b)
	assert.Len(t, a, 16)

	_, err := e.tr.Beat(ctx, heartbeat.Beat{Node: "n1", Session: a, IP: "10.0.0.1", Held: []string{"solo"}})
	require.NoError(t, err)
	before := digest(t, rdb)

	_, err = e.tr.Beat(ctx, heartbeat.Beat{Node: "n1", Session: b, IP: "10.0.0.2"})
	require.ErrorIs(t, err, heartbeat.ErrNodeIDInUse)
	var inUse *heartbeat.InUseError
	require.True(t, errors.As(err, &inUse))
	assert.Equal(t, "n1", inUse.Node)
	assert.Greater(t, inUse.Remaining, time.Duration(0))
	assert.LessOrEqual(t, inUse.Remaining, testConfig.TTL)
	assert.Contains(t, err.Error(), `"n1"`)

	// A stranger can neither remove the node nor pass its session check.
	assert.ErrorIs(t, e.tr.Leave(ctx, "n1", b), heartbeat.ErrWrongSession)
	assert.ErrorIs(t, e.tr.CheckSession(ctx, "n1", b), heartbeat.ErrWrongSession)
	assert.ErrorIs(t, e.tr.CheckSession(ctx, "nobody", b), heartbeat.ErrWrongSession)
	assert.Equal(t, before, digest(t, rdb), "refused calls changed Redis")
	assert.NoError(t, e.tr.CheckSession(ctx, "n1", a))

	// The owner leaves; the other session joins at once.
	require.NoError(t, e.tr.Leave(ctx, "n1", a))
	r, err := e.tr.Beat(ctx, heartbeat.Beat{Node: "n1", Session: b, IP: "10.0.0.2"})
	require.NoError(t, err)
	assert.True(t, r.Joined)
	assert.Equal(t, b, e.member(t, "n1")["session"])
}

// A session that stops beating loses the ID after the TTL (by server time),
// even before a reaper runs: the next session's beat is a join.
func TestSessionTakeoverAfterTTL(t *testing.T) {
	ctx := context.Background()
	rdb := redistest.Start(t).Client(t)
	e := newEnv(t, rdb)
	old, next := heartbeat.NewSession(), heartbeat.NewSession()
	start := time.Now() // before the beat: its server time is later
	_, err := e.tr.Beat(ctx, heartbeat.Beat{Node: "n1", Session: old})
	require.NoError(t, err)
	mver := e.state(t, "mver")

	var joined heartbeat.Reply
	require.Eventually(t, func() bool {
		r, err := e.tr.Beat(ctx, heartbeat.Beat{Node: "n1", Session: next})
		if errors.Is(err, heartbeat.ErrNodeIDInUse) {
			return false
		}
		require.NoError(t, err)
		joined = r
		return true
	}, waitFor, tick)
	assert.GreaterOrEqual(t, time.Since(start), testConfig.TTL-5*time.Millisecond, "taken over before the TTL")
	assert.True(t, joined.Joined)
	assert.Equal(t, mver+1, e.state(t, "mver"))
	assert.Equal(t, next, e.member(t, "n1")["session"])
	assert.Equal(t, "node.joined", e.logEntries(t)[1].Values["type"])

	// Now the old process is the stranger.
	_, err = e.tr.Beat(ctx, heartbeat.Beat{Node: "n1", Session: old})
	assert.ErrorIs(t, err, heartbeat.ErrNodeIDInUse)
	assert.ErrorIs(t, e.tr.Leave(ctx, "n1", old), heartbeat.ErrWrongSession)
}

// An operator's Evict removes a node whatever its session.
func TestSessionEvict(t *testing.T) {
	ctx := context.Background()
	rdb := redistest.Start(t).Client(t)
	e := newEnv(t, rdb)
	_, err := e.tr.Beat(ctx, heartbeat.Beat{Node: "n1", Session: heartbeat.NewSession()})
	require.NoError(t, err)
	require.NoError(t, e.tr.Evict(ctx, "n1"))
	n, err := rdb.ZCard(ctx, e.k.Nodes()).Result()
	require.NoError(t, err)
	assert.Zero(t, n)
	assert.Equal(t, "node.left", e.logEntries(t)[1].Values["type"])
}

// Bad beats are refused with ErrInvalidNode and change nothing.
func TestSessionBadInputChangesNothing(t *testing.T) {
	ctx := context.Background()
	rdb := redistest.Start(t).Client(t)
	e := newEnv(t, rdb)
	_, err := e.tr.Beat(ctx, heartbeat.Beat{Node: "n1", IP: "10.0.0.1", Session: "test"})
	require.NoError(t, err)
	before := digest(t, rdb)
	for _, b := range []heartbeat.Beat{
		{Node: "n1", IP: "not-an-ip", Session: "test"},
		{Node: "n1", IP: "10.0.0.256", Session: "test"},
		{Node: "n1", IP: "10.0.0.1:80", Session: "test"},
		{Node: "n1", IP: strings.Repeat("1", 10000), Session: "test"},
		{Node: "n1", Preferred: "Alpha", Session: "test"},
		{Node: "n1", Preferred: "a b", Session: "test"},
		{Node: "n1", Preferred: strings.Repeat("p", 64), Session: "test"},
		{Node: "n1", Session: "a\tb"},
		{Node: "n1", Session: strings.Repeat("s", heartbeat.MaxSessionLen+1)},
		{Node: strings.Repeat("x", heartbeat.MaxNodeIDLen+1), Session: "test"},
	} {
		_, err := e.tr.Beat(ctx, b)
		assert.ErrorIs(t, err, heartbeat.ErrInvalidNode, "beat %.80v", b)
	}
	assert.ErrorIs(t, e.tr.Leave(ctx, "n1", "bad session"), heartbeat.ErrInvalidNode)
	assert.Equal(t, before, digest(t, rdb))

	for _, ip := range []string{"10.0.0.1", "::1", "2001:db8::1", "fe80::1%eth0"} {
		_, err := e.tr.Beat(ctx, heartbeat.Beat{Node: "n1", IP: ip, Session: "test"})
		assert.NoError(t, err, ip)
	}
}

// Flipping the preferred group on every beat bumps mver (and so causes a
// rebalance) at most once per interval, and the last value is still applied.
func TestPreferredFlipRateLimited(t *testing.T) {
	ctx := context.Background()
	rdb := redistest.Start(t).Client(t)
	e := newEnv(t, rdb)
	cfg := heartbeat.Config{Interval: 400 * time.Millisecond, TTL: 10 * time.Second}
	tr, err := heartbeat.New(rdb, e.k.Namespace(), cfg)
	require.NoError(t, err)

	_, err = tr.Beat(ctx, heartbeat.Beat{Node: "n1", Session: "test"})
	require.NoError(t, err)
	e.planned(t)
	start, mver := time.Now(), e.state(t, "mver")
	works := 0
	const flips = 40
	for i := range flips {
		p := "alpha"
		if i%2 == 1 {
			p = "beta"
		}
		r, err := tr.Beat(ctx, heartbeat.Beat{Node: "n1", Preferred: p, Session: "test"})
		require.NoError(t, err)
		if r.Work {
			works++
			e.planned(t) // a rebalance ran
		}
	}
	elapsed := time.Since(start)
	bumps := e.state(t, "mver") - mver
	maxBumps := 1 + int64(elapsed/cfg.Interval)
	assert.LessOrEqual(t, bumps, maxBumps, "%d flips in %v", flips, elapsed)
	assert.LessOrEqual(t, int64(works), maxBumps)
	assert.Less(t, bumps, int64(flips/4), "the flips were not rate limited")

	// The last value ("beta") is applied by a later beat, once.
	require.Eventually(t, func() bool {
		_, err := tr.Beat(ctx, heartbeat.Beat{Node: "n1", Preferred: "beta", Session: "test"})
		require.NoError(t, err)
		return e.member(t, "n1")["pref_wait"] == ""
	}, waitFor, 20*time.Millisecond)
	after := e.state(t, "mver")
	assert.Greater(t, after, mver)
	_, err = tr.Beat(ctx, heartbeat.Beat{Node: "n1", Preferred: "beta", Session: "test"})
	require.NoError(t, err)
	assert.Equal(t, after, e.state(t, "mver"), "no bump without a change")
}
