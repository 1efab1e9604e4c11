// Package client is what a node embeds to join an allot pool: it beats,
// follows its assignment through pub/sub and beat replies, serves lock-free
// reads of the current config, keeps the last good assignment on disk, and
// shares each group's quota with the other holders.
//
//	c, err := client.New(rdb, client.WithNodeID("api-7"), client.WithCacheDir("/var/cache/allot"))
//	c.OnChange(func(old, new client.Assignment) { log.Print(new) })
//	if err := c.Start(ctx); err != nil { ... }
//	defer c.Close(context.Background())
//	key, ok := c.Config("api_key")          // lock-free, no allocation
//	l, err := c.Acquire(ctx, 0)              // one upstream call: a held group with room, or a borrowed one
//	key, _ = l.Config("api_key")             // the lease's key; l.Settle, l.Observe, l.Borrowed
//	if err := c.Allow(ctx, "alpha"); err != nil { ... } // 1 request from every limit
//	resp, err := http.DefaultClient.Do(req)            // the call, with alpha's key
//	_ = c.ObserveHTTP(ctx, "alpha", resp, err)          // tell the pool what the upstream said
//	r, err := c.Reserve(ctx, "llm", 1200)                // 1 request + 1200 tokens
//	... call the API ...
//	err = r.Settle(ctx, usage.TotalTokens)               // debit or refund the difference
//
// How it behaves:
//
//   - One beat per interval (heartbeat.Config) is also the poll: when the
//     reply shows a new epoch or group revision the node re-reads its
//     assignment; when it says work is waiting the node runs the rebalancer
//     (one at a time, off the beat goroutine). Pushed events on the
//     namespace's channel make the same re-read happen at once.
//   - Assignment and Config read an immutable snapshot behind an atomic
//     pointer. OnChange callbacks run in order on one goroutine.
//   - Capped groups (max_nodes > 0): a dropped group is reported released
//     only after OnChange has returned. If no beat has succeeded for a TTL
//     (measured from when the last good beat was sent) the node stops using
//     capped groups until Redis answers again; a node that (re)registers
//     takes capped groups only once a plan made with it live is committed.
//     Uncapped groups keep serving through a Redis outage.
//   - With a cache directory, the last assignment read from Redis is kept in
//     <dir>/<namespace>-<node>.json (0600); Start falls back to it when Redis
//     is down, without capped groups.
//   - Limits: a group's quota is a list of limits ("600/m, 90000 tokens/m,
//     10000/d"). Allow and Reserve apply all of them in one Lua script on
//     Redis server time (GCRA): a refused call takes nothing from any limit,
//     and the RateLimitError names the limit with the longest wait. A cost
//     above a limit's burst is ErrCostTooLarge at once. The same script
//     counts the group's usage per minute (requests, tokens, rejected), and
//     refuses while the group's health hash says it is cooling down after
//     upstream throttling.
//   - When Redis cannot be reached, Allow and Reserve follow
//     WithQuotaFallback: QuotaLocal (default) limits in process at each limit
//     × the node's current share of the group, QuotaOpen allows everything,
//     QuotaClosed returns the Redis error. Entering and leaving the fallback
//     is logged once each; the local state is dropped when Redis answers
//     again. A Settle that cannot reach Redis is lost (and returned as an
//     error).
//   - Close publishes an empty assignment (OnChange fires), leaves, and runs
//     the rebalancer so the node's groups move at once.
//   - Borrowing: when no held group can take a call, Acquire weighs a few
//     random lendable groups (active, uncapped, not --no-lend, not
//     suspended, probing or cooling; lending on) and the one whose limits
//     have the most room now takes it, in the same round trip. The node
//     keeps a catalog of the pool's groups for it: read at its first
//     Acquire, then followed on the lend channel, read again only after a
//     gap.
//   - Key health: ObserveHTTP (or ReportThrottled/ReportFailure/ReportSuccess)
//     is one script run. A 429 gives the group a shared cooldown every
//     holder's limiter honours; 401/403 count towards the group's
//     eject_after, and the report that suspends it makes this node run the
//     rebalancer at once (off the caller's goroutine) so every holder moves.
package client
