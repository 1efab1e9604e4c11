package redistest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

const (
	// readyTimeout bounds how long a process may take to answer PING.
	readyTimeout = 15 * time.Second
	// stopTimeout bounds a graceful shutdown before it becomes SIGKILL.
	stopTimeout = 10 * time.Second
	// pollInterval is how often readiness and convergence are re-checked.
	pollInterval = 10 * time.Millisecond
	// startAttempts is how many ports a fresh server tries before giving up.
	startAttempts = 5
)

// Option configures a standalone Server started by Start.
type Option func(*config)

// config is everything that decides how a redis-server process is run.
type config struct {
	aof        bool
	user, pass string
	tls        bool
	args       []string

	cluster     bool          // cluster-enabled yes
	nodeTimeout time.Duration // cluster-node-timeout
	sentinelOf  string        // when set, run as a sentinel monitoring this master address
}

// WithAOF turns on the append-only file with fsync on every write
// (appendonly yes, appendfsync always), so a write acknowledged before Kill
// is still there after Restart. Default: no persistence at all (save "").
func WithAOF() Option {
	return func(c *config) { c.aof = true }
}

// WithPassword creates an ACL user with full access and disables the default
// user, so every connection must authenticate as user/pass. URL() then
// carries the credentials. user and pass must not contain whitespace.
// Default: the default user, no password.
func WithPassword(user, pass string) Option {
	return func(c *config) { c.user, c.pass = user, pass }
}

// WithTLS serves TLS only (port 0, tls-port on the free port) with a CA and
// server certificate generated for this test. Clients verify it with
// TLSConfig() or CAFile(); URL() uses rediss://. Client certificates are not
// required. Default: plain TCP.
func WithTLS() Option {
	return func(c *config) { c.tls = true }
}

// WithArgs appends raw redis-server arguments after the generated config,
// e.g. WithArgs("--maxmemory", "10mb"); later arguments win.
func WithArgs(args ...string) Option {
	return func(c *config) { c.args = append(c.args, args...) }
}

// Server is one redis-server process owned by a test. Its methods are safe
// for concurrent use. The process is killed when the test ends.
type Server struct {
	cfg      config
	dir      string
	confPath string
	tls      *tlsFiles

	mu   sync.Mutex
	port int
	proc *process // nil while not running
}

// process is one run of redis-server.
type process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once the process has exited and been reaped
}

// Start runs a standalone redis-server on a free port and returns once it
// answers PING. It fails the test if the server cannot start.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	var cfg config
	for _, o := range opts {
		o(&cfg)
	}
	s := newServer(t, cfg)
	if err := s.startFresh(freePort); err != nil {
		t.Fatal(err)
	}
	return s
}

// newServer prepares a Server in its own temporary directory and registers
// its cleanup; it does not start a process.
func newServer(t testing.TB, cfg config) *Server {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatal(errNotInstalled)
	}
	dir := t.TempDir()
	s := &Server{cfg: cfg, dir: dir, confPath: filepath.Join(dir, "redis.conf")}
	if cfg.tls {
		f, err := generateTLS(dir)
		if err != nil {
			t.Fatal(err)
		}
		s.tls = f
	}
	// Registered after TempDir, so it runs before the directory is removed.
	t.Cleanup(s.cleanup)
	return s
}

// startFresh picks a port, writes the config and starts the process,
// trying another port when the chosen one was taken meanwhile.
func (s *Server) startFresh(pick func() (int, error)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var err error
	for range startAttempts {
		var port int
		if port, err = pick(); err != nil {
			return err
		}
		s.port = port
		if err = os.WriteFile(s.confPath, []byte(s.configText()), 0o600); err != nil {
			return fmt.Errorf("redistest: write config: %w", err)
		}
		if err = s.launchLocked(); !errors.Is(err, errPortInUse) {
			return err
		}
	}
	return err
}

