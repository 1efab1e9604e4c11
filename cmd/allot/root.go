package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"os/user"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"

	"github.com/allot-io/allot/allocator"
	"github.com/allot-io/allot/heartbeat"
	"github.com/allot-io/allot/internal/keys"
	"github.com/allot-io/allot/internal/redisurl"
	"github.com/allot-io/allot/registry"
)

// Defaults of the global flags.
const (
	defaultRedisURL = "redis://127.0.0.1:6379"
	defaultTimeout  = 10 * time.Second
	// connectTimeout bounds the first PING of a command, whatever --timeout.
	connectTimeout = defaultTimeout
	// refusalWait bounds the look at what a Redis that broke the first
	// connection says to a new one (redisurl.Refusal).
	refusalWait = time.Second
)

// commandFactories builds the top-level commands. Each noun file appends its
// factory in init(), so adding a command never edits this file.
var commandFactories []func(*app) *cobra.Command

// run is the whole program: it executes args and returns the exit code.
// SIGINT and SIGTERM cancel the command's context.
func run(args []string, stdout, stderr io.Writer) int {
	// go-redis logs dial failures on its own; the CLI reports them once, itself.
	redis.SetLogger(quietLogger{})
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return execute(ctx, args, env{stdin: os.Stdin, stdout: stdout, stderr: stderr, getenv: os.Getenv})
}

// quietLogger drops go-redis's internal log lines.
type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}

// env is what the CLI takes from its process, injectable for tests.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
}

// execute runs one command line with ctx and returns its exit code. Errors
// are printed as one line on stderr.
func execute(ctx context.Context, args []string, e env) int {
	a := newApp(e)
	defer a.close()
	root := newRootCommand(a)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	// Messages quote input (file lines, flag values): escape what a
	// terminal would act on.
	fmt.Fprintf(e.stderr, "allot: %s\n", escapeControl(a.describe(err)))
	return exitCode(err)
}

// app holds the global flags and the lazily opened Redis client and the
// packages built on it. One app serves one command line.
type app struct {
	redisURL  string
	namespace string
	output    string
	timeout   time.Duration
	// secretKeysFile is --secret-keys; secrets the parsed key list (from it
	// or ALLOT_SECRET_KEYS; nil: secrets are stored in plain text).
	secretKeysFile string
	secretSpec     string
	secrets        *registry.SecretKeys

	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
	now            func() time.Time
	log            *slog.Logger

	client redis.UniversalClient
	reg    *registry.Registry
	hb     *heartbeat.Tracker
	rb     *allocator.Rebalancer
}

func newApp(e env) *app {
	if e.getenv == nil {
		e.getenv = func(string) string { return "" }
	}
	if e.stdin == nil {
		e.stdin = strings.NewReader("")
	}
	return &app{
		stdin: e.stdin, stdout: e.stdout, stderr: e.stderr, getenv: e.getenv,
		now: time.Now,
		log: slog.New(slog.DiscardHandler),
	}
}

// newRootCommand builds the command tree on a.
func newRootCommand(a *app) *cobra.Command {
	root := &cobra.Command{
		Use:   "allot",
		Short: "Hand out a pool of API-key groups to the live nodes of a cluster",
		Long: `allot hands out a pool of groups (bundles of config, typically API keys with
call limits) to the live nodes of a cluster through Redis, and moves them when
nodes come and go or groups change.

Every command talks to the Redis of --redis (env ALLOT_REDIS_URL) in the pool
--namespace (env ALLOT_NAMESPACE). Exit status: 0 ok, 1 failure, 2 usage error.`,
		SilenceUsage:      true,
		SilenceErrors:     true,
		PersistentPreRunE: a.resolveGlobals,
		Version:           buildVersion().line(),
	}
	root.SetVersionTemplate("allot {{.Version}}\n")
	// The root is a noun too: an unknown word is a clean usage error with
	// cobra's suggestion, not cobra's multi-line text.
	noun(root)
	root.SetOut(a.stdout)
	root.SetErr(a.stderr)
	root.SetIn(a.stdin)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usageErrorf("%w (see '%s --help')", err, c.CommandPath())
	})

	pf := root.PersistentFlags()
	pf.StringVar(&a.redisURL, "redis", "", "Redis URL: redis://[user:pass@]host:port/db, rediss:// for TLS, several addr= for Cluster, master_name= for Sentinel (env ALLOT_REDIS_URL, default "+defaultRedisURL+")")
	pf.StringVar(&a.namespace, "namespace", "", "pool namespace (env ALLOT_NAMESPACE, default \""+keys.DefaultNamespace+"\")")
	pf.StringVarP(&a.output, "output", "o", "table", "output format: table, json or yaml")
	pf.DurationVar(&a.timeout, "timeout", defaultTimeout, "how long a command may wait for Redis (0 = no limit once connected; connecting takes at most 10s)")
	pf.StringVar(&a.secretKeysFile, "secret-keys", "", "file holding the secret keys that encrypt secret values at rest: id:base64-of-32-bytes, comma-separated, the first encrypts (env ALLOT_SECRET_KEYS holds the same text; default none: stored in plain text)")

	for _, f := range commandFactories {
		root.AddCommand(f(a))
	}
	return root
}

