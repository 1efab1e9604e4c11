package server

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/allot-io/allot/heartbeat"
	"github.com/allot-io/allot/quota"
	"github.com/allot-io/allot/registry"
)

// HTTP leases: one upstream call of an HTTP node, as client.Acquire gives a
// Go node. A lease is a token the node presents to settle and observe the
// call; it carries everything those need under an HMAC-SHA256, keyed by a
// secret kept in Redis, so any serve replica checks it with no memory of
// its own. See docs/design.md, "Leases over HTTP".

// Bounds of the lease routes.
const (
	// LeaseSample is how many lendable groups an HTTP acquire weighs when
	// none of the node's own groups can take the call.
	LeaseSample = 3
	// maxLeaseLen bounds a lease token before it is decoded.
	maxLeaseLen = 1024
	// maxHeldNodes bounds the server's memory of nodes' held groups.
	maxHeldNodes = 200_000
)

// leaseVersion prefixes every lease token and MAC input.
const leaseVersion = "v1"

// errLeaseForged is a lease token this server did not sign (or not for
// this namespace, or damaged): 403.
var errLeaseForged = errors.New("server: lease not signed by this pool")

// leaseClaims is what a lease token says; every field is under its MAC.
type leaseClaims struct {
	ID        string // 16 random hex digits: the settled record's name
	Namespace string
	Node      string
	Session   string
	Group     string
	Tokens    int64 // reserved by the acquire
	Minute    int64 // the usage minute the acquire counted
	Expires   int64 // Unix ms, Redis server time
	Borrowed  bool
}

// payload is the MAC input: tab-separated fields, none of which may hold
// a tab (node IDs, sessions, names and numbers cannot).
func (c leaseClaims) payload() string {
	b := "0"
	if c.Borrowed {
		b = "1"
	}
	return strings.Join([]string{leaseVersion, c.ID, c.Namespace, c.Node, c.Session, c.Group,
		strconv.FormatInt(c.Tokens, 10), strconv.FormatInt(c.Minute, 10), strconv.FormatInt(c.Expires, 10), b}, "\t")
}

// signLease is the token of c: "v1." + base64url(payload) + "." +
// base64url(HMAC-SHA256(secret, payload)).
func signLease(secret []byte, c leaseClaims) string {
	p := c.payload()
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(p))
	enc := base64.RawURLEncoding
	return leaseVersion + "." + enc.EncodeToString([]byte(p)) + "." + enc.EncodeToString(m.Sum(nil))
}

// parseLease checks token's MAC (in constant time) and returns its claims;
// anything else is errLeaseForged.
func parseLease(secret []byte, token string) (leaseClaims, error) {
	if len(token) > maxLeaseLen {
		return leaseClaims{}, errLeaseForged
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 || parts[0] != leaseVersion {
		return leaseClaims{}, errLeaseForged
	}
	enc := base64.RawURLEncoding
	p, err1 := enc.DecodeString(parts[1])
	sum, err2 := enc.DecodeString(parts[2])
	if err1 != nil || err2 != nil {
		return leaseClaims{}, errLeaseForged
	}
	m := hmac.New(sha256.New, secret)
	m.Write(p)
	if !hmac.Equal(sum, m.Sum(nil)) {
		return leaseClaims{}, errLeaseForged
	}
	f := strings.Split(string(p), "\t")
	if len(f) != 10 || f[0] != leaseVersion {
		return leaseClaims{}, errLeaseForged
	}
	c := leaseClaims{ID: f[1], Namespace: f[2], Node: f[3], Session: f[4], Group: f[5], Borrowed: f[9] == "1"}
	var errs [3]error
	c.Tokens, errs[0] = strconv.ParseInt(f[6], 10, 64)
	c.Minute, errs[1] = strconv.ParseInt(f[7], 10, 64)
	c.Expires, errs[2] = strconv.ParseInt(f[8], 10, 64)
	if errors.Join(errs[:]...) != nil {
		return leaseClaims{}, errLeaseForged
	}
	return c, nil
}

// leaseSecrets holds the namespace's lease MAC key once read.
type leaseSecrets struct {
	mu     sync.Mutex
	secret []byte
}

// leaseSecret returns the namespace's lease key, creating it the first
// time any replica needs it: SET NX of 32 random bytes (hex), then GET, so
// every replica ends up with the one stored. It never changes after.
func (s *Server) leaseSecret(ctx context.Context) ([]byte, error) {
	s.secrets.mu.Lock()
	defer s.secrets.mu.Unlock()
	if s.secrets.secret != nil {
		return s.secrets.secret, nil
	}
	var b [32]byte
	_, _ = rand.Read(b[:])
	k := s.keys.LeaseSecret()
	if err := s.rdb.SetNX(ctx, k, hex.EncodeToString(b[:]), 0).Err(); err != nil {
		return nil, fmt.Errorf("server: create lease secret: %w", err)
	}
	v, err := s.rdb.Get(ctx, k).Result()
	if err != nil {
		return nil, fmt.Errorf("server: read lease secret: %w", err)
	}
	secret, err := hex.DecodeString(v)
	if err != nil || len(secret) < 32 {
		return nil, fmt.Errorf("server: the stored lease secret is not 32 bytes of hex")
	}
	s.secrets.secret = secret
	return secret, nil
}

// heldMemory remembers each node's held groups as its :assign entry
// (comma-joined, sorted), so an acquire builds its candidates with no read:
// the acquire script checks the entry, and one that moved costs a second
// round trip. Filled by heartbeat answers and by those checks.
type heldMemory struct {
	mu sync.Mutex
	m  map[string]string
}

func (h *heldMemory) get(node string) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.m[node]
}

