package redisurl

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultURL is used when the URL is empty.
const DefaultURL = "redis://127.0.0.1:6379"

// masked replaces every password shown by Mask and in errors.
const masked = "xxxxx"

// Query parameters this package consumes before go-redis sees the URL, and
// the ones that select the topology.
const (
	paramCAFile     = "ca_file"
	paramMasterName = "master_name"
	paramAddr       = "addr"
)

// Option adjusts the client options Open builds from the URL.
type Option func(*settings)

type settings struct {
	tls      *tls.Config
	poolSize int
}

// clusterStateReload is how stale a Cluster client's slot map may get.
const clusterStateReload = 5 * time.Second

// WithTLSConfig makes the client use cfg (cloned) for TLS, overriding what
// the URL says (rediss:// and ca_file); it turns TLS on even for redis://.
// Default: TLS only for rediss://, trusting the system roots (+ ca_file).
func WithTLSConfig(cfg *tls.Config) Option {
	return func(s *settings) { s.tls = cfg }
}

// WithPoolSize sets the connection pool size (per node on Cluster),
// overriding pool_size= in the URL. n <= 0 keeps go-redis's default
// (10 × GOMAXPROCS).
func WithPoolSize(n int) Option {
	return func(s *settings) { s.poolSize = n }
}

// Kind is the topology a URL selects.
type Kind int

const (
	// Standalone is one server (redis.Client).
	Standalone Kind = iota
	// Cluster is Redis Cluster (redis.ClusterClient), selected by addr=.
	Cluster
	// Sentinel is a master found through Sentinel (redis.NewFailoverClient),
	// selected by master_name=.
	Sentinel
)

// String names the kind.
func (k Kind) String() string {
	switch k {
	case Cluster:
		return "cluster"
	case Sentinel:
		return "sentinel"
	default:
		return "standalone"
	}
}

// parsed holds the go-redis options of exactly one kind.
type parsed struct {
	kind     Kind
	simple   *redis.Options
	cluster  *redis.ClusterOptions
	failover *redis.FailoverOptions
}

// Open parses rawURL ("" = DefaultURL; a bare "host:port" means
// redis://host:port) and returns a client for it: a
// *redis.Client, a *redis.ClusterClient (addr=), or a failover
// *redis.Client (master_name=). It does no I/O: a server that is down shows
// up on the first command. Errors are *ParseError with the URL masked.
func Open(rawURL string, opts ...Option) (redis.UniversalClient, error) {
	p, err := parse(rawURL, opts...)
	if err != nil {
		return nil, err
	}
	switch p.kind {
	case Cluster:
		return redis.NewClusterClient(p.cluster), nil
	case Sentinel:
		return redis.NewFailoverClient(p.failover), nil
	default:
		return redis.NewClient(p.simple), nil
	}
}

// KindOf reports which topology rawURL selects, without parsing it fully.
func KindOf(rawURL string) Kind {
	red, _ := redact(strings.TrimSpace(rawURL))
	u, err := url.Parse(red)
	if err != nil {
		return Standalone
	}
	return kindOf(u.Query())
}

func kindOf(q url.Values) Kind {
	switch {
	case q.Has(paramMasterName):
		return Sentinel
	case q.Has(paramAddr):
		return Cluster
	default:
		return Standalone
	}
}

// parse turns rawURL into go-redis options; tested without a server.
func parse(rawURL string, opts ...Option) (*parsed, error) {
	var s settings
	for _, o := range opts {
		o(&s)
	}
	rawURL = strings.TrimSpace(rawURL)
	switch {
	case rawURL == "":
		rawURL = DefaultURL
	case !strings.Contains(rawURL, "://"):
		// A bare host:port, as people type it.
		rawURL = "redis://" + rawURL
	}
	// Only the redacted URL is parsed: no error can quote the password.
	red, sec := redact(rawURL)
	fail := func(err error) (*parsed, error) {
		return nil, &ParseError{URL: Mask(red), Err: scrub(err, sec)}
	}

	u, err := url.Parse(red)
	if err != nil {
		// *url.Error repeats the URL: keep only the cause.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fail(err)
	}
	if err := sec.restore(u); err != nil {
		return fail(err)
	}
	q := u.Query()
	caFile := q.Get(paramCAFile)
	if q.Has(paramCAFile) {
		q.Del(paramCAFile)
		u.RawQuery = q.Encode()
	}
	if caFile != "" && u.Scheme != "rediss" && s.tls == nil {
		return fail(ErrCAFileWithoutTLS)
	}
	clean := u.String()

	p := &parsed{kind: kindOf(q)}
	var tlsCfg **tls.Config
	var poolSize *int
	switch p.kind {
	case Sentinel:
		p.failover, err = redis.ParseFailoverURL(clean)
		if err == nil {
			tlsCfg, poolSize = &p.failover.TLSConfig, &p.failover.PoolSize
		}
	case Cluster:
		p.cluster, err = redis.ParseClusterURL(clean)
		if err == nil {
			tlsCfg, poolSize = &p.cluster.TLSConfig, &p.cluster.PoolSize
			// go-redis re-reads the slot map only on MOVED/ASK or every 60 s:
			// after a failover, commands would go to the dead master for up to
			// a minute. Bound that for long-running processes (serve, nodes).
			if p.cluster.ClusterStateReloadInterval == 0 {
				p.cluster.ClusterStateReloadInterval = clusterStateReload
			}
		}
	default:
		p.simple, err = redis.ParseURL(clean)
		if err == nil {
			tlsCfg, poolSize = &p.simple.TLSConfig, &p.simple.PoolSize
		}
	}
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fail(err)
	}

	switch {
	case s.tls != nil:
		*tlsCfg = s.tls.Clone()
	case *tlsCfg != nil:
		if (*tlsCfg).MinVersion == 0 {
			(*tlsCfg).MinVersion = tls.VersionTLS12
		}
		if caFile != "" {
			pool, err := loadCA(caFile)
			if err != nil {
				return fail(err)
			}
			(*tlsCfg).RootCAs = pool
		}
	}
	if s.poolSize > 0 {
		*poolSize = s.poolSize
	}
	if *tlsCfg != nil {
		p.boundTLSDial()
	}
	return p, nil
}

