package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/allot-io/allot/client"
	"github.com/allot-io/allot/proxy"
	"github.com/allot-io/allot/registry"
)

func init() { commandFactories = append(commandFactories, newProxyCmd) }

// Proxy defaults.
const (
	defaultProxyListen          = "127.0.0.1:8080"
	defaultProxyShutdownTimeout = 30 * time.Second
	// envProxyClientToken is where --client-token is read from when the
	// flag is not given (a flag shows in ps).
	envProxyClientToken = "ALLOT_PROXY_CLIENT_TOKEN"
)

// proxyOptions are the flags of `allot proxy`.
type proxyOptions struct {
	listen          string
	upstream        string
	authHeaders     []string
	authQuery       []string
	openAI          bool
	maxBody         string
	upstreamTimeout time.Duration
	clientToken     string
	nodeID          string
	shutdownTimeout time.Duration
	logFormat       string
	logLevel        string
}

func newProxyCmd(a *app) *cobra.Command {
	o := proxyOptions{}
	cmd := &cobra.Command{
		Use:   "proxy --upstream URL [--auth-header 'Name: value {key}']... [--openai]",
		Short: "Run a reverse proxy to an API that makes the service behind it a node of the pool",
		Long: `Proxy runs an HTTP reverse proxy to one upstream API. It is one node of the
pool (--redis, --namespace, ALLOT_NODE_ID and the other ALLOT_* variables of
a Go node): for each request it takes a lease on one of the keys the pool
gives it, fills the auth headers and query parameters from that key's group
config ({api_key} is the group's config value api_key), forwards the
request, relays the answer (streams as they arrive), reports the answer to
the pool (a 429 cools the key for every holder, 401/403 count towards its
suspension) and settles the lease. A 429, 401 or 403 from the upstream is
sent again once on another key. The caller's own Authorization is never
forwarded.

--openai adds token accounting for OpenAI-compatible APIs: an estimate
reserved per call and settled from the answer's usage, streamed or not;
OpenAI-shaped refusals and x-ratelimit-* headers. The proxy's own paths are
/_allot/healthz and /_allot/metrics. SIGTERM or SIGINT: stop accepting,
finish the calls in flight, leave the pool. See docs/proxy.md.`,
		Example: "  allot proxy --upstream https://api.openai.com --auth-header 'Authorization: Bearer {api_key}' --openai\n" +
			"  allot proxy --upstream https://maps.example.com --auth-query 'key={api_key}' --listen 127.0.0.1:9090",
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !cmd.Flags().Changed("client-token") {
				o.clientToken = a.getenv(envProxyClientToken)
			}
			return a.proxy(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.listen, "listen", defaultProxyListen, "`host:port` to listen on (a non-loopback address needs a client token)")
	f.StringVar(&o.upstream, "upstream", "", "the API to forward to: an absolute `URL`, its path a prefix of every forwarded path (required)")
	f.StringArrayVar(&o.authHeaders, "auth-header", nil, "a header set on every upstream call, `'Name: value'` where {key} is the lease's group config value key (repeatable)")
	f.StringArrayVar(&o.authQuery, "auth-query", nil, "a query parameter set on every upstream call, `'name=value'` with {key} as --auth-header (repeatable)")
	f.BoolVar(&o.openAI, "openai", false, "token accounting for OpenAI-compatible APIs: reserve an estimate, settle from usage; OpenAI-shaped errors and x-ratelimit-* headers")
	f.StringVar(&o.maxBody, "max-body", "10MiB", "largest request `size` buffered (bytes, or with KiB, MiB, GiB); larger ones get 413")
	f.DurationVar(&o.upstreamTimeout, "upstream-timeout", proxy.DefaultUpstreamTimeout, "how long to wait for the upstream's answer (status and headers); past it the caller gets 504")
	f.StringVar(&o.clientToken, "client-token", "", "answer only callers that send 'Authorization: Bearer TOKEN' (env "+envProxyClientToken+", which keeps it out of ps)")
	f.StringVar(&o.nodeID, "node-id", "", "the node ID to join with (env ALLOT_NODE_ID; default hostname-random)")
	f.DurationVar(&o.shutdownTimeout, "shutdown-timeout", defaultProxyShutdownTimeout, "how long SIGTERM waits for calls in flight before it cuts them and leaves")
	f.StringVar(&o.logFormat, "log-format", "text", "log format: text or json")
	f.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	return cmd
}

// proxy runs the proxy until ctx is done (SIGINT/SIGTERM), then shuts
// down gracefully: stop accepting, finish the calls in flight, settle,
// leave.
func (a *app) proxy(ctx context.Context, o proxyOptions) error {
	log, err := serveLogger(a.stderr, o.logFormat, o.logLevel)
	if err != nil {
		return err
	}
	if o.upstream == "" {
		return usageErrorf("missing --upstream: the API to forward to, e.g. --upstream https://api.openai.com")
	}
	maxBody, err := parseSize(o.maxBody)
	if err != nil {
		return usageErrorf("invalid --max-body %q: %s", o.maxBody, err)
	}
	if o.shutdownTimeout <= 0 {
		return usageErrorf("invalid --shutdown-timeout %v: must be > 0", o.shutdownTimeout)
	}
	if err := checkProxyListen(o.listen, o.clientToken); err != nil {
		return err
	}
	popts := []proxy.Option{proxy.WithMaxBody(maxBody), proxy.WithUpstreamTimeout(o.upstreamTimeout),
		proxy.WithClientToken(o.clientToken), proxy.WithLogger(log)}
	for _, h := range o.authHeaders {
		popts = append(popts, proxy.WithAuthHeader(h))
	}
	for _, q := range o.authQuery {
		popts = append(popts, proxy.WithAuthQuery(q))
	}
	if o.openAI {
		popts = append(popts, proxy.WithOpenAI())
	}
	copts, err := client.EnvOptions(a.getenv)
	if err != nil {
		return usage(err)
	}
	copts = append(copts, client.WithNamespace(a.namespace), client.WithLogger(log))
	if o.nodeID != "" {
		copts = append(copts, client.WithNodeID(o.nodeID))
	}

	cctx, cancel := context.WithTimeout(ctx, max(a.timeout, time.Second))
	defer cancel()
	rdb, err := a.rdb(cctx)
	if err != nil {
		return err
	}
	c, err := client.New(rdb, copts...)
	if err != nil {
		return usage(err)
	}
	p, err := proxy.New(c, o.upstream, popts...)
	if err != nil {
		return usage(err)
	}
	// A template naming a key no group has would fail every call.
	if err := p.Check(cctx, registry.New(rdb, registry.WithNamespace(a.namespace))); err != nil {
		if errors.Is(err, proxy.ErrUnknownConfigKey) {
			return usage(err)
		}
		return err
	}
	cancel()

	l, err := net.Listen("tcp", o.listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", o.listen, err)
	}
	if err := c.Start(ctx); err != nil {
		_ = l.Close()
		return err
	}
	srv := &http.Server{Handler: p, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	fmt.Fprintf(a.stdout, "allot proxy: listening on http://%s, forwarding to %s as node %s of pool %s\n", l.Addr(), o.upstream, c.NodeID(), a.namespace)
	log.Info("proxy serving", "addr", l.Addr().String(), "node", c.NodeID(), "ns", a.namespace, "openai", o.openAI)

	var runErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down: finishing calls in flight, then leaving")
	case runErr = <-served:
	case <-c.Done():
		runErr = errors.New("the node stopped")
	}
	sctx, scancel := context.WithTimeout(context.Background(), o.shutdownTimeout)
	defer scancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("shutdown: calls in flight cut", "err", err)
	}
	if err := p.Close(sctx); err != nil {
		log.Warn("shutdown: settles not finished", "err", err)
	}
	if err := c.Close(sctx); err != nil {
		runErr = errors.Join(runErr, fmt.Errorf("leave: %w", err))
	}
	if runErr != nil && !errors.Is(runErr, http.ErrServerClosed) {
		return fmt.Errorf("proxy: %w", runErr)
	}
	return nil
}

// checkProxyListen refuses to hand the pool's keys to anyone who can reach
// the proxy: a non-loopback address needs a client token.
func checkProxyListen(addr, token string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return usageErrorf("invalid --listen %q: want host:port, e.g. %s", addr, defaultProxyListen)
	}
	if !isLoopback(host) && token == "" {
		return usageErrorf("refusing to listen on %s without a client token: whoever reaches it could spend the pool's keys; set %s (or --client-token) or listen on 127.0.0.1", addr, envProxyClientToken)
	}
	return nil
}

// parseSize reads a byte count: "1048576", "512KiB", "10MiB", "1GiB".
func parseSize(s string) (int64, error) {
	units := []struct {
		suffix string
		n      int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"B", 1}}
	mult := int64(1)
	num := strings.TrimSpace(s)
	for _, u := range units {
		if v, ok := strings.CutSuffix(num, u.suffix); ok {
			num, mult = strings.TrimSpace(v), u.n
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	switch {
	case err != nil:
		return 0, errors.New("want a number of bytes, or with KiB, MiB or GiB (10MiB)")
	case n <= 0 || n > (1<<40)/mult:
		return 0, errors.New("must be above 0 and at most 1024GiB")
	}
	return n * mult, nil
}
