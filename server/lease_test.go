package server_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/internal/keys"
	"github.com/allot-io/allot/internal/redistest"
	"github.com/allot-io/allot/registry"
	"github.com/allot-io/allot/server"
)

// scriptCalls counts the Redis round trips made on behalf of an HTTP
// request (newAPIOn marks every request's context with inRequest; the
// server's loop, on the same client, is not counted). The EVALSHA that
// NOSCRIPT refuses is not counted: go-redis sends EVAL next.
type scriptCalls struct{ n atomic.Int64 }

func (h *scriptCalls) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *scriptCalls) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if n := cmd.Name(); n == "evalsha" && err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT") {
			return err
		}
		if ctx.Value(inRequest{}) != nil {
			h.n.Add(1)
		}
		return err
	}
}

func (h *scriptCalls) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if ctx.Value(inRequest{}) != nil {
			h.n.Add(1)
		}
		return next(ctx, cmds)
	}
}

// leaseAnswer is the JSON of POST /v1/nodes/{id}/acquire.
type leaseAnswer struct {
	Lease     string            `json:"lease"`
	Group     string            `json:"group"`
	Config    map[string]string `json:"config"`
	Borrowed  bool              `json:"borrowed"`
	ExpiresMS int64             `json:"expires_ms"`
}

// leasePool is a server with two HTTP nodes: n1 holds "mine" (2 calls and
// 500 tokens an hour), n2 holds "other" (100 calls and 1000 tokens a
// minute).
type leasePool struct {
	*api
	sessions map[string]string
	calls    *scriptCalls
}

func newLeasePool(t *testing.T, rdb redis.UniversalClient) *leasePool {
	t.Helper()
	calls := &scriptCalls{}
	rdb.AddHook(calls)
	p := &leasePool{api: newAPIOn(t, rdb, server.WithTokens(testTokens)), sessions: map[string]string{}, calls: calls}
	p.addGroup("mine", registry.Change{Set: map[string]string{"api_key": "k-mine"}, Quota: new("2/h, 500 tokens/h")})
	p.addGroup("other", registry.Change{Set: map[string]string{"api_key": "k-other"}, Secret: []string{"api_key"},
		Quota: new("100/m, 1000 tokens/m")})
	require.Eventually(t, func() bool {
		a, b := p.holds("n1", "mine"), p.holds("n2", "other") // both beat each time
		return a && b
	}, 10*time.Second, 20*time.Millisecond)
	return p
}

func (p *leasePool) beat(id, preferred string) nodeAssignment {
	p.t.Helper()
	r := p.doSession("POST", "/v1/nodes/"+id+"/heartbeat", nodeToken, p.sessions[id], map[string]any{"ip": "10.0.0." + id[1:], "preferred": preferred})
	require.Equal(p.t, http.StatusOK, r.status, "%s", r.body)
	var na nodeAssignment
	r.json(p.t, &na)
	p.sessions[id] = na.Session
	return na
}

func (p *leasePool) holds(id, group string) bool {
	na := p.beat(id, group)
	return len(na.Groups) == 1 && na.Groups[0].Name == group
}

func (p *leasePool) acquire(id string, body any) reply {
	p.t.Helper()
	return p.doSession("POST", "/v1/nodes/"+id+"/acquire", nodeToken, p.sessions[id], body)
}

func (p *leasePool) lease(id string, tokens int64) leaseAnswer {
	p.t.Helper()
	r := p.acquire(id, map[string]any{"tokens": tokens})
	require.Equal(p.t, http.StatusOK, r.status, "%s", r.body)
	var l leaseAnswer
	r.json(p.t, &l)
	return l
}

func (p *leasePool) onLease(id, session, lease, what string, body any) reply {
	p.t.Helper()
	return p.doSession("POST", "/v1/nodes/"+id+"/leases/"+lease+"/"+what, nodeToken, session, body)
}

func (p *leasePool) usage(group string) (requests, tokens, borrowed int64) {
	p.t.Helper()
	u, err := p.reg.Usage(context.Background(), group, time.Hour)
	require.NoError(p.t, err)
	for _, m := range u {
		requests, tokens, borrowed = requests+m.Requests, tokens+m.Tokens, borrowed+m.Borrowed
	}
	return
}

