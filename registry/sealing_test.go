package registry

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// testKey returns "id:base64" of a fresh random 256-bit key.
func testKey(t testing.TB, id string) string {
	t.Helper()
	b := make([]byte, SecretKeyBytes)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return id + ":" + base64.StdEncoding.EncodeToString(b)
}

func TestParseSecretKeysRefusesMalformedListsWithoutShowingKeys(t *testing.T) {
	good := testKey(t, "k1")
	_, material, _ := strings.Cut(good, ":")
	short := base64.StdEncoding.EncodeToString(make([]byte, 31))
	long := base64.StdEncoding.EncodeToString(make([]byte, 33))
	for _, tc := range []struct {
		name, spec, want string
	}{
		{"empty", "", "no key given"},
		{"blank", " ,\n ", "no key given"},
		{"no colon", material, "entry 1: want id:base64"},
		{"bad id", "k 1:" + material, "entry 1: invalid key ID"},
		{"id with material", material + ":" + material, "entry 1: invalid key ID"},
		{"duplicate id", good + "," + good, `key ID "k1" given twice`},
		{"bad base64", "k2:" + material[:10] + "!!" + material[12:], `key "k2": not valid base64`},
		{"short key", "k2:" + short, `key "k2" is 31 bytes, want 32`},
		{"long key", good + ",k3:" + long, `key "k3" is 33 bytes, want 32`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, err := ParseSecretKeys(tc.spec)
			require.Error(t, err)
			assert.Nil(t, k)
			assert.ErrorIs(t, err, ErrInvalidSecretKeys)
			assert.Contains(t, err.Error(), tc.want)
			assert.NotContains(t, err.Error(), material[:8], "no key material in the message")
		})
	}
}

func TestParseSecretKeysOrderAndSeparators(t *testing.T) {
	k2, k1 := testKey(t, "k2"), testKey(t, "k1")
	for _, spec := range []string{k2 + "," + k1, " " + k2 + " ,\n" + k1 + "\n", k2 + "\n" + k1, k2 + "," + k1 + ","} {
		k, err := ParseSecretKeys(spec)
		require.NoError(t, err, spec)
		assert.Equal(t, "k2", k.Primary())
		assert.Equal(t, []string{"k2", "k1"}, k.IDs())
		assert.Equal(t, "k2,k1", k.String())
	}
	// Unpadded base64 is the same key.
	id, b64, _ := strings.Cut(k1, ":")
	k, err := ParseSecretKeys(id + ":" + strings.TrimRight(b64, "="))
	require.NoError(t, err)
	assert.True(t, k.Has("k1"))
}

