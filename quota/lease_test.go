package quota

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/internal/redistest"
)

// leaseEnv is one namespace's keys for lease.lua tests (hash tag {allot:lt}).
type leaseEnv struct {
	t   *testing.T
	rdb redis.UniversalClient
	l   *Limiter
	p   string
}

func newLeaseEnv(t *testing.T, rdb redis.UniversalClient, ns string) leaseEnv {
	return leaseEnv{t: t, rdb: rdb, l: NewLimiter(rdb), p: "{allot:" + ns + "}"}
}

func (e leaseEnv) keys(g string) Keys {
	return Keys{State: e.p + ":quota:" + g, Health: e.p + ":health:" + g, UsagePrefix: e.p + ":usage:" + g + ":",
		Group: e.p + ":group:" + g, Borrowers: e.p + ":borrowers:" + g}
}

// doc stores group g's document (fields as registry writes them).
func (e leaseEnv) doc(g string, version int64, extra string) {
	e.t.Helper()
	d := fmt.Sprintf(`{"created":"2026-01-01T00:00:00.000Z","name":%q,"version":%d,"state":"active","max_nodes":0,"lend":true%s}`, g, version, extra)
	require.NoError(e.t, e.rdb.Set(context.Background(), e.keys(g).Group, d, 0).Err())
}

func (e leaseEnv) held(g, q string) Candidate {
	return Candidate{Keys: e.keys(g), Limits: mustParse(e.t, q)}
}

func (e leaseEnv) lent(g, q string, version int64) Candidate {
	c := e.held(g, q)
	c.Lent, c.Version = true, version
	return c
}

func (e leaseEnv) acquire(tokens int64, cands ...Candidate) (AcquireResult, error) {
	return e.l.Acquire(context.Background(), AcquireRequest{Settings: e.p + ":settings", State: e.p + ":state",
		Node: "n1", Candidates: cands, Tokens: tokens, BorrowProof: time.Minute})
}

func (e leaseEnv) usage(g string) Minute {
	e.t.Helper()
	tm, err := e.rdb.Time(context.Background()).Result()
	require.NoError(e.t, err)
	ms, err := ReadMinute(context.Background(), e.rdb, []string{e.keys(g).UsagePrefix}, MinuteOf(tm))
	require.NoError(e.t, err)
	return ms[0]
}

func statuses(r AcquireResult) string {
	var b strings.Builder
	for _, s := range r.Status {
		b.WriteByte(byte(s))
	}
	return b.String()
}

