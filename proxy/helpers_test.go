package proxy

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/client"
	"github.com/allot-io/allot/heartbeat"
	"github.com/allot-io/allot/registry"
)

// fastBeat makes nodes join and follow changes in tests within a second.
var fastBeat = heartbeat.Config{Interval: 100 * time.Millisecond, TTL: 300 * time.Millisecond}

// pool is a namespace on a test redis-server with its groups.
type pool struct {
	t   *testing.T
	rdb redis.UniversalClient
	ns  string
	reg *registry.Registry
}

var nsSeq struct {
	sync.Mutex
	n int
}

// newPool opens a fresh namespace on rdb.
func newPool(t *testing.T, rdb redis.UniversalClient) *pool {
	nsSeq.Lock()
	nsSeq.n++
	ns := fmt.Sprintf("proxy-%d", nsSeq.n)
	nsSeq.Unlock()
	return &pool{t: t, rdb: rdb, ns: ns, reg: registry.New(rdb, registry.WithNamespace(ns))}
}

// add adds group name with api_key "sk-NAME" and quota q ("" = none).
func (p *pool) add(name, q string) {
	p.t.Helper()
	ch := registry.Change{Set: map[string]string{"api_key": "sk-" + name}, Secret: []string{"api_key"}}
	if q != "" {
		ch.Quota = &q
	}
	_, err := p.reg.Add(context.Background(), name, ch, "test")
	require.NoError(p.t, err)
}

// node starts a Go node in the pool; it leaves when the test ends.
func (p *pool) node(id string) *client.Client {
	p.t.Helper()
	c, err := client.New(p.rdb, client.WithNamespace(p.ns), client.WithNodeID(id), client.WithHeartbeat(fastBeat))
	require.NoError(p.t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(p.t, c.Start(ctx))
	p.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = c.Close(ctx)
	})
	return c
}

// holding waits until c holds exactly groups.
func holding(t *testing.T, c *client.Client, groups ...string) {
	t.Helper()
	require.Eventually(t, func() bool {
		return strings.Join(holds(c), ",") == strings.Join(groups, ",")
	}, 10*time.Second, 10*time.Millisecond, "node %s holds %v, want %v", c.NodeID(), holds(c), groups)
}

// tokens is the tokens group's usage counts over the last hour.
func (p *pool) tokens(group string) int64 {
	p.t.Helper()
	ms, err := p.reg.Usage(context.Background(), group, time.Hour)
	require.NoError(p.t, err)
	var n int64
	for _, m := range ms {
		n += m.Tokens
	}
	return n
}

// health reads group's key health.
func (p *pool) health(group string) registry.Health {
	p.t.Helper()
	h, err := p.reg.HealthOf(context.Background(), group)
	require.NoError(p.t, err)
	return h
}

// serve runs a proxy for c in front of upstream; both stop when the test
// ends (server, then the proxy's settles).
func serve(t *testing.T, c *client.Client, upstream string, opts ...Option) (*Proxy, *httptest.Server) {
	t.Helper()
	p, err := New(c, upstream, append([]Option{WithAuthHeader("Authorization: Bearer {api_key}")}, opts...)...)
	require.NoError(t, err)
	srv := httptest.NewServer(p)
	t.Cleanup(func() {
		srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, p.Close(ctx))
	})
	return p, srv
}

// upstreamCall is one call the fake upstream received.
type upstreamCall struct {
	Key    string // the bearer token
	Path   string
	Query  string
	Header http.Header
	Body   map[string]any
	Status int   // what it answered
	Tokens int64 // the usage it reported (0: none)
}

// fakeAPI is an OpenAI-compatible upstream: chat completions, streamed
// (the usage chunk only when stream_options.include_usage asks for it, as
// OpenAI does) or not, with a usage that grows with each call. It can
// refuse keys (status per key) and enforce a minimum spacing per key,
// answering 429 to a call that comes sooner.
type fakeAPI struct {
	mu         sync.Mutex
	calls      []upstreamCall
	refuse     map[string]int // key -> status to answer
	retryAfter string         // Retry-After of refusals
	spacing    time.Duration  // per key; 0 = none
	last       map[string]time.Time
	block      chan struct{} // when set, calls wait for it to close
	seq        int64
}

func newFakeAPI() *fakeAPI {
	return &fakeAPI{refuse: map[string]int{}, last: map[string]time.Time{}}
}

