package perf

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestPerfLatencies(t *testing.T) {
	assert.Equal(t, Percentiles{}, latencies(nil))
	assert.Equal(t, Percentiles{P50: 7, P99: 7}, latencies([]float64{7}))
	s := make([]float64, 100)
	for i := range s {
		s[i] = float64(100 - i) // 100..1
	}
	assert.Equal(t, Percentiles{P50: 50, P99: 99}, latencies(s))
}

func TestBeatWindow(t *testing.T) {
	for _, c := range []struct{ d, iv, want time.Duration }{
		{5 * time.Second, 2 * time.Second, 6 * time.Second},
		{6 * time.Second, 2 * time.Second, 6 * time.Second},
		{time.Second, 2 * time.Second, 2 * time.Second},
		{20 * time.Second, 2 * time.Second, 20 * time.Second},
	} {
		assert.Equal(t, c.want, beatWindow(c.d, c.iv), "%v / %v", c.d, c.iv)
	}
}

func TestConfigValidate(t *testing.T) {
	ok := DefaultConfig()
	ok.Namespace = NewNamespace("perf-")
	assert.NoError(t, ok.Validate())
	for name, mut := range map[string]func(*Config){
		"nodes":     func(c *Config) { c.Nodes = 0 },
		"groups":    func(c *Config) { c.Groups = 0 },
		"duration":  func(c *Config) { c.Duration = 0 },
		"mode":      func(c *Config) { c.Mode = "fast" },
		"ttl":       func(c *Config) { c.TTL = c.Interval },
		"namespace": func(c *Config) { c.Namespace = "bad ns" },
		"kill":      func(c *Config) { c.Kill = 101 },
	} {
		c := ok
		mut(&c)
		assert.ErrorIs(t, c.Validate(), ErrInvalidConfig, name)
	}
}