// TestAcquire runs lease.lua's acquire on standalone and Cluster.
func TestAcquire(t *testing.T) {
	redistest.Topologies(t, func(t *testing.T, rdb redis.UniversalClient) {
		ctx := context.Background()

		t.Run("held first, in order, lent not weighed", func(t *testing.T) {
			e := newLeaseEnv(t, rdb, "held")
			for _, g := range []string{"a", "b", "x"} {
				e.doc(g, 1, "")
			}
			r, err := e.acquire(0, e.held("a", "1/m"), e.held("b", "10/m"), e.lent("x", "100/m", 1))
			require.NoError(t, err)
			assert.Equal(t, 0, r.Taken)
			assert.Equal(t, "a--", statuses(r))
			r, err = e.acquire(0, e.held("a", "1/m"), e.held("b", "10/m"), e.lent("x", "100/m", 1))
			require.NoError(t, err)
			assert.Equal(t, 1, r.Taken, "a is spent: b, not the lent x")
			assert.Equal(t, "ra-", statuses(r))
			assert.Equal(t, int64(0), e.usage("x").Requests)
			assert.Equal(t, int64(0), rdb.Exists(ctx, e.keys("x").Borrowers).Val())
		})

		t.Run("borrows the lent group with the most room now", func(t *testing.T) {
			e := newLeaseEnv(t, rdb, "room")
			for _, g := range []string{"h", "x", "y"} {
				e.doc(g, 3, "")
			}
			// x has 2 of 10 left, y 9 of 10: y has more room now.
			for range 8 {
				r, err := e.acquire(0, e.held("x", "10/m"))
				require.NoError(t, err)
				require.Equal(t, 0, r.Taken)
			}
			r, err := e.acquire(0, e.held("y", "10/m"))
			require.NoError(t, err)
			require.Equal(t, 0, r.Taken)
			_, err = e.acquire(0, e.held("h", "1/h"))
			require.NoError(t, err)

			r, err = e.acquire(0, e.held("h", "1/h"), e.lent("x", "10/m", 3), e.lent("y", "10/m", 3))
			require.NoError(t, err)
			assert.Equal(t, 2, r.Taken, "y: 8 of 10 left after the call, x 1")
			assert.Equal(t, "r-a", statuses(r), "h refused, x weighed and left, y taken")
			assert.Equal(t, int64(8), r.Remaining)
			u := e.usage("y")
			assert.Equal(t, int64(2), u.Requests, "a borrowed call costs what a holder's costs")
			assert.Equal(t, int64(1), u.Borrowed)
			until, err := rdb.ZScore(ctx, e.keys("y").Borrowers, "n1").Result()
			require.NoError(t, err, "the borrow is recorded")
			assert.InDelta(t, float64(time.Now().Add(time.Minute).UnixMilli()), until, 5000)
			assert.Positive(t, rdb.PTTL(ctx, e.keys("y").Borrowers).Val())
		})

		t.Run("never lends what is not lendable now", func(t *testing.T) {
			e := newLeaseEnv(t, rdb, "nolend")
			e.doc("capped", 1, `,"max_nodes":1`) // a later max_nodes field wins in cjson
			e.doc("nolend", 1, `,"lend":false`)
			e.doc("draining", 1, `,"state":"draining"`)
			e.doc("suspended", 1, "")
			e.doc("probing", 1, "")
			e.doc("cooling", 1, "")
			e.doc("stale", 2, "")
			require.NoError(t, rdb.HSet(ctx, e.keys("suspended").Health, "state", "suspended", "created", "2026-01-01T00:00:00.000Z").Err())
			require.NoError(t, rdb.HSet(ctx, e.keys("probing").Health, "state", "probing").Err())
			require.NoError(t, rdb.HSet(ctx, e.keys("cooling").Health, "cooling_until", time.Now().Add(time.Hour).UnixMilli()).Err())
			cands := []Candidate{e.lent("capped", "10/m", 1), e.lent("nolend", "10/m", 1), e.lent("draining", "10/m", 1),
				e.lent("suspended", "10/m", 1), e.lent("probing", "10/m", 1), e.lent("cooling", "10/m", 1),
				e.lent("stale", "10/m", 1), e.lent("gone", "10/m", 1)}
			r, err := e.acquire(0, cands...)
			require.NoError(t, err)
			assert.Equal(t, -1, r.Taken)
			assert.Equal(t, "nnnnncsg", statuses(r))
			assert.Equal(t, 5, r.Refused, "the cooling one is the only wait")
			assert.Equal(t, Cooling, r.Limit)
			assert.Greater(t, r.RetryAfter, 59*time.Minute)
			for _, c := range cands {
				assert.Equal(t, int64(0), rdb.Exists(ctx, c.Keys.State, c.Keys.Borrowers).Val(), "nothing taken")
			}

			// Lending off: nothing is lent, whatever the candidate.
			e.doc("ok", 1, "")
			require.NoError(t, rdb.HSet(ctx, e.p+":settings", "lending", "off").Err())
			r, err = e.acquire(0, e.lent("ok", "10/m", 1))
			require.NoError(t, err)
			assert.Equal(t, "o", statuses(r))
			assert.Equal(t, -1, r.Refused)
			require.NoError(t, rdb.HSet(ctx, e.p+":settings", "lending", "on").Err())
			r, err = e.acquire(0, e.lent("ok", "10/m", 1))
			require.NoError(t, err)
			assert.Equal(t, 0, r.Taken)
		})

		t.Run("a refusal names the shortest wait and counts once", func(t *testing.T) {
			e := newLeaseEnv(t, rdb, "refuse")
			e.doc("slow", 1, "")
			e.doc("fast", 1, "")
			_, err := e.acquire(0, e.held("slow", "1/h"))
			require.NoError(t, err)
			_, err = e.acquire(0, e.held("fast", "1/s"))
			require.NoError(t, err)
			r, err := e.acquire(0, e.held("slow", "1/h"), e.lent("fast", "1/s", 1))
			require.NoError(t, err)
			assert.Equal(t, -1, r.Taken)
			assert.Equal(t, 1, r.Refused)
			assert.LessOrEqual(t, r.RetryAfter, time.Second)
			assert.Equal(t, "rr", statuses(r))
			assert.Equal(t, int64(1), e.usage("fast").Rejected)
			assert.Equal(t, int64(0), e.usage("slow").Rejected)
		})

		t.Run("guard", func(t *testing.T) {
			e := newLeaseEnv(t, rdb, "guard")
			e.doc("a", 1, "")
			g := &Guard{Members: e.p + ":members", Nodes: e.p + ":nodes", Assign: e.p + ":assign", Session: "s1", TTL: time.Minute, Held: "a"}
			req := AcquireRequest{Settings: e.p + ":settings", State: e.p + ":state", Node: "n1", Guard: g,
				Candidates: []Candidate{e.held("a", "10/m")}}
			_, err := e.l.Acquire(ctx, req)
			assert.ErrorIs(t, err, ErrWrongSession, "no record")
			require.NoError(t, rdb.HSet(ctx, e.p+":members", "n1", "1\t10.0.0.1\t\t\t0\ts1\t0\t").Err())
			_, err = e.l.Acquire(ctx, req)
			assert.ErrorIs(t, err, ErrNodeLapsed, "never beat")
			require.NoError(t, rdb.ZAdd(ctx, e.p+":nodes", redis.Z{Score: float64(time.Now().UnixMilli()), Member: "n1"}).Err())
			_, err = e.l.Acquire(ctx, req)
			var he *HeldError
			require.ErrorAs(t, err, &he)
			assert.Equal(t, "", he.Held)
			require.NoError(t, rdb.HSet(ctx, e.p+":assign", "n1", "a").Err())
			r, err := e.l.Acquire(ctx, req)
			require.NoError(t, err)
			assert.Equal(t, 0, r.Taken)
			g.Session = "s2"
			_, err = e.l.Acquire(ctx, req)
			assert.ErrorIs(t, err, ErrWrongSession)
			assert.Equal(t, int64(1), e.usage("a").Requests, "refused guards write nothing")
		})

		t.Run("settle a lease once, before it expires", func(t *testing.T) {
			e := newLeaseEnv(t, rdb, "settle")
			e.doc("a", 1, "")
			r, err := e.acquire(100, e.held("a", "1000 tokens/m"))
			require.NoError(t, err)
			req := SettleLeaseRequest{Once: e.p + ":settled:L1", Expires: time.Now().Add(time.Minute), Node: "n1",
				Keys: e.keys("a"), Limits: mustParse(t, "1000 tokens/m"), Tokens: -60, Minute: r.Minute}
			s, err := e.l.SettleLease(ctx, req)
			require.NoError(t, err)
			assert.Equal(t, int64(960), s.Remaining)
			assert.Equal(t, int64(40), e.usage("a").Tokens)
			_, err = e.l.SettleLease(ctx, req)
			assert.ErrorIs(t, err, ErrAlreadySettled)
			assert.Equal(t, int64(40), e.usage("a").Tokens, "nothing written twice")
			assert.Positive(t, rdb.PTTL(ctx, req.Once).Val())

			req.Once, req.Expires = e.p+":settled:L2", time.Now().Add(-time.Second)
			_, err = e.l.SettleLease(ctx, req)
			assert.ErrorIs(t, err, ErrLeaseExpired)
			req.Expires = time.Now().Add(time.Minute)
			req.Guard = &Guard{Members: e.p + ":members", Session: "nope"}
			_, err = e.l.SettleLease(ctx, req)
			assert.ErrorIs(t, err, ErrWrongSession)
			req.Guard = nil
			require.NoError(t, rdb.Del(ctx, e.keys("a").Group).Err())
			_, err = e.l.SettleLease(ctx, req)
			assert.ErrorIs(t, err, ErrGroupGone)
			assert.Equal(t, int64(0), rdb.Exists(ctx, req.Once).Val(), "refusals write nothing")
			assert.Equal(t, int64(40), e.usage("a").Tokens)
		})
	})
}

