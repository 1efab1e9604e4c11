package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"

	"github.com/allot-io/allot/cmd/allot/devredis"
	"github.com/allot-io/allot/heartbeat"
	"github.com/allot-io/allot/internal/certreload"
	"github.com/allot-io/allot/internal/keys"
	"github.com/allot-io/allot/server"
)

func init() { commandFactories = append(commandFactories, newServeCmd) }

// Serve defaults.
const (
	defaultListen    = "127.0.0.1:7070"
	defaultDemoNodes = 6
	// shutdownTimeout bounds the graceful shutdown of the HTTP server.
	shutdownTimeout = 10 * time.Second
)

// serveOptions are the flags of `allot serve`.
type serveOptions struct {
	listen    string
	dev       bool
	demoNodes int
	logFormat string
	logLevel  string
	// allowedHosts are extra names the Host header may carry (--allowed-host).
	allowedHosts []string
	maxStreams   int
	maxLongPolls int
	// nodeTokens is the --node-tokens file ("" = none).
	nodeTokens  string
	joinsPerMin int
	// tlsCert and tlsKey are the PEM files of the TLS listener (--tls-cert,
	// --tls-key, or ALLOT_TLS_CERT/ALLOT_TLS_KEY); tlsDisable serves plain
	// HTTP beyond loopback, for TLS terminated in front (--tls-disable).
	tlsCert, tlsKey string
	tlsDisable      bool
}

// minAdminToken is the shortest admin token accepted on a non-loopback
// address: anything shorter can be guessed over the network.
const minAdminToken = 16

func newServeCmd(a *app) *cobra.Command {
	o := serveOptions{}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the HTTP API, web UI, metrics and coordinator",
		Long: `Serve runs allot's HTTP server: the JSON API under /v1, Server-Sent Events
(/v1/events), the HTTP node protocol for non-Go nodes, Prometheus metrics
(/metrics), /healthz, /readyz and the web UI at /. It also coordinates: it
rebalances on every change and on a timer, applies due schedules and reaps
dead nodes, even when no node is running.

Tokens come from ALLOT_ADMIN_TOKEN (everything), ALLOT_READ_TOKEN (GET routes,
secrets masked) and the node tokens (node protocol), sent as
"Authorization: Bearer TOKEN". A node token is bound to a pattern of node IDs
(path.Match syntax: "api-*" matches api-1): ALLOT_NODE_TOKENS="tok1=api-*,tok2=worker-?"
or --node-tokens FILE (one "TOKEN PATTERN" per line, # comments); it may act
only for the IDs it matches (403 otherwise). ALLOT_NODE_TOKEN is a node token
for any ID: whoever holds it can join under any free ID and receive the config,
secrets included, of the groups that ID is given. Joins are limited per node
token (--node-joins-per-minute, 429 beyond). Without any token every route is open, so serve
listens on 127.0.0.1 by default and refuses another address unless
ALLOT_ADMIN_TOKEN is set (at least 16 bytes). Other web sites cannot drive it
through a browser: a Host that is not loopback, the listen address or an
--allowed-host gets 421, another Origin 403, a write that is not JSON 415
(see docs/security.md).

--dev runs on an embedded in-memory Redis (state is lost on exit) with sample
groups and --demo-nodes simulated nodes, so it works with nothing installed.`,
		Example: "  allot serve --dev\n  ALLOT_ADMIN_TOKEN=... allot serve --listen 0.0.0.0:7070 --redis redis://redis:6379",
		Args:    exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cmd.Flags().Changed("demo-nodes") && !o.dev {
				return usageErrorf("--demo-nodes needs --dev")
			}
			return a.serve(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.listen, "listen", defaultListen, "`host:port` to listen on (a non-loopback address needs ALLOT_ADMIN_TOKEN)")
	f.BoolVar(&o.dev, "dev", false, "run on an embedded in-memory Redis with sample groups and demo nodes (state is lost on exit)")
	f.IntVar(&o.demoNodes, "demo-nodes", defaultDemoNodes, "simulated nodes to run with --dev")
	f.StringVar(&o.logFormat, "log-format", "text", "log format: text or json")
	f.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	f.StringArrayVar(&o.allowedHosts, "allowed-host", nil, "also answer requests whose Host header names `host` (repeatable; loopback names and the --listen address always work); stops DNS rebinding")
	f.IntVar(&o.maxStreams, "max-streams", server.DefaultMaxStreams, "most event streams (/v1/events) open at once per token class (admin, read); more get 503")
	f.IntVar(&o.maxLongPolls, "max-long-polls", server.DefaultMaxLongPolls, "most assignment long polls waiting at once per token class (admin, node); more get 503 with Retry-After")
	f.StringVar(&o.nodeTokens, "node-tokens", "", "read node tokens bound to node ID patterns from `file`: one \"TOKEN PATTERN\" per line (# comments), as ALLOT_NODE_TOKENS")
	f.StringVar(&o.tlsCert, "tls-cert", "", "serve HTTPS with the certificate (chain) in PEM `file`, reloaded when it changes (default $ALLOT_TLS_CERT)")
	f.StringVar(&o.tlsKey, "tls-key", "", "the private key in PEM `file` of --tls-cert (default $ALLOT_TLS_KEY)")
	f.BoolVar(&o.tlsDisable, "tls-disable", false, "serve plain HTTP beyond loopback: TLS is terminated in front of serve (a mesh, an ingress)")
	f.IntVar(&o.joinsPerMin, "node-joins-per-minute", server.DefaultNodeJoinsPerMinute, "joins (heartbeats for an ID the session does not hold) each node token may make per minute, shared by every serve replica; more get 429")
	return cmd
}

