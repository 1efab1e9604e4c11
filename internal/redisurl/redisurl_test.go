package redisurl

import (
	"context"
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/internal/redistest"
)

func TestParseStandalone(t *testing.T) {
	p, err := parse("redis://user:secret@db.example:6380/2?dial_timeout=3&pool_size=7")
	require.NoError(t, err)
	require.Equal(t, Standalone, p.kind)
	o := p.simple
	assert.Equal(t, "db.example:6380", o.Addr)
	assert.Equal(t, "user", o.Username)
	assert.Equal(t, "secret", o.Password)
	assert.Equal(t, 2, o.DB)
	assert.Equal(t, 3*time.Second, o.DialTimeout)
	assert.Equal(t, 7, o.PoolSize)
	assert.Nil(t, o.TLSConfig)
}

func TestParseDefault(t *testing.T) {
	for _, raw := range []string{"", "  "} {
		p, err := parse(raw)
		require.NoError(t, err)
		require.Equal(t, Standalone, p.kind)
		assert.Equal(t, "127.0.0.1:6379", p.simple.Addr)
	}
}

func TestParseBareHostPort(t *testing.T) {
	p, err := parse("cache.internal:6380")
	require.NoError(t, err)
	require.Equal(t, Standalone, p.kind)
	assert.Equal(t, "cache.internal:6380", p.simple.Addr)
}

func TestParseCluster(t *testing.T) {
	p, err := parse("rediss://:pw@10.0.0.1:7000?addr=10.0.0.2:7000&addr=10.0.0.3:7000&read_timeout=2s")
	require.NoError(t, err)
	require.Equal(t, Cluster, p.kind)
	o := p.cluster
	assert.Equal(t, []string{"10.0.0.1:7000", "10.0.0.2:7000", "10.0.0.3:7000"}, o.Addrs)
	assert.Equal(t, "pw", o.Password)
	assert.Equal(t, 2*time.Second, o.ReadTimeout)
	require.NotNil(t, o.TLSConfig)
	assert.Equal(t, "10.0.0.1", o.TLSConfig.ServerName)
	assert.Equal(t, uint16(tls.VersionTLS12), o.TLSConfig.MinVersion)
}

func TestParseSentinel(t *testing.T) {
	p, err := parse("redis://suser:spass@s1:26379?master_name=mymaster&addr=s2:26379&password=mpass")
	require.NoError(t, err)
	require.Equal(t, Sentinel, p.kind)
	o := p.failover
	assert.Equal(t, "mymaster", o.MasterName)
	assert.Equal(t, []string{"s1:26379", "s2:26379"}, o.SentinelAddrs)
	assert.Equal(t, "suser", o.SentinelUsername)
	assert.Equal(t, "spass", o.SentinelPassword)
	assert.Equal(t, "mpass", o.Password)
	assert.Nil(t, o.TLSConfig)
}

func TestParseTLS(t *testing.T) {
	p, err := parse("rediss://cache.example:6380")
	require.NoError(t, err)
	require.NotNil(t, p.simple.TLSConfig)
	assert.Equal(t, "cache.example", p.simple.TLSConfig.ServerName)
	assert.Nil(t, p.simple.TLSConfig.RootCAs, "system roots")
}

func TestParseCAFile(t *testing.T) {
	ca := redistest.Start(t, redistest.WithTLS()).CAFile()
	for _, raw := range []string{
		"rediss://h:1?ca_file=" + ca,
		"rediss://h:1?addr=h2:1&ca_file=" + ca,
		"rediss://h:1?master_name=m&ca_file=" + ca,
	} {
		p, err := parse(raw)
		require.NoError(t, err, raw)
		var cfg *tls.Config
		switch p.kind {
		case Standalone:
			cfg = p.simple.TLSConfig
		case Cluster:
			cfg = p.cluster.TLSConfig
		case Sentinel:
			cfg = p.failover.TLSConfig
		}
		require.NotNil(t, cfg, raw)
		assert.NotNil(t, cfg.RootCAs, raw)
		assert.Equal(t, "h", cfg.ServerName, raw)
	}

	_, err := parse("redis://h:1?ca_file=" + ca)
	assert.ErrorIs(t, err, ErrCAFileWithoutTLS)
	_, err = parse("rediss://h:1?ca_file=/does/not/exist.pem")
	assert.ErrorIs(t, err, ErrCAFile)
	notPEM := filepath.Join(t.TempDir(), "x.pem")
	require.NoError(t, os.WriteFile(notPEM, []byte("hello"), 0o600))
	_, err = parse("rediss://h:1?ca_file=" + notPEM)
	assert.ErrorIs(t, err, ErrCAFile)
}