// configText renders redis.conf for the current port.
func (s *Server) configText() string {
	var b strings.Builder
	line := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	line("bind 127.0.0.1")
	line("dir %s", quote(s.dir))
	line("logfile %s", quote(filepath.Join(s.dir, "redis.log")))
	line("daemonize no")
	if s.cfg.sentinelOf != "" {
		host, port, _ := net.SplitHostPort(s.cfg.sentinelOf)
		line("port %d", s.port)
		line("sentinel monitor %s %s %s 1", MasterName, host, port)
		line("sentinel down-after-milliseconds %s 1000", MasterName)
		line("sentinel failover-timeout %s 3000", MasterName)
		return b.String()
	}
	if s.tls != nil {
		line("port 0")
		line("tls-port %d", s.port)
		line("tls-cert-file %s", quote(s.tls.certFile))
		line("tls-key-file %s", quote(s.tls.keyFile))
		line("tls-ca-cert-file %s", quote(s.tls.caFile))
		line("tls-auth-clients no")
	} else {
		line("port %d", s.port)
	}
	line(`save ""`)
	// Security tests compare DEBUG DIGEST before and after a refused call.
	line("enable-debug-command local")
	// Replicas sync at once instead of waiting for more replicas to batch.
	line("repl-diskless-sync-delay 0")
	if s.cfg.aof {
		line("appendonly yes")
		line("appendfsync always")
	} else {
		line("appendonly no")
	}
	if s.cfg.user != "" {
		line("user default off")
		line("user %s on %s ~* &* +@all", quote(s.cfg.user), quote(">"+s.cfg.pass))
	}
	if s.cfg.cluster {
		line("cluster-enabled yes")
		line("cluster-config-file %s", quote(filepath.Join(s.dir, "nodes.conf")))
		line("cluster-node-timeout %d", s.cfg.nodeTimeout.Milliseconds())
		// Any replica may take over, however stale: tests want fast failover.
		line("cluster-replica-validity-factor 0")
		// CLUSTER SLOTS lists a replica only once its replication offset is
		// non-zero; on an idle master that waits for the replication ping
		// (default every 10 s).
		line("repl-ping-replica-period 1")
	}
	return b.String()
}