func (h *heldMemory) set(node, entry string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.m == nil || len(h.m) >= maxHeldNodes {
		h.m = make(map[string]string) // a bound, not a cache policy: it refills
	}
	h.m[node] = entry
}

func (h *heldMemory) forget(node string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.m, node)
}

// acquireRequest is the body of POST /v1/nodes/{id}/acquire.
type acquireRequest struct {
	// Tokens is the call's token estimate (0 or absent: a plain call).
	Tokens *int64 `json:"tokens"`
}

// LeaseAnswer is the answer of POST /v1/nodes/{id}/acquire.
type LeaseAnswer struct {
	// Lease is the token to settle and observe the call with.
	Lease string `json:"lease"`
	// Group is the group whose key the call uses.
	Group string `json:"group"`
	// Config is the group's config (unmasked: the node needs its key).
	Config map[string]string `json:"config"`
	// Borrowed is true when the group is not one the node holds.
	Borrowed bool `json:"borrowed"`
	// ExpiresMS is when the lease expires (Unix ms, Redis server time):
	// settle and observe refuse it after.
	ExpiresMS int64 `json:"expires_ms"`
}

// leaseTokensRequest is the body of POST …/leases/{lease}/settle.
type leaseTokensRequest struct {
	Tokens *int64 `json:"tokens"`
}

// SettleAnswer is the answer of POST …/leases/{lease}/settle.
type SettleAnswer struct {
	Group  string `json:"group"`
	Tokens int64  `json:"tokens"`
}

// observeRequest is the body of POST …/leases/{lease}/observe: what the
// upstream answered to the call.
type observeRequest struct {
	// Status is the upstream's HTTP status (100–599).
	Status int `json:"status"`
	// RetryAfterMS is its Retry-After in ms, for a 429 (absent or negative:
	// none given).
	RetryAfterMS *int64 `json:"retry_after_ms"`
}

// rateLimitBody is a refused acquire's JSON: the API's error, naming the
// limit.
type rateLimitBody struct {
	Error struct {
		Code         string `json:"code"`
		Message      string `json:"message"`
		Group        string `json:"group"`
		Limit        string `json:"limit"`
		RetryAfterMS int64  `json:"retry_after_ms"`
	} `json:"error"`
}

// nodeSession reads the Allot-Session header a lease route needs: a lease
// is bound to its node's session, so even the admin role sends one.
func nodeSession(r *http.Request, id string) (string, error) {
	if err := heartbeat.ValidateNodeID(id); err != nil {
		return "", err
	}
	session := r.Header.Get(SessionHeader)
	if session == "" {
		return "", errSession("missing %s header: send the session of node %q's heartbeat answer", SessionHeader, id)
	}
	if heartbeat.ValidateSession(session) != nil {
		return "", errSession("malformed %s header", SessionHeader)
	}
	return session, nil
}

