package server_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/registry"
	"github.com/allot-io/allot/server"
)

func secretKeys(t *testing.T, ids ...string) *registry.SecretKeys {
	t.Helper()
	var spec []string
	for _, id := range ids {
		b := make([]byte, registry.SecretKeyBytes)
		_, err := rand.Read(b)
		require.NoError(t, err)
		spec = append(spec, id+":"+base64.StdEncoding.EncodeToString(b))
	}
	k, err := registry.ParseSecretKeys(strings.Join(spec, ","))
	require.NoError(t, err)
	return k
}

const httpSecret = "sk-http-0123456789abcdef"

// TestSecretsAtRestOverHTTP: serve with keys stores secret values sealed,
// and gives HTTP nodes and reveal plain text; /v1/status says how secrets
// are stored; a value sealed with a key serve lacks is refused to a node
// and to reveal with an error naming the key ID, never handed out sealed.
func TestSecretsAtRestOverHTTP(t *testing.T) {
	plain := newAPI(t, server.WithTokens(testTokens))
	var st struct {
		SecretsAtRest string `json:"secrets_at_rest"`
	}
	plain.do("GET", "/v1/status", readToken, nil).json(t, &st)
	assert.Equal(t, registry.AtRestPlaintext, st.SecretsAtRest)

	a := newAPI(t, server.WithTokens(testTokens), server.WithSecretKeys(secretKeys(t, "k1")))
	a.do("GET", "/v1/status", readToken, nil).json(t, &st)
	assert.Equal(t, registry.AtRestEncrypted, st.SecretsAtRest)

	r := a.do("POST", "/v1/groups", adminToken, map[string]any{"name": "maps", "config": map[string]string{"api_key": httpSecret}, "secret_keys": []string{"api_key"}})
	require.Equal(t, http.StatusCreated, r.status, "%s", r.body)
	stored, err := a.rdb.Get(context.Background(), "{allot:default}:group:maps").Result()
	require.NoError(t, err)
	assert.NotContains(t, stored, httpSecret)
	assert.Contains(t, stored, registry.SealedPrefix+"k1:")

	var g groupJSON
	a.do("GET", "/v1/groups/maps?reveal=true", adminToken, nil).json(t, &g)
	assert.Equal(t, httpSecret, g.Config["api_key"])
	a.do("GET", "/v1/groups/maps", readToken, nil).json(t, &g)
	assert.Equal(t, "****cdef", g.Config["api_key"])

	var session string
	beat := func() (nodeAssignment, reply) {
		r := a.doSession("POST", "/v1/nodes/n1/heartbeat", nodeToken, session, map[string]any{"ip": "10.0.0.1"})
		var na nodeAssignment
		if r.status == http.StatusOK {
			r.json(t, &na)
			session = na.Session
		}
		return na, r
	}
	var na nodeAssignment
	require.Eventually(t, func() bool {
		var r reply
		na, r = beat()
		return r.status == http.StatusOK && len(na.Groups) == 1
	}, 10*time.Second, 20*time.Millisecond)
	assert.Equal(t, httpSecret, na.Groups[0].Config["api_key"], "an HTTP node gets plain text")

	// A writer with another key: serve cannot open the value now.
	k9 := registry.New(a.rdb, registry.WithSecretKeys(secretKeys(t, "k9")))
	_, err = k9.Update(context.Background(), "maps", registry.Change{Set: map[string]string{"api_key": httpSecret + "-9"}}, "t")
	require.NoError(t, err)
	var refused reply
	require.Eventually(t, func() bool { _, refused = beat(); return refused.status != http.StatusOK }, 10*time.Second, 20*time.Millisecond)
	assert.Equal(t, http.StatusInternalServerError, refused.status)
	assert.Contains(t, string(refused.body), `config key \"api_key\" is sealed with secret key \"k9\"`)
	assert.NotContains(t, string(refused.body), registry.SealedPrefix)
	for _, path := range []string{"/v1/groups/maps?reveal=true", "/v1/groups?reveal=true", "/v1/groups/maps/history?reveal=true", "/v1/export?reveal=true"} {
		r := a.do("GET", path, adminToken, nil)
		assert.Equal(t, http.StatusInternalServerError, r.status, path)
		assert.Contains(t, string(r.body), `secret key \"k9\"`, path)
		assert.NotContains(t, string(r.body), registry.SealedPrefix, path)
	}
	// Masked views still answer.
	a.do("GET", "/v1/groups/maps", readToken, nil).json(t, &g)
	assert.Equal(t, registry.MaskPrefix, g.Config["api_key"])
}

func TestWithSecretKeysAndWithRegistryRefused(t *testing.T) {
	a := newAPI(t)
	_, err := server.New(a.rdb, server.WithRegistry(a.reg), server.WithSecretKeys(secretKeys(t, "k1")))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "WithSecretKeys cannot be combined with WithRegistry")
}
