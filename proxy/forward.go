package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/allot-io/allot/client"
	"github.com/allot-io/allot/internal/statusrec"
)

// maxAnswerScan bounds the part of an answer (not streamed) the proxy
// keeps to read its usage: a larger answer is relayed whole and settled at
// the estimate.
const maxAnswerScan = 16 << 20

// ServeHTTP answers AdminPrefix paths itself and forwards every other
// request to the upstream with a key of the pool.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, AdminPrefix) {
		p.admin.ServeHTTP(w, r)
		return
	}
	rec := &statusrec.Recorder{ResponseWriter: w}
	p.m.inFlight.Inc()
	defer func() {
		p.m.inFlight.Dec()
		p.m.requests.WithLabelValues(strconv.Itoa(answered(rec))).Inc()
	}()
	p.forward(rec, r)
}

// forward is one request: check the caller, buffer the body, take a
// lease, call the upstream (again on another key after a refusal of the
// key), relay the answer, then settle and report.
func (p *Proxy) forward(w http.ResponseWriter, r *http.Request) {
	if !p.authorized(r) {
		p.m.refusals.WithLabelValues("unauthorized").Inc()
		p.fail(w, http.StatusUnauthorized, "invalid_request_error", "invalid_api_key",
			"allot proxy: missing or wrong client token (send Authorization: Bearer TOKEN)")
		return
	}
	body, ok := p.readBody(w, r)
	if !ok {
		return
	}
	c := call{body: body}
	if p.o.openAI {
		c = prepareOpenAI(r.URL.Path, body)
	}
	lease, ok := p.acquire(w, r, c.tokens)
	if !ok {
		return
	}
	resp, err := p.send(r, c, lease)
	observed := false
	if err == nil && retryable(resp.StatusCode) {
		// The upstream refused this key. Tell the pool before the retry: a
		// 429 cools the key for every holder, and this node skips it.
		p.observe(r.Context(), lease, resp, nil)
		if next, ok := p.another(r.Context(), c.tokens, lease); ok {
			p.m.retries.WithLabelValues(strconv.Itoa(resp.StatusCode)).Inc()
			drain(resp.Body)
			p.settle(lease, 0, false, nil, nil)
			lease = next
			resp, err = p.send(r, c, lease)
		} else {
			observed = true
		}
	}
	if err != nil {
		p.failCall(w, r, c, lease, err)
		return
	}
	used, readErr := p.relay(w, c, lease, resp)
	p.settle(lease, used, !observed, resp, nil)
	if readErr != nil {
		// The upstream cut the answer short: cut the caller's too, rather
		// than end it as if it were whole.
		panic(http.ErrAbortHandler)
	}
}

// readBody buffers the request body, up to the limit: 413 beyond it.
func (p *Proxy) readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	if r.ContentLength > p.o.maxBody {
		p.tooLarge(w)
		return nil, false
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, p.o.maxBody))
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		p.tooLarge(w)
		return nil, false
	case err != nil:
		p.fail(w, http.StatusBadRequest, "invalid_request_error", "unreadable_body", "allot proxy: the request body could not be read")
		return nil, false
	}
	return body, true
}

func (p *Proxy) tooLarge(w http.ResponseWriter) {
	p.m.refusals.WithLabelValues("body_too_large").Inc()
	p.fail(w, http.StatusRequestEntityTooLarge, "invalid_request_error", "request_too_large",
		fmt.Sprintf("allot proxy: the request body is over %d bytes (allot proxy --max-body)", p.o.maxBody))
}

// acquire takes the lease for one call, or answers why there is none.
func (p *Proxy) acquire(w http.ResponseWriter, r *http.Request, tokens int64) (key, bool) {
	lease, err := p.c.Acquire(r.Context(), tokens)
	var rl *client.RateLimitError
	switch {
	case err == nil:
		return lease, true
	case errors.As(err, &rl):
		p.refuse(w, rl)
	case errors.Is(err, client.ErrCostTooLarge):
		p.m.refusals.WithLabelValues("cost_too_large").Inc()
		p.fail(w, http.StatusRequestEntityTooLarge, "invalid_request_error", "request_too_large",
			fmt.Sprintf("allot proxy: the call's estimate of %d tokens is more than any key's token limit can ever take", tokens))
	case errors.Is(err, client.ErrNothingHeld):
		p.m.refusals.WithLabelValues("no_key").Inc()
		p.unavailable(w, "no_key", "allot proxy: this node holds no key of the pool right now (standby)")
	case r.Context().Err() != nil:
		// The caller is gone: nobody to answer.
	default:
		p.m.refusals.WithLabelValues("unavailable").Inc()
		p.o.log.Warn("allot proxy: no lease", "err", err)
		p.unavailable(w, "limiter_unavailable", "allot proxy: the pool's limiter cannot be reached")
	}
	return nil, false
}

