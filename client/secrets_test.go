package client

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/internal/redistest"
	"github.com/allot-io/allot/internal/testlog"
	"github.com/allot-io/allot/registry"
)

// secretKey returns "id:base64" of a fresh random 256-bit key.
func secretKey(t testing.TB, id string) string {
	t.Helper()
	b := make([]byte, registry.SecretKeyBytes)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return id + ":" + base64.StdEncoding.EncodeToString(b)
}

// keyedRegistry is a registry of the default namespace with key list spec.
func keyedRegistry(t testing.TB, rdb redis.UniversalClient, spec ...string) *registry.Registry {
	t.Helper()
	k, err := registry.ParseSecretKeys(strings.Join(spec, ","))
	require.NoError(t, err)
	return registry.New(rdb, registry.WithSecretKeys(k))
}

const (
	nodeSecret  = "sk-node-0123456789abcdef-ONE"
	nodeSecret2 = "sk-node-0123456789abcdef-TWO"
)

func TestWithSecretKeysRefusesMalformedList(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer rdb.Close()
	good := secretKey(t, "k1")
	_, material, _ := strings.Cut(good, ":")
	for _, spec := range []string{"", "k1:" + material[:20], good + "," + good, material} {
		_, err := New(rdb, WithSecretKeys(spec))
		require.ErrorIs(t, err, ErrInvalidOption, spec)
		assert.ErrorIs(t, err, registry.ErrInvalidSecretKeys)
		assert.NotContains(t, err.Error(), material[:8])
	}
	c, err := New(rdb, WithSecretKeys(good))
	require.NoError(t, err)
	assert.Equal(t, registry.AtRestEncrypted, c.reg.SecretsAtRest())
}

func TestFromEnvReadsSecretKeys(t *testing.T) {
	s := redistest.Start(t)
	t.Setenv(EnvRedisURL, s.URL())
	t.Setenv(EnvSecretKeys, "k1:short")
	_, err := FromEnv()
	require.ErrorIs(t, err, ErrInvalidOption)
	assert.Contains(t, err.Error(), `key "k1"`)
	t.Setenv(EnvSecretKeys, secretKey(t, "k1"))
	c, err := FromEnv()
	require.NoError(t, err)
	defer c.Close(context.Background())
	assert.Equal(t, "k1", c.reg.SecretKeys().Primary())
}

// TestNodeWithoutKeyFailsStart: a node whose group holds a value sealed
// with a key it lacks fails Start at once with an error naming the key ID
// (not at its deadline), leaves, and never published the sealed value.
func TestNodeWithoutKeyFailsStart(t *testing.T) {
	p := newPool(t)
	writer := keyedRegistry(t, p.rdb, secretKey(t, "k1"))
	_, err := writer.Add(context.Background(), "g", registry.Change{Set: set("api_key", nodeSecret), Secret: []string{"api_key"}}, "t")
	require.NoError(t, err)

	for _, tc := range []struct {
		name string
		opts []Option
	}{
		{"no keys", nil},
		{"other key", []Option{WithSecretKeys(secretKey(t, "k2"))}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := p.newClient("n-"+strings.ReplaceAll(tc.name, " ", "-"), tc.opts...)
			var mu sync.Mutex
			var seen []string
			c.OnChange(func(_, n Assignment) {
				mu.Lock()
				defer mu.Unlock()
				for _, g := range n.Groups {
					seen = append(seen, g.Config["api_key"])
				}
			})
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			start := time.Now()
			err := c.Start(ctx)
			require.Error(t, err)
			assert.Less(t, time.Since(start), 15*time.Second, "fails at once, not at the deadline")
			assert.ErrorIs(t, err, ErrNoAssignment)
			assert.ErrorIs(t, err, registry.ErrSecretKeyMissing)
			assert.Contains(t, err.Error(), `group "g" config key "api_key" is sealed with secret key "k1"`)
			assert.Empty(t, c.Assignment().Groups)
			mu.Lock()
			assert.Empty(t, seen, "nothing published")
			mu.Unlock()
			live, _, err := p.hbTracker().Live(context.Background())
			require.NoError(t, err)
			for _, n := range live {
				assert.NotEqual(t, c.NodeID(), n.ID, "the node left")
			}
		})
	}
}

