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
//	if err := c.Allow(ctx, "alpha"); err != nil { ... } // global GCRA quota
//	resp, err := http.DefaultClient.Do(req)            // the call, with alpha's key
//	_ = c.ObserveHTTP(ctx, "alpha", resp, err)          // tell the pool what the upstream said
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
//   - Close publishes an empty assignment (OnChange fires), leaves, and runs
//     the rebalancer so the node's groups move at once.
//   - Key health: ObserveHTTP (or ReportThrottled/ReportFailure/ReportSuccess)
//     is one script run. A 429 gives the group a shared cooldown every
//     holder's limiter honours; 401/403 count towards the group's
//     eject_after, and the report that suspends it makes this node run the
//     rebalancer at once (off the caller's goroutine) so every holder moves.
package client
