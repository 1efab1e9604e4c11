package client

import (
	"fmt"
	"os"
	"time"

	"github.com/allot-io/allot/heartbeat"

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
	// EnvHeartbeatInterval and EnvHeartbeatTTL set the beat interval and
	// TTL as Go durations ("200ms"); when only one is set the other keeps
	// the 3:1 ratio of the defaults. default: heartbeat.DefaultConfig().
	EnvHeartbeatInterval = "ALLOT_HEARTBEAT_INTERVAL"
	EnvHeartbeatTTL      = "ALLOT_HEARTBEAT_TTL"
)

// FromEnv builds a Client from the ALLOT_* environment (see the Env
// constants); opts are applied after it and win. The Client owns the Redis
// client it opens and closes it in Close.
func FromEnv(opts ...Option) (*Client, error) {
	rdb, err := redisurl.Open(os.Getenv(EnvRedisURL))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrInvalidOption, EnvRedisURL, err)
	}
	env, err := EnvOptions(os.Getenv)
	if err != nil {
		_ = rdb.Close()
		return nil, err
	}
	c, err := New(rdb, append(env, opts...)...)
	if err != nil {
		_ = rdb.Close()
		return nil, err
	}
	c.ownsRDB = true
	return c, nil
}

// EnvOptions is what FromEnv takes from the environment, but the Redis
// URL: the options of the Env variables that getenv gives a value
// (namespace, node ID, IP, preferred group, cache directory, secret keys, heartbeat),
// for a program that opens Redis itself (allot proxy, with the CLI's
// --redis). Errors wrap ErrInvalidOption.
func EnvOptions(getenv func(string) string) ([]Option, error) {
	var env []Option
	if v := getenv(EnvNamespace); v != "" {
		env = append(env, WithNamespace(v))
	}
	if v := getenv(EnvNodeID); v != "" {
		env = append(env, WithNodeID(v))
	}
	if v := getenv(EnvNodeIP); v != "" {
		env = append(env, WithIP(v))
	}
	if v := getenv(EnvGroup); v != "" {
		env = append(env, WithPreferredGroup(v))
	}
	if v := getenv(EnvCacheDir); v != "" {
		env = append(env, WithCacheDir(v))
	}
	if v := getenv(EnvSecretKeys); v != "" {
		env = append(env, WithSecretKeys(v))
	}
	if hb, set, err := heartbeatFromEnv(getenv); err != nil {
		return nil, err
	} else if set {
		env = append(env, WithHeartbeat(hb))
	}
	return env, nil
}

// heartbeatFromEnv reads EnvHeartbeatInterval and EnvHeartbeatTTL; set is
// false when neither is given. Validation is left to New.
func heartbeatFromEnv(getenv func(string) string) (cfg heartbeat.Config, set bool, err error) {
	cfg = heartbeat.DefaultConfig()
	parse := func(name string) (time.Duration, bool, error) {
		v := getenv(name)
		if v == "" {
			return 0, false, nil
		}
		d, err := time.ParseDuration(v)
		if err != nil {
			return 0, false, fmt.Errorf("%w: %s: %w", ErrInvalidOption, name, err)
		}
		return d, true, nil
	}
	iv, ivSet, err := parse(EnvHeartbeatInterval)
	if err != nil {
		return cfg, false, err
	}
	ttl, ttlSet, err := parse(EnvHeartbeatTTL)
	if err != nil {
		return cfg, false, err
	}
	switch {
	case ivSet && ttlSet:
		cfg = heartbeat.Config{Interval: iv, TTL: ttl}
	case ivSet:
		cfg = heartbeat.Config{Interval: iv, TTL: 3 * iv}
	case ttlSet:
		cfg = heartbeat.Config{Interval: ttl / 3, TTL: ttl}
	}
	return cfg, ivSet || ttlSet, nil
}
