package proxy

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/allot-io/allot/client"
	"github.com/allot-io/allot/registry"
)

// AdminPrefix is the path under which the proxy answers itself
// (AdminPrefix+"healthz", AdminPrefix+"metrics"); nothing under it is
// forwarded. No upstream API uses a path starting with "/_allot/".
const AdminPrefix = "/_allot/"

// settleTimeout bounds the settle and the report that follow a call.
const settleTimeout = 5 * time.Second

// Proxy forwards requests to one upstream with the keys its client holds.
// It is an http.Handler; Close waits for the settles and reports of the
// calls it served. Safe for concurrent use.
type Proxy struct {
	c         *client.Client
	upstream  *url.URL
	o         options
	transport http.RoundTripper
	headers   []authHeader
	params    []authParam
	// tokenSum is the SHA-256 of the client token (hasToken: one is set).
	tokenSum [32]byte
	hasToken bool
	m        *metrics
	admin    http.Handler

	// after: the goroutines that settle and report once a call is
	// answered (the caller does not wait for them). closed stops new ones
	// from starting: then the work runs inline.
	mu     sync.Mutex
	closed bool
	after  sync.WaitGroup
}

// New builds a proxy to upstream (an absolute http or https URL; its path
// is a prefix of every forwarded path) for the node c. c must be started
// before the proxy serves (its keys come from c's assignment); the caller
// owns it and closes it after the proxy. Errors wrap ErrInvalidOption.
func New(c *client.Client, upstream string, opts ...Option) (*Proxy, error) {
	if c == nil {
		return nil, fmt.Errorf("%w: nil client", ErrInvalidOption)
	}
	u, err := url.Parse(upstream)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%w: upstream %q: want an absolute http or https URL, e.g. https://api.openai.com", ErrInvalidOption, upstream)
	}
	if u.User != nil {
		return nil, fmt.Errorf("%w: upstream: put credentials in an auth header, not in the URL", ErrInvalidOption)
	}
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	p := &Proxy{c: c, upstream: u, o: o, transport: o.transport}
	switch {
	case o.maxBody <= 0:
		return nil, fmt.Errorf("%w: max body %d: must be > 0", ErrInvalidOption, o.maxBody)
	case o.upstreamTimeout <= 0:
		return nil, fmt.Errorf("%w: upstream timeout %v: must be > 0", ErrInvalidOption, o.upstreamTimeout)
	case o.random == nil:
		return nil, fmt.Errorf("%w: nil random source", ErrInvalidOption)
	}
	seen := map[string]bool{}
	for _, spec := range o.authHeaders {
		h, err := parseAuthHeader(spec)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidOption, err)
		}
		if seen[h.name] {
			return nil, fmt.Errorf("%w: auth header %s given twice", ErrInvalidOption, h.name)
		}
		seen[h.name] = true
		p.headers = append(p.headers, h)
	}
	seen = map[string]bool{}
	for _, spec := range o.authQuery {
		q, err := parseAuthParam(spec)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidOption, err)
		}
		if seen[q.name] {
			return nil, fmt.Errorf("%w: auth query %s given twice", ErrInvalidOption, q.name)
		}
		seen[q.name] = true
		p.params = append(p.params, q)
	}
	if o.clientToken != "" {
		if strings.ContainsAny(o.clientToken, " \t\r\n") {
			return nil, fmt.Errorf("%w: the client token holds white space", ErrInvalidOption)
		}
		p.tokenSum, p.hasToken = sha256.Sum256([]byte(o.clientToken)), true
	}
	if p.transport == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConns, t.MaxIdleConnsPerHost = 256, 256
		p.transport = t
	}
	p.m = newMetrics()
	p.admin = p.adminHandler()
	return p, nil
}

// Check reads the pool's groups and returns an error wrapping
// ErrUnknownConfigKey when an auth template names a config key that no
// group has ({api_kye}), naming the keys the pool's groups do have.
func (p *Proxy) Check(ctx context.Context, reg *registry.Registry) error {
	groups, err := reg.List(ctx)
	if err != nil {
		return fmt.Errorf("proxy: read the pool's groups: %w", err)
	}
	have := map[string]bool{}
	for _, g := range groups {
		for k := range g.Config {
			have[k] = true
		}
	}
	var problems []string
	for _, h := range p.headers {
		for _, k := range h.value.keys() {
			if !have[k] {
				problems = append(problems, fmt.Sprintf("auth header %s names {%s}", h.name, k))
			}
		}
	}
	for _, q := range p.params {
		for _, k := range q.value.keys() {
			if !have[k] {
				problems = append(problems, fmt.Sprintf("auth query %s names {%s}", q.name, k))
			}
		}
	}
	if len(problems) == 0 {
		return nil
	}
	known := "the pool has no groups"
	if len(groups) > 0 {
		ks := make([]string, 0, len(have))
		for k := range have {
			ks = append(ks, k)
		}
		sort.Strings(ks)
		known = "its groups' config keys: " + strings.Join(ks, ", ")
		if len(ks) == 0 {
			known = "its groups have no config keys"
		}
	}
	return fmt.Errorf("%w: %s, which no group of the pool has (%s)", ErrUnknownConfigKey, strings.Join(problems, "; "), known)
}

