package client

import (
	"fmt"
	"os"

	"github.com/allot-io/allot/internal/redisurl"
)

// Environment variables read by FromEnv.
const (
	EnvRedisURL  = "ALLOT_REDIS_URL" // Redis URL, as for the allot CLI; default redis://127.0.0.1:6379
	EnvNamespace = "ALLOT_NAMESPACE" // pool; default "default"
	EnvNodeID    = "ALLOT_NODE_ID"   // default hostname + "-" + 6 random hex digits
	EnvNodeIP    = "ALLOT_NODE_IP"   // default the first non-loopback IPv4
	EnvGroup     = "ALLOT_GROUP"     // preferred group; default none
	EnvCacheDir  = "ALLOT_CACHE_DIR" // assignment cache directory; default none
)

// FromEnv builds a Client from the ALLOT_* environment (see the Env
// constants); opts are applied after it and win. The Client owns the Redis
// client it opens and closes it in Close.
func FromEnv(opts ...Option) (*Client, error) {
	rdb, err := redisurl.Open(os.Getenv(EnvRedisURL))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrInvalidOption, EnvRedisURL, err)
	}
	var env []Option
	if v := os.Getenv(EnvNamespace); v != "" {
		env = append(env, WithNamespace(v))
	}
	if v := os.Getenv(EnvNodeID); v != "" {
		env = append(env, WithNodeID(v))
	}
	if v, ok := os.LookupEnv(EnvNodeIP); ok && v != "" {
		env = append(env, WithIP(v))
	}
	if v := os.Getenv(EnvGroup); v != "" {
		env = append(env, WithPreferredGroup(v))
	}
	if v := os.Getenv(EnvCacheDir); v != "" {
		env = append(env, WithCacheDir(v))
	}
	c, err := New(rdb, append(env, opts...)...)
	if err != nil {
		_ = rdb.Close()
		return nil, err
	}
	c.ownsRDB = true
	return c, nil
}