// TestRotationKeepsNodeServing is the rotation of the issue: data sealed
// with k1, a node started with "k2,k1", `secrets rotate` with "k2,k1":
// every value is then sealed with k2, and the same node — no restart —
// still serves the value and follows an update written afterwards.
func TestRotationKeepsNodeServing(t *testing.T) {
	redistest.Topologies(t, func(t *testing.T, rdb redis.UniversalClient) {
		ctx := context.Background()
		k1, k2 := secretKey(t, "k1"), secretKey(t, "k2")
		old := keyedRegistry(t, rdb, k1)
		_, err := old.Add(ctx, "g", registry.Change{Set: set("api_key", nodeSecret, "region", "eu"), Secret: []string{"api_key"}}, "t")
		require.NoError(t, err)

		c, err := New(rdb, WithNodeID("rot-1"), WithIP("10.0.0.9"), WithHeartbeat(fastHB), WithLogger(testLogger()), WithSecretKeys(k2+","+k1))
		require.NoError(t, err)
		defer c.Close(context.Background())
		sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		require.NoError(t, c.Start(sctx))
		v, ok := c.Config("api_key")
		require.True(t, ok)
		assert.Equal(t, nodeSecret, v)

		rot := keyedRegistry(t, rdb, k2, k1)
		res, err := rot.RotateSecrets(ctx, 0)
		require.NoError(t, err)
		assert.Equal(t, 2, res.Resealed, "the document and its history entry")
		st, err := rot.SecretsStatus(ctx)
		require.NoError(t, err)
		assert.Equal(t, map[string]int{"k2": 2}, st.Total.Sealed)
		assert.Zero(t, st.Total.Plaintext)

		// Serving throughout, and after: beats later, the same value.
		after := time.Now()
		require.Eventually(t, func() bool { return c.Health().LastBeat.After(after) }, 5*time.Second, 10*time.Millisecond)
		v, ok = c.Config("api_key")
		require.True(t, ok)
		assert.Equal(t, nodeSecret, v)
		assert.True(t, c.Health().LeaseValid)

		// An update written with k2 first reaches the node.
		_, err = rot.Update(ctx, "g", registry.Change{Set: set("api_key", nodeSecret2)}, "t")
		require.NoError(t, err)
		require.Eventually(t, func() bool {
			v, _ := c.Config("api_key")
			return v == nodeSecret2
		}, 10*time.Second, 10*time.Millisecond)
		for _, g := range c.Assignment().Groups {
			for k, v := range g.Config {
				assert.False(t, registry.IsSealed(v), "%s never sealed", k)
			}
		}
	})
}

// TestRunningNodeKeepsLastGoodConfig: a started node that meets a held
// group's new value sealed with a key it lacks keeps serving its last good
// config, logs the problem once naming the key ID, never hands out the
// sealed text, and follows again once the value is one it can open.
func TestRunningNodeKeepsLastGoodConfig(t *testing.T) {
	p := newPool(t)
	ctx := context.Background()
	k1 := secretKey(t, "k1")
	writer := keyedRegistry(t, p.rdb, k1)
	_, err := writer.Add(ctx, "g", registry.Change{Set: set("api_key", nodeSecret), Secret: []string{"api_key"}}, "t")
	require.NoError(t, err)
	var logs testlog.Buffer
	c := p.startClient("n1", WithSecretKeys(k1), WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	var mu sync.Mutex
	var delivered []string
	c.OnChange(func(_, n Assignment) {
		mu.Lock()
		defer mu.Unlock()
		for _, g := range n.Groups {
			delivered = append(delivered, g.Config["api_key"])
		}
	})

	stranger := keyedRegistry(t, p.rdb, secretKey(t, "k9"))
	_, err = stranger.Update(ctx, "g", registry.Change{Set: set("api_key", nodeSecret2)}, "t")
	require.NoError(t, err)
	require.Eventually(t, func() bool { return logs.Count(`key \"k9\"`) > 0 }, 10*time.Second, 10*time.Millisecond, logs.String())
	v, ok := c.Config("api_key")
	require.True(t, ok)
	assert.Equal(t, nodeSecret, v, "the last good config")
	g, _ := c.Assignment().Group("g")
	assert.Equal(t, int64(1), g.Version)
	// It keeps trying (every beat sees the new revision) but says it once.
	fetches := c.fetches.Load()
	require.Eventually(t, func() bool { return c.fetches.Load() > fetches+2 }, 10*time.Second, 10*time.Millisecond)
	assert.Equal(t, 1, logs.Count("cannot open"), logs.String())
	assert.NotContains(t, logs.String(), registry.SealedPrefix)

	_, err = writer.Update(ctx, "g", registry.Change{Set: set("api_key", nodeSecret2+"-3")}, "t")
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		v, _ := c.Config("api_key")
		return v == nodeSecret2+"-3"
	}, 10*time.Second, 10*time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	for _, v := range delivered {
		assert.False(t, registry.IsSealed(v))
	}
}