func TestParseOptions(t *testing.T) {
	custom := &tls.Config{ServerName: "custom", MinVersion: tls.VersionTLS13}
	p, err := parse("redis://h:1?pool_size=3", WithTLSConfig(custom), WithPoolSize(42))
	require.NoError(t, err)
	require.NotNil(t, p.simple.TLSConfig)
	assert.Equal(t, "custom", p.simple.TLSConfig.ServerName)
	assert.NotSame(t, custom, p.simple.TLSConfig, "cloned")
	assert.Equal(t, 42, p.simple.PoolSize)

	p, err = parse("redis://h:1?addr=h:2", WithPoolSize(5))
	require.NoError(t, err)
	assert.Equal(t, 5, p.cluster.PoolSize)
	p, err = parse("redis://h:1?master_name=m", WithPoolSize(6))
	require.NoError(t, err)
	assert.Equal(t, 6, p.failover.PoolSize)
}

func TestParseErrorsAreMasked(t *testing.T) {
	tests := []struct {
		raw, want string
	}{
		{"redis://user:hunter2@host:6379?bogus=1", `redisurl: parse "redis://user:xxxxx@host:6379?bogus=1": redis: unexpected option: bogus`},
		{"http://user:hunter2@host", `redisurl: parse "http://user:xxxxx@host": redis: invalid URL scheme: http`},
		{"redis://user:hunter2@ho st:1", `redisurl: parse "redis://user:xxxxx@ho st:1": invalid character " " in host name`},
		{"redis://user:hunter2@host:1/x", `redisurl: parse "redis://user:xxxxx@host:1/x": redis: invalid database number: "x"`},
	}
	for _, tt := range tests {
		_, err := Open(tt.raw)
		require.Error(t, err, tt.raw)
		assert.EqualError(t, err, tt.want)
		assert.NotContains(t, err.Error(), "hunter2")
		var pe *ParseError
		assert.ErrorAs(t, err, &pe)
	}
}

func TestMask(t *testing.T) {
	tests := map[string]string{
		"redis://user:secret@host:6379/0":              "redis://user:xxxxx@host:6379/0",
		"rediss://:secret@host":                        "rediss://:xxxxx@host",
		"redis://host:6379":                            "redis://host:6379",
		"redis://user@host":                            "redis://user@host",
		"redis://s:sp@h?master_name=m&password=mp":     "redis://s:xxxxx@h?master_name=m&password=xxxxx",
		"redis://h?master_name=m&sentinel_password=sp": "redis://h?master_name=m&sentinel_password=xxxxx",
		"redis://u:p%40ss@h:1?addr=h2:1":               "redis://u:xxxxx@h:1?addr=h2:1",
		"redis://u:pa/ss@ho st:1/2":                    "redis://u:xxxxx@ho st:1/2",
		"redis://u:secret@ho st:1?password=x&db=1":     "redis://u:xxxxx@ho st:1?password=xxxxx&db=1",
		"": "",
	}
	for in, want := range tests {
		assert.Equal(t, want, Mask(in), in)
	}
}

func TestKindOf(t *testing.T) {
	assert.Equal(t, Standalone, KindOf("redis://h:1"))
	assert.Equal(t, Cluster, KindOf("redis://h:1?addr=h:2"))
	assert.Equal(t, Sentinel, KindOf("redis://h:1?master_name=m&addr=h:2"))
	assert.Equal(t, "cluster", Cluster.String())
}

// The forms above against real servers: each client must answer PING.
func TestOpenConnects(t *testing.T) {
	ctx := context.Background()
	ping := func(t *testing.T, raw string, opts ...Option) {
		t.Helper()
		rdb, err := Open(raw, opts...)
		require.NoError(t, err)
		defer rdb.Close()
		require.NoError(t, rdb.Ping(ctx).Err(), Mask(raw))
	}
	t.Run("password", func(t *testing.T) {
		s := redistest.Start(t, redistest.WithPassword("app", "s3cret"))
		ping(t, s.URL())
		rdb, err := Open(redistest.Start(t, redistest.WithPassword("app", "s3cret")).URL() + "x")
		require.Error(t, err) // port "6379x" is invalid
		assert.Nil(t, rdb)
	})
	t.Run("tls", func(t *testing.T) {
		s := redistest.Start(t, redistest.WithTLS())
		ping(t, s.URL()+"?ca_file="+s.CAFile())
		ping(t, s.URL(), WithTLSConfig(s.TLSConfig()))
		// Without the CA the certificate is not trusted.
		rdb, err := Open(s.URL(), WithPoolSize(1))
		require.NoError(t, err)
		defer rdb.Close()
		assert.Error(t, rdb.Ping(ctx).Err())
	})
	t.Run("sentinel", func(t *testing.T) {
		sn := redistest.StartSentinel(t)
		rdb, err := Open(sn.URL())
		require.NoError(t, err)
		defer rdb.Close()
		require.NoError(t, rdb.Set(ctx, "k", "v", 0).Err())
		v, err := sn.Master().Client(t).Get(ctx, "k").Result()
		require.NoError(t, err)
		assert.Equal(t, "v", v)
	})
	t.Run("cluster", func(t *testing.T) {
		c := redistest.StartCluster(t)
		rdb, err := Open(c.URL())
		require.NoError(t, err)
		defer rdb.Close()
		_, ok := rdb.(*redis.ClusterClient)
		require.True(t, ok, "%T", rdb)
		require.NoError(t, rdb.Set(ctx, "{a}k", "v", 0).Err())
		require.NoError(t, rdb.Set(ctx, "{b}k", "v", 0).Err())
	})
}