// Close waits, until ctx ends, for the settles and reports of the calls
// already answered; calls answered after it settle before they return.
// Call it after the HTTP server's Shutdown and before the client's Close
// (a report needs the node to hold its group).
func (p *Proxy) Close(ctx context.Context) error {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	done := make(chan struct{})
	go func() {
		// Ends within settleTimeout of the last call: every settle and
		// report is bounded by it.
		p.after.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("proxy: close: %w", ctx.Err())
	}
}

// authorized checks the caller's client token, when one is set, in
// constant time.
func (p *Proxy) authorized(r *http.Request) bool {
	if !p.hasToken {
		return true
	}
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return false
	}
	sum := sha256.Sum256([]byte(strings.TrimSpace(tok)))
	return subtle.ConstantTimeCompare(sum[:], p.tokenSum[:]) == 1
}

// fill renders the auth headers and parameters from the lease's config.
func (p *Proxy) fill(lease key) (http.Header, url.Values, error) {
	h := make(http.Header, len(p.headers))
	for _, a := range p.headers {
		v, missing := a.value.fill(lease.Config)
		if missing != "" {
			return nil, nil, fmt.Errorf("%w: group %q has no config key %q (auth header %s)", errMisconfigured, lease.Group(), missing, a.name)
		}
		if !validHeaderValue(v) {
			return nil, nil, fmt.Errorf("%w: group %q: auth header %s would hold a control character", errMisconfigured, lease.Group(), a.name)
		}
		h.Set(a.name, v)
	}
	var q url.Values
	if len(p.params) > 0 {
		q = make(url.Values, len(p.params))
	}
	for _, a := range p.params {
		v, missing := a.value.fill(lease.Config)
		if missing != "" {
			return nil, nil, fmt.Errorf("%w: group %q has no config key %q (auth query %s)", errMisconfigured, lease.Group(), missing, a.name)
		}
		q.Set(a.name, v)
	}
	return h, q, nil
}

// later runs f after the call, on a goroutine of the proxy's, so that the
// caller does not wait for a settle or a report; once Close began it runs
// inline.
func (p *Proxy) later(f func(ctx context.Context)) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), settleTimeout)
		defer cancel()
		f(ctx)
		return
	}
	p.after.Add(1)
	p.mu.Unlock()
	go func() {
		defer p.after.Done()
		ctx, cancel := context.WithTimeout(context.Background(), settleTimeout)
		defer cancel()
		f(ctx)
	}()
}

// settle settles lease with tokens, and reports resp/err to the pool
// when observe is set, after the call.
func (p *Proxy) settle(lease key, tokens int64, observe bool, resp *http.Response, callErr error) {
	p.later(func(ctx context.Context) {
		if err := lease.Settle(ctx, tokens); err != nil {
			p.o.log.Warn("allot proxy: settle failed", "group", lease.Group(), "tokens", tokens, "err", err)
		}
		if observe {
			p.observe(ctx, lease, resp, callErr)
		}
	})
}

// observe reports an upstream answer to the pool (Lease.Observe).
func (p *Proxy) observe(ctx context.Context, lease key, resp *http.Response, callErr error) {
	if err := lease.Observe(ctx, resp, callErr); err != nil {
		p.o.log.Debug("allot proxy: report not recorded", "group", lease.Group(), "err", err)
	}
}

// key is what one upstream call is made with: the lease Acquire gave
// (*client.Lease), or for the retry a reservation on another held group
// (heldKey).
type key interface {
	Group() string
	Config(key string) (string, bool)
	Reservation() *client.Reservation
	Settle(ctx context.Context, tokens int64) error
	Observe(ctx context.Context, resp *http.Response, err error) error
}

// heldKey is a reservation on a group the node holds, as a key.
type heldKey struct {
	c *client.Client
	g client.Group
	r *client.Reservation
}

func (k *heldKey) Group() string                             { return k.g.Name }
func (k *heldKey) Reservation() *client.Reservation          { return k.r }
func (k *heldKey) Settle(ctx context.Context, n int64) error { return k.r.Settle(ctx, n) }
func (k *heldKey) Config(name string) (string, bool) {
	v, ok := k.g.Config[name]
	return v, ok
}
func (k *heldKey) Observe(ctx context.Context, resp *http.Response, err error) error {
	return k.c.ObserveHTTP(ctx, k.g.Name, resp, err)
}

// retryable reports whether an upstream status is about the key the proxy
// put on the call (throttled, revoked, not allowed), so another key may
// answer it.
func retryable(status int) bool {
	return status == http.StatusTooManyRequests || status == http.StatusUnauthorized || status == http.StatusForbidden
}

// hopHeaders describe one connection, not the call: never forwarded.
var hopHeaders = []string{
	"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Proxy-Authorization",
	"Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// removeHop deletes the hop-by-hop headers of h, and those Connection names.
func removeHop(h http.Header) {
	for _, v := range h.Values("Connection") {
		for f := range strings.SplitSeq(v, ",") {
			if f = strings.TrimSpace(f); f != "" {
				h.Del(f)
			}
		}
	}
	for _, k := range hopHeaders {
		h.Del(k)
	}
}

// holds lists the groups c holds, for /_allot/healthz.
func holds(c *client.Client) []string {
	a := c.Assignment()
	names := make([]string, 0, len(a.Groups))
	for _, g := range a.Groups {
		names = append(names, g.Name)
	}
	return slices.Clip(names)
}