// nodeAcquire is POST /v1/nodes/{id}/acquire: one call's lease, from the
// node's held groups or, when none can take it, a lendable group — one
// acquire script, which also checks the node's session, lease and held
// groups (a second round trip only when those moved since this replica
// last saw them).
func (s *Server) nodeAcquire(w http.ResponseWriter, r *http.Request) error {
	var req acquireRequest
	if err := decodeJSON(w, r, MaxBodyBytes, &req, true); err != nil {
		return err
	}
	var tokens int64
	if req.Tokens != nil {
		tokens = *req.Tokens
	}
	if tokens < 0 || tokens > quota.MaxCost {
		return errInvalid("tokens %d: want 0 to %d", tokens, quota.MaxCost)
	}
	id := r.PathValue("id")
	session, err := nodeSession(r, id)
	if err != nil {
		return err
	}
	ctx := r.Context()
	cat, err := s.catalog.get(ctx)
	if err != nil {
		return err
	}
	secret, err := s.leaseSecret(ctx)
	if err != nil {
		return err
	}
	held := s.held.get(id)
	var (
		res      quota.AcquireResult
		groups   []registry.Group
		nHeld    int
		tooLarge bool
	)
	for attempt := 0; ; attempt++ {
		var cands []quota.Candidate
		cands, groups, nHeld, tooLarge = s.leaseCandidates(cat, held, tokens)
		res, err = s.limiter.Acquire(ctx, quota.AcquireRequest{
			Settings: s.keys.Settings(), State: s.keys.State(), Node: id, Candidates: cands, Tokens: tokens,
			BorrowProof: registry.LeaseTTL,
			Guard: &quota.Guard{Members: s.keys.Members(), Nodes: s.keys.Nodes(), Assign: s.keys.Assign(),
				Session: session, TTL: s.hbCfg.TTL, Held: held},
		})
		var he *quota.HeldError
		if errors.As(err, &he) && attempt == 0 {
			held = he.Held
			s.held.set(id, held)
			continue
		}
		break
	}
	switch {
	case errors.Is(err, quota.ErrWrongSession):
		return errSession("wrong %s for node %q; re-join with a heartbeat without the header", SessionHeader, id)
	case errors.Is(err, quota.ErrNodeLapsed):
		return errConflict("node %q is not live (its lease lapsed or it never beat): beat first", id)
	case errors.Is(err, quota.ErrHeldChanged):
		return errConflict("node %q's groups changed during the acquire; retry", id)
	case err != nil:
		return err
	}
	s.catalog.saw(res.Rev)
	for i, st := range res.Status {
		if i >= nHeld && (st == quota.CandidateStale || st == quota.CandidateGone || st == quota.CandidateNotLent) {
			s.catalog.stale.Store(true) // behind: an event lost; the next acquire reads it
		}
	}
	switch {
	case res.Taken >= 0:
		g := groups[res.Taken]
		s.noteRoom(g, res.Result)
		c := leaseClaims{ID: newLeaseID(), Namespace: s.keys.Namespace(), Node: id, Session: session, Group: g.Name,
			Tokens: tokens, Minute: res.Minute, Expires: res.Now.Add(registry.LeaseTTL).UnixMilli(), Borrowed: res.Taken >= nHeld}
		if err := registry.RequireOpen(g); err != nil {
			// serve lacks the key a value was sealed with: never hand out
			// ciphertext as a key.
			return err
		}
		cfg := g.Config
		if cfg == nil {
			cfg = map[string]string{}
		}
		writeJSON(w, http.StatusOK, LeaseAnswer{Lease: signLease(secret, c), Group: g.Name, Config: cfg,
			Borrowed: c.Borrowed, ExpiresMS: c.Expires})
		return nil
	case res.Refused >= 0:
		g := groups[res.Refused]
		s.noteRoom(g, res.Result)
		limit := "cooling"
		if res.Limit >= 0 && res.Limit < len(g.Limits) {
			limit = g.Limits[res.Limit].String()
		}
		wait := max(res.RetryAfter, time.Millisecond)
		var b rateLimitBody
		b.Error.Code, b.Error.Group, b.Error.Limit = CodeTooManyRequests, g.Name, limit
		b.Error.RetryAfterMS = wait.Milliseconds() + min(1, int64(wait%time.Millisecond))
		b.Error.Message = fmt.Sprintf("no group can take the call now: group %q is limited by %q; retry after %v",
			g.Name, limit, wait.Round(time.Millisecond))
		w.Header().Set("Retry-After", retryAfterHeader(wait))
		w.Header().Set("retry-after-ms", strconv.FormatInt(b.Error.RetryAfterMS, 10))
		writeJSON(w, http.StatusTooManyRequests, b)
		return nil
	case tooLarge:
		return errInvalid("tokens %d exceed the burst of every group the node could use", tokens)
	}
	return errConflict("node %q holds no group and none is lendable", id)
}

