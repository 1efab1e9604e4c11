package heartbeat

import (
	"fmt"
	"time"
)

// Config sets how often nodes beat and how long a silent node stays live.
type Config struct {
	// Interval is the time between two beats of a node.
	// Must be > 0. Default: 2 s.
	Interval time.Duration

	// TTL is how long after its last beat (measured on the Redis server's
	// clock) a node still counts as live; after that it is reaped. Must be at
	// least 3 × Interval, so a node survives two lost beats.
	// Default: 6 s.
	TTL time.Duration
}

// minTTLBeats is how many intervals the TTL must cover at least.
const minTTLBeats = 3

// DefaultConfig returns the default Config: Interval 2 s, TTL 6 s.
func DefaultConfig() Config {
	return Config{Interval: 2 * time.Second, TTL: 6 * time.Second}
}

// Validate reports whether c can work: Interval > 0 and TTL >= 3 × Interval.
// The error wraps ErrInvalidConfig.
func (c Config) Validate() error {
	if c.Interval <= 0 {
		return fmt.Errorf("%w: interval %v must be > 0 (ttl %v)", ErrInvalidConfig, c.Interval, c.TTL)
	}
	if c.TTL < minTTLBeats*c.Interval {
		return fmt.Errorf("%w: ttl %v must be >= 3 × interval %v (= %v)",
			ErrInvalidConfig, c.TTL, c.Interval, minTTLBeats*c.Interval)
	}
	return nil
}