// quote makes v one redis.conf argument.
func quote(v string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`)
	return `"` + r.Replace(v) + `"`
}

// launchLocked starts the process on s.port and waits until it is ready.
// s.mu must be held.
func (s *Server) launchLocked() error {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return errNotInstalled
	}
	args := []string{s.confPath}
	if s.cfg.sentinelOf != "" {
		args = append(args, "--sentinel")
	}
	args = append(args, s.cfg.args...)
	out, err := os.OpenFile(filepath.Join(s.dir, "stdout.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("redistest: open output log: %w", err)
	}
	defer out.Close()
	cmd := exec.Command(bin, args...)
	cmd.Dir = s.dir
	cmd.Stdout, cmd.Stderr = out, out
	// Own process group so Kill takes any fork (BGSAVE, AOF rewrite) with
	// it; Pdeathsig so a crashed or timed-out test binary leaves no server.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("redistest: start redis-server: %w", err)
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(p.done)
	}()
	if err := s.waitReady(p); err != nil {
		exited := p.exited()
		killProcess(p)
		tail := s.logTail()
		if exited && strings.Contains(tail, "Address already in use") {
			return fmt.Errorf("%w: %d", errPortInUse, s.port)
		}
		return fmt.Errorf("%w\n--- redis-server log (%s) ---\n%s", err, s.dir, tail)
	}
	s.proc = p
	return nil
}

// waitReady polls until the process on s.port is ours (INFO process_id) and
// answers PING (which fails while an AOF is still loading).
func (s *Server) waitReady(p *process) error {
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	opt := s.optionsLocked()
	opt.Protocol = 2
	opt.DisableIdentity = true
	opt.MaxRetries = -1
	opt.PoolSize = 1
	opt.DialTimeout = 250 * time.Millisecond
	opt.ReadTimeout = time.Second
	opt.WriteTimeout = time.Second
	c := redis.NewClient(opt)
	defer c.Close()
	want := strconv.Itoa(p.cmd.Process.Pid)
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	var last error
	for {
		info, err := c.Info(ctx, "server").Result()
		switch {
		case err != nil:
			last = err
		case infoField(info, "process_id") != want:
			last = fmt.Errorf("another process (pid %s) answers on port %d", infoField(info, "process_id"), s.port)
		default:
			if last = c.Ping(ctx).Err(); last == nil {
				return nil
			}
		}
		select {
		case <-p.done:
			return fmt.Errorf("redistest: redis-server on port %d exited during startup", s.port)
		case <-ctx.Done():
			return fmt.Errorf("redistest: redis-server on port %d not ready after %s: %w", s.port, readyTimeout, last)
		case <-tick.C:
		}
	}
}

// exited reports whether the process has already exited.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// killProcess SIGKILLs the whole process group and waits for the exit.
func killProcess(p *process) {
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// logTail returns the last lines of the server's log and output.
func (s *Server) logTail() string {
	var lines []string
	for _, name := range []string{"stdout.log", "redis.log"} {
		data, err := os.ReadFile(filepath.Join(s.dir, name))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(bytes.NewReader(data))
		for sc.Scan() {
			lines = append(lines, sc.Text())
		}
	}
	const keep = 20
	if len(lines) > keep {
		lines = lines[len(lines)-keep:]
	}
	return strings.Join(lines, "\n")
}

// cleanup kills the process, if any, at the end of the test.
func (s *Server) cleanup() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil {
		killProcess(s.proc)
		s.proc = nil
	}
}

// Addr is the server's host:port on 127.0.0.1. It does not change on Restart.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addrLocked()
}

func (s *Server) addrLocked() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
}

// URL is the connection string for this server: redis://127.0.0.1:PORT,
// with user:pass@ under WithPassword and the rediss scheme under WithTLS.
func (s *Server) URL() string {
	u := url.URL{Scheme: "redis", Host: s.Addr()}
	if s.tls != nil {
		u.Scheme = "rediss"
	}
	if s.cfg.user != "" {
		u.User = url.UserPassword(s.cfg.user, s.cfg.pass)
	}
	return u.String()
}

// TLSConfig returns a new client TLS config that trusts the server's
// generated CA, or nil without WithTLS.
func (s *Server) TLSConfig() *tls.Config {
	if s.tls == nil {
		return nil
	}
	return s.tls.clientConfig()
}

// CAFile is the path of the generated CA certificate (PEM), or "" without
// WithTLS. Child processes can trust it through SSL_CERT_FILE.
func (s *Server) CAFile() string {
	if s.tls == nil {
		return ""
	}
	return s.tls.caFile
}

// Options returns go-redis options for this server: address, credentials
// and TLS config.
func (s *Server) Options() *redis.Options {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.optionsLocked()
}

func (s *Server) optionsLocked() *redis.Options {
	o := &redis.Options{Addr: s.addrLocked(), Username: s.cfg.user, Password: s.cfg.pass}
	if s.tls != nil {
		o.TLSConfig = s.tls.clientConfig()
	}
	return o
}

// Client returns a go-redis client (a *redis.Client) for this server,
// closed when the test ends.
func (s *Server) Client(t testing.TB) redis.UniversalClient {
	t.Helper()
	c := redis.NewClient(s.Options())
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Kill SIGKILLs the server (and its forks) and waits until it is gone, like
// a crash: nothing is flushed beyond what its fsync policy already wrote.
func (s *Server) Kill(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		t.Fatalf("%v: kill %s", errNotRunning, s.addrLocked())
	}
	killProcess(s.proc)
	s.proc = nil
}

// Stop shuts the server down gracefully (SIGTERM, as redis-server would on
// a normal stop) and waits; after 10 s it is killed instead.
func (s *Server) Stop(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		t.Fatalf("%v: stop %s", errNotRunning, s.addrLocked())
	}
	s.stopLocked()
}

func (s *Server) stopLocked() {
	p := s.proc
	s.proc = nil
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		// Reap anything the server forked and left behind.
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	case <-time.After(stopTimeout):
		killProcess(p)
	}
}

// Restart starts the server again on the same port and directory and
// returns once it is ready. A running server is stopped gracefully first.
// Data survives if it was persisted: WithAOF, or a cluster's nodes.conf.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil {
		s.stopLocked()
	}
	if err := s.launchLocked(); err != nil {
		t.Fatalf("redistest: restart %s: %v", s.addrLocked(), err)
	}
}

// Running reports whether the server process is up (started and neither
// killed nor stopped since).
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.proc != nil && !s.proc.exited()
}

// infoField returns the value of field in an INFO reply, or "".
func infoField(info, field string) string {
	for line := range strings.SplitSeq(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), field+":"); ok {
			return v
		}
	}
	return ""
}