// another reserves the call on a held key other than first's, for the
// one retry: the held groups after first's in the assignment's order,
// skipping those this node knows cool, the first that has room. It does
// not go through Acquire, which may pick first's key again (a 401 does
// not cool it).
func (p *Proxy) another(ctx context.Context, tokens int64, first key) (key, bool) {
	groups := p.c.Assignment().Groups
	at := slices.IndexFunc(groups, func(g client.Group) bool { return g.Name == first.Group() })
	for i := 1; i <= len(groups); i++ {
		g := groups[(at+i+len(groups))%len(groups)]
		if g.Name == first.Group() {
			continue
		}
		if _, cooling := p.c.Cooling(g.Name); cooling {
			continue
		}
		r, err := p.c.Reserve(ctx, g.Name, tokens)
		var rl *client.RateLimitError
		switch {
		case err == nil:
			return &heldKey{c: p.c, g: g, r: r}, true
		case errors.As(err, &rl), errors.Is(err, client.ErrCostTooLarge), errors.Is(err, client.ErrNotHeld):
			continue
		}
		return nil, false
	}
	return nil, false
}

// failCall answers a call that got no answer from the upstream, and
// settles it. A call that may have reached the upstream keeps its
// estimate (the upstream may count it); one that could not be built
// (the group lacks a key) gives it back.
func (p *Proxy) failCall(w http.ResponseWriter, r *http.Request, c call, lease key, err error) {
	switch {
	case errors.Is(err, errMisconfigured):
		p.settle(lease, 0, false, nil, nil)
		p.o.log.Error("allot proxy: misconfigured group", "group", lease.Group(), "err", err)
		p.fail(w, http.StatusInternalServerError, "api_error", "misconfigured_group",
			"allot proxy: the pool's group "+strconv.Quote(lease.Group())+" cannot fill the auth templates (see the proxy's log)")
	case errors.Is(err, errUpstreamTimeout):
		p.m.upstreamErrors.WithLabelValues("timeout").Inc()
		p.settle(lease, c.tokens, true, nil, err)
		p.fail(w, http.StatusGatewayTimeout, "api_error", "upstream_timeout",
			fmt.Sprintf("allot proxy: the upstream did not answer within %v (allot proxy --upstream-timeout)", p.o.upstreamTimeout))
	case r.Context().Err() != nil:
		p.settle(lease, c.tokens, false, nil, nil)
	default:
		p.m.upstreamErrors.WithLabelValues("transport").Inc()
		p.settle(lease, c.tokens, true, nil, err)
		p.o.log.Warn("allot proxy: upstream call failed", "group", lease.Group(), "err", err) // err never holds a header
		p.fail(w, http.StatusBadGateway, "api_error", "upstream_unreachable", "allot proxy: the upstream could not be reached")
	}
}

// send makes the upstream call with lease's key. It returns
// errUpstreamTimeout when no answer came within the upstream timeout.
func (p *Proxy) send(r *http.Request, c call, lease key) (*http.Response, error) {
	ctx, cancel := context.WithCancelCause(r.Context())
	out, err := p.outgoing(ctx, r, c, lease)
	if err != nil {
		cancel(nil)
		return nil, err
	}
	timer := time.AfterFunc(p.o.upstreamTimeout, func() { cancel(errUpstreamTimeout) })
	start := time.Now()
	resp, err := p.transport.RoundTrip(out)
	inTime := timer.Stop()
	p.m.upstreamSeconds.Observe(time.Since(start).Seconds())
	if err != nil {
		if errors.Is(context.Cause(ctx), errUpstreamTimeout) {
			err = errUpstreamTimeout
		}
		cancel(nil)
		return nil, err
	}
	if !inTime {
		drain(resp.Body)
		cancel(nil)
		return nil, errUpstreamTimeout
	}
	p.m.upstreamResponses.WithLabelValues(lease.Group(), strconv.Itoa(resp.StatusCode)).Inc()
	resp.Body = &releasing{ReadCloser: resp.Body, release: func() { cancel(nil) }}
	return resp, nil
}