// TestLeasesOverHTTP (issue 24.1): acquire, settle and observe over HTTP,
// each one Redis round trip, on standalone and Cluster.
func TestLeasesOverHTTP(t *testing.T) {
	redistest.Topologies(t, func(t *testing.T, rdb redis.UniversalClient) {
		p := newLeasePool(t, rdb)

		// Its own group first, with its key; a lease lasts LeaseTTL.
		l := p.lease("n1", 0)
		assert.Equal(t, "mine", l.Group)
		assert.False(t, l.Borrowed)
		assert.Equal(t, "k-mine", l.Config["api_key"])
		assert.InDelta(t, time.Now().Add(registry.LeaseTTL).UnixMilli(), l.ExpiresMS, 5000)
		before := p.calls.n.Load()
		l = p.lease("n1", 0)
		assert.Equal(t, int64(1), p.calls.n.Load()-before, "an acquire is one round trip")
		assert.Equal(t, "mine", l.Group)

		// Spent: it borrows "other", secrets unmasked for the node.
		before = p.calls.n.Load()
		lent := p.lease("n1", 300)
		assert.Equal(t, int64(1), p.calls.n.Load()-before, "a borrowing acquire is one round trip too")
		assert.Equal(t, "other", lent.Group)
		assert.True(t, lent.Borrowed)
		assert.Equal(t, "k-other", lent.Config["api_key"])

		// Settle: once.
		before = p.calls.n.Load()
		r := p.onLease("n1", p.sessions["n1"], lent.Lease, "settle", map[string]any{"tokens": 120})
		require.Equal(t, http.StatusOK, r.status, "%s", r.body)
		assert.Equal(t, int64(1), p.calls.n.Load()-before, "a settle is one round trip")
		var sa server.SettleAnswer
		r.json(t, &sa)
		assert.Equal(t, server.SettleAnswer{Group: "other", Tokens: 120}, sa)
		requests, tokens, borrowed := p.usage("other")
		assert.Equal(t, [3]int64{1, 120, 1}, [3]int64{requests, tokens, borrowed})
		m := p.do("GET", "/metrics", readToken, nil)
		require.Equal(t, http.StatusOK, m.status)
		assert.Contains(t, string(m.body), `allot_group_borrowed_total{group="other"}`, "/metrics exports borrowed calls")
		r = p.onLease("n1", p.sessions["n1"], lent.Lease, "settle", map[string]any{"tokens": 5})
		assert.Equal(t, http.StatusConflict, r.status, "%s", r.body)
		assert.Contains(t, string(r.body), "settled already")
		_, tokens, _ = p.usage("other")
		assert.Equal(t, int64(120), tokens, "nothing written twice")

		// Observe on the lent group: a 429 cools it for its holder too.
		before = p.calls.n.Load()
		r = p.onLease("n1", p.sessions["n1"], lent.Lease, "observe", map[string]any{"status": 429, "retry_after_ms": 2000})
		require.Equal(t, http.StatusOK, r.status, "%s", r.body)
		assert.Equal(t, int64(1), p.calls.n.Load()-before, "an observe is one round trip")
		var ra server.ReportAnswer
		r.json(t, &ra)
		assert.InDelta(t, time.Now().Add(2*time.Second).UnixMilli(), ra.CoolingUntil, 1500)
		r = p.acquire("n2", map[string]any{"tokens": 1})
		require.Equal(t, http.StatusTooManyRequests, r.status, "%s", r.body)
		var rl struct {
			Error struct {
				Code, Message, Group, Limit string
				RetryAfterMS                int64 `json:"retry_after_ms"`
			} `json:"error"`
		}
		r.json(t, &rl)
		assert.Equal(t, "too_many_requests", rl.Error.Code)
		assert.Equal(t, "cooling", rl.Error.Limit, "the refusal names the limit")
		assert.Positive(t, rl.Error.RetryAfterMS)
		assert.LessOrEqual(t, rl.Error.RetryAfterMS, int64(2000))
		assert.Equal(t, strconv.FormatInt(rl.Error.RetryAfterMS, 10), r.header.Get("retry-after-ms"))
		assert.Equal(t, "2", r.header.Get("Retry-After"))

		// An answer that says nothing about the key costs nothing.
		before = p.calls.n.Load()
		r = p.onLease("n1", p.sessions["n1"], l.Lease, "observe", map[string]any{"status": 503})
		require.Equal(t, http.StatusOK, r.status, "%s", r.body)
		assert.Equal(t, int64(0), p.calls.n.Load()-before)
	})
}

