package proxy

import (
	"log/slog"
	"math/rand/v2"
	"net/http"
	"time"
)

// Defaults of the options.
const (
	// DefaultMaxBody bounds a request body (WithMaxBody): 10 MiB.
	DefaultMaxBody int64 = 10 << 20
	// DefaultUpstreamTimeout bounds the wait for the upstream's answer
	// (WithUpstreamTimeout): 10 minutes, the OpenAI SDKs' own default.
	DefaultUpstreamTimeout = 10 * time.Minute
)

// Option configures a Proxy built by New.
type Option func(*options)

type options struct {
	authHeaders     []string
	authQuery       []string
	openAI          bool
	maxBody         int64
	upstreamTimeout time.Duration
	clientToken     string
	transport       http.RoundTripper
	log             *slog.Logger
	// random returns a float in [0, 1): the jitter of refusals' waits.
	random func() float64
}

func defaultOptions() options {
	return options{
		maxBody:         DefaultMaxBody,
		upstreamTimeout: DefaultUpstreamTimeout,
		log:             slog.New(slog.DiscardHandler),
		random:          rand.Float64,
	}
}

// WithAuthHeader adds a header the proxy sets on every upstream call,
// written "Name: value", where {key} in the value is the config value key
// of the lease's group: "Authorization: Bearer {api_key}". {{ and }} are
// literal braces. The caller's own header of that name is never
// forwarded. Repeatable. Default: none.
func WithAuthHeader(spec string) Option {
	return func(o *options) { o.authHeaders = append(o.authHeaders, spec) }
}

// WithAuthQuery adds a query parameter the proxy sets on every upstream
// call, written "name=value" with {key} templates as WithAuthHeader:
// "key={api_key}". The caller's own parameter of that name is dropped.
// Repeatable. Default: none.
func WithAuthQuery(spec string) Option {
	return func(o *options) { o.authQuery = append(o.authQuery, spec) }
}

// WithOpenAI turns on token accounting for OpenAI-compatible APIs: an
// estimate reserved per call and settled from the answer's usage, the
// usage chunk asked for on streams (and dropped again when the caller did
// not ask for it), OpenAI-shaped refusals and x-ratelimit-* headers.
// Default: off (one request per call, no tokens).
func WithOpenAI() Option {
	return func(o *options) { o.openAI = true }
}

// WithMaxBody bounds a request body in bytes; a larger one gets 413.
// Bodies are buffered so that a call can be sent again on another key.
// Default: DefaultMaxBody.
func WithMaxBody(n int64) Option {
	return func(o *options) { o.maxBody = n }
}

// WithUpstreamTimeout bounds the wait for the upstream's answer (its
// status and headers; a stream then runs as long as the upstream sends).
// Past it the caller gets 504. Default: DefaultUpstreamTimeout.
func WithUpstreamTimeout(d time.Duration) Option {
	return func(o *options) { o.upstreamTimeout = d }
}

// WithClientToken makes the proxy answer only callers that send
// "Authorization: Bearer token" (with the OpenAI SDKs: the apiKey);
// others get 401. Default: none (every caller is served).
func WithClientToken(token string) Option {
	return func(o *options) { o.clientToken = token }
}

// WithTransport sets what sends the upstream calls. Default: a clone of
// http.DefaultTransport keeping up to 256 idle connections to the
// upstream. Redirects are never followed.
func WithTransport(rt http.RoundTripper) Option {
	return func(o *options) { o.transport = rt }
}

// WithLogger sets the logger. Keys and tokens are never logged. Default:
// discard.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) {
		if l != nil {
			o.log = l
		}
	}
}

// withRandom replaces the jitter's source (tests).
func withRandom(f func() float64) Option {
	return func(o *options) { o.random = f }
}