// outgoing builds the upstream request: the caller's method, path, query,
// headers and body, less what describes the connection or authenticates
// the caller, plus the lease's auth headers and parameters.
func (p *Proxy) outgoing(ctx context.Context, r *http.Request, c call, lease key) (*http.Request, error) {
	auth, params, err := p.fill(lease)
	if err != nil {
		return nil, err
	}
	out := r.Clone(ctx)
	out.RequestURI = ""
	out.Close = false
	out.TransferEncoding = nil
	out.ContentLength = int64(len(c.body))
	out.Body = http.NoBody
	if len(c.body) > 0 {
		body := c.body
		out.Body = io.NopCloser(bytes.NewReader(body))
		out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	}
	(&httputil.ProxyRequest{In: r, Out: out}).SetURL(p.upstream)
	removeHop(out.Header)
	out.Header.Del("Authorization") // the caller's: never the upstream's business
	out.Header.Del("Expect")        // the body is here already: no 100-continue wait
	if p.o.openAI {
		// The usage is read from the answer: let the transport undo any
		// compression it asks for itself.
		out.Header.Del("Accept-Encoding")
	}
	if _, ok := out.Header["User-Agent"]; !ok {
		out.Header.Set("User-Agent", "") // not Go's default
	}
	for k, vs := range auth {
		out.Header[k] = vs
	}
	if params != nil {
		q := out.URL.Query()
		for k, vs := range params {
			q[k] = vs
		}
		out.URL.RawQuery = q.Encode()
	}
	return out, nil
}

// relay copies the answer to the caller and returns the tokens to settle
// with: the usage the answer reports, 0 for an answer that is not 2xx,
// else the estimate. readErr is the upstream's, when it cut the answer
// short.
func (p *Proxy) relay(w http.ResponseWriter, c call, lease key, resp *http.Response) (used int64, readErr error) {
	defer resp.Body.Close()
	h := w.Header()
	for k, vs := range resp.Header {
		h[k] = vs
	}
	removeHop(h)
	stream := strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream")
	if p.o.openAI {
		rateHeaders(h, lease.Reservation().Limit(), lease.Reservation().Remaining(), lease.Reservation().ResetAfter())
		if stream {
			h.Del("Content-Length") // a dropped chunk changes it
		}
	}
	w.WriteHeader(resp.StatusCode)
	flush := flusher(w)
	ok := resp.StatusCode/100 == 2
	used = c.tokens
	if !ok {
		used = 0 // refused or failed: nothing counted
	}
	switch {
	case p.o.openAI && stream:
		s := &sseRelay{w: w, flush: flush, strip: c.stripUsage, maxLine: int(max(p.o.maxBody, 64<<10))}
		readErr, _ = s.run(resp.Body)
		if s.found && ok {
			used = s.tokens
		}
	case p.o.openAI && ok:
		scan := &capture{max: maxAnswerScan}
		readErr, _ = copyFlushing(w, io.TeeReader(resp.Body, scan), flush, resp.ContentLength < 0)
		if n, found := parseUsage(scan.buf.Bytes()); found && !scan.over && readErr == nil {
			used = n
		}
	default:
		readErr, _ = copyFlushing(w, resp.Body, flush, stream || resp.ContentLength < 0)
	}
	return used, readErr
}

// copyFlushing copies src to w; each read is flushed at once when
// eachRead is set (a stream), else once at the end.
func copyFlushing(w io.Writer, src io.Reader, flush func(), eachRead bool) (readErr, writeErr error) {
	buf := make([]byte, 32<<10)
	defer flush()
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return nil, werr
			}
			if eachRead {
				flush()
			}
		}
		if err == io.EOF {
			return nil, nil
		}
		if err != nil {
			return err, nil
		}
	}
}

// capture keeps the first max bytes written to it; over says more came.
type capture struct {
	buf  bytes.Buffer
	max  int
	over bool
}

func (c *capture) Write(b []byte) (int, error) {
	if !c.over && c.buf.Len()+len(b) <= c.max {
		c.buf.Write(b)
	} else {
		c.over = true
	}
	return len(b), nil
}

// flusher returns w's Flush, or a no-op.
func flusher(w http.ResponseWriter) func() {
	rc := http.NewResponseController(w)
	return func() { _ = rc.Flush() }
}

// drain reads a little of an answer the caller will not see, so its
// connection can serve the next call, and closes it.
func drain(body io.ReadCloser) {
	_, _ = io.CopyN(io.Discard, body, 64<<10)
	_ = body.Close()
}

// releasing runs release once the body is closed: the call's context
// lives as long as its answer is read.
type releasing struct {
	io.ReadCloser
	release func()
}

func (b *releasing) Close() error {
	err := b.ReadCloser.Close()
	b.release()
	return err
}

// answered is the code rec saw answered; a caller that left before any
// answer counts as 499, as nginx logs it.
func answered(rec *statusrec.Recorder) int {
	if rec.Status == 0 {
		return 499
	}
	return rec.Status
}
