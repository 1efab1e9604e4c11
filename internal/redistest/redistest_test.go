package redistest_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/internal/redistest"
)

func TestFreePort(t *testing.T) {
	t.Parallel()
	p := redistest.FreePort(t)
	assert.NotEqual(t, 6379, p)
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
	require.NoError(t, err)
	assert.NoError(t, l.Close())
}

func TestStandaloneSetGet(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := redistest.Start(t)
	assert.NotEqual(t, "127.0.0.1:6379", s.Addr())
	assert.Equal(t, "redis://"+s.Addr(), s.URL())
	assert.Nil(t, s.TLSConfig())

	rdb := s.Client(t)
	require.NoError(t, rdb.Set(ctx, "k", "v", 0).Err())
	got, err := rdb.Get(ctx, "k").Result()
	require.NoError(t, err)
	assert.Equal(t, "v", got)

	// The URL reaches the same server.
	opt, err := redis.ParseURL(s.URL())
	require.NoError(t, err)
	viaURL := redis.NewClient(opt)
	t.Cleanup(func() { _ = viaURL.Close() })
	got, err = viaURL.Get(ctx, "k").Result()
	require.NoError(t, err)
	assert.Equal(t, "v", got)
}

func TestKillRestartWithAOFKeepsAcknowledgedWrite(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := redistest.Start(t, redistest.WithAOF())
	addr := s.Addr()
	rdb := s.Client(t)
	require.NoError(t, rdb.Set(ctx, "acked", "yes", 0).Err())

	s.Kill(t)
	assert.False(t, s.Running())
	probe := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	t.Cleanup(func() { _ = probe.Close() })
	require.Error(t, probe.Ping(ctx).Err(), "server must be down after Kill")

	s.Restart(t)
	assert.True(t, s.Running())
	assert.Equal(t, addr, s.Addr(), "Restart keeps the port")
	got, err := rdb.Get(ctx, "acked").Result()
	require.NoError(t, err)
	assert.Equal(t, "yes", got)
}

func TestKillRestartWithoutAOFLosesData(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := redistest.Start(t)
	rdb := s.Client(t)
	require.NoError(t, rdb.Set(ctx, "volatile", "1", 0).Err())

	s.Kill(t)
	s.Restart(t)
	assert.ErrorIs(t, rdb.Get(ctx, "volatile").Err(), redis.Nil, "a fresh process has no data")

	// Stop is graceful and Restart works after it too.
	require.NoError(t, rdb.Set(ctx, "again", "1", 0).Err())
	s.Stop(t)
	assert.False(t, s.Running())
	s.Restart(t)
	assert.NoError(t, rdb.Ping(ctx).Err())
}

func TestTLS(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := redistest.Start(t, redistest.WithTLS())
	assert.Equal(t, "rediss://"+s.Addr(), s.URL())
	require.NotEmpty(t, s.CAFile())

	rdb := s.Client(t)
	require.NoError(t, rdb.Set(ctx, "k", "over tls", 0).Err())

	// The URL plus the generated CA reaches the server.
	opt, err := redis.ParseURL(s.URL())
	require.NoError(t, err)
	opt.TLSConfig.RootCAs = s.TLSConfig().RootCAs
	viaURL := redis.NewClient(opt)
	t.Cleanup(func() { _ = viaURL.Close() })
	got, err := viaURL.Get(ctx, "k").Result()
	require.NoError(t, err)
	assert.Equal(t, "over tls", got)

	// Plain TCP to the TLS port fails.
	plain := redis.NewClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1, DialTimeout: time.Second, ReadTimeout: time.Second})
	t.Cleanup(func() { _ = plain.Close() })
	assert.Error(t, plain.Ping(ctx).Err())

	// TLS without the generated CA fails verification.
	untrusted := redis.NewClient(&redis.Options{
		Addr: s.Addr(), MaxRetries: -1,
		TLSConfig: &tls.Config{ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12},
	})
	t.Cleanup(func() { _ = untrusted.Close() })
	err = untrusted.Ping(ctx).Err()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "certificate")
}

func TestPassword(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := redistest.Start(t, redistest.WithPassword("alice", "s3cret"))
	assert.Equal(t, "redis://alice:s3cret@"+s.Addr(), s.URL())

	require.NoError(t, s.Client(t).Set(ctx, "k", "v", 0).Err())

	opt, err := redis.ParseURL(s.URL())
	require.NoError(t, err)
	viaURL := redis.NewClient(opt)
	t.Cleanup(func() { _ = viaURL.Close() })
	assert.NoError(t, viaURL.Ping(ctx).Err())

	for name, o := range map[string]*redis.Options{
		"wrong password": {Addr: s.Addr(), Username: "alice", Password: "nope"},
		"wrong user":     {Addr: s.Addr(), Username: "bob", Password: "s3cret"},
		"no auth":        {Addr: s.Addr()},
		"default user":   {Addr: s.Addr(), Password: "s3cret"},
	} {
		t.Run(name, func(t *testing.T) {
			o.MaxRetries = -1
			c := redis.NewClient(o)
			t.Cleanup(func() { _ = c.Close() })
			err := c.Get(ctx, "k").Err()
			require.Error(t, err)
			assert.NotErrorIs(t, err, redis.Nil)
		})
	}
}

