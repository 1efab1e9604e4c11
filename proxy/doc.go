// Package proxy is `allot proxy`: an HTTP reverse proxy in front of one
// upstream API that makes the service calling it a node of an allot pool,
// with no code change but a base URL.
//
// The proxy is one node (a client.Client). For each request it takes a
// lease (client.Acquire) on one of the keys the pool gave it, fills the
// configured auth headers and query parameters from the lease's config
// ({api_key}), forwards the request, relays the answer (a stream is
// flushed as it arrives), tells the pool what the upstream answered
// (Lease.Observe: a 429 cools the key for every holder, 401/403 count
// towards its suspension), and settles the lease. An upstream 429, 401 or
// 403 is retried once on another key: request bodies are buffered (up to
// a limit), so every request can be sent again.
//
// WithOpenAI adds token accounting for OpenAI-compatible APIs: the lease
// reserves an estimate from the request, settled from the answer's usage,
// streamed or not; refusals are OpenAI-shaped errors and answers carry
// the pool's x-ratelimit-* headers. docs/proxy.md is the user's guide.
//
//	p, err := proxy.New(c, "https://api.openai.com",
//		proxy.WithAuthHeader("Authorization: Bearer {api_key}"), proxy.WithOpenAI())
//	err = p.Check(ctx, reg)           // every {key} is a config key of the pool
//	srv := &http.Server{Handler: p}   // /_allot/healthz, /_allot/metrics, the rest forwarded
//	...
//	_ = srv.Shutdown(ctx)             // finish in-flight calls
//	_ = p.Close(ctx)                  // their settles and reports
//	_ = c.Close(ctx)                  // leave: the keys move at once
package proxy
