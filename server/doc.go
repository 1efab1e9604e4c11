// Package server is allot's HTTP face: the JSON API under /v1, Server-Sent
// Events, the HTTP node protocol for non-Go nodes, Prometheus metrics and the
// embedded web UI, plus the coordinator loop of `allot serve`.
//
//	tokens, err := server.TokensFromEnv()
//	s, err := server.New(rdb, server.WithTokens(tokens))
//	go s.Run(ctx)                      // rebalance on events and on a timer
//	hs := s.HTTPServer(":7070", s.Handler())
//	hs.Serve(l); ...; s.Close(); hs.Shutdown(ctx)
//
// Routes (role needed when tokens are configured; "read" = read or admin,
// "node" = node or admin):
//
//	GET    /healthz, /readyz                   public (readyz PINGs Redis)
//	GET    /metrics                            read
//	GET    /v1/groups[?reveal=true]            read (reveal: admin)   → [group]
//	POST   /v1/groups                          admin  {name, weight, max_nodes, quota, eject_after, config, secret_keys} → 201 group
//	GET    /v1/groups/{name}[?reveal=true]     read                   → group
//	PATCH  /v1/groups/{name}                   admin  {set, unset, secret, weight, max_nodes, quota, eject_after, if_version[, at]} → group (201 scheduled with at)
//	DELETE /v1/groups/{name}                   admin  → 204
//	POST   /v1/groups/{name}/retire            admin  {drain_timeout, at} (optional) → group
//	GET    /v1/groups/{name}/history           read   → [stored group], newest first
//	POST   /v1/groups/{name}/rollback          admin  {version} → group
//	POST   /v1/groups/{name}/suspend           admin  {reason} (optional) → group (409 unless active or probing)
//	POST   /v1/groups/{name}/resume            admin  → group (active again, failure counts and cooldown reset)
//	POST   /v1/groups/{name}/cool              admin  {clear: true} → group (the cooldown ends now; a suspension stays)
//	GET    /v1/nodes                           read   → [{id, ip, groups, last_seen}]
//	GET    /v1/status                          read   → {epoch, balanced, groups, nodes, standby, waiting}
//	POST   /v1/rebalance                       admin  → {epoch, changed, moved, reaped, retired, applied, waiting, took_ms}
//	GET    /v1/schedule                        read   → [scheduled]
//	POST   /v1/schedule                        admin  {group, op: update|retire|delete, at, change, drain_timeout} → 201
//	DELETE /v1/schedule/{id}                   admin  → 204
//	GET    /v1/export[?format=yaml|json]       read   → Pool (YAML unless Accept/format says JSON)
//	POST   /v1/import[?dry_run=true&prune=true] admin Pool (YAML or JSON) → ImportReport
//	GET    /v1/events                          read   SSE; resume with Last-Event-ID (or ?after=ID, 0 = whole log)
//	POST   /v1/nodes/{id}/heartbeat            node   {ip, preferred, held, ack} → NodeAssignment with session (409: ID live under another session; 429: the token's joins are used up)
//	GET    /v1/nodes/{id}/assignment           node*  ?after=EPOCH&wait=30s (≤ 60s) → NodeAssignment (503: too many long polls)
//	DELETE /v1/nodes/{id}                      node*  → 204 (leave: its groups move at once; admin without session: evict)
//	POST   /v1/nodes/{id}/report               node*  {group, outcome: throttled|failure|success, retry_after_ms, reason} → ReportAnswer (409: not live / not holding it; 429 too_many_requests: over the node's report rate)
//	GET    /v1/dev/nodes                       read   dev mode only → [DevNode]
//	POST   /v1/dev/nodes                       admin  dev mode only: add a demo node → 201 DevNode
//	POST   /v1/dev/nodes/{id}/stop[?graceful=true] admin  crash (TTL reap) or leave → DevNode
//	POST   /v1/dev/nodes/{id}/start            admin  → DevNode
//	GET    /                                   public web UI
//
// Node tokens: a node token bound to a pattern (NodeToken) may use the node
// routes only for the node IDs its pattern matches (403 otherwise, before
// anything is read or written); ALLOT_NODE_TOKEN matches every ID.
//
// Node sessions: the server picks the session of every join and answers it
// in "session" (a session a client sends is used only while it holds the
// ID); later heartbeats and the routes marked node* must send it in the
// Allot-Session header — missing or wrong → 403, so the node token alone
// cannot read or remove another node. The admin token may omit the header
// (an operator's eviction or read). Joins are limited per node token
// (WithNodeJoinsPerMinute: 429 with Retry-After).
//
// Times in "at" are RFC 3339 or a duration from now ("10m"). Every error is
// {"error":{"code","message"}} with a stable code: bad_request (400),
// unauthorized (401), forbidden (403), not_found (404), conflict (409),
// too_large (413), invalid (422), too_many_requests (429), internal (500),
// unavailable (503). 429 and 503 carry Retry-After.
// Secret config values are masked everywhere except for an admin with
// ?reveal=true and in the node protocol (a node needs its keys).
package server