// TestTLSToPlainPortFailsFast: a rediss:// URL naming a plain port used to
// hang 25 s (five handshakes the caller's deadline did not stop); it fails
// within one dial timeout with an error that says why, even without a
// deadline.
func TestTLSToPlainPortFailsFast(t *testing.T) {
	plain := redistest.Start(t)
	for _, tc := range []struct {
		name, url string
	}{
		{"standalone", strings.Replace(plain.URL(), "redis://", "rediss://", 1) + "?dial_timeout=1s"},
		{"cluster", "rediss://" + plain.Addr() + "?addr=" + plain.Addr() + "&dial_timeout=1s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Open(tc.url)
			require.NoError(t, err)
			defer c.Close()
			start := time.Now()
			err = c.Ping(context.Background()).Err()
			took := time.Since(start)
			require.Error(t, err)
			assert.Less(t, took, 2500*time.Millisecond, "took %v: %v", took, err)
			if tc.name == "standalone" {
				assert.ErrorIs(t, err, ErrTLSHandshake)
			}
		})
	}
}

// TestPasswordNeverEchoed: a password holding '#', '?', '/', '@' or '%'
// written raw used to be read as the URL's fragment, query or path, and the
// parse error printed the URL whole (issue 21). Now no error and no Mask
// output holds any part of it, and a URL that is otherwise right works with
// the password as written.
func TestPasswordNeverEchoed(t *testing.T) {
	for _, pw := range []string{"Lefty#Righty", "Lefty?Righty", "Lefty/Righty", "Lefty@Righty", "Lefty%Righty", "Lefty%2Righty", "Lefty#?/@Righty"} {
		leaks := func(t *testing.T, s string) {
			t.Helper()
			assert.NotContains(t, s, "Lefty", "password leaked")
			assert.NotContains(t, s, "Righty", "password leaked")
		}
		for _, raw := range []string{
			"redis://app:" + pw + "@127.0.0.1:6379?bogus=1",
			"redis://app:" + pw + "@127.0.0.1:notaport",
			"redis://app:" + pw + "@127.0.0.1:6379/x",
			"http://app:" + pw + "@127.0.0.1",
			"rediss://app:" + pw + "@127.0.0.1:6379?ca_file=/nonexistent/ca.pem",
			"redis://app:" + pw + "@127.0.0.1:6379?master_name=m&password=" + pw + "&bogus=1",
			"app:" + pw + "@127.0.0.1:6379/x",
		} {
			t.Run(raw, func(t *testing.T) {
				leaks(t, Mask(raw))
				_, err := Open(raw)
				require.Error(t, err)
				leaks(t, err.Error())
				var pe *ParseError
				require.ErrorAs(t, err, &pe)
				assert.Contains(t, pe.URL, "app:"+masked+"@127.0.0.1")
			})
		}
		ok := "redis://app:" + pw + "@127.0.0.1:6379/2"
		p, err := parse(ok)
		if strings.Contains(pw, "%") {
			require.ErrorIs(t, err, ErrPasswordEscape, pw)
			leaks(t, err.Error())
			continue
		}
		require.NoError(t, err, pw)
		assert.Equal(t, pw, p.simple.Password)
		assert.Equal(t, "app", p.simple.Username)
		assert.Equal(t, "127.0.0.1:6379", p.simple.Addr)
		assert.Equal(t, 2, p.simple.DB)
		assert.Equal(t, "redis://app:xxxxx@127.0.0.1:6379/2", Mask(ok))
		assert.Equal(t, Standalone, KindOf(ok))
	}
	// Encoded passwords keep their meaning; '@' in a query password is not
	// taken for the end of the user info.
	p, err := parse("redis://app:p%40ss%25w%23rd@127.0.0.1:6379")
	require.NoError(t, err)
	assert.Equal(t, "p@ss%w#rd", p.simple.Password)
	p, err = parse("redis://s:sp@h:26379?master_name=m&password=m@st#er")
	require.NoError(t, err)
	assert.Equal(t, "sp", p.failover.SentinelPassword)
	assert.Equal(t, "redis://s:xxxxx@h:26379?master_name=m&password=xxxxx", Mask("redis://s:sp@h:26379?master_name=m&password=m@ster"))
}