// TestLeaseScriptRefusesMalformed: lease.lua checks its ARGV before any
// read or write, as limiter.lua does.
func TestLeaseScriptRefusesMalformed(t *testing.T) {
	rdb := redistest.Start(t).Client(t)
	e := newLeaseEnv(t, rdb, "bad")
	e.doc("a", 1, "")
	ks, args := leaseArgs("acquire", e.p+":settings", e.p+":state", "", "n1", nil, 1, 0, 0, 60000,
		[]Candidate{e.held("a", "10/m")})
	ctx := context.Background()
	run := func(mutate func(ks []string, args []any) ([]string, []any)) error {
		k2, a2 := mutate(append([]string(nil), ks...), append([]any(nil), args...))
		return leaseScript.Run(ctx, rdb, k2, a2...).Err()
	}
	for name, m := range map[string]func([]string, []any) ([]string, []any){
		"mode":           func(k []string, a []any) ([]string, []any) { a[0] = "steal"; return k, a },
		"negative cost":  func(k []string, a []any) ([]string, []any) { a[2] = -1; return k, a },
		"cost above max": func(k []string, a []any) ([]string, []any) { a[2] = MaxCost + 1; return k, a },
		"too many cands": func(k []string, a []any) ([]string, []any) { a[14] = MaxCandidates + 1; return k, a },
		"keys missing":   func(k []string, a []any) ([]string, []any) { return k[:len(k)-1], a },
		"lent flag":      func(k []string, a []any) ([]string, []any) { a[15] = "2"; return k, a },
		"rate 0":         func(k []string, a []any) ([]string, []any) { a[21] = 0; return k, a },
		"above burst":    func(k []string, a []any) ([]string, []any) { a[1] = 11; return k, a },
		"trailing ARGV":  func(k []string, a []any) ([]string, []any) { return k, append(a, "x") },
		"lent, no node": func(k []string, a []any) ([]string, []any) {
			a[8], a[15] = "", "1"
			return k, a
		},
	} {
		err := run(m)
		require.Error(t, err, name)
		assert.Contains(t, err.Error(), "quota: ", name)
	}
	assert.Equal(t, int64(0), rdb.Exists(ctx, e.keys("a").State).Val(), "nothing written")
}
