package client

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/heartbeat"
)

func TestHeartbeatFromEnv(t *testing.T) {
	tests := []struct {
		name     string
		iv, ttl  string
		want     heartbeat.Config
		wantSet  bool
		wantFail bool
	}{
		{name: "none", want: heartbeat.DefaultConfig()},
		{name: "both", iv: "200ms", ttl: "900ms", want: heartbeat.Config{Interval: 200 * time.Millisecond, TTL: 900 * time.Millisecond}, wantSet: true},
		{name: "interval only", iv: "100ms", want: heartbeat.Config{Interval: 100 * time.Millisecond, TTL: 300 * time.Millisecond}, wantSet: true},
		{name: "ttl only", ttl: "3s", want: heartbeat.Config{Interval: time.Second, TTL: 3 * time.Second}, wantSet: true},
		{name: "bad", iv: "fast", wantFail: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := map[string]string{EnvHeartbeatInterval: tt.iv, EnvHeartbeatTTL: tt.ttl}
			got, set, err := heartbeatFromEnv(func(k string) string { return env[k] })
			if tt.wantFail {
				require.ErrorIs(t, err, ErrInvalidOption)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.wantSet, set)
			assert.Equal(t, tt.want, got)
		})
	}
}

// TestEnvOptions: the variables a program that opens Redis itself reads
// through EnvOptions make the same client as FromEnv.
func TestEnvOptions(t *testing.T) {
	env := map[string]string{EnvNamespace: "pool-b", EnvNodeID: "proxy-7", EnvHeartbeatInterval: "fast"}
	_, err := EnvOptions(func(k string) string { return env[k] })
	require.ErrorIs(t, err, ErrInvalidOption, "a bad heartbeat interval is refused")

	env[EnvHeartbeatInterval] = "100ms"
	opts, err := EnvOptions(func(k string) string { return env[k] })
	require.NoError(t, err)
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	assert.Equal(t, "pool-b", o.namespace)
	assert.Equal(t, "proxy-7", o.nodeID)
	assert.Equal(t, 100*time.Millisecond, o.heartbeat.Interval)
}