// defaultDialTimeout is go-redis's dial timeout, used before the client
// has filled in its default.
const defaultDialTimeout = 5 * time.Second

// boundTLSDial makes a TLS dial fail within the dial timeout. go-redis's
// own TLS dial ignores the caller's context during the handshake and is
// retried 5 times, so a rediss:// URL that names a plain port (whose
// server never answers the ClientHello) hung for 25 s, whatever the
// caller's deadline. Here the handshake is bounded by the dial timeout and
// by ctx, its failure says what it was (ErrTLSHandshake), and the dial is
// tried once: the callers retry on their own schedule.
func (p *parsed) boundTLSDial() {
	switch p.kind {
	case Standalone:
		o := p.simple
		if o.Dialer == nil {
			o.Dialer = tlsDialer(func() (*tls.Config, time.Duration) { return o.TLSConfig, o.DialTimeout })
		}
		if o.DialerRetries == 0 {
			o.DialerRetries = 1
		}
	case Cluster:
		o := p.cluster
		if o.Dialer == nil {
			o.Dialer = tlsDialer(func() (*tls.Config, time.Duration) { return o.TLSConfig, o.DialTimeout })
		}
		if o.DialerRetries == 0 {
			o.DialerRetries = 1
		}
	case Sentinel:
		if p.failover.DialerRetries == 0 {
			p.failover.DialerRetries = 1
		}
	}
}

// tlsDialer dials TCP and completes the TLS handshake, both within the
// dial timeout and ctx. cfg is read at dial time, once the client has
// settled its options.
func tlsDialer(cfg func() (*tls.Config, time.Duration)) func(context.Context, string, string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		tc, timeout := cfg()
		if timeout <= 0 {
			timeout = defaultDialTimeout
		}
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		d := &tls.Dialer{NetDialer: &net.Dialer{KeepAlive: 5 * time.Minute}, Config: tc}
		c, err := d.DialContext(ctx, network, addr)
		if err == nil {
			return c, nil
		}
		var oe *net.OpError
		if errors.As(err, &oe) && oe.Op == "dial" {
			return nil, err // no TCP connection: the usual dial error
		}
		return nil, fmt.Errorf("%w: %s: %w", ErrTLSHandshake, addr, err)
	}
}

// loadCA reads a PEM bundle into a new pool.
func loadCA(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCAFile, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%w: no PEM certificate in %s", ErrCAFile, path)
	}
	return pool, nil
}

// Mask returns rawURL with every password (user info, and the password= /
// sentinel_password= query parameters) replaced by "xxxxx", for display and
// logs. A URL that does not parse is masked on a best-effort basis.
func Mask(rawURL string) string {
	rawURL, _ = redact(rawURL)
	u, err := url.Parse(rawURL)
	if err != nil {
		return maskRaw(rawURL)
	}
	if u.User != nil {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), masked)
		}
	}
	if u.RawQuery != "" {
		q := u.Query()
		changed := false
		for _, k := range []string{"password", "sentinel_password"} {
			if q.Has(k) {
				q.Set(k, masked)
				changed = true
			}
		}
		if changed {
			u.RawQuery = q.Encode()
		}
	}
	return u.String()
}