// TestSealBindsNamespaceGroupAndKey: a sealed value opens only for the
// namespace, group and config key it was sealed for, and any change to its
// text is refused.
func TestSealBindsNamespaceGroupAndKey(t *testing.T) {
	k, err := ParseSecretKeys(testKey(t, "k1"))
	require.NoError(t, err)
	s, err := k.seal("ns", "g1", "api_key", "sk-plain")
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(s, SealedPrefix+"k1:"), s)
	assert.NotContains(t, s, "sk-plain")
	id, ok := SealedKeyID(s)
	assert.True(t, ok)
	assert.Equal(t, "k1", id)

	plain, id, opened, err := k.open("ns", "g1", "api_key", s)
	require.NoError(t, err)
	assert.True(t, opened)
	assert.Equal(t, "k1", id)
	assert.Equal(t, "sk-plain", plain)

	for _, tc := range []struct{ name, ns, group, key string }{
		{"other namespace", "ns2", "g1", "api_key"},
		{"other group", "ns", "g2", "api_key"},
		{"other key", "ns", "g1", "other"},
	} {
		_, _, opened, err := k.open(tc.ns, tc.group, tc.key, s)
		assert.ErrorIs(t, err, ErrSecretAuth, tc.name)
		assert.False(t, opened, tc.name)
	}
	// Every byte of the payload is authenticated.
	payload := s[len(SealedPrefix+"k1:"):]
	raw, err := base64.RawStdEncoding.DecodeString(payload)
	require.NoError(t, err)
	for i := range raw {
		bad := append([]byte(nil), raw...)
		bad[i] ^= 1
		_, _, _, err := k.open("ns", "g1", "api_key", SealedPrefix+"k1:"+base64.RawStdEncoding.EncodeToString(bad))
		require.ErrorIs(t, err, ErrSecretAuth, "byte %d", i)
	}
	for _, bad := range []string{SealedPrefix, SealedPrefix + "k1", SealedPrefix + "k1:!!", SealedPrefix + "k1:AAAA"} {
		_, _, _, err := k.open("ns", "g1", "api_key", bad)
		assert.ErrorIs(t, err, ErrSecretAuth, bad)
	}
	// Another key list with the same ID but another key refuses it too.
	other, err := ParseSecretKeys(testKey(t, "k1"))
	require.NoError(t, err)
	_, _, _, err = other.open("ns", "g1", "api_key", s)
	assert.ErrorIs(t, err, ErrSecretAuth)
	// A list without k1 leaves it sealed, without an error.
	k2, err := ParseSecretKeys(testKey(t, "k2"))
	require.NoError(t, err)
	_, id, opened, err = k2.open("ns", "g1", "api_key", s)
	require.NoError(t, err)
	assert.False(t, opened)
	assert.Equal(t, "k1", id)
	var none *SecretKeys
	_, _, opened, err = none.open("ns", "g1", "api_key", s)
	require.NoError(t, err)
	assert.False(t, opened)
}

func TestSealUsesAFreshNonce(t *testing.T) {
	k, err := ParseSecretKeys(testKey(t, "k1"))
	require.NoError(t, err)
	a, err := k.seal("ns", "g", "k", "v")
	require.NoError(t, err)
	b, err := k.seal("ns", "g", "k", "v")
	require.NoError(t, err)
	assert.NotEqual(t, a, b)
}

func TestSecretValueErrorNamesGroupKeyAndKeyID(t *testing.T) {
	e := &SecretValueError{Group: "g", Where: "history version 3", Key: "api_key", KeyID: "k0", Err: ErrSecretKeyMissing}
	assert.Equal(t, `registry: group "g" (history version 3) config key "api_key" is sealed with secret key "k0", which this process does not have (ALLOT_SECRET_KEYS)`, e.Error())
	e = &SecretValueError{Group: "g", Key: "api_key", KeyID: "k1", Err: ErrSecretAuth}
	assert.Equal(t, `registry: group "g" config key "api_key": sealed value fails authentication (key "k1")`, e.Error())
	assert.True(t, errors.Is(e, ErrSecretAuth))
}

func TestMaskedHidesSealedValues(t *testing.T) {
	sealed := SealedPrefix + "k1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	g := Group{Name: "g", Config: map[string]string{"api_key": sealed, "other": sealed, "region": "eu"}, SecretKeys: []string{"api_key"}}
	m := g.Masked()
	assert.Equal(t, MaskPrefix, m.Config["api_key"])
	assert.Equal(t, MaskPrefix, m.Config["other"], "a sealed value is masked even under a key not marked")
	assert.Equal(t, "eu", m.Config["region"])
	assert.Equal(t, map[string]string{"api_key": "k1", "other": "k1"}, g.Sealed())
	err := RequireOpen(Group{Name: "a"}, g)
	var sv *SecretValueError
	require.ErrorAs(t, err, &sv)
	assert.Equal(t, SecretValueError{Group: "g", Key: "api_key", KeyID: "k1", Err: ErrSecretKeyMissing}, *sv)
	assert.NoError(t, RequireOpen(Group{Name: "a", Config: map[string]string{"k": "v"}}))
}

func TestValidKeyIDMatchesTheRule(t *testing.T) {
	for _, id := range []string{"k1", "K", "2026-01", "a.b_c-d", strings.Repeat("a", 32), "", "-a", ".a", "_a", "a:b", "a,b", "a b", strings.Repeat("a", 33), "é"} {
		assert.Equal(t, secretKeyID.MatchString(id), validKeyID(id), id)
	}
}