// resolveGlobals fills unset global flags from the environment and checks them.
func (a *app) resolveGlobals(cmd *cobra.Command, _ []string) error {
	if a.redisURL == "" {
		a.redisURL = a.getenv("ALLOT_REDIS_URL")
	}
	if a.redisURL == "" {
		a.redisURL = defaultRedisURL
	}
	if a.namespace == "" {
		a.namespace = a.getenv("ALLOT_NAMESPACE")
	}
	if a.namespace == "" {
		a.namespace = keys.DefaultNamespace
	}
	if err := keys.Validate(a.namespace); err != nil {
		return usageErrorf("invalid --namespace %q: must match ^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$", a.namespace)
	}
	switch a.output {
	case "table", "json", "yaml":
	default:
		return usageErrorf("invalid --output %q: want table, json or yaml", a.output)
	}
	if a.timeout < 0 {
		return usageErrorf("invalid --timeout %v: must be >= 0", a.timeout)
	}
	return a.resolveSecretKeys()
}

// noun makes cmd a command that only groups subcommands: alone it prints its
// help; followed by an unknown word it is a usage error (cobra would print
// the help and exit 0).
func noun(cmd *cobra.Command) *cobra.Command {
	cmd.Args = cobra.ArbitraryArgs
	cmd.SuggestionsMinimumDistance = 2
	cmd.RunE = func(c *cobra.Command, args []string) error {
		if len(args) > 0 {
			if s := c.SuggestionsFor(args[0]); len(s) > 0 {
				return usageErrorf("unknown command %q for %q; did you mean %s? (see '%s --help')", args[0], c.CommandPath(), strings.Join(s, " or "), c.CommandPath())
			}
			return usageErrorf("unknown command %q for %q (see '%s --help')", args[0], c.CommandPath(), c.CommandPath())
		}
		return c.Help()
	}
	return cmd
}

// confirm asks question on the terminal and reports whether the answer is
// yes. Without a terminal on stdin (a script, a pipe, a test) it asks
// nothing and says no, so the caller's --yes is the only way.
func (a *app) confirm(question string) bool {
	f, ok := a.stdin.(*os.File)
	if !ok {
		return false
	}
	if fi, err := f.Stat(); err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		return false
	}
	fmt.Fprint(a.stderr, question)
	line, _ := bufio.NewReader(f).ReadString('\n')
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		return true
	}
	return false
}

// exactArgs checks that a command got exactly the named positional arguments.
func exactArgs(names ...string) cobra.PositionalArgs {
	return func(c *cobra.Command, args []string) error {
		switch {
		case len(args) < len(names):
			return usageErrorf("missing %s (see '%s --help')", names[len(args)], c.CommandPath())
		case len(args) > len(names):
			return usageErrorf("unexpected argument %q (see '%s --help')", args[len(names)], c.CommandPath())
		}
		return nil
	}
}

// ctx returns the context of one command bounded by --timeout.
func (a *app) ctx(cmd *cobra.Command) (context.Context, context.CancelFunc) {
	if a.timeout <= 0 {
		return context.WithCancel(cmd.Context())
	}
	return context.WithTimeout(cmd.Context(), a.timeout)
}

// maskedURL is the Redis URL without its password, for messages.
func (a *app) maskedURL() string {
	u := a.redisURL
	if u == "" {
		u = defaultRedisURL
	}
	return redisurl.Mask(u)
}