// startFakeAPI serves a new fakeAPI until the test ends.
func startFakeAPI(t *testing.T) (*fakeAPI, *httptest.Server) {
	t.Helper()
	api := newFakeAPI()
	up := httptest.NewServer(api)
	t.Cleanup(up.Close)
	return api, up
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var body map[string]any
	_ = json.NewDecoder(r.Body).Decode(&body)
	c := upstreamCall{Key: strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "), Path: r.URL.Path,
		Query: r.URL.RawQuery, Header: r.Header.Clone(), Body: body}
	f.mu.Lock()
	block := f.block
	status := f.refuse[c.Key]
	now := time.Now()
	if last, ok := f.last[c.Key]; ok && f.spacing > 0 && now.Sub(last) < f.spacing*9/10 {
		status = http.StatusTooManyRequests
	}
	if status == 0 {
		f.last[c.Key] = now
	}
	f.seq++
	prompt, completion := 20+f.seq, 7+f.seq%5
	f.mu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-r.Context().Done():
		}
		return
	}
	record := func() {
		f.mu.Lock()
		f.calls = append(f.calls, c)
		f.mu.Unlock()
	}
	if status != 0 {
		c.Status = status
		record()
		if f.retryAfter != "" {
			w.Header().Set("Retry-After", f.retryAfter)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		fmt.Fprintf(w, `{"error":{"message":"refused by the fake","type":"fake","code":"%d"}}`, status)
		return
	}
	c.Status = http.StatusOK
	usage := fmt.Sprintf(`{"prompt_tokens":%d,"completion_tokens":%d,"total_tokens":%d}`, prompt, completion, prompt+completion)
	head := `"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"fake"`
	if body["stream"] == true {
		so, _ := body["stream_options"].(map[string]any)
		withUsage := so["include_usage"] == true
		if withUsage {
			c.Tokens = prompt + completion
		}
		record()
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("x-ratelimit-remaining-requests", "999")
		fl := http.NewResponseController(w)
		fmt.Fprintf(w, "data: {%s,\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n", head)
		for _, word := range []string{"Hel", "lo"} {
			fmt.Fprintf(w, "data: {%s,\"choices\":[{\"index\":0,\"delta\":{\"content\":%q},\"finish_reason\":null}]}\n\n", head, word)
			_ = fl.Flush()
		}
		fmt.Fprintf(w, "data: {%s,\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n", head)
		if withUsage {
			fmt.Fprintf(w, "data: {%s,\"choices\":[],\"usage\":%s}\n\n", head, usage)
		}
		fmt.Fprint(w, "data: [DONE]\n\n")
		return
	}
	c.Tokens = prompt + completion
	record()
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("x-ratelimit-remaining-requests", "999")
	fmt.Fprintf(w, `{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"fake","choices":[{"index":0,"message":{"role":"assistant","content":"Hello"},"finish_reason":"stop"}],"usage":%s}`, usage)
}

// got returns the calls received so far.
func (f *fakeAPI) got() []upstreamCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]upstreamCall(nil), f.calls...)
}

// keys lists the key of every call received, in order.
func (f *fakeAPI) keys() []string {
	var ks []string
	for _, c := range f.got() {
		ks = append(ks, c.Key)
	}
	return ks
}

// reported is the tokens the fake reported in usage over every call.
func (f *fakeAPI) reported() int64 {
	var n int64
	for _, c := range f.got() {
		n += c.Tokens
	}
	return n
}

// statuses counts the calls answered with each status.
func (f *fakeAPI) statuses() map[int]int {
	m := map[int]int{}
	for _, c := range f.got() {
		m[c.Status]++
	}
	return m
}

func (f *fakeAPI) set(fn func(f *fakeAPI)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

// post sends body to path on the proxy with header pairs (name, value...).
func post(t *testing.T, url, path, body string, header ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url+path, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	var b strings.Builder
	_, err = io.Copy(&b, res.Body)
	require.NoError(t, err)
	return res, b.String()
}

// counter reads one series of a counter vector.
func counter(t *testing.T, p *Proxy, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := p.Metrics().Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			for i, lp := range m.GetLabel() {
				if 2*i+1 >= len(labels) || lp.GetName() != labels[2*i] || lp.GetValue() != labels[2*i+1] {
					continue metric
				}
			}
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}