// serveLogger builds the server's logger on w from the log flags.
func serveLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, usageErrorf("invalid --log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, usageErrorf("invalid --log-format %q: want text or json", format)
}

// checkListen refuses to serve an open API beyond this machine: a
// non-loopback address needs an admin token, and, as Vault does, TLS or an
// explicit --tls-disable (tokens and keys would cross the network in clear).
func checkListen(addr string, tokens server.Tokens, tls, tlsDisable bool) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return usageErrorf("invalid --listen %q: want host:port, e.g. %s", addr, defaultListen)
	}
	if isLoopback(host) {
		return nil
	}
	if tokens.Admin == "" {
		return usageErrorf("refusing to listen on %s without ALLOT_ADMIN_TOKEN: set the token(s) or listen on 127.0.0.1", addr)
	}
	if len(tokens.Admin) < minAdminToken {
		return usageErrorf("refusing to listen on %s with an ALLOT_ADMIN_TOKEN of %d bytes: use at least %d random bytes (e.g. openssl rand -hex 32)", addr, len(tokens.Admin), minAdminToken)
	}
	if !tls && !tlsDisable {
		return usageErrorf("refusing to listen on %s in plain HTTP: tokens and API keys would cross the network in clear; give --tls-cert and --tls-key (or ALLOT_TLS_CERT and ALLOT_TLS_KEY), or --tls-disable when TLS is terminated in front of serve (a mesh, an ingress)", addr)
	}
	return nil
}

// tlsFiles resolves the TLS flags against the environment: both files or
// neither, and not with --tls-disable.
func (o *serveOptions) tlsFiles(getenv func(string) string) error {
	if o.tlsCert == "" {
		o.tlsCert = getenv("ALLOT_TLS_CERT")
	}
	if o.tlsKey == "" {
		o.tlsKey = getenv("ALLOT_TLS_KEY")
	}
	switch {
	case (o.tlsCert == "") != (o.tlsKey == ""):
		return usageErrorf("TLS needs both --tls-cert and --tls-key (or ALLOT_TLS_CERT and ALLOT_TLS_KEY)")
	case o.tlsCert != "" && o.tlsDisable:
		return usageErrorf("--tls-disable with a TLS certificate: choose one")
	case o.tlsCert != "" && o.dev:
		return usageErrorf("--dev serves plain HTTP on loopback: drop --tls-cert/--tls-key")
	}
	return nil
}

// serveTokens reads the tokens from the environment and the node tokens
// file (when given); the two lists of node tokens add up. Errors never
// quote a token.
func serveTokens(getenv func(string) string, file string) (server.Tokens, error) {
	tokens, err := server.TokensFrom(getenv)
	if err != nil {
		return server.Tokens{}, usageErrorf("%s", err)
	}
	if file == "" {
		return tokens, nil
	}
	f, err := os.Open(file)
	if err != nil {
		return server.Tokens{}, usageErrorf("--node-tokens: %s", err)
	}
	defer f.Close()
	nodes, err := server.ReadNodeTokens(f)
	if err != nil {
		return server.Tokens{}, usageErrorf("--node-tokens %s: %s", file, err)
	}
	tokens.Nodes = append(tokens.Nodes, nodes...)
	return tokens, nil
}