// rdb opens the Redis client on first use and checks that Redis answers.
func (a *app) rdb(ctx context.Context) (redis.UniversalClient, error) {
	if a.client != nil {
		return a.client, nil
	}
	c, err := redisurl.Open(a.redisURL)
	if err != nil {
		return nil, usageErrorf("invalid --redis %s: %s", a.maskedURL(), oneLine(err.Error()))
	}
	// The first contact is bounded even with --timeout 0 ("no limit" is
	// for the command's work, not for finding out that Redis is not there).
	// Wait for the PING no longer than that: go-redis bounds a dial and its
	// handshake by its own DialTimeout (5s), not by ctx, so a Redis that
	// accepts but never answers would outlast --timeout. A PING left behind
	// ends within that DialTimeout once Close has run.
	pctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	pinged := make(chan error, 1)
	go func() { pinged <- c.Ping(pctx).Err() }()
	select {
	case err = <-pinged:
	case <-pctx.Done():
		err = pctx.Err()
	}
	if err != nil {
		if pctx.Err() != nil && !registry.IsUnavailable(err) {
			err = pctx.Err()
		} else if refused := redisurl.Refusal(ctx, c, refusalWait); refused != nil {
			// A broken pipe or EOF hides the server's own words (protected
			// mode, maxclients): show those instead.
			err = refused
		}
		_ = c.Close()
		return nil, &unreachableError{url: a.maskedURL(), err: err}
	}
	a.client = c
	return c, nil
}

// registry returns the registry of the namespace.
func (a *app) registry(ctx context.Context) (*registry.Registry, error) {
	if a.reg != nil {
		return a.reg, nil
	}
	c, err := a.rdb(ctx)
	if err != nil {
		return nil, err
	}
	a.reg = registry.New(c, registry.WithNamespace(a.namespace), registry.WithLogger(a.log), registry.WithSecretKeys(a.secrets))
	return a.reg, nil
}

// tracker returns the heartbeat tracker of the namespace, with the
// namespace's heartbeat settings (heartbeat.LoadConfig): a rebalance run
// from the CLI reaps by the TTL the nodes use.
func (a *app) tracker(ctx context.Context) (*heartbeat.Tracker, error) {
	if a.hb != nil {
		return a.hb, nil
	}
	c, err := a.rdb(ctx)
	if err != nil {
		return nil, err
	}
	cfg, _, err := heartbeat.LoadConfig(ctx, c, a.namespace)
	if err != nil {
		return nil, err
	}
	hb, err := heartbeat.New(c, a.namespace, cfg, heartbeat.WithLogger(a.log))
	if err != nil {
		return nil, err
	}
	a.hb = hb
	return hb, nil
}

// rebalancer returns a Rebalancer of the namespace that plans as this user.
func (a *app) rebalancer(ctx context.Context) (*allocator.Rebalancer, error) {
	if a.rb != nil {
		return a.rb, nil
	}
	reg, err := a.registry(ctx)
	if err != nil {
		return nil, err
	}
	hb, err := a.tracker(ctx)
	if err != nil {
		return nil, err
	}
	a.rb = allocator.NewRebalancer(a.client, reg, hb, allocator.WithPlanner(a.by()), allocator.WithRebalancerLogger(a.log))
	return a.rb, nil
}

// pool returns the registry and the tracker, for commands that inspect both.
func (a *app) pool(ctx context.Context) (*registry.Registry, *heartbeat.Tracker, error) {
	reg, err := a.registry(ctx)
	if err != nil {
		return nil, nil, err
	}
	hb, err := a.tracker(ctx)
	if err != nil {
		return nil, nil, err
	}
	return reg, hb, nil
}

// withRegistry runs fn with the command's context (bounded by --timeout)
// and the namespace's registry: the frame of every command that only needs
// the registry.
func (a *app) withRegistry(cmd *cobra.Command, fn func(ctx context.Context, reg *registry.Registry) error) error {
	ctx, cancel := a.ctx(cmd)
	defer cancel()
	reg, err := a.registry(ctx)
	if err != nil {
		return err
	}
	return fn(ctx, reg)
}

// inspect reads the pool's status: groups with their holders and targets,
// live nodes, standby.
func (a *app) inspect(ctx context.Context) (allocator.Status, error) {
	reg, hb, err := a.pool(ctx)
	if err != nil {
		return allocator.Status{}, err
	}
	return allocator.Inspect(ctx, reg, hb)
}

// close releases the Redis client.
func (a *app) close() {
	if a.client != nil {
		_ = a.client.Close()
		a.client = nil
	}
}

// by is the updated_by of changes made from this CLI: "cli:USER@HOST".
func (a *app) by() string {
	name := a.getenv("USER")
	if name == "" {
		if u, err := user.Current(); err == nil {
			name = u.Username
		}
	}
	if name == "" {
		name = "unknown"
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	return "cli:" + name + "@" + host
}