// maskRaw masks the user info of a URL that url.Parse rejects: everything
// after the first ':' of the part between "://" and the last '@' before the
// path, and anything that looks like a password= parameter.
func maskRaw(raw string) string {
	rest, scheme := raw, ""
	if i := strings.Index(raw, "://"); i >= 0 {
		scheme, rest = raw[:i+3], raw[i+3:]
	}
	auth, tail := rest, ""
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		// A raw '/' may sit inside a password: the user info ends at the
		// last '@' before the query.
		head := rest
		if q := strings.IndexAny(rest, "?#"); q >= 0 {
			head = rest[:q]
		}
		if at := strings.LastIndex(head, "@"); at > i {
			i = at + strings.IndexAny(rest[at:]+"/", "/?#")
		}
		auth, tail = rest[:i], rest[i:]
	}
	if at := strings.LastIndex(auth, "@"); at >= 0 {
		if c := strings.Index(auth[:at], ":"); c >= 0 {
			auth = auth[:c+1] + masked + auth[at:]
		}
	}
	if i := strings.Index(tail, "?"); i >= 0 {
		parts := strings.Split(tail[i+1:], "&")
		for j, kv := range parts {
			k, _, ok := strings.Cut(kv, "=")
			if ok && (k == "password" || k == "sentinel_password") {
				parts[j] = k + "=" + masked
			}
		}
		tail = tail[:i+1] + strings.Join(parts, "&")
	}
	return scheme + auth + tail
}

// secrets are the passwords redact took out of a URL, as written (still
// percent-encoded, if they were).
type secrets struct {
	user    string // the user info's password
	hasUser bool
	query   map[string][]string // password= and sentinel_password= values
}

// queryPassword finds the password= and sentinel_password= query values.
var queryPassword = regexp.MustCompile(`([?&](?:sentinel_)?password)=([^&]*)`)

// redact returns raw with every password replaced by "xxxxx", and the
// passwords. The user info runs from "://" (or the start) to the last '@'
// that is not inside a password= or sentinel_password= query value, and
// such a value runs to the next '&': so a password may hold '#', '?', '/',
// '@' or '%' written raw. url.Parse would take such a password for the
// path, query or fragment, and its errors — or go-redis's about the misread
// URL — would echo part of it. Everything this package parses, shows or
// reports is the redacted text; the passwords are put back only into the
// parsed URL.
func redact(raw string) (string, secrets) {
	var sec secrets
	scheme, rest := "", raw
	if i := strings.Index(raw, "://"); i >= 0 {
		scheme, rest = raw[:i+3], raw[i+3:]
	}
	for at := strings.LastIndex(rest, "@"); at >= 0; at = strings.LastIndex(rest[:at], "@") {
		if inQueryPassword(rest[:at]) {
			continue
		}
		if user, pass, ok := strings.Cut(rest[:at], ":"); ok {
			sec.user, sec.hasUser = pass, true
			scheme += user + ":" + masked
			rest = rest[at:]
		}
		break
	}
	rest = queryPassword.ReplaceAllStringFunc(rest, func(m string) string {
		k, v, _ := strings.Cut(m, "=")
		if sec.query == nil {
			sec.query = map[string][]string{}
		}
		sec.query[k[1:]] = append(sec.query[k[1:]], v)
		return k + "=" + masked
	})
	return scheme + rest, sec
}

// inQueryPassword reports whether the end of before lies inside the value
// of a password= or sentinel_password= query parameter.
func inQueryPassword(before string) bool {
	ms := queryPassword.FindAllStringIndex(before, -1)
	return len(ms) > 0 && ms[len(ms)-1][1] == len(before)
}

// restore puts the passwords of sec, decoded, into u (parsed from the
// redacted text).
func (sec secrets) restore(u *url.URL) error {
	if sec.hasUser {
		p, err := url.PathUnescape(sec.user)
		if err != nil {
			return ErrPasswordEscape
		}
		u.User = url.UserPassword(u.User.Username(), p)
	}
	if len(sec.query) > 0 {
		q := u.Query()
		for k, vs := range sec.query {
			q.Del(k)
			for _, v := range vs {
				p, err := url.QueryUnescape(v)
				if err != nil {
					return ErrPasswordEscape
				}
				q.Add(k, p)
			}
		}
		u.RawQuery = q.Encode()
	}
	return nil
}

// all lists every password of sec, as written and decoded.
func (sec secrets) all() []string {
	var out []string
	add := func(p string, unescape func(string) (string, error)) {
		out = append(out, p)
		if d, err := unescape(p); err == nil && d != p {
			out = append(out, d)
		}
	}
	if sec.hasUser {
		add(sec.user, url.PathUnescape)
	}
	for _, vs := range sec.query {
		for _, v := range vs {
			add(v, url.QueryUnescape)
		}
	}
	return out
}

// scrubMin is the shortest password scrub removes from an error: a shorter
// one would mangle the message at every letter it shares with it.
const scrubMin = 4

// scrub keeps the passwords of sec out of an error built from the parsed
// URL (go-redis's parse errors): defence in depth, since none of them is
// known to quote a password.
func scrub(err error, sec secrets) error {
	if err == nil {
		return err
	}
	msg := err.Error()
	changed := false
	for _, p := range sec.all() {
		for _, form := range []string{p, url.PathEscape(p), url.QueryEscape(p)} {
			if len(form) >= scrubMin && strings.Contains(msg, form) {
				msg, changed = strings.ReplaceAll(msg, form, masked), true
			}
		}
	}
	if !changed {
		return err
	}
	return errors.New(msg)
}