func TestCluster(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	start := time.Now()
	c := redistest.StartCluster(t)
	t.Logf("3-master cluster ready in %s", time.Since(start))

	masters := c.Masters()
	require.Len(t, masters, 3)
	require.Len(t, c.Addrs(), 3)
	assert.Equal(t, fmt.Sprintf("redis://%s?addr=%s&addr=%s", c.Addrs()[0], c.Addrs()[1], c.Addrs()[2]), c.URL())

	rdb := c.Client(t)
	_, ok := rdb.(*redis.ClusterClient)
	assert.True(t, ok, "Client is a *redis.ClusterClient")

	// One key per master: each master holds its key itself (no MOVED).
	keys := keysPerMaster(t, masters)
	for i, k := range keys {
		require.NoError(t, rdb.Set(ctx, k, i, 0).Err())
	}
	for i, k := range keys {
		got, err := masters[i].Client(t).Get(ctx, k).Int()
		require.NoError(t, err, "key %q on master %d", k, i)
		assert.Equal(t, i, got)
	}

	// A multi-key script works on hash-tagged keys.
	script := redis.NewScript(`
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], ARGV[1])
return redis.call('MGET', KEYS[1], KEYS[2])`)
	got, err := script.Run(ctx, rdb, []string{"{allot:t}:a", "{allot:t}:b"}, "x").StringSlice()
	require.NoError(t, err)
	assert.Equal(t, []string{"x", "x"}, got)

	// The URL reaches the cluster too.
	opt, err := redis.ParseClusterURL(c.URL())
	require.NoError(t, err)
	viaURL := redis.NewClusterClient(opt)
	t.Cleanup(func() { _ = viaURL.Close() })
	for i, k := range keys {
		n, err := viaURL.Get(ctx, k).Int()
		require.NoError(t, err)
		assert.Equal(t, i, n)
	}
}

// keysPerMaster finds one key served by each master, in Masters() order.
func keysPerMaster(t *testing.T, masters []*redistest.Server) []string {
	t.Helper()
	ctx := context.Background()
	keys := make([]string, len(masters))
	found := 0
	for n := 0; found < len(masters) && n < 1000; n++ {
		k := "key" + strconv.Itoa(n)
		for i, m := range masters {
			if keys[i] != "" {
				continue
			}
			// A master answers MOVED for keys it does not serve.
			err := m.Client(t).Exists(ctx, k).Err()
			if err == nil {
				keys[i] = k
				found++
				break
			}
			require.True(t, strings.HasPrefix(err.Error(), "MOVED"), "unexpected error %v", err)
		}
	}
	require.Equal(t, len(masters), found)
	return keys
}

func TestClusterKillMasterPromotesReplica(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	start := time.Now()
	c := redistest.StartCluster(t, redistest.WithReplicas(1))
	t.Logf("3+3 cluster ready in %s", time.Since(start))
	require.Len(t, c.Replicas(), 3)

	rdb := c.Client(t)
	old := c.Masters()[0]
	key := keysPerMaster(t, c.Masters())[0]
	require.NoError(t, rdb.Set(ctx, key, "kept", 0).Err())
	// Replication is asynchronous: wait until the replica has the write.
	acked, err := old.Client(t).Do(ctx, "WAIT", 1, 5000).Int()
	require.NoError(t, err)
	require.Equal(t, 1, acked)

	start = time.Now()
	promoted := c.KillMaster(t, 0)
	t.Logf("failover in %s", time.Since(start))
	assert.NotEqual(t, old.Addr(), promoted.Addr())
	assert.Equal(t, promoted, c.Masters()[0])
	assert.Contains(t, c.Replicas(), old)

	// go-redis refreshes its slot map lazily (every 10 s or on MOVED); a
	// dead master answers nothing, so reload it explicitly.
	rdb.(*redis.ClusterClient).ReloadState(ctx)
	got, err := rdb.Get(ctx, key).Result()
	require.NoError(t, err)
	assert.Equal(t, "kept", got)

	// The old master comes back as a replica of the promoted one.
	old.Restart(t)
	c.WaitOK(t)
	role, err := old.Client(t).Do(ctx, "ROLE").Slice()
	require.NoError(t, err)
	assert.Equal(t, "slave", role[0])
}

func TestSentinel(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	sn := redistest.StartSentinel(t)
	assert.Equal(t, "redis://"+sn.Addr()+"?master_name=mymaster", sn.URL())

	rdb := sn.Client(t)
	require.NoError(t, rdb.Set(ctx, "k", "via sentinel", 0).Err())
	got, err := sn.Master().Client(t).Get(ctx, "k").Result()
	require.NoError(t, err)
	assert.Equal(t, "via sentinel", got)

	opt, err := redis.ParseFailoverURL(sn.URL())
	require.NoError(t, err)
	viaURL := redis.NewFailoverClient(opt)
	t.Cleanup(func() { _ = viaURL.Close() })
	got, err = viaURL.Get(ctx, "k").Result()
	require.NoError(t, err)
	assert.Equal(t, "via sentinel", got)
}