// leaseCandidates builds an HTTP acquire's candidates from the catalog: the
// groups of the node's held entry that exist (most room first, by this
// server's last word of them), then a random sample of the lendable ones.
// The first nHeld are held; tooLarge says a group was left out because the
// call exceeds its burst.
func (s *Server) leaseCandidates(cat *registry.Catalog, entry string, tokens int64) (cands []quota.Candidate, groups []registry.Group, nHeld int, tooLarge bool) {
	var held []registry.Group
	names := []string{}
	if entry != "" {
		names = strings.Split(entry, ",")
	}
	for _, n := range names {
		g, ok := cat.Group(n)
		if !ok {
			continue
		}
		if g.Limits.CheckCost(1, tokens) != nil {
			tooLarge = true
			continue
		}
		held = append(held, g)
	}
	slices.SortStableFunc(held, func(a, b registry.Group) int { return -cmpFloat(s.roomOf(a.Name), s.roomOf(b.Name)) })
	held = held[:min(len(held), quota.MaxCandidates-LeaseSample)]
	groups = slices.Clone(held)
	lendable := cat.Lendable()
	for tries := 4 * LeaseSample; tries > 0 && len(lendable) > 0 && len(groups) < len(held)+LeaseSample; tries-- {
		name := lendable[mrand.IntN(len(lendable))]
		if slices.Contains(names, name) || slices.ContainsFunc(groups, func(g registry.Group) bool { return g.Name == name }) {
			continue
		}
		g, _ := cat.Group(name)
		if g.Limits.CheckCost(1, tokens) != nil {
			tooLarge = true
			continue
		}
		groups = append(groups, g)
	}
	cands = make([]quota.Candidate, len(groups))
	for i, g := range groups {
		cands[i] = quota.Candidate{Keys: s.quotaKeys(g.Name), Limits: g.Limits, Lent: i >= len(held), Version: g.Version}
	}
	return cands, groups, len(held), tooLarge
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// quotaKeys are group name's limiter keys.
func (s *Server) quotaKeys(name string) quota.Keys {
	k := s.keys
	return quota.Keys{State: k.Quota(name), Health: k.Health(name), UsagePrefix: k.UsagePrefix(name),
		Group: k.Group(name), Borrowers: k.Borrowers(name)}
}

// roomOf is the share of group's tightest limit left at this server's
// last acquire of it (1 when never seen).
func (s *Server) roomOf(group string) float64 {
	if v, ok := s.room.Load(group); ok {
		return v.(float64)
	}
	return 1
}

func (s *Server) noteRoom(g registry.Group, res quota.Result) {
	left := 1.0
	if !res.Allowed {
		left = 0
	} else if res.Limit >= 0 && res.Limit < len(g.Limits) {
		if b := g.Limits[res.Limit].EffectiveBurst(); b > 0 {
			left = float64(res.Remaining) / float64(b)
		}
	}
	s.room.Store(g.Name, left)
}

func newLeaseID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// lease checks the route's lease token against the request: signed by this
// pool, for this namespace, node and session (403 otherwise).
func (s *Server) lease(r *http.Request) (leaseClaims, string, error) {
	id := r.PathValue("id")
	session, err := nodeSession(r, id)
	if err != nil {
		return leaseClaims{}, "", err
	}
	secret, err := s.leaseSecret(r.Context())
	if err != nil {
		return leaseClaims{}, "", err
	}
	c, err := parseLease(secret, r.PathValue("lease"))
	switch {
	case err != nil:
		return leaseClaims{}, "", &apiError{status: http.StatusForbidden, code: CodeForbidden, message: "lease not signed by this pool (forged or damaged)", err: err}
	case c.Namespace != s.keys.Namespace() || c.Node != id:
		return leaseClaims{}, "", &apiError{status: http.StatusForbidden, code: CodeForbidden, message: fmt.Sprintf("the lease is not node %q's", id)}
	case c.Session != session:
		return leaseClaims{}, "", errSession("the lease is of another session of node %q", id)
	}
	return c, session, nil
}

// leaseSettle is POST /v1/nodes/{id}/leases/{lease}/settle: the tokens the
// call used, once, before the lease expires; one script, which writes
// nothing for a lease already settled, expired, of a deleted group or of a
// session the node no longer has.
func (s *Server) leaseSettle(w http.ResponseWriter, r *http.Request) error {
	var req leaseTokensRequest
	if err := decodeJSON(w, r, MaxBodyBytes, &req, false); err != nil {
		return err
	}
	if req.Tokens == nil || *req.Tokens < 0 || *req.Tokens > quota.MaxCost {
		return errInvalid("tokens: want the tokens the call used, 0 to %d", quota.MaxCost)
	}
	c, session, err := s.lease(r)
	if err != nil {
		return err
	}
	ctx := r.Context()
	cat, err := s.catalog.get(ctx)
	if err != nil {
		return err
	}
	g, ok := cat.Group(c.Group)
	if !ok {
		return errConflict("group %q was deleted: nothing settled", c.Group)
	}
	_, err = s.limiter.SettleLease(ctx, quota.SettleLeaseRequest{
		Once: s.keys.Settled(c.ID), Expires: time.UnixMilli(c.Expires), Node: c.Node,
		Guard: &quota.Guard{Members: s.keys.Members(), Session: session},
		Keys:  s.quotaKeys(g.Name), Limits: g.Limits, Tokens: *req.Tokens - c.Tokens, Minute: c.Minute,
	})
	switch {
	case errors.Is(err, quota.ErrAlreadySettled):
		return errConflict("the lease was settled already: nothing written")
	case errors.Is(err, quota.ErrLeaseExpired):
		return errConflict("the lease has expired: nothing written")
	case errors.Is(err, quota.ErrGroupGone):
		return errConflict("group %q was deleted: nothing settled", c.Group)
	case errors.Is(err, quota.ErrWrongSession):
		return errSession("node %q has another session now: nothing written", c.Node)
	case err != nil:
		return err
	}
	writeJSON(w, http.StatusOK, SettleAnswer{Group: c.Group, Tokens: *req.Tokens})
	return nil
}

// leaseObserve is POST /v1/nodes/{id}/leases/{lease}/observe: what the
// upstream answered, as a Go node's Lease.Observe (registry.OutcomeOf). A
// report on a lent group counts as a holder's: the acquire recorded the
// borrow. An answer that says nothing about the key costs no round trip.
func (s *Server) leaseObserve(w http.ResponseWriter, r *http.Request) error {
	var req observeRequest
	if err := decodeJSON(w, r, MaxBodyBytes, &req, false); err != nil {
		return err
	}
	if req.Status < 100 || req.Status > 599 {
		return errInvalid("status %d: want the upstream's HTTP status, 100 to 599", req.Status)
	}
	c, session, err := s.lease(r)
	if err != nil {
		return err
	}
	o, reason := registry.OutcomeOf(req.Status)
	if o == "" {
		// Nothing about the key (5xx, other statuses): nothing to write,
		// no round trip; the answer's state is empty.
		if time.Now().UnixMilli() >= c.Expires {
			return errConflict("the lease has expired: report ignored")
		}
		writeJSON(w, http.StatusOK, ReportAnswer{Group: c.Group})
		return nil
	}
	ra := time.Duration(-1)
	if o == registry.Throttled && req.RetryAfterMS != nil && *req.RetryAfterMS >= 0 {
		ra = time.Duration(min(*req.RetryAfterMS, registry.MaxRetryAfter.Milliseconds())) * time.Millisecond
	}
	return s.report(w, r, registry.Report{Node: c.Node, TTL: s.hbCfg.TTL, Group: c.Group, Outcome: o, RetryAfter: ra,
		Reason: reason, Session: session, LeaseUntil: time.UnixMilli(c.Expires)})
}
