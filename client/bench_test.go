package client

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/allot-io/allot/internal/redistest"
	"github.com/allot-io/allot/registry"
)

// benchClient is a client with a published assignment and no Redis I/O.
func benchClient(b *testing.B) *Client {
	b.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	b.Cleanup(func() { _ = rdb.Close() })
	c, err := New(rdb, WithNodeID("bench"))
	if err != nil {
		b.Fatal(err)
	}
	c.cur.Store(&Assignment{Epoch: 3, Groups: []Group{
		{Name: "alpha", Version: 2, Config: map[string]string{"api_key": "k", "endpoint": "https://x"}, Share: 0.5},
		{Name: "beta", Version: 1, Config: map[string]string{"api_key": "k2"}, Share: 1},
	}})
	return c
}

// BenchmarkConfig and BenchmarkAssignment time one read on one goroutine;
// TestReadsWhileChangesArrive covers concurrent readers under -race.
func BenchmarkConfig(b *testing.B) {
	c := benchClient(b)
	b.ReportAllocs()
	for b.Loop() {
		if v, ok := c.Config("api_key"); !ok || v != "k" {
			b.Fatal("wrong value")
		}
	}
}

func BenchmarkAssignment(b *testing.B) {
	c := benchClient(b)
	b.ReportAllocs()
	for b.Loop() {
		if a := c.Assignment(); a.Epoch != 3 {
			b.Fatal("wrong epoch")
		}
	}
}

// BenchmarkAcquire compares Acquire, while the node's own group has room,
// with Allow on that group, on one real redis-server: the two alternate
// call by call, so a machine whose load changes slows both alike. The node
// has read the catalog of four lendable groups, so every Acquire carries
// its sample of lent candidates, as it does in a pool that lends. It
// reports the p50 of each and their ratio (target: at most 1.1).
//
//	go test ./client/ -run '^$' -bench BenchmarkAcquire -benchtime 20000x
func BenchmarkAcquire(b *testing.B) {
	rdb := redistest.Start(b).Client(b)
	ctx := context.Background()
	reg := registry.New(rdb)
	for _, g := range []string{"mine", "l1", "l2", "l3", "l4"} {
		if _, err := reg.Add(ctx, g, registry.Change{Quota: ptr("1000000000/m, 1000000000 tokens/m")}, "bench"); err != nil {
			b.Fatal(err)
		}
	}
	c, err := New(rdb, WithNodeID("bench"), WithPreferredGroup("mine"), WithHeartbeat(fastHB), WithBorrowSample(DefaultBorrowSample))
	if err != nil {
		b.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = c.Close(context.Background()) })
	if _, err := c.lend.catalogNow(ctx); err != nil {
		b.Fatal(err)
	}
	mine := c.Assignment().Names()[0]
	var acq, allow []time.Duration
	for b.Loop() {
		t0 := time.Now()
		l, err := c.Acquire(ctx, 10)
		if err != nil || l.Borrowed() {
			b.Fatal(l, err)
		}
		t1 := time.Now()
		if err := c.Allow(ctx, mine); err != nil {
			b.Fatal(err)
		}
		acq = append(acq, t1.Sub(t0))
		allow = append(allow, time.Since(t1))
	}
	p50 := func(ds []time.Duration) time.Duration {
		slices.Sort(ds)
		return ds[len(ds)/2]
	}
	a, w := p50(acq), p50(allow)
	b.ReportMetric(float64(a.Nanoseconds()), "acquire-p50-ns")
	b.ReportMetric(float64(w.Nanoseconds()), "allow-p50-ns")
	b.ReportMetric(float64(a)/float64(w), "ratio")
}
