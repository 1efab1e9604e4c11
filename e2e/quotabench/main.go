// Command quotabench compares ways of sharing API keys with per-key quotas
// between the nodes of a cluster that scales up and down: allot's global
// quota (Allow), allot's shares enforced locally, a naive "IP last octet mod
// number of keys" split, and no coordination at all. A fake upstream API
// (httptest) enforces each key's quota and counts 429s.
//
//	go run ./e2e/quotabench -redis redis://127.0.0.1:6379 [-long] [-tokens]
//	go run ./e2e/quotabench -redis redis://127.0.0.1:6379 -health
//
// -health runs the key health scenario instead (health.go): an upstream
// whose real limit is below a key's quota and that revokes a key mid-run,
// with allot with reports, allot without reports and a per-process cooldown
// side by side.
//
// -tokens runs the tokens scenario instead: an LLM-like upstream limiting
// calls and tokens per key, calls of random token cost, and allot's
// Reserve/Settle against request limits only, share-based local limits, and
// an allot proxy --openai per node (each call settled from the usage).
//
// -skew runs the demand skew scenario instead (skew.go, issue 23): 12 nodes
// on 6 keys of 600/m burst 10, 2 hot nodes wanting 20 calls/s and 10 cold
// ones 1.5/s, in three variants (steady, moving hotspot, uniform), with
// Allow on the held group, Acquire, a LiteLLM-style router and IP mod N.
// Without -redis it starts its own redis-server on a free port:
//
//	go run ./e2e/quotabench -skew [-skew-warmup 20s] [-skew-window 40s] [-skew-variants steady,moving,uniform]
//
// The allot strategies use a throwaway namespace (quota-bench-<random>) on
// that Redis and delete it afterwards. See BENCHMARKS.md for figures.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"

	"github.com/redis/go-redis/v9"
)

func main() {
	url := flag.String("redis", "redis://127.0.0.1:6379", "Redis URL (standalone) for the allot strategies")
	long := flag.Bool("long", false, "the longer form: 30 nodes, 6 keys, 60 s window, default heartbeat")
	nodes := flag.Int("nodes", 0, "nodes (0 = the form's default)")
	health := flag.Bool("health", false, "run the key health scenario (429 + Retry-After, a key revoked mid-run)")
	tokens := flag.Bool("tokens", false, "the tokens scenario (requests and tokens per key)")
	skew := skewFlags()
	flag.Parse()
	if skew.on {
		redisSet := false
		flag.Visit(func(f *flag.Flag) { redisSet = redisSet || f.Name == "redis" })
		if !redisSet {
			*url = ""
		}
		os.Exit(runSkewMain(*url, skew))
	}

	cfg := shortConfig()
	if *long {
		cfg = longConfig()
	}
	if *tokens {
		cfg.Tokens = tokensConfig().Tokens
	}
	if *nodes > 0 {
		cfg.Nodes = *nodes
	}
	opt, err := redis.ParseURL(*url)
	if err != nil {
		fmt.Fprintln(os.Stderr, "quota-bench: invalid -redis:", err)
		os.Exit(2)
	}
	cfg.Redis = opt
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	rdb := redis.NewClient(opt)
	err = rdb.Ping(ctx).Err()
	_ = rdb.Close()
	if err != nil {
		fmt.Fprintf(os.Stderr, "quota-bench: cannot reach redis at %s:%d... (%v)\n", opt.Addr, opt.DB, err)
		os.Exit(1)
	}
	if *health {
		hcfg := shortHealthConfig()
		if *nodes > 0 {
			hcfg.Nodes = *nodes
		}
		hcfg.Redis = opt
		hs, err := compareHealth(ctx, hcfg)
		if err != nil {
			fmt.Fprintln(os.Stderr, "quota-bench:", err)
			os.Exit(1)
		}
		if err := writeHealthTable(os.Stdout, hcfg, hs); err != nil {
			os.Exit(1)
		}
		return
	}
	run, write := compare, writeTable
	if cfg.Tokens != nil {
		run, write = compareTokens, writeTokensTable
	}
	rs, err := run(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "quota-bench:", err)
		os.Exit(1)
	}
	if err := write(os.Stdout, cfg, rs); err != nil {
		os.Exit(1)
	}
}
