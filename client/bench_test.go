package client

import (
	"testing"

	"github.com/redis/go-redis/v9"
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