// TestLeaseRefusals: every bad lease and bad input gets a clear 403, 409,
// 422 or 429, and writes nothing.
func TestLeaseRefusals(t *testing.T) {
	rdb := redistest.Start(t).Client(t)
	p := newLeasePool(t, rdb)
	ctx := context.Background()
	l := p.lease("n2", 100)
	s1, s2 := p.sessions["n1"], p.sessions["n2"]
	usage := func() [3]int64 { a, b, c := p.usage("other"); return [3]int64{a, b, c} }
	was := usage()

	secret, err := hex.DecodeString(rdb.Get(ctx, keys.New("default").LeaseSecret()).Val())
	require.NoError(t, err)
	require.Len(t, secret, 32, "created once, 32 bytes")
	parts := strings.Split(l.Lease, ".")
	require.Len(t, parts, 3)
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	require.NoError(t, err)
	fields := strings.Split(string(payload), "\t")
	require.Len(t, fields, 10)
	sign := func(f []string, key []byte) string {
		p := strings.Join(f, "\t")
		m := hmac.New(sha256.New, key)
		m.Write([]byte(p))
		return "v1." + base64.RawURLEncoding.EncodeToString([]byte(p)) + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
	}
	with := func(i int, v string) []string {
		f := append([]string(nil), fields...)
		f[i] = v
		return f
	}
	require.Equal(t, l.Lease, sign(fields, secret), "the documented format")
	otherKey := make([]byte, 32)

	for _, tc := range []struct {
		name, id, session, lease, what string
		body                           any
		status                         int
		want                           string
	}{
		{"forged MAC", "n2", s2, parts[0] + "." + parts[1] + "." + base64.RawURLEncoding.EncodeToString(make([]byte, 32)), "settle", map[string]any{"tokens": 1}, 403, "not signed"},
		{"another key", "n2", s2, sign(fields, otherKey), "settle", map[string]any{"tokens": 1}, 403, "not signed"},
		{"payload changed", "n2", s2, parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(strings.Join(with(6, "0"), "\t"))) + "." + parts[2], "settle", map[string]any{"tokens": 1}, 403, "not signed"},
		{"garbage", "n2", s2, "hello", "observe", map[string]any{"status": 429}, 403, "not signed"},
		{"too long", "n2", s2, "v1." + strings.Repeat("A", 2000) + ".x", "settle", map[string]any{"tokens": 1}, 403, "not signed"},
		{"another node", "n1", s1, l.Lease, "settle", map[string]any{"tokens": 1}, 403, `the lease is not node`},
		{"another session", "n2", s1, l.Lease, "settle", map[string]any{"tokens": 1}, 403, "another session"},
		{"no session", "n2", "", l.Lease, "observe", map[string]any{"status": 429}, 403, "missing Allot-Session"},
		{"expired", "n2", s2, sign(with(8, strconv.FormatInt(time.Now().Add(-time.Second).UnixMilli(), 10)), secret), "settle", map[string]any{"tokens": 1}, 409, "expired"},
		{"expired observe", "n2", s2, sign(with(8, strconv.FormatInt(time.Now().Add(-time.Second).UnixMilli(), 10)), secret), "observe", map[string]any{"status": 429}, 409, "expired"},
		{"another namespace", "n2", s2, sign(with(2, "other-ns"), secret), "settle", map[string]any{"tokens": 1}, 403, "not node"},
		{"no tokens", "n2", s2, l.Lease, "settle", map[string]any{}, 422, "tokens"},
		{"negative tokens", "n2", s2, l.Lease, "settle", map[string]any{"tokens": -5}, 422, "tokens"},
		{"bad status", "n2", s2, l.Lease, "observe", map[string]any{"status": 99}, 422, "status"},
		{"unknown field", "n2", s2, l.Lease, "observe", map[string]any{"status": 429, "lease": "x"}, 400, ""},
	} {
		r := p.onLease(tc.id, tc.session, tc.lease, tc.what, tc.body)
		assert.Equal(t, tc.status, r.status, "%s: %s", tc.name, r.body)
		assert.Contains(t, string(r.body), tc.want, tc.name)
	}
	assert.Equal(t, was, usage(), "nothing written")
	h, err := p.reg.HealthOf(ctx, "other")
	require.NoError(t, err)
	assert.Zero(t, h.Throttles, "no report counted")

	// Acquire's bad input.
	for _, tc := range []struct {
		name, id, session string
		body              any
		status            int
		want              string
	}{
		{"negative tokens", "n1", s1, map[string]any{"tokens": -1}, 422, "tokens"},
		{"above every burst", "n1", s1, map[string]any{"tokens": 5000}, 422, "burst"},
		{"wrong session", "n1", s2, map[string]any{}, 403, "wrong Allot-Session"},
		{"never beat", "n7", "0123456789abcdef", map[string]any{}, 403, "wrong Allot-Session"},
		{"no session", "n1", "", map[string]any{}, 403, "missing Allot-Session"},
		{"malformed session", "n1", "bad session!", map[string]any{}, 403, "malformed"},
	} {
		r := p.doSession("POST", "/v1/nodes/"+tc.id+"/acquire", nodeToken, tc.session, tc.body)
		assert.Equal(t, tc.status, r.status, "%s: %s", tc.name, r.body)
		assert.Contains(t, string(r.body), tc.want, tc.name)
	}
	assert.Equal(t, was, usage(), "nothing written")

	// A lease of a session the node no longer has: it left and joined again.
	require.Equal(t, http.StatusNoContent, p.doSession("DELETE", "/v1/nodes/n2", nodeToken, s2, nil).status)
	delete(p.sessions, "n2")
	p.beat("n2", "other")
	r := p.onLease("n2", s2, l.Lease, "settle", map[string]any{"tokens": 1})
	assert.Equal(t, http.StatusForbidden, r.status, "%s", r.body)
	assert.Contains(t, string(r.body), "another session now")
	r = p.onLease("n2", p.sessions["n2"], l.Lease, "settle", map[string]any{"tokens": 1})
	assert.Equal(t, http.StatusForbidden, r.status, "the new session does not own the old lease: %s", r.body)
	assert.Equal(t, was, usage(), "nothing written")

	// The group deleted before the settle: nothing written, and said so.
	require.Eventually(t, func() bool { return p.holds("n2", "other") }, 10*time.Second, 20*time.Millisecond, "n2 holds other again")
	l = p.lease("n2", 10)
	require.NoError(t, p.reg.Delete(ctx, "other", "t"))
	require.Eventually(t, func() bool {
		r = p.onLease("n2", p.sessions["n2"], l.Lease, "settle", map[string]any{"tokens": 1})
		return r.status == http.StatusConflict
	}, 5*time.Second, 20*time.Millisecond)
	assert.Contains(t, string(r.body), "deleted")
	assert.Equal(t, int64(0), rdb.Exists(ctx, keys.New("default").Quota("other")).Val(), "nothing written for the deleted group")
}