// serveHosts is what the server gets as allowed hosts: the --allowed-host
// names and, when the Host is checked at all (open mode, or names given),
// the host of the listen address.
func serveHosts(listen string, allowed []string, tokens server.Tokens) ([]string, error) {
	for _, h := range allowed {
		if strings.TrimSpace(h) == "" || strings.ContainsAny(h, "/ \t@") {
			return nil, usageErrorf("invalid --allowed-host %q: want a host name or address, e.g. allot.example.com", h)
		}
	}
	if len(allowed) == 0 && !tokens.Open() {
		return nil, nil
	}
	host, _, _ := net.SplitHostPort(listen)
	return append(slices.Clone(allowed), host), nil
}

// isLoopback reports whether host only reaches this machine. An empty host
// means every interface.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// devExports is the shell line that points the CLI and nodes at the dev
// Redis: what `allot serve --dev` prints on stdout.
func devExports(url, ns string) string {
	line := "export ALLOT_REDIS_URL=" + url
	if ns != "" && ns != keys.DefaultNamespace {
		line += " ALLOT_NAMESPACE=" + ns
	}
	return line
}

// serve runs the server until ctx is done (SIGINT/SIGTERM), then shuts down
// gracefully.
func (a *app) serve(ctx context.Context, o serveOptions) error {
	log, err := serveLogger(a.stderr, o.logFormat, o.logLevel)
	if err != nil {
		return err
	}
	if o.demoNodes < 0 {
		return usageErrorf("invalid --demo-nodes %d: must be >= 0", o.demoNodes)
	}
	tokens, err := serveTokens(a.getenv, o.nodeTokens)
	if err != nil {
		return err
	}
	if err := o.tlsFiles(a.getenv); err != nil {
		return err
	}
	if err := checkListen(o.listen, tokens, o.tlsCert != "", o.tlsDisable); err != nil {
		return err
	}
	hosts, err := serveHosts(o.listen, o.allowedHosts, tokens)
	if err != nil {
		return err
	}
	if o.maxStreams <= 0 {
		return usageErrorf("invalid --max-streams %d: must be > 0", o.maxStreams)
	}
	if o.maxLongPolls <= 0 {
		return usageErrorf("invalid --max-long-polls %d: must be > 0", o.maxLongPolls)
	}
	if o.joinsPerMin <= 0 {
		return usageErrorf("invalid --node-joins-per-minute %d: must be > 0", o.joinsPerMin)
	}
	// Refuse bad tokens and certificates before Redis is touched.
	if err := tokens.Validate(); err != nil {
		return usageErrorf("%s", err)
	}
	var certs *certreload.Reloader
	if o.tlsCert != "" {
		if certs, err = certreload.New(o.tlsCert, o.tlsKey, certreload.WithLogger(log)); err != nil {
			return usageErrorf("%s", err)
		}
	}

	var (
		rdb redis.UniversalClient
		dev *devredis.Redis
		hb  = heartbeat.DefaultConfig()
	)
	if o.dev {
		if dev, err = devredis.Start(); err != nil {
			return err
		}
		defer dev.Close()
		c := dev.Client()
		defer c.Close()
		rdb = c
		// The demo nodes beat fast; the namespace settings say so, so the
		// CLI and nodes pointed at this Redis use the same.
		if hb, err = heartbeat.Resolve(ctx, rdb, a.namespace, &devredis.DefaultHeartbeat); err != nil {
			return err
		}
		fmt.Fprintf(a.stderr, "allot serve: dev mode: in-memory Redis, state is lost on exit; point the CLI and nodes at it with:\n")
		fmt.Fprintf(a.stdout, "%s\n", devExports(dev.URL(), a.namespace))
	} else {
		cctx, cancel := context.WithTimeout(ctx, max(a.timeout, time.Second))
		rdb, err = a.rdb(cctx)
		if err == nil {
			hb, _, err = heartbeat.LoadConfig(cctx, rdb, a.namespace)
		}
		cancel()
		if err != nil {
			return err
		}
	}

	var fleet *devredis.Fleet
	opts := []server.Option{server.WithNamespace(a.namespace), server.WithTokens(tokens),
		server.WithLogger(log), server.WithHeartbeat(hb),
		server.WithAllowedHosts(hosts...), server.WithMaxStreams(o.maxStreams),
		server.WithMaxLongPolls(o.maxLongPolls), server.WithNodeJoinsPerMinute(o.joinsPerMin),
		server.WithSecretKeys(a.secrets)}
	if o.dev {
		fleet = devredis.NewFleet(dev.Addr(), devredis.WithNamespace(a.namespace),
			devredis.WithHeartbeat(hb), devredis.WithLogger(log.With("component", "demo")),
			devredis.WithSecretKeys(a.secretSpec))
		opts = append(opts, server.WithDev(devController{fleet}))
	}
	s, err := server.New(rdb, opts...)
	if err != nil {
		return err
	}
	defer s.Close()
	if o.dev {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := devredis.Seed(sctx, s.Registry())
		cancel()
		if err != nil {
			return err
		}
	}

	l, err := net.Listen("tcp", o.listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", o.listen, err)
	}
	httpSrv := s.HTTPServer(o.listen, s.Handler())
	scheme := "http"
	if certs != nil {
		httpSrv.TLSConfig = certs.TLSConfig()
		l = tls.NewListener(l, httpSrv.TLSConfig)
		scheme = "https"
	}
	served := make(chan error, 1)
	go func() { served <- httpSrv.Serve(l) }()
	mode := ""
	if o.dev {
		mode = " (dev mode)"
	}
	fmt.Fprintf(a.stdout, "allot serve: listening on %s://%s%s\n", scheme, l.Addr(), mode)
	log.Info("serving", "addr", l.Addr().String(), "dev", o.dev, "auth", !tokens.Open(), "tls", certs != nil,
		"secrets_at_rest", s.Registry().SecretsAtRest(), "secret_keys", a.secrets.String())

	loopCtx, stopLoop := context.WithCancel(ctx)
	looped := make(chan error, 1)
	go func() { looped <- s.Run(loopCtx) }()

	if fleet != nil {
		defer func() {
			fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = fleet.Close(fctx)
		}()
		for range o.demoNodes {
			actx, cancel := context.WithTimeout(ctx, 10*time.Second)
			_, err := fleet.Add(actx)
			cancel()
			if err != nil {
				log.Warn("demo node did not start", "err", err)
				break
			}
		}
	}

	var serveErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case serveErr = <-served:
	}
	stopLoop()
	<-looped
	// Close first: it ends event streams and long polls, which Shutdown
	// would otherwise wait for.
	_ = s.Close()
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := httpSrv.Shutdown(sctx); err != nil {
		log.Warn("shutdown: connections cut", "err", err)
	}
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", serveErr)
	}
	return nil
}

// devController adapts the demo fleet to the server's dev routes.
type devController struct{ f *devredis.Fleet }

func (d devController) Nodes() []server.DevNode {
	nodes := d.f.Nodes()
	out := make([]server.DevNode, 0, len(nodes))
	for _, n := range nodes {
		out = append(out, devNode(n))
	}
	return out
}

func (d devController) Stop(ctx context.Context, id string, graceful bool) error {
	return devError(id, d.f.Stop(ctx, id, graceful))
}

func (d devController) Start(ctx context.Context, id string) error {
	return devError(id, d.f.Start(ctx, id))
}

func (d devController) Add(ctx context.Context) (server.DevNode, error) {
	n, err := d.f.Add(ctx)
	return devNode(n), err
}

func devNode(n devredis.Node) server.DevNode {
	return server.DevNode{ID: n.ID, IP: n.IP, Running: n.Running, Epoch: n.Epoch, Groups: n.Groups}
}

// devError maps the fleet's unknown-node error to the server's, so the API
// answers 404.
func devError(id string, err error) error {
	if errors.Is(err, devredis.ErrUnknownNode) {
		return fmt.Errorf("%w: %q", server.ErrDevNodeNotFound, id)
	}
	return err
}
