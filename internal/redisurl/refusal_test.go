package redisurl_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/internal/redistest"
	"github.com/allot-io/allot/internal/redisurl"
)

// TestRefusalProtectedMode: a test redis-server runs in protected mode (no
// password; protected-mode is on by default), so a client that is not on
// 127.0.0.1 — here one dialling from 127.0.0.2, as a pod would from its own
// address — is refused with DENIED, and go-redis reports only the broken
// connection. Refusal reads the server's own line; a client the server
// serves gets nil.
func TestRefusalProtectedMode(t *testing.T) {
	rs := redistest.Start(t)
	ctx := context.Background()
	fromElsewhere := func(ctx context.Context, network, addr string) (net.Conn, error) {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}
		return d.DialContext(ctx, network, addr)
	}
	remote := redis.NewClient(&redis.Options{Addr: rs.Addr(), Dialer: fromElsewhere, MaxRetries: -1})
	t.Cleanup(func() { _ = remote.Close() })
	require.Error(t, remote.Ping(ctx).Err())

	err := redisurl.Refusal(ctx, remote, time.Second)
	require.ErrorIs(t, err, redisurl.ErrRefused)
	assert.Contains(t, err.Error(), "DENIED Redis is running in protected mode")

	local, err := redisurl.Open(rs.URL())
	require.NoError(t, err)
	t.Cleanup(func() { _ = local.Close() })
	require.NoError(t, local.Ping(ctx).Err())
	assert.NoError(t, redisurl.Refusal(ctx, local, 100*time.Millisecond), "a server that waits for a command refuses nothing")

	rs.Stop(t)
	assert.NoError(t, redisurl.Refusal(ctx, local, time.Second), "no server: nothing to explain")
}
