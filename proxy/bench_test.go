package proxy

import (
	"context"

	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/allot-io/allot/client"
	"github.com/allot-io/allot/internal/redistest"
	"github.com/allot-io/allot/registry"
)

// BenchmarkOverhead is the proxy's cost over a direct call to a local fake
// upstream, one call at a time: direct, through the proxy (one lease per
// call: one Redis round trip, the settle and the report after the answer),
// through the proxy with --openai (an estimate reserved, settled from the
// usage), and one Redis PING for scale. Each reports p50-ms and p99-ms of
// the caller's wait for the whole answer. Target: proxy p50 ≤ direct p50 +
// 1 ms + one Redis round trip.
//
//	go test -run '^$' -bench Overhead -benchtime 3000x ./proxy/
func BenchmarkOverhead(b *testing.B) {
	s := redistest.Start(b)
	rdb := s.Client(b)
	const answer = `{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"Hello"}}],"usage":{"prompt_tokens":20,"completion_tokens":7,"total_tokens":27}}`
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, answer)
	}))
	defer up.Close()
	const body = `{"model":"m","max_tokens":50,"messages":[{"role":"user","content":"Say hello"}]}`
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}

	timeCalls := func(b *testing.B, url string) {
		lat := make([]time.Duration, 0, b.N)
		b.ResetTimer()
		for range b.N {
			start := time.Now()
			res, err := hc.Post(url+"/v1/chat/completions", "application/json", strings.NewReader(body))
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode != http.StatusOK {
				b.Fatalf("status %d", res.StatusCode)
			}
			lat = append(lat, time.Since(start))
		}
		b.StopTimer()
		report(b, lat)
	}
	b.Run("direct", func(b *testing.B) { timeCalls(b, up.URL) })
	for _, openAI := range []bool{false, true} {
		name, opts := "proxy", []Option{WithAuthHeader("Authorization: Bearer {api_key}")}
		if openAI {
			name, opts = "proxy-openai", append(opts, WithOpenAI())
		}
		p, err := New(benchNode(b, rdb, "bench-"+name), up.URL, opts...)
		if err != nil {
			b.Fatal(err)
		}
		srv := httptest.NewServer(p)
		defer srv.Close()
		defer p.Close(context.Background())
		b.Run(name, func(b *testing.B) { timeCalls(b, srv.URL) })
	}
	b.Run("redis-ping", func(b *testing.B) {
		ctx := context.Background()
		lat := make([]time.Duration, 0, b.N)
		for range b.N {
			start := time.Now()
			if err := rdb.Ping(ctx).Err(); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(start))
		}
		report(b, lat)
	})
}

// benchNode starts a node in namespace ns holding one group whose limits
// never refuse (so every call costs the limiter's round trip).
func benchNode(b *testing.B, rdb redis.UniversalClient, ns string) *client.Client {
	b.Helper()
	ctx := context.Background()
	q := "1000000000/s, 1000000000 tokens/s"
	_, err := registry.New(rdb, registry.WithNamespace(ns)).Add(ctx, "k1",
		registry.Change{Set: map[string]string{"api_key": "sk-k1"}, Quota: &q}, "bench")
	if err != nil {
		b.Fatal(err)
	}
	c, err := client.New(rdb, client.WithNamespace(ns), client.WithHeartbeat(fastBeat))
	if err != nil {
		b.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = c.Close(context.Background()) })
	for len(c.Assignment().Groups) == 0 {
		select {
		case <-c.Done():
			b.Fatal("node stopped")
		case <-time.After(10 * time.Millisecond):
		}
	}
	return c
}

// report adds the p50 and p99 of lat, in ms.
func report(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	q := func(f float64) float64 { return float64(lat[int(f*float64(len(lat)-1))]) / float64(time.Millisecond) }
	b.ReportMetric(q(0.50), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
	b.ReportMetric(0, "ns/op")

}
