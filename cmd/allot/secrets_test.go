package main

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/internal/redistest"
	"github.com/allot-io/allot/internal/testlog"
	"github.com/allot-io/allot/registry"
)

// newKey returns "id:base64" of a fresh 256-bit key.
func newKey(t *testing.T, id string) string {
	t.Helper()
	b := make([]byte, registry.SecretKeyBytes)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return id + ":" + base64.StdEncoding.EncodeToString(b)
}

// keyFile writes a key list to a file (one key a line) and returns its path.
func keyFile(t *testing.T, keys ...string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "keys")
	require.NoError(t, os.WriteFile(p, []byte(strings.Join(keys, "\n")+"\n"), 0o600))
	return p
}

// runWithEnv runs the command tree in-process with extra environment.
func runWithEnv(t *testing.T, vars map[string]string, args ...string) (string, string, int) {
	t.Helper()
	var out, errb testlog.Buffer
	code := execute(t.Context(), args, env{stdout: &out, stderr: &errb, getenv: func(k string) string {
		if v, ok := vars[k]; ok {
			return v
		}
		return testEnv(k)
	}})
	return out.String(), errb.String(), code
}

const cliSecret = "sk-cli-0123456789abcdef-SECRET"

// TestSecretKeysMalformedRefusedAtStart: a key list that does not parse
// stops every command before Redis is touched (exit 2), with a message
// that names the problem and never the key material.
func TestSecretKeysMalformedRefusedAtStart(t *testing.T) {
	good := newKey(t, "k1")
	_, material, _ := strings.Cut(good, ":")
	short := "k2:" + base64.StdEncoding.EncodeToString(make([]byte, 16))
	for _, tc := range []struct{ name, spec, want string }{
		{"short key", short, `invalid ALLOT_SECRET_KEYS: invalid secret keys: key "k2" is 16 bytes, want 32 (256 bits)`},
		{"duplicate", good + "," + good, `key ID "k1" given twice`},
		{"bad base64", "k3:" + material[:20] + "%%", `key "k3": not valid base64`},
		{"no id", material, "entry 1: want id:base64-of-32-bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The Redis URL points nowhere: the refusal comes first.
			out, errOut, code := runWithEnv(t, map[string]string{"ALLOT_SECRET_KEYS": tc.spec}, "--redis", "redis://127.0.0.1:1", "group", "list")
			assert.Equal(t, exitUsage, code)
			assert.Empty(t, out)
			assert.Contains(t, errOut, tc.want)
			assert.NotContains(t, errOut, material[:8])
		})
	}
	// --secret-keys reads a file; it wins over the variable.
	p := keyFile(t, short)
	_, errOut, code := runWithEnv(t, map[string]string{"ALLOT_SECRET_KEYS": good}, "--redis", "redis://127.0.0.1:1", "--secret-keys", p, "status")
	assert.Equal(t, exitUsage, code)
	assert.Contains(t, errOut, "invalid --secret-keys "+p+": invalid secret keys: key \"k2\" is 16 bytes")
	_, errOut, code = runWithEnv(t, nil, "--redis", "redis://127.0.0.1:1", "--secret-keys", filepath.Join(t.TempDir(), "none"), "status")
	assert.Equal(t, exitUsage, code)
	assert.Contains(t, errOut, "invalid --secret-keys")
}