// TestLeaseNothingLendable: a node that holds nothing, with nothing
// lendable, is told so; lending off stops HTTP borrowing at once.
func TestLeaseNothingLendable(t *testing.T) {
	a := newAPI(t, server.WithTokens(testTokens))
	p := &leasePool{api: a, sessions: map[string]string{}}
	p.addGroup("excl", registry.Change{MaxNodes: new(1), Quota: new("2/h")})
	p.addGroup("open", registry.Change{Quota: new("100/m"), Lend: new(false)})
	p.beat("n1", "excl")
	p.beat("n2", "excl")
	p.beat("n3", "excl")
	require.Eventually(t, func() bool {
		held := 0
		for _, id := range []string{"n1", "n2", "n3"} {
			held += len(p.beat(id, "excl").Groups)
		}
		return held == 3
	}, 10*time.Second, 20*time.Millisecond)
	// Each holds one: excl or open; whoever holds excl spends it, then has
	// nothing to borrow (open is --no-lend).
	var holder string
	for _, id := range []string{"n1", "n2", "n3"} {
		if p.beat(id, "excl").Groups[0].Name == "excl" {
			holder = id
		}
	}
	p.lease(holder, 0)
	p.lease(holder, 0)
	r := p.acquire(holder, map[string]any{})
	assert.Equal(t, http.StatusTooManyRequests, r.status, "its own group's wait: %s", r.body)

	_, err := p.reg.Update(context.Background(), "open", registry.Change{Lend: new(true)}, "t")
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		r = p.acquire(holder, map[string]any{})
		return r.status == http.StatusOK
	}, 5*time.Second, 20*time.Millisecond, "lendable again: borrowed")
	var l leaseAnswer
	r.json(t, &l)
	assert.True(t, l.Borrowed)
	assert.Equal(t, "open", l.Group)
	require.NoError(t, p.reg.SetLending(context.Background(), false))
	r = p.acquire(holder, map[string]any{})
	assert.Equal(t, http.StatusTooManyRequests, r.status, "lending off: %s", r.body)

	// A node holding nothing: a standby of a pool whose groups are all
	// held or not lendable.
	require.NoError(t, p.reg.Delete(context.Background(), "open", "t"))
	require.Eventually(t, func() bool {
		n := 0
		for _, id := range []string{"n1", "n2", "n3"} {
			n += len(p.beat(id, "excl").Groups)
		}
		return n == 1
	}, 10*time.Second, 20*time.Millisecond)
	standby := "n1"
	if standby == holder {
		standby = "n2"
	}
	r = p.acquire(standby, map[string]any{})
	assert.Equal(t, http.StatusConflict, r.status, "%s", r.body)
	assert.Contains(t, string(r.body), "holds no group and none is lendable")
}
