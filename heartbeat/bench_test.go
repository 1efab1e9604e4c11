package heartbeat_test

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/allot-io/allot/heartbeat"
	"github.com/allot-io/allot/internal/keys"
	"github.com/allot-io/allot/internal/redistest"
)

// benchParallelism × GOMAXPROCS goroutines beat at once, like many nodes
// sharing one process; the pool is sized to match so nobody waits for a conn.
const benchParallelism = 32

// BenchmarkBeat measures beats per second from one process against one
// local redis-server, and how many round trips one beat costs.
func BenchmarkBeat(b *testing.B) {
	s := redistest.Start(b)
	opt := s.Options()
	opt.PoolSize = benchParallelism * 4
	rdb := redis.NewClient(opt)
	b.Cleanup(func() { _ = rdb.Close() })
	var h redistest.RoundTrips
	rdb.AddHook(&h)

	tr, err := heartbeat.New(rdb, "bench", heartbeat.DefaultConfig())
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	// Load the script once so EVALSHA's NOSCRIPT fallback is not measured.
	if _, err := tr.Beat(ctx, heartbeat.Beat{Node: "warm", Session: "test"}); err != nil {
		b.Fatal(err)
	}
	// Every node holds what it was given (its :assign entry): held names
	// outside it are not counted, and an honest steady beat is measured.
	pipe := rdb.Pipeline()
	for w := 1; w <= runtime.GOMAXPROCS(0)*benchParallelism; w++ {
		for i := range 16 {
			pipe.HSet(ctx, keys.New("bench").Assign(), fmt.Sprintf("node-%d-%d", w, i), "g1")
		}
	}
	if _, err := pipe.Exec(ctx); err != nil {
		b.Fatal(err)
	}
	// Open every pool connection first: their handshakes are not beats.
	warmPool(b, rdb, opt.PoolSize)
	if err := rdb.ConfigResetStat(ctx).Err(); err != nil {
		b.Fatal(err)
	}
	h.N.Store(0)

	var worker atomic.Int64
	b.SetParallelism(benchParallelism)
	b.ReportAllocs()
	redisCPU0, clientCPU0 := redisCPU(b, rdb), processCPU(b)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		// Each goroutine stands in for 16 nodes, beating them in turn.
		w := worker.Add(1)
		var ids [16]string
		for i := range ids {
			ids[i] = fmt.Sprintf("node-%d-%d", w, i)
		}
		beat := heartbeat.Beat{IP: "10.0.0.1", Preferred: "g1", Held: []string{"g1"}, Ack: 1, Session: "test"}
		for i := 0; pb.Next(); i++ {
			beat.Node = ids[i%len(ids)]
			if _, err := tr.Beat(ctx, beat); err != nil {
				b.Error(err)
				return
			}
		}
	})
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "beats/s")
	b.ReportMetric(float64(h.N.Load())/float64(b.N), "round-trips/beat")
	b.ReportMetric(serverMicros(b, rdb, "evalsha"), "server-µs/beat")
	// CPU time per beat does not depend on how busy the machine is, unlike
	// beats/s: it tells what one Redis core and one client core can carry.
	b.ReportMetric(float64((redisCPU(b, rdb)-redisCPU0).Microseconds())/float64(b.N), "redis-cpu-µs/beat")
	b.ReportMetric(float64((processCPU(b)-clientCPU0).Microseconds())/float64(b.N), "client-cpu-µs/beat")
}

// redisCPU is the CPU time (user + sys) the server has used so far.
func redisCPU(b *testing.B, rdb *redis.Client) time.Duration {
	b.Helper()
	info, err := rdb.Info(context.Background(), "cpu").Result()
	if err != nil {
		b.Fatal(err)
	}
	var total float64
	for line := range strings.SplitSeq(info, "\n") {
		for _, f := range []string{"used_cpu_user:", "used_cpu_sys:"} {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), f); ok {
				x, _ := strconv.ParseFloat(v, 64)
				total += x
			}
		}
	}
	return time.Duration(total * float64(time.Second))
}

// processCPU is the CPU time (user + sys) this test process has used so far.
func processCPU(b *testing.B) time.Duration {
	b.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// warmPool opens n pooled connections by holding n PINGs in flight.
func warmPool(b *testing.B, rdb *redis.Client, n int) {
	b.Helper()
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() { _ = rdb.Ping(context.Background()).Err() })
	}
	wg.Wait()
}

// serverMicros is the server-side CPU time per call of cmd (INFO
// commandstats usec_per_call): the cost a beat puts on Redis itself.
func serverMicros(b *testing.B, rdb *redis.Client, cmd string) float64 {
	b.Helper()
	info, err := rdb.Info(context.Background(), "commandstats").Result()
	if err != nil {
		b.Fatal(err)
	}
	for line := range strings.SplitSeq(info, "\n") {
		rest, ok := strings.CutPrefix(strings.TrimSpace(line), "cmdstat_"+cmd+":")
		if !ok {
			continue
		}
		for f := range strings.SplitSeq(rest, ",") {
			if v, ok := strings.CutPrefix(f, "usec_per_call="); ok {
				x, _ := strconv.ParseFloat(v, 64)
				return x
			}
		}
	}
	return 0
}

// BenchmarkLive10k lists 10,000 live nodes in one round trip.
func BenchmarkLive10k(b *testing.B) {
	const nodes = 10000
	rdb := redistest.Start(b).Client(b)
	ctx := context.Background()
	ns := "bench"
	k := keys.New(ns)
	tr, err := heartbeat.New(rdb, ns, heartbeat.DefaultConfig())
	if err != nil {
		b.Fatal(err)
	}
	// Seed the nodes directly, seen an hour ahead of the server clock so
	// none expires while the benchmark runs.
	now, err := rdb.Time(ctx).Result()
	if err != nil {
		b.Fatal(err)
	}
	seen := float64(now.Add(time.Hour).UnixMilli())
	pipe := rdb.Pipeline()
	for i := range nodes {
		id := "node-" + strconv.Itoa(i)
		pipe.ZAdd(ctx, k.Nodes(), redis.Z{Score: seen, Member: id})
		pipe.HSet(ctx, k.Members(), id, strconv.FormatInt(now.UnixMilli(), 10)+"\t10.0."+strconv.Itoa(i/256)+"."+strconv.Itoa(i%256)+
			"\t\tg"+strconv.Itoa(i%50)+"\t3")
	}
	if _, err := pipe.Exec(ctx); err != nil {
		b.Fatal(err)
	}
	if err := rdb.ConfigResetStat(ctx).Err(); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		live, _, err := tr.Live(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if len(live) != nodes {
			b.Fatalf("live = %d nodes, want %d", len(live), nodes)
		}
	}
	c := rdb.(*redis.Client)
	b.ReportMetric((serverMicros(b, c, "evalsha")+serverMicros(b, c, "hgetall"))/1000, "server-ms/op")
}