// TestSecretsCLI walks the CLI through encryption at rest: writes with
// --secret-keys store sealed values, readers with the key get plain text,
// readers without it refuse --reveal naming the key ID, `secrets status`
// counts, `secrets rotate` reseals with the first key, `status` says how
// secrets are stored, and import of plain text stores it sealed.
func TestSecretsCLI(t *testing.T) {
	s := redistest.Start(t)
	url := s.URL()
	rdb := s.Client(t)
	k1, k2 := newKey(t, "k1"), newKey(t, "k2")
	f1, f21 := keyFile(t, k1), keyFile(t, k2, k1)

	out := mustRun(t, url, "-o", "json", "status")
	assert.Contains(t, out, `"secrets_at_rest": "plaintext"`)
	out = mustRun(t, url, "status")
	assert.Contains(t, out, "secrets: stored in plain text in Redis")

	mustRun(t, url, "--secret-keys", f1, "group", "add", "g", "--set", "api_key="+cliSecret, "--secret", "api_key", "--set", "region=eu")
	for k, v := range dumpKeys(t, rdb) {
		assert.NotContains(t, v, cliSecret, k)
	}
	out = mustRun(t, url, "--secret-keys", f1, "group", "get", "g", "--reveal", "-o", "json")
	assert.Contains(t, out, cliSecret)
	out = mustRun(t, url, "--secret-keys", f1, "-o", "json", "status")
	assert.Contains(t, out, `"secrets_at_rest": "encrypted"`)

	// Without the key: masked, and --reveal is refused naming the key ID.
	out = mustRun(t, url, "group", "get", "g", "-o", "json")
	assert.Contains(t, out, `"api_key": "****"`)
	for _, args := range [][]string{{"group", "get", "g", "--reveal"}, {"export", "--reveal"}, {"group", "history", "g", "--reveal", "-o", "json"}} {
		out, errOut, code := runCLI(t, url, args...)
		assert.Equal(t, exitFailure, code, args)
		assert.NotContains(t, out, registry.SealedPrefix, args)
		assert.Contains(t, errOut, `config key "api_key" is sealed with secret key "k1"`, args)
	}

	// Import plain text: stored sealed.
	pool := filepath.Join(t.TempDir(), "pool.yaml")
	require.NoError(t, os.WriteFile(pool, []byte("groups:\n  - name: imp\n    config: {token: "+cliSecret+"-imp}\n    secret_keys: [token]\n"), 0o600))
	mustRun(t, url, "--secret-keys", f1, "import", pool)
	v, err := rdb.Get(t.Context(), "{allot:default}:group:imp").Result()
	require.NoError(t, err)
	assert.NotContains(t, v, cliSecret)
	assert.Contains(t, v, registry.SealedPrefix+"k1:")
	// A value in the sealed form is refused as bad input.
	_, errOut, code := runCLI(t, url, "--secret-keys", f1, "group", "update", "g", "--set", "api_key="+registry.SealedPrefix+"k1:AAAA")
	assert.Equal(t, exitUsage, code)
	assert.Contains(t, errOut, "the form of a sealed value")

	// Status counts per key ID.
	out = mustRun(t, url, "--secret-keys", f21, "secrets", "status")
	assert.Contains(t, out, "secrets at rest: encrypted with key k2 (keys: k2,k1)")
	assert.Contains(t, out, "4 values sealed with another key")
	out = mustRun(t, url, "--secret-keys", f21, "secrets", "status", "-o", "json")
	var st registry.SecretsStatus
	require.NoError(t, json.Unmarshal([]byte(out), &st))
	assert.Equal(t, map[string]int{"k1": 4}, st.Total.Sealed, "2 documents, 2 history entries")

	// Rotate without keys is a usage error; with k2,k1 it reseals all.
	_, errOut, code = runCLI(t, url, "secrets", "rotate")
	assert.Equal(t, exitUsage, code)
	assert.Contains(t, errOut, "no secret keys")
	out = mustRun(t, url, "--secret-keys", f21, "secrets", "rotate")
	assert.Contains(t, out, "rotated: 4 values sealed with key k2 in 2 documents, 2 history entries, 0 scheduled changes")
	var after registry.SecretsStatus
	require.NoError(t, json.Unmarshal([]byte(mustRun(t, url, "--secret-keys", f21, "secrets", "status", "-o", "json")), &after))
	assert.Equal(t, map[string]int{"k2": 4}, after.Total.Sealed)

	// A rotation with keys that cannot open a value writes nothing.
	before := dumpKeys(t, rdb)
	_, errOut, code = runCLI(t, url, "--secret-keys", keyFile(t, newKey(t, "k3"), k1), "secrets", "rotate")
	assert.Equal(t, exitFailure, code)
	assert.Contains(t, errOut, `cannot open every secret value: group "g" (document) config key "api_key" is sealed with secret key "k2"`)
	assert.Contains(t, errOut, "nothing was written")
	assert.Equal(t, before, dumpKeys(t, rdb))

	// keygen prints a key the parser takes.
	out = mustRun(t, url, "secrets", "keygen", "k9")
	k, err := registry.ParseSecretKeys(strings.TrimSpace(out))
	require.NoError(t, err)
	assert.Equal(t, "k9", k.Primary())
}

// TestServeDevWithSecretKeys: serve --dev with ALLOT_SECRET_KEYS seals the
// sample groups' keys, gives its demo nodes the keys (they start and hold
// every group), and says so in /v1/status.
func TestServeDevWithSecretKeys(t *testing.T) {
	spec := newKey(t, "k1")
	url, _, stop := startServe(t, func(k string) string {
		if k == "ALLOT_SECRET_KEYS" {
			return spec
		}
		return testEnv(k)
	}, "--dev", "--listen", "127.0.0.1:0", "--demo-nodes", "2")
	var st struct {
		SecretsAtRest string `json:"secrets_at_rest"`
		Nodes         []struct {
			Groups []string `json:"groups"`
		} `json:"nodes"`
	}
	require.Eventually(t, func() bool {
		return getJSON(t, url+"/v1/status", &st) == http.StatusOK && len(st.Nodes) == 2 &&
			len(st.Nodes[0].Groups)+len(st.Nodes[1].Groups) == 4
	}, 20*time.Second, 20*time.Millisecond, "status: %+v", &st)
	assert.Equal(t, registry.AtRestEncrypted, st.SecretsAtRest)
	m := regexp.MustCompile(`(?m)^export ALLOT_REDIS_URL=(redis://127\.0\.0\.1:\d+)$`).FindStringSubmatch(lastStdout.String())
	require.NotNil(t, m, lastStdout.String())
	out := mustRun(t, m[1], "secrets", "status", "-o", "json")
	assert.Contains(t, out, `"k1": 8`, "4 documents, 4 history entries")
	assert.Equal(t, exitOK, stop())
}
